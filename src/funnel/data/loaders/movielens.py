"""MovieLens (GroupLens) -> the data contract, from three layouts.

Layouts (registry names):

- ``movielens``: RecBole atomic files, TAB-separated with a typed header
  (``user_id:token  item_id:token  rating:float  timestamp:float``). The path is a directory
  (every ``*.inter``, ``*.item``, ``*.user`` in it is read) or one such file (only that file).
- ``ml-100k``: the original ``u.data`` (TAB: user, item, rating, unix ts; also ``u1.base`` etc.),
  ``u.item`` (``|``-separated latin-1: id, title, release date, video date, IMDb URL, 19 genre
  flags) and ``u.user`` (``|``: id, age, gender, occupation, zip). Directory or one file.
- ``ml-1m``: ``ratings.dat`` / ``movies.dat`` / ``users.dat`` with ``::`` separators.
  Directory or one file.

Mapping (the same for all three, so the same rating read from any layout gets the same ids):

- every rating -> one ``click`` event at the rating's timestamp (a user who rated a movie
  watched it: the closest thing MovieLens has to a click);
- a rating >= ``POSITIVE_RATING`` (4 of 5) -> additionally one ``add_to_cart`` event at the same
  timestamp: an explicit positive signal short of a purchase. It is deliberately not a
  ``booking``: nobody bought anything, and bookings end sessions in the funnel's session model.
  The exact rating value is not kept (the contract has no rating field);
- ``market`` = ``"movielens"`` for events and items (one market per source, so market-aware
  stages work unchanged and sources ingested into one store stay apart);
- ``event_id`` = content hash of movielens|user|item|ts|type|occurrence (ratings have no ids);
- items: ``title`` without the trailing ``(year)``, ``category`` = first genre,
  ``attributes`` = ``{"genres": [...], "year": 1995, ...}`` (plus release date and IMDb URL in
  ``u.item``; plus any other typed column of a RecBole ``.item`` file);
- users: ``attributes`` = the remaining columns (age, gender, occupation, zip_code) as the source
  text (strings, as RecBole types them ``token``), so all layouts give the same JSON. In ml-1m,
  ``age`` and ``occupation`` are the dataset's codes.

Rejected: wrong field count, empty user/item id, non-integer ids in the original layouts,
non-numeric rating or timestamp, genre flags other than 0/1.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc

from funnel.data.loaders._fields import Fields, as_float, json_objects, seconds_to_ms
from funnel.data.loaders._read import read_lines
from funnel.data.loaders._tables import concat, contract_table, event_table, merge, sort_events
from funnel.data.loaders.base import SourceTables
from funnel.exceptions import DataFileError

FAMILY: Final = "movielens"
MARKET: Final = "movielens"
POSITIVE_RATING: Final = 4.0
POSITIVE_EVENT: Final = "add_to_cart"

ML100K_GENRES: Final = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
"""Genre order of the 19 flags in ``u.item`` (from ``u.genre``)."""

_YEAR_IN_TITLE = re.compile(r"^(.*?)\s*\((\d{4})\)\s*$")
RECBOLE_SUFFIXES: Final = (".inter", ".item", ".user")


# ---------------------------------------------------------------------------------------------
# shared mapping


def _ratings(
    path: Path, f: Fields, user: str, item: str, rating: str | None, ts_seconds: str
) -> pa.Table:
    """Click events for every row of ``f`` + positive events for ratings >= POSITIVE_RATING."""
    ts_ms = seconds_to_ms(f[ts_seconds])
    clicks = event_table(
        family=FAMILY, path=path, market=MARKET, rows=f.rows, ts_ms=ts_ms, user_id=f[user],
        item_id=f[item], event_type="click",
    )
    if rating is None:
        return clicks
    liked = pc.greater_equal(as_float(f[rating]), POSITIVE_RATING)
    positives = event_table(
        family=FAMILY,
        path=path,
        market=MARKET,
        rows=f.rows.filter(liked),
        ts_ms=ts_ms.filter(liked),
        user_id=f[user].filter(liked),
        item_id=f[item].filter(liked),
        event_type=POSITIVE_EVENT,
    )
    return sort_events(concat([clicks, positives]))


def _split_title(title: str) -> tuple[str, int | None]:
    """``"Toy Story (1995)"`` -> ``("Toy Story", 1995)``."""
    m = _YEAR_IN_TITLE.match(title)
    if m is None:
        return title.strip(), None
    return m.group(1), int(m.group(2))


def _items(path: Path, rows: pa.Array, ids: pa.Array, titles: list[Any],
           attributes: list[dict[str, Any]]) -> pa.Table:  # fmt: skip
    categories = [(a.get("genres") or [None])[0] for a in attributes]
    return contract_table(
        "items",
        {
            "item_id": ids,
            "title": pa.array(titles, pa.string()),
            "category": pa.array(categories, pa.string()),
            "market": MARKET,
            "attributes": json_objects(attributes),
        },
        path=path,
        rows=rows,
    )


def _users(
    path: Path, rows: pa.Array, ids: pa.Array, attributes: list[dict[str, Any]]
) -> pa.Table:
    return contract_table(
        "users", {"user_id": ids, "attributes": json_objects(attributes)}, path=path, rows=rows
    )


def _string_attributes(f: Fields, names: Sequence[str]) -> list[dict[str, Any]]:
    """Per row, ``{name: source text}`` (empty text -> null), as RecBole's token columns are."""
    cols = {n: f[n].to_pylist() for n in names}
    return [{n: cols[n][i] or None for n in names} for i in range(len(f))]


