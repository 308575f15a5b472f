"""DIGINETICA (CIKM Cup 2016 personalized e-commerce search) -> the data contract.

The dataset is five ``;``-separated files with headers. A path is one of them (told apart by its
header; both the original camelCase ``sessionId`` and the SR-GNN sample's ``session_id``
spellings are accepted) or the directory holding them (every one present is read):

=======================  ======================================================================
file                     header
=======================  ======================================================================
train-item-views.csv     sessionId;userId;itemId;timeframe;eventdate
train-purchases.csv      sessionId;userId;timeframe;eventdate;ordernumber;itemId
train-queries.csv        queryId;sessionId;userId;timeframe;duration;eventdate;
                         searchstring.tokens;categoryId;items;is.test
products.csv             itemId;pricelog2;product.name.tokens
product-categories.csv   itemId;categoryId
=======================  ======================================================================

Mapping:

- item view -> ``click``; purchase -> ``booking``;
- query -> ``search`` with ``query`` = the search-string tokens (word ids) joined by spaces, when
  it has tokens (queries without tokens are category browsing: no ``search`` event, because
  the contract's searches carry a query), plus one ``impression`` per listed result item, in
  order, with ``position`` = 1-based rank and ``request_id`` = ``"dg-q<queryId>"`` (the search
  event carries the same request id). ``train-clicks.csv`` is not read: it has no session,
  user or date of its own (the views file already holds the item views);
- ``ts`` = ``eventdate`` (midnight UTC) + ``timeframe`` milliseconds (the time since the
  session started, as the dataset defines it);
- ``user_id`` = the source user id when present, else ``"dg-<sessionId>"`` when it is
  ``NA``/empty (most sessions are anonymous), so sessionization keeps anonymous sessions apart;
- ``market`` = ``"diginetica"``; ``event_id`` = content hash of
  diginetica|user|item|ts|type|occurrence (the source has no event ids; impressions are
  salted with their request id);
- items: ``title`` = the product-name tokens joined by spaces, ``price`` = ``2 ** pricelog2``
  (the dataset only publishes the log), ``category`` from product-categories,
  ``attributes`` = ``{"pricelog2": ...}``. In a directory the two catalog files are joined into
  one row per item; read one by one, each gives partial item rows.

Rejected: wrong field count, non-integer ids or timeframe, an invalid date, a malformed
result list or price.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from funnel.data.loaders._fields import Fields, as_float, as_int, json_objects, ms_to_ts, prefixed
from funnel.data.loaders._ids import content_ids
from funnel.data.loaders._read import read_lines
from funnel.data.loaders._tables import concat, contract_table, event_table, merge, sort_events
from funnel.data.loaders.base import SourceTables
from funnel.exceptions import DataFileError

FAMILY: Final = "diginetica"
MARKET: Final = "diginetica"
ANONYMOUS: Final = ("NA", "")
MAX_TIMEFRAME_MS: Final = 10**12  # ~31 years after the session start: anything more is garbage

# normalized header (lower case, no "_" or ".") -> column names used below
VIEWS: Final = ("sessionid", "userid", "itemid", "timeframe", "eventdate")
PURCHASES: Final = ("sessionid", "userid", "timeframe", "eventdate", "ordernumber", "itemid")
QUERIES: Final = ("queryid", "sessionid", "userid", "timeframe", "duration", "eventdate",
                  "searchstringtokens", "categoryid", "items", "istest")  # fmt: skip
PRODUCTS: Final = ("itemid", "pricelog2", "productnametokens")
CATEGORIES: Final = ("itemid", "categoryid")
DIRECTORY_FILES: Final = ("train-item-views.csv", "train-purchases.csv", "train-queries.csv")
CATALOG_FILES: Final = ("products.csv", "product-categories.csv")


def _normalize(header: str) -> tuple[str, ...]:
    return tuple(h.strip().lower().replace("_", "").replace(".", "") for h in header.split(";"))


def load_diginetica(path: Path) -> SourceTables:
    """Read DIGINETICA files: one of them (by header) or the directory holding them."""
    path = Path(path)
    if path.is_dir():
        return _load_directory(path)
    header, lines = read_lines(path, header=True)
    names = _normalize(header or "")
    labels = [h.strip() for h in (header or "").split(";")]
    readers = {VIEWS: _views, PURCHASES: _purchases, QUERIES: _queries}
    if names in readers:
        return readers[names](path, Fields(lines, ";", names, labels))
    if names == PRODUCTS:
        return SourceTables(**_products(path, Fields(lines, ";", names, labels)))
    if names == CATEGORIES:
        return SourceTables(**_categories(path, Fields(lines, ";", names, labels)))
    raise DataFileError(
        str(path),
        f"header is {header!r}, expected the header of a DIGINETICA file, e.g. "
        "'session_id;user_id;item_id;timeframe;eventdate' (item views)",
    )


def _load_directory(path: Path) -> SourceTables:
    parts = [load_diginetica(path / n) for n in DIRECTORY_FILES if (path / n).exists()]
    products, categories = (path / n for n in CATALOG_FILES)
    if products.exists() and categories.exists():
        parts.append(_catalog(products, categories))
    else:
        parts += [load_diginetica(p) for p in (products, categories) if p.exists()]
    if not parts:
        # the SR-GNN sample ships the views under another name
        parts = [load_diginetica(p) for p in sorted(path.glob("*item-views*.csv"))]
    if not parts:
        raise DataFileError(
            str(path), f"holds none of {', '.join(DIRECTORY_FILES + CATALOG_FILES)}"
        )
    return merge(parts)


# ---------------------------------------------------------------------------------------------
# events


def _is_date(values: pa.Array) -> pa.Array:
    """True where ``values`` is a real calendar date ``YYYY-MM-DD`` (2016-02-30 is not)."""
    parsed = pc.strptime(values, format="%Y-%m-%d", unit="ms", error_is_null=True)
    # strptime rolls impossible days over (Feb 30 -> Mar 1); formatting back catches that
    return pc.fill_null(pc.equal(pc.strftime(parsed, format="%Y-%m-%d"), values), False)


def _check_session_time(f: Fields) -> None:
    f.require_int("sessionid")
    f.require_int_within("timeframe", MAX_TIMEFRAME_MS)
    f.require("eventdate", pc.invert(_is_date(f["eventdate"])), "a date like 2016-05-09")


def _ts_ms(f: Fields) -> pa.Array:
    dates = pc.strptime(f["eventdate"], format="%Y-%m-%d", unit="ms")
    day_ms = pc.cast(pc.cast(dates, pa.timestamp("ms")), pa.int64())
    return pc.add(day_ms, as_int(f["timeframe"]))


def _user_id(f: Fields) -> pa.Array:
    anonymous = pc.is_in(f["userid"], value_set=pa.array(ANONYMOUS, pa.string()))
    return pc.if_else(anonymous, prefixed("dg-", f["sessionid"]), f["userid"])


def _views(path: Path, f: Fields) -> SourceTables:
    _check_session_time(f)
    f.require_int("itemid")
    events = event_table(
        family=FAMILY, path=path, rows=f.rows, ts_ms=_ts_ms(f), user_id=_user_id(f),
        item_id=f["itemid"], event_type="click", market=MARKET,
    )  # fmt: skip
    return SourceTables(events=events, rejected=f.rejected())


def _purchases(path: Path, f: Fields) -> SourceTables:
    _check_session_time(f)
    f.require_int("itemid")
    f.require_int("ordernumber")
    events = event_table(
        family=FAMILY, path=path, rows=f.rows, ts_ms=_ts_ms(f), user_id=_user_id(f),
        item_id=f["itemid"], event_type="booking", market=MARKET,
    )  # fmt: skip
    return SourceTables(events=events, rejected=f.rejected())


_ID_LIST = r"^([0-9]+(,[0-9]+)*)?$"


def _queries(path: Path, f: Fields) -> SourceTables:
    f.require_int("queryid")
    _check_session_time(f)
    f.require(
        "items", pc.invert(pc.match_substring_regex(f["items"], _ID_LIST)),
        "a comma-separated list of item ids",
    )  # fmt: skip
    f.require(
        "searchstringtokens",
        pc.invert(pc.match_substring_regex(f["searchstringtokens"], _ID_LIST)),
        "a comma-separated list of token ids (or empty)",
    )
    ts_ms, user_id = _ts_ms(f), _user_id(f)
    request_id = prefixed("dg-q", f["queryid"])

    # one search event per query that has tokens
    searched = pc.not_equal(f["searchstringtokens"], "")
    query_text = pc.replace_substring(f["searchstringtokens"], ",", " ")
    searches = event_table(
        family=FAMILY, path=path, rows=f.rows.filter(searched), ts_ms=ts_ms.filter(searched),
        user_id=user_id.filter(searched), event_type="search",
        query=query_text.filter(searched), request_id=request_id.filter(searched),
        market=MARKET,
    )  # fmt: skip

    # one impression per listed result, position = rank in the list
    lists = pc.split_pattern(pc.if_else(pc.equal(f["items"], ""), None, f["items"]), ",")
    parent = pc.list_parent_indices(lists)
    items = pc.list_flatten(lists)
    offsets = lists.offsets.to_numpy()[:-1]
    position = np.arange(len(items)) - offsets[parent.to_numpy()] + 1
    imp_users, imp_ts, imp_req = (pc.take(a, parent) for a in (user_id, ts_ms, request_id))
    impressions = contract_table(
        "events",
        {
            "event_id": content_ids(FAMILY, imp_users, items, imp_ts, "impression",
                                    salt=imp_req),  # fmt: skip
            "ts": ms_to_ts(imp_ts),
            "user_id": imp_users,
            "event_type": "impression",
            "item_id": items,
            "request_id": imp_req,
            "position": pa.array(position.astype(np.int32)),
            "market": MARKET,
        },
        path=path,
        rows=pc.take(f.rows, parent),
    )
    return SourceTables(events=sort_events(concat([searches, impressions])),
                        rejected=f.rejected())  # fmt: skip


# ---------------------------------------------------------------------------------------------
# catalog


def _products(path: Path, f: Fields) -> dict[str, pa.Table]:
    f.require_int("itemid")
    f.require_float("pricelog2", allow_empty=True)
    f.require(
        "productnametokens",
        pc.invert(pc.match_substring_regex(f["productnametokens"], _ID_LIST)),
        "a comma-separated list of token ids (or empty)",
    )
    log2 = as_float(f["pricelog2"])
    title = pc.replace_substring(f["productnametokens"], ",", " ")
    items = contract_table(
        "items",
        {
            "item_id": f["itemid"],
            "title": pc.if_else(pc.equal(title, ""), None, title),
            "market": MARKET,
            "price": pc.power(2.0, log2),
            "attributes": json_objects({"pricelog2": v} for v in log2.to_pylist()),
        },
        path=path,
        rows=f.rows,
    )
    return {"items": items, "rejected": f.rejected()}


def _categories(path: Path, f: Fields) -> dict[str, pa.Table]:
    f.require_int("itemid")
    f.require_int("categoryid")
    items = contract_table(
        "items",
        {"item_id": f["itemid"], "category": f["categoryid"], "market": MARKET},
        path=path,
        rows=f.rows,
    )
    return {"items": items, "rejected": f.rejected()}


def _catalog(products_path: Path, categories_path: Path) -> SourceTables:
    """products.csv and product-categories.csv joined into one item row per product."""
    parts = []
    for p, names, reader in ((products_path, PRODUCTS, _products),
                             (categories_path, CATEGORIES, _categories)):  # fmt: skip
        header, lines = read_lines(p, header=True)
        if _normalize(header or "") != names:
            raise DataFileError(str(p), f"header is {header!r}, expected {';'.join(names)!r}")
        labels = [h.strip() for h in (header or "").split(";")]
        parts.append(reader(p, Fields(lines, ";", names, labels)))
    products, categories = (part["items"] for part in parts)
    where = pc.index_in(products["item_id"], value_set=categories["item_id"])
    joined = products.set_column(
        products.schema.get_field_index("category"), "category",
        pc.take(categories["category"], where),
    )  # fmt: skip
    # items that only have a category still get a row
    only_category = pc.invert(pc.is_in(categories["item_id"], value_set=products["item_id"]))
    items = concat([joined, categories.filter(only_category)])
    return SourceTables(items=items, rejected=concat([p["rejected"] for p in parts]))