def _int_or_none(value: str) -> int | None:
    value = value.strip()
    return int(value) if value.lstrip("-").isdigit() else None


# ---------------------------------------------------------------------------------------------
# RecBole atomic files


def _recbole_header(path: Path, header: str | None) -> tuple[list[str], list[str]]:
    names, types = [], []
    for col in (header or "").split("\t"):
        name, sep, kind = col.strip().partition(":")
        if not sep or kind not in ("token", "token_seq", "float", "float_seq"):
            raise DataFileError(
                str(path),
                f"header column {col!r} is not a RecBole typed column like 'user_id:token' "
                "(types: token, token_seq, float, float_seq)",
            )
        names.append(name)
        types.append(kind)
    return names, types


def _recbole_value(kind: str, value: str | None) -> Any:
    if value is None or value == "":
        return None
    if kind == "float":
        number = float(value)
        return int(number) if number.is_integer() else number
    if kind == "token_seq":
        return value.split()
    if kind == "float_seq":
        return [float(v) for v in value.split()]
    return value


def _recbole_fields(path: Path) -> tuple[Fields, list[str], list[str]]:
    header, lines = read_lines(path, header=True)
    names, types = _recbole_header(path, header)
    f = Fields(lines, "\t", names)
    for name, kind in zip(names, types, strict=True):
        if kind == "float":
            if name == "timestamp":
                f.require_epoch_seconds(name)
            else:
                f.require_float(name, allow_empty=name != "rating")
    return f, names, types


def _need(path: Path, names: Sequence[str], *required: str) -> None:
    missing = [r for r in required if r not in names]
    if missing:
        raise DataFileError(
            str(path), f"header lacks column(s) {missing}; it has {list(names)}"
        )


def _load_recbole_inter(path: Path) -> SourceTables:
    f, names, _ = _recbole_fields(path)
    _need(path, names, "user_id", "item_id", "timestamp")
    f.require_nonempty("user_id")
    f.require_nonempty("item_id")
    rating = "rating" if "rating" in names else None
    events = _ratings(path, f, "user_id", "item_id", rating, "timestamp")
    return SourceTables(events=events, rejected=f.rejected())


_TITLE_COLUMNS = ("movie_title", "title", "name")
_YEAR_COLUMNS = ("release_year", "year")
_GENRE_COLUMNS = ("class", "genre", "genres")


def _load_recbole_item(path: Path) -> SourceTables:
    f, names, types = _recbole_fields(path)
    _need(path, names, "item_id")
    f.require_nonempty("item_id")
    kinds = dict(zip(names, types, strict=True))
    columns = {n: f[n].to_pylist() for n in names}
    title_col = next((c for c in _TITLE_COLUMNS if c in names), None)
    year_col = next((c for c in _YEAR_COLUMNS if c in names), None)
    genre_col = next((c for c in _GENRE_COLUMNS if c in names), None)
    special = {"item_id", title_col, year_col, genre_col}
    titles: list[str | None] = []
    attributes: list[dict[str, Any]] = []
    for i in range(len(f)):
        title = columns[title_col][i] if title_col else None
        year = _int_or_none(columns[year_col][i]) if year_col else None
        if title is not None:
            title, title_year = _split_title(title)
            year = year if year is not None else title_year
        attrs: dict[str, Any] = {
            "genres": columns[genre_col][i].split() if genre_col else [],
            "year": year,
        }
        for name in names:
            if name not in special:
                attrs[name] = _recbole_value(kinds[name], columns[name][i])
        titles.append(title)
        attributes.append(attrs)
    items = _items(path, f.rows, f["item_id"], titles, attributes)
    return SourceTables(items=items, rejected=f.rejected())


def _load_recbole_user(path: Path) -> SourceTables:
    f, names, types = _recbole_fields(path)
    _need(path, names, "user_id")
    f.require_nonempty("user_id")
    columns = {n: f[n].to_pylist() for n in names if n != "user_id"}
    kinds = dict(zip(names, types, strict=True))
    attributes = [
        {n: _recbole_value(kinds[n], values[i]) for n, values in columns.items()}
        for i in range(len(f))
    ]
    users = _users(path, f.rows, f["user_id"], attributes)
    return SourceTables(users=users, rejected=f.rejected())


_RECBOLE_READERS = {
    ".inter": _load_recbole_inter,
    ".item": _load_recbole_item,
    ".user": _load_recbole_user,
}


def load_recbole(path: Path) -> SourceTables:
    """Read RecBole atomic files: a directory (all of them) or one ``.inter/.item/.user`` file."""
    files = _files(Path(path), _recbole_kind, _RECBOLE_EXPECTED)
    return merge([_RECBOLE_READERS[p.suffix](p) for p in files])


_RECBOLE_EXPECTED = "RecBole atomic file (*.inter, *.item, *.user)"


def _recbole_kind(p: Path) -> str | None:
    return p.suffix if p.suffix in _RECBOLE_READERS else None


# ---------------------------------------------------------------------------------------------
# original ml-100k


def _load_rating_lines(path: Path, sep: str) -> SourceTables:
    """``user, item, rating, epoch seconds`` lines without a header (u.data, ratings.dat)."""
    _, lines = read_lines(path, header=False)
    f = Fields(lines, sep, ("user_id", "item_id", "rating", "timestamp"))
    f.require_int("user_id")
    f.require_int("item_id")
    f.require_epoch_seconds("timestamp", integer=True)
    f.require_float("rating")
    events = _ratings(path, f, "user_id", "item_id", "rating", "timestamp")
    return SourceTables(events=events, rejected=f.rejected())


def _load_100k_data(path: Path) -> SourceTables:
    return _load_rating_lines(path, "\t")


def _load_100k_item(path: Path) -> SourceTables:
    _, lines = read_lines(path, header=False, encoding="latin-1")
    flags = [f"g{i}" for i in range(len(ML100K_GENRES))]
    f = Fields(lines, "|", ("item_id", "title", "release_date", "video_date", "imdb_url", *flags))
    f.require_int("item_id")
    for flag in flags:
        f.require_in(flag, ("0", "1"))
    columns = {n: f[n].to_pylist() for n in ("title", "release_date", "imdb_url", *flags)}
    titles, attributes = [], []
    for i in range(len(f)):
        title, year = _split_title(columns["title"][i])
        date = columns["release_date"][i]
        if date[-4:].isdigit():
            year = int(date[-4:])
        genres = [g for g, flag in zip(ML100K_GENRES, flags, strict=True)
                  if columns[flag][i] == "1"]  # fmt: skip
        titles.append(title)
        attributes.append(
            {
                "genres": genres,
                "year": year,
                "release_date": date or None,
                "imdb_url": columns["imdb_url"][i] or None,
            }
        )
    items = _items(path, f.rows, f["item_id"], titles, attributes)
    return SourceTables(items=items, rejected=f.rejected())


def _load_100k_user(path: Path) -> SourceTables:
    _, lines = read_lines(path, header=False)
    f = Fields(lines, "|", ("user_id", "age", "gender", "occupation", "zip_code"))
    f.require_int("user_id")
    attributes = _string_attributes(f, ("age", "gender", "occupation", "zip_code"))
    return SourceTables(users=_users(path, f.rows, f["user_id"], attributes),
                        rejected=f.rejected())  # fmt: skip


def _ml100k_kind(p: Path) -> str:
    """u.item / u.user by name; any other file is read as ratings (u.data, u1.base, ...)."""
    return p.name if p.name in ("u.item", "u.user") else "ratings"


_ML100K_READERS = {"ratings": _load_100k_data, "u.item": _load_100k_item,
                   "u.user": _load_100k_user}  # fmt: skip


def load_ml100k(path: Path) -> SourceTables:
    """Read original ml-100k files: a directory (u.data, u.item, u.user) or one of them.

    A directory reads ``u.data`` only, not the ``u1.base``..``ub.test`` splits (they repeat it).
    """
    path = Path(path)
    if path.is_dir():
        files = [path / n for n in ("u.data", "u.item", "u.user") if (path / n).exists()]
        if not files:
            raise DataFileError(str(path), "holds none of u.data, u.item, u.user")
    elif path.is_file():
        files = [path]
    else:
        raise DataFileError(str(path), "no such file or directory")
    return merge([_ML100K_READERS[_ml100k_kind(p)](p) for p in files])


# ---------------------------------------------------------------------------------------------
# original ml-1m


def _load_1m_ratings(path: Path) -> SourceTables:
    return _load_rating_lines(path, "::")


def _load_1m_movies(path: Path) -> SourceTables:
    _, lines = read_lines(path, header=False)
    f = Fields(lines, "::", ("item_id", "title", "genres"))
    f.require_int("item_id")
    titles, attributes = [], []
    for title_year, genres in zip(f["title"].to_pylist(), f["genres"].to_pylist(), strict=True):
        title, year = _split_title(title_year)
        titles.append(title)
        attributes.append({"genres": [g for g in genres.split("|") if g], "year": year})
    items = _items(path, f.rows, f["item_id"], titles, attributes)
    return SourceTables(items=items, rejected=f.rejected())


def _load_1m_users(path: Path) -> SourceTables:
    _, lines = read_lines(path, header=False)
    f = Fields(lines, "::", ("user_id", "gender", "age", "occupation", "zip_code"))
    f.require_int("user_id")
    attributes = _string_attributes(f, ("gender", "age", "occupation", "zip_code"))
    return SourceTables(users=_users(path, f.rows, f["user_id"], attributes),
                        rejected=f.rejected())  # fmt: skip


_ML1M_READERS = {"ratings.dat": _load_1m_ratings, "movies.dat": _load_1m_movies,
                 "users.dat": _load_1m_users}  # fmt: skip


def _ml1m_kind(p: Path) -> str | None:
    return p.name if p.name in _ML1M_READERS else None


def load_ml1m(path: Path) -> SourceTables:
    """Read original ml-1m files: a directory (ratings/movies/users.dat) or one of them.

    A single file named other than movies.dat / users.dat is read as ratings.
    """
    path = Path(path)
    if path.is_file():
        return _ML1M_READERS.get(path.name, _load_1m_ratings)(path)
    return merge([_ML1M_READERS[p.name](p) for p in _files(path, _ml1m_kind, _ML1M_EXPECTED)])


_ML1M_EXPECTED = "ml-1m file (ratings.dat, movies.dat, users.dat)"


# ---------------------------------------------------------------------------------------------


def _files(path: Path, kind: Any, expected: str) -> Iterator[Path]:
    """The files to read for ``path``: itself if a file of a known kind, else those in the dir."""
    if not path.exists():
        raise DataFileError(str(path), "no such file or directory")
    if path.is_file():
        if kind(path) is None:
            raise DataFileError(str(path), f"is not a {expected}")
        yield path
        return
    found = sorted(p for p in path.iterdir() if p.is_file() and kind(p) is not None)
    if not found:
        raise DataFileError(str(path), f"holds no {expected}")
    yield from found
