"""Real-format loaders: exact counts on the shared real slices, fixtures for every layout with
malformed lines that must land in ``rejected`` at the right row, and property tests."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from funnel.data.loaders import (
    LOADERS,
    SOURCE_FILE,
    SOURCE_ROW,
    SourceTables,
    get_loader,
    load_criteo,
    load_diginetica,
    load_ml1m,
    load_ml100k,
    load_recbole,
    load_taobao,
    load_yoochoose,
    read_criteo,
)
from funnel.data.loaders.base import REJECTED_SCHEMA
from funnel.data.loaders.yoochoose import iso_ms
from funnel.data.paths import SHARED_DATA_ENV, repo_root, shared_data_dir
from funnel.data.schema import EVENT_SCHEMA, ITEM_SCHEMA, USER_SCHEMA
from funnel.exceptions import DataFileError

UTC = dt.UTC


def real(*parts: str) -> Path:
    path = shared_data_dir().joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data slice not found at {path}")
    return path


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def counts(events: pa.Table) -> dict[str, int]:
    return dict(Counter(events.column("event_type").to_pylist()))


def rejected_rows(tables: SourceTables) -> list[tuple[int, str | None]]:
    r = tables.rejected
    return list(zip(r.column("source_row").to_pylist(), r.column("field").to_pylist(), strict=True))


def ts_of(events: pa.Table, i: int) -> dt.datetime:
    return events.column("ts")[i].as_py()


def check_contract(tables: SourceTables) -> None:
    """Every table has exactly the contract columns and types, then the two source columns."""
    for kind, schema in (("items", ITEM_SCHEMA), ("users", USER_SCHEMA), ("events", EVENT_SCHEMA)):
        table = tables.kinds().get(kind)
        if table is None:
            continue
        assert table.column_names == [*schema.names, SOURCE_FILE, SOURCE_ROW], kind
        for fld in schema:
            assert table.schema.field(fld.name).type == fld.type, (kind, fld.name)
        assert table.schema.field(SOURCE_ROW).type == pa.int64()
    assert tables.rejected.schema == REJECTED_SCHEMA
    if tables.events is not None:
        ids = tables.events.column("event_id")
        assert len(pc.unique(ids)) == len(ids), "event ids must be unique within a load"


# ---------------------------------------------------------------------------------------------
# registry and paths


def test_registry_lists_every_format_and_rejects_unknown_names():
    assert set(LOADERS) == {
        "movielens", "ml-100k", "ml-1m", "criteo", "diginetica", "yoochoose", "taobao"
    }  # fmt: skip
    assert get_loader("taobao") is load_taobao
    with pytest.raises(ValueError, match=r"unknown loader format 'movielen'.*criteo.*taobao"):
        get_loader("movielen")


def test_shared_data_dir_is_next_to_repo_and_overridable(monkeypatch, tmp_path):
    monkeypatch.delenv(SHARED_DATA_ENV, raising=False)
    assert (repo_root() / "pyproject.toml").exists()
    assert shared_data_dir() == (repo_root().parent / "shared" / "data").resolve()
    monkeypatch.setenv(SHARED_DATA_ENV, str(tmp_path))
    assert shared_data_dir() == tmp_path.resolve()


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_missing_path_raises_data_file_error_naming_it(name, tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(DataFileError, match=r"nope\.txt: no such file"):
        get_loader(name)(missing)


# ---------------------------------------------------------------------------------------------
# real slices (exact counts from ../shared/data/README.md)


def test_real_movielens_recbole_directory():
    tables = load_recbole(real("movielens-100k"))
    check_contract(tables)
    events = tables.events
    # independent count of the positive ratings straight from the text
    inter = real("movielens-100k", "ml-100k.inter").read_text().splitlines()[1:]
    liked = sum(float(line.split("\t")[2]) >= 4 for line in inter)
    assert counts(events) == {"click": 100_000, "add_to_cart": liked}
    assert liked == 55_375
    assert tables.users.num_rows == 943
    assert tables.items.num_rows == 1682
    assert tables.rejected.num_rows == 0
    assert set(events.column("market").to_pylist()) == {"movielens"}
    # first rating line: 196 242 3 881250949 -> a click only (3 < 4)
    first = events.slice(0, 1).to_pylist()[0]
    assert (first["user_id"], first["item_id"], first["event_type"]) == ("196", "242", "click")
    assert first["ts"] == dt.datetime.fromtimestamp(881250949, UTC)
    assert first[SOURCE_ROW] == 1
    toy = tables.items.slice(0, 1).to_pylist()[0]
    assert (toy["item_id"], toy["title"], toy["category"]) == ("1", "Toy Story", "Animation")
    assert json.loads(toy["attributes"]) == {
        "genres": ["Animation", "Children's", "Comedy"], "year": 1995
    }  # fmt: skip
    user = tables.users.slice(0, 1).to_pylist()[0]
    assert user["user_id"] == "1"
    assert json.loads(user["attributes"]) == {
        "age": "24", "gender": "M", "occupation": "technician", "zip_code": "85711"
    }  # fmt: skip


def test_real_movielens_single_inter_file_reads_only_events():
    tables = load_recbole(real("movielens-100k", "ml-100k.inter"))
    assert tables.items is None and tables.users is None
    assert counts(tables.events)["click"] == 100_000


def test_real_criteo_frame_and_events():
    path = real("criteo-sample-8k", "train.csv")
    frame = read_criteo(path)
    assert len(frame) == 7200
    assert frame.labels.dtype == np.int8 and frame.dense.dtype == np.float32
    assert frame.dense.shape == (7200, 13) and frame.categorical.shape == (7200, 26)
    assert 0.19 < frame.labels.mean() < 0.25  # README: CTR about 0.22
    lines = path.read_text().splitlines()
    empty_dense = sum(f == "" for line in lines for f in line.split("\t")[1:14])
    empty_cat = sum(f == "" for line in lines for f in line.split("\t")[14:])
    assert int(np.isnan(frame.dense).sum()) == empty_dense > 0
    assert int((frame.categorical == "").sum()) == empty_cat > 0
    # first line: 0 1 1 5 0 1382 4 15 2 181 1 2 <empty> 2 68fd1e64 ...
    assert frame.labels[0] == 0
    np.testing.assert_array_equal(frame.dense[0, :3], [1.0, 1.0, 5.0])
    assert math.isnan(frame.dense[0, 11]) and frame.dense[0, 12] == 2.0
    assert frame.categorical[0, 0] == "68fd1e64"

    tables = load_criteo(path)
    check_contract(tables)
    n_clicks = int(frame.labels.sum())
    assert counts(tables.events) == {"impression": 7200, "click": n_clicks}
    assert tables.rejected.num_rows == 0
    # ad-side C11 -> item ids; C11 determines C13 (one category per item)
    n_c11 = len({line.split("\t")[24] for line in lines})
    assert tables.items.num_rows == n_c11
    for name in ("dev.csv", "test.csv"):
        assert len(read_criteo(real("criteo-sample-8k", name))) == {"dev.csv": 409,
                                                                   "test.csv": 391}[name]


def test_real_diginetica_views():
    tables = load_diginetica(real("diginetica-sample-srgnn", "sample_train-item-views.csv"))
    check_contract(tables)
    events = tables.events
    assert counts(events) == {"click": 12_391}
    assert tables.rejected.num_rows == 0
    assert len(pc.unique(events.column("item_id"))) == 7_139
    users = events.column("user_id").to_pylist()
    anonymous = {u for u in users if u.startswith("dg-")}
    # 2,986 sessions: 1,724 anonymous ones become users dg-<session>; 1,270 known users
    assert len(anonymous) == 1_724 and len(set(users)) - len(anonymous) == 1_270
    # first line: 1;NA;81766;526309;2016-05-09
    assert users[0] == "dg-1" and events.column("item_id")[0].as_py() == "81766"
    assert ts_of(events, 0) == dt.datetime(2016, 5, 9, tzinfo=UTC) + dt.timedelta(
        milliseconds=526309
    )


def test_real_taobao_user_behavior():
    tables = load_taobao(real("taobao-userbehavior-sample", "UserBehavior_head.csv"))
    check_contract(tables)
    events = tables.events
    # pv 75,872 / cart 4,497 / fav 2,356 / buy 1,750; cart and fav both -> add_to_cart
    assert counts(events) == {"click": 75_872, "add_to_cart": 4_497 + 2_356, "booking": 1_750}
    assert events.num_rows == 84_475
    assert len(pc.unique(events.column("user_id"))) == 815
    assert tables.items.num_rows == 55_368
    first = events.slice(0, 1).to_pylist()[0]
    # 1,2268318,2520377,pv,1511544070
    assert (first["user_id"], first["item_id"], first["event_type"]) == ("1", "2268318", "click")
    assert first["ts"] == dt.datetime.fromtimestamp(1511544070, UTC)
    item = tables.items.slice(0, 1).to_pylist()[0]
    assert (item["item_id"], item["category"]) == ("2268318", "2520377")


# ---------------------------------------------------------------------------------------------
# fixtures: MovieLens layouts


RECBOLE_INTER = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    "196\t242\t3\t881250949\n"
    "186\t302\t4.5\t891717742\n"
    "186\t302\n"  # row 3: too few fields
    "22\t377\tgood\t878887116\n"  # row 4: rating not a number
    "\n"  # row 5: blank, skipped
    "244\t51\t2\t880606923.5\n"  # row 6: fractional seconds are fine
    "\t51\t2\t880606923\n"  # row 7: empty user id
)


def test_recbole_fixture_rejects_with_rows_and_maps_ratings(tmp_path):
    tables = load_recbole(write(tmp_path / "x.inter", RECBOLE_INTER))
    check_contract(tables)
    assert rejected_rows(tables) == [(3, None), (4, "rating"), (7, "user_id")]
    reasons = tables.rejected.column("reason").to_pylist()
    assert reasons[0] == "expected 4 fields separated by '\\t', got 2"
    assert reasons[1] == "expected a number, got 'good'"
    assert tables.rejected.column("raw").to_pylist()[1] == "22\t377\tgood\t878887116"
    events = tables.events
    assert events.column(SOURCE_ROW).to_pylist() == [1, 2, 2, 6]
    assert events.column("event_type").to_pylist() == ["click", "click", "add_to_cart", "click"]
    assert ts_of(events, 3) == dt.datetime.fromtimestamp(880606923.5, UTC)


def test_recbole_untyped_header_is_a_file_error(tmp_path):
    path = write(tmp_path / "x.inter", "user_id\titem_id\n1\t2\n")
    with pytest.raises(DataFileError, match=r"header column 'user_id' is not a RecBole typed"):
        load_recbole(path)
    path = write(tmp_path / "y.inter", "user_id:token\titem_id:token\n1\t2\n")
    with pytest.raises(DataFileError, match=r"lacks column\(s\) \['timestamp'\]"):
        load_recbole(path)
    with pytest.raises(DataFileError, match="holds no RecBole atomic file"):
        load_recbole(write(tmp_path / "empty" / "readme.txt", "hi").parent)


def test_recbole_item_and_user_files(tmp_path):
    write(
        tmp_path / "ml.item",
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\t"
        "score:float\n"
        "1\tToy Story\t1995\tAnimation Children's Comedy\t4.5\n"
        "2\tNo Genre\t\t\t\n",
    )
    write(tmp_path / "ml.user", "user_id:token\tage:token\tgender:token\n7\t24\tM\n")
    tables = load_recbole(tmp_path)
    check_contract(tables)
    items = tables.items.to_pylist()
    assert json.loads(items[0]["attributes"]) == {
        "genres": ["Animation", "Children's", "Comedy"], "year": 1995, "score": 4.5
    }  # fmt: skip
    assert items[1]["category"] is None
    assert json.loads(items[1]["attributes"]) == {"genres": [], "year": None, "score": None}
    assert json.loads(tables.users.to_pylist()[0]["attributes"]) == {"age": "24", "gender": "M"}
    assert tables.events is None


def test_ml100k_original_files(tmp_path):
    genres = ["0"] * 19
    genres[3] = genres[5] = "1"  # Animation, Comedy
    item_line = "|".join(["1", "Toy Story (1995)", "01-Jan-1995", "", "http://imdb/x", *genres])
    bad_flags = "|".join(["2", "Bad (1995)", "01-Jan-1995", "", "", *(["2"] * 19)])
    accented = "|".join(["3", "Cité des enfants perdus, La (1995)", "", "", "", *(["0"] * 19)])
    write(tmp_path / "u.item", f"{item_line}\n{bad_flags}\n{accented}\n", encoding="latin-1")
    write(
        tmp_path / "u.data",
        "196\t242\t3\t881250949\n"
        "x\t302\t3\t891717742\n"  # row 2: user id not an integer
        "186\t302\t5\t891717742\n"
        "186\t302\t5\n",  # row 4: too few fields
    )
    write(tmp_path / "u.user", "1|24|M|technician|85711\n2|53|F|other\n")
    tables = load_ml100k(tmp_path)
    check_contract(tables)
    by_file = sorted(
        (Path(r["source_file"]).name, r["source_row"], r["field"] or "")
        for r in tables.rejected.to_pylist()
    )
    assert by_file == [
        ("u.data", 2, "user_id"), ("u.data", 4, ""), ("u.item", 2, "g0"), ("u.user", 2, "")
    ]  # fmt: skip
    assert counts(tables.events) == {"click": 2, "add_to_cart": 1}
    items = tables.items.to_pylist()
    assert [i["item_id"] for i in items] == ["1", "3"]
    assert items[0]["title"] == "Toy Story" and items[0]["category"] == "Animation"
    assert json.loads(items[0]["attributes"]) == {
        "genres": ["Animation", "Comedy"], "year": 1995, "release_date": "01-Jan-1995",
        "imdb_url": "http://imdb/x",
    }  # fmt: skip
    assert items[1]["title"] == "Cité des enfants perdus, La"
    assert json.loads(tables.users.to_pylist()[0]["attributes"])["occupation"] == "technician"
    # one file alone reads only that file
    assert load_ml100k(tmp_path / "u.item").events is None


def test_ml1m_dat_files(tmp_path):
    write(
        tmp_path / "ratings.dat",
        "1::1193::5::978300760\n1::661::3::978302109\n1::661::3\n1::x::3::978302109\n",
    )
    write(
        tmp_path / "movies.dat",
        "1::Toy Story (1995)::Animation|Children's|Comedy\n2::Broken\n"
        "3::Cité des enfants perdus, La (1995)::Adventure|Sci-Fi\n",
        encoding="latin-1",  # as GroupLens ships it: not valid UTF-8
    )
    write(tmp_path / "users.dat", "1::F::1::10::48067\n")
    tables = load_ml1m(tmp_path)
    check_contract(tables)
    assert sorted(rejected_rows(tables)) == [(2, None), (3, None), (4, "item_id")]
    assert counts(tables.events) == {"click": 2, "add_to_cart": 1}
    item, accented = tables.items.to_pylist()
    assert item["title"] == "Toy Story" and item["category"] == "Animation"
    assert json.loads(item["attributes"])["year"] == 1995
    assert accented["title"] == "Cité des enfants perdus, La"
    assert json.loads(tables.users.to_pylist()[0]["attributes"]) == {
        "gender": "F", "age": "1", "occupation": "10", "zip_code": "48067"
    }  # fmt: skip


def test_same_rating_gets_the_same_event_id_from_every_movielens_layout(tmp_path):
    recbole = write(
        tmp_path / "a.inter",
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n5\t9\t4\t881250949\n",
    )
    udata = write(tmp_path / "u.data", "5\t9\t4\t881250949\n")
    dat = write(tmp_path / "ratings.dat", "5::9::4::881250949\n")
    ids = [
        load(p).events.column("event_id").to_pylist()
        for load, p in ((load_recbole, recbole), (load_ml100k, udata), (load_ml1m, dat))
    ]
    assert ids[0] == ids[1] == ids[2] and len(ids[0]) == 2


# ---------------------------------------------------------------------------------------------
# fixtures: Criteo


def criteo_line(label: str = "1", dense: str = "1", cat: str = "ab") -> str:
    return "\t".join([label, *([dense] * 13), *([cat] * 26)])


def test_criteo_fixture_rejects_and_read_criteo_is_strict(tmp_path):
    good = criteo_line()
    empties = "\t".join(["0", *([""] * 13), *([""] * 26)])
    short = "\t".join(["0", "1"])
    bad_label = criteo_line(label="2")
    bad_dense = criteo_line(dense="1.5")
    path = write(tmp_path / "day.tsv", "\n".join([good, empties, short, bad_label, bad_dense]))
    tables = load_criteo(path)
    check_contract(tables)
    assert rejected_rows(tables) == [(3, None), (4, "label"), (5, "I1")]
    assert tables.rejected.column("reason").to_pylist()[1] == "expected one of 0, 1, got '2'"
    events = tables.events.to_pylist()
    assert [(e["event_type"], e[SOURCE_ROW]) for e in events] == [
        ("impression", 1), ("click", 1), ("impression", 2)
    ]  # fmt: skip
    assert events[0]["request_id"] == events[1]["request_id"] == "day:1"
    assert events[0]["item_id"] == "ct-i-ab" and events[2]["item_id"] == "ct-i-none"
    assert events[2]["user_id"] == "ct-u-none" and events[0]["user_id"].startswith("ct-u-")
    assert events[2]["ts"] - events[0]["ts"] == dt.timedelta(seconds=1)
    with pytest.raises(DataFileError, match=r"day\.tsv: line 3: expected 40 fields"):
        read_criteo(path)
    write(path, f"{good}\n{bad_dense}\n")
    with pytest.raises(DataFileError, match=r"line 2: field I1: expected an integer or empty"):
        read_criteo(path)


def test_criteo_same_position_in_two_files_does_not_collide(tmp_path):
    a = load_criteo(write(tmp_path / "a.tsv", criteo_line(dense="1") + "\n"))
    b = load_criteo(write(tmp_path / "b.tsv", criteo_line(dense="2") + "\n"))
    assert set(a.events.column("event_id").to_pylist()).isdisjoint(
        b.events.column("event_id").to_pylist()
    )


# ---------------------------------------------------------------------------------------------
# fixtures: DIGINETICA, YooChoose, Taobao


def test_diginetica_fixture(tmp_path):
    path = write(
        tmp_path / "views.csv",
        "session_id;user_id;item_id;timeframe;eventdate\n"
        "1;NA;81766;526309;2016-05-09\n"
        "2;4711;31331;0;2016-05-10\n"
        "3;NA;31331;10;2016-02-30\n"  # row 3: no such date
        "4;NA;x;10;2016-02-03\n"  # row 4: item id not an integer
        "5;NA;1;10\n",  # row 5: too few fields
    )
    tables = load_diginetica(path)
    check_contract(tables)
    assert rejected_rows(tables) == [(3, "eventdate"), (4, "item_id"), (5, None)]
    events = tables.events.to_pylist()
    assert [e["user_id"] for e in events] == ["dg-1", "4711"]
    assert events[1]["ts"] == dt.datetime(2016, 5, 10, tzinfo=UTC)
    with pytest.raises(DataFileError, match="expected the header of a DIGINETICA file"):
        load_diginetica(write(tmp_path / "bad.csv", "a;b;c\n1;2;3\n"))
    # the original CIKM Cup spelling of the same header
    camel = write(tmp_path / "train-item-views.csv",
                  "sessionId;userId;itemId;timeframe;eventdate\n1;NA;81766;526309;2016-05-09\n")
    assert load_diginetica(camel).events.column("event_id").to_pylist() == [
        tables.events.column("event_id")[0].as_py()
    ]  # same view, same id, whichever spelling


def test_diginetica_full_directory(tmp_path):
    write(tmp_path / "train-item-views.csv",
          "sessionId;userId;itemId;timeframe;eventdate\n7;NA;10;1000;2016-05-09\n")
    write(tmp_path / "train-purchases.csv",
          "sessionId;userId;timeframe;eventdate;ordernumber;itemId\n"
          "7;NA;5000;2016-05-09;1;10\n7;NA;5000;2016-05-09;x;11\n")
    write(tmp_path / "train-queries.csv",
          "queryId;sessionId;userId;timeframe;duration;eventdate;searchstring.tokens;"
          "categoryId;items;is.test\n"
          "1;7;NA;500;120;2016-05-09;16655,244;;10,12,13;FALSE\n"
          "2;8;42;0;0;2016-05-10;;1096;12,10;FALSE\n"
          "3;8;42;0;0;2016-05-10;;1096;12,a;FALSE\n")
    write(tmp_path / "products.csv",
          "itemId;pricelog2;product.name.tokens\n10;3;4,2,15\n12;;7\n")
    write(tmp_path / "product-categories.csv", "itemId;categoryId\n10;1\n13;2\n")
    tables = load_diginetica(tmp_path)
    check_contract(tables)
    rejected = {(Path(r["source_file"]).name, r["source_row"], r["field"])
                for r in tables.rejected.to_pylist()}  # fmt: skip
    assert rejected == {("train-purchases.csv", 2, "ordernumber"),  # the file's own spelling
                        ("train-queries.csv", 3, "items")}  # fmt: skip
    events = tables.events.to_pylist()
    day = dt.datetime(2016, 5, 9, tzinfo=UTC)
    got = [(e["event_type"], e["user_id"], e["item_id"], e["query"], e["request_id"],
            e["position"], e["ts"]) for e in events]  # fmt: skip
    ms = dt.timedelta(milliseconds=1)
    assert got == [
        ("click", "dg-7", "10", None, None, None, day + 1000 * ms),
        ("booking", "dg-7", "10", None, None, None, day + 5000 * ms),
        ("search", "dg-7", None, "16655 244", "dg-q1", None, day + 500 * ms),
        ("impression", "dg-7", "10", None, "dg-q1", 1, day + 500 * ms),
        ("impression", "dg-7", "12", None, "dg-q1", 2, day + 500 * ms),
        ("impression", "dg-7", "13", None, "dg-q1", 3, day + 500 * ms),
        # query 2 is a category browse (no tokens): impressions only
        ("impression", "42", "12", None, "dg-q2", 1, day + dt.timedelta(days=1)),
        ("impression", "42", "10", None, "dg-q2", 2, day + dt.timedelta(days=1)),
    ]  # fmt: skip
    items = {i["item_id"]: (i["title"], i["price"], i["category"])
             for i in tables.items.to_pylist()}  # fmt: skip
    assert items == {"10": ("4 2 15", 8.0, "1"), "12": ("7", None, None), "13": (None, None, "2")}


def test_yoochoose_session_rec_tsv(tmp_path):
    path = write(
        tmp_path / "train.tsv",
        "SessionId\tItemId\tTime\n1\t214536502\t1396839069.277\n1\t214536500\t1396839100\n"
        "2\tabc\t1396839100\n",
    )
    tables = load_yoochoose(path)
    check_contract(tables)
    assert rejected_rows(tables) == [(3, "ItemId")]
    events = tables.events.to_pylist()
    assert [e["user_id"] for e in events] == ["yc-1", "yc-1"]
    assert events[0]["ts"] == dt.datetime(2014, 4, 7, 2, 51, 9, 277000, tzinfo=UTC)


def test_yoochoose_raw_clicks_and_buys(tmp_path):
    clicks = write(
        tmp_path / "yoochoose-clicks.dat",
        "1,2014-04-07T10:51:09.277Z,214536502,0\n"
        "1,2014-04-07T10:54:09.868Z,214536502,3\n"
        "2,2014-04-07T13:56:37.614Z,214662742,2053518720\n"
        "2,2014-04-31T13:56:37.614Z,214662742,0\n"  # row 4: no April 31st
        "3,2014-04-07T13:56:37Z,214825110,S\n",
    )
    tables = load_yoochoose(clicks)
    check_contract(tables)
    assert rejected_rows(tables) == [(4, "timestamp")]
    assert "ISO-8601" in tables.rejected.column("reason")[0].as_py()
    events = tables.events.to_pylist()
    assert counts(tables.events) == {"click": 4}
    assert events[0]["ts"] == dt.datetime(2014, 4, 7, 10, 51, 9, 277000, tzinfo=UTC)
    items = {i["item_id"]: (i["category"], i["brand"]) for i in tables.items.to_pylist()}
    assert items == {
        "214536502": ("3", None), "214662742": (None, "2053518720"), "214825110": (None, None)
    }  # fmt: skip
    buys = write(
        tmp_path / "yoochoose-buys.dat",
        "420374,2014-04-06T18:44:58.314Z,214537888,12462,1\n"
        "420374,2014-04-06T18:44:58.325Z,214537850,0,0\n"
        "420375,2014-04-06T18:44:58.325Z,214537850,cheap,1\n",
    )
    tables = load_yoochoose(buys)
    assert rejected_rows(tables) == [(3, "price")]
    assert [e["price"] for e in tables.events.to_pylist()] == [12462.0, None]
    assert counts(tables.events) == {"booking": 2}
    with pytest.raises(DataFileError, match="neither a session-rec header"):
        load_yoochoose(write(tmp_path / "odd.txt", "a;b\n"))


def test_taobao_fixture_with_header_and_bad_lines(tmp_path):
    path = write(
        tmp_path / "ub.csv",
        "user_id,item_id,category_id,behavior,timestamp\n"
        "1,2268318,2520377,pv,1511544070\n"
        "1,2268318,2520377,fav,1511544071\n"
        "1,2268318,2520377,like,1511544072\n"  # row 3: unknown behavior
        "1,2268318,2520377,buy\n"  # row 4: too few fields
        "u1,2268318,2520377,buy,1511544073\n"  # row 5: user id not an integer
        "2,42,7,cart,1511544074\n",
    )
    tables = load_taobao(path)
    check_contract(tables)
    assert rejected_rows(tables) == [(3, "behavior"), (4, None), (5, "user_id")]
    assert tables.events.column("event_type").to_pylist() == ["click", "add_to_cart",
                                                              "add_to_cart"]  # fmt: skip
    assert tables.events.column(SOURCE_ROW).to_pylist() == [1, 2, 6]
    assert tables.items.column("item_id").to_pylist() == ["2268318", "42"]


def test_cart_and_fav_of_the_same_moment_get_distinct_ids():
    # regression (found by the round-trip property test): both map to add_to_cart, and ids
    # were counted per behavior, so these two lines shared one event id and one was dropped
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp) / "ub.csv", "0,0,0,cart,0\n0,0,0,fav,0\n")
        ids = load_taobao(path).events.column("event_id").to_pylist()
    assert len(ids) == 2 and ids[0] != ids[1]


def test_epoch_seconds_beyond_year_9999_are_rejected_not_a_crash(tmp_path):
    # regression (found by the fuzz test): 9223372036854775 s overflowed int64 milliseconds
    tsv = write(tmp_path / "s.tsv", "SessionId\tItemId\tTime\n-5\t-5\t9223372036854775\n"
                "1\t2\t253402300799\n")  # fmt: skip
    tables = load_yoochoose(tsv)
    assert rejected_rows(tables) == [(1, "Time")]
    assert ts_of(tables.events, 0) == dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    taobao = load_taobao(write(tmp_path / "ub.csv", "1,2,3,pv,100000000000000000\n"))
    assert rejected_rows(taobao) == [(1, "timestamp")]
    assert "unix seconds within" in taobao.rejected.column("reason")[0].as_py()


def test_odd_bytes_take_the_python_fallback_and_keep_row_numbers(tmp_path):
    # \x1e is the delimiter of the fast line reader; such a file is read the slow way
    path = write(tmp_path / "ub.csv", "1,2,3,pv,1511544070\x1e\n\n2,2,3,buy,1511544071\n")
    tables = load_taobao(path)
    assert rejected_rows(tables) == [(1, "timestamp")]
    assert tables.events.column(SOURCE_ROW).to_pylist() == [3]


def test_true_repeats_keep_distinct_ids_and_rereads_are_identical(tmp_path):
    path = write(tmp_path / "ub.csv", "1,2,3,pv,1511544070\n" * 3)
    first = load_taobao(path).events.column("event_id").to_pylist()
    assert len(set(first)) == 3
    assert load_taobao(path).events.column("event_id").to_pylist() == first


def test_unreadable_file_is_a_data_file_error(tmp_path):
    directory = tmp_path / "dir.csv"
    directory.mkdir()
    with pytest.raises(DataFileError, match="is a directory"):
        load_taobao(directory)
    with pytest.raises(DataFileError, match="cannot read"):
        load_taobao(write(tmp_path / "broken.csv.gz", "not gzip"))


# ---------------------------------------------------------------------------------------------
# property tests

ids = st.integers(min_value=0, max_value=10**12)
taobao_rows = st.lists(
    st.tuples(ids, ids, ids, st.sampled_from(["pv", "cart", "fav", "buy"]),
              st.integers(min_value=0, max_value=4_000_000_000)),  # fmt: skip
    min_size=1,
    max_size=40,
)
EVENT_OF = {"pv": "click", "cart": "add_to_cart", "fav": "add_to_cart", "buy": "booking"}


@settings(max_examples=60, deadline=None)
@given(rows=taobao_rows)
def test_taobao_rows_round_trip_and_ids_are_idempotent(rows):
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp) / "ub.csv", "".join(f"{u},{i},{c},{b},{t}\n"
                                                   for u, i, c, b, t in rows))  # fmt: skip
        tables = load_taobao(path)
        again = load_taobao(path)
    events = tables.events.to_pylist()
    assert tables.rejected.num_rows == 0
    assert [
        (e["user_id"], e["item_id"], e["event_type"], e["ts"], e[SOURCE_ROW]) for e in events
    ] == [
        (str(u), str(i), EVENT_OF[b], dt.datetime.fromtimestamp(t, UTC), n)
        for n, (u, i, _, b, t) in enumerate(rows, start=1)
    ]
    assert again.events.column("event_id").to_pylist() == [e["event_id"] for e in events]
    assert len({e["event_id"] for e in events}) == len(events)


def _recbole(rows):
    head = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    return "x.inter", head + "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in rows)


def _diginetica(rows):
    # one session per row, all on 2016-01-01; timeframe carries the time of day in ms
    head = "session_id;user_id;item_id;timeframe;eventdate\n"
    return "v.csv", head + "".join(f"{u};NA;{i};{t % 86_400_000};2016-01-01\n"
                                   for u, i, _, t in rows)  # fmt: skip


LAYOUTS = {
    "movielens": (_recbole, lambda u, i, t: (str(u), str(i), t * 1000)),
    "ml-100k": (lambda rows: ("u.data", "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in rows)),
                lambda u, i, t: (str(u), str(i), t * 1000)),
    "ml-1m": (lambda rows: ("ratings.dat", "".join(f"{u}::{i}::{r}::{t}\n" for u, i, r, t in rows)),
              lambda u, i, t: (str(u), str(i), t * 1000)),
    "diginetica": (_diginetica,
                   lambda u, i, t: (f"dg-{u}", str(i), 1451606400000 + t % 86_400_000)),
    "yoochoose": (lambda rows: ("s.tsv", "SessionId\tItemId\tTime\n"
                                + "".join(f"{u}\t{i}\t{t}\n" for u, i, _, t in rows)),
                  lambda u, i, t: (f"yc-{u}", str(i), t * 1000)),
}  # fmt: skip

rating_rows = st.lists(
    st.tuples(ids, ids, st.integers(min_value=1, max_value=5),
              st.integers(min_value=0, max_value=4_000_000_000)),  # fmt: skip
    min_size=1,
    max_size=30,
)


@pytest.mark.parametrize("name", sorted(LAYOUTS))
@settings(max_examples=25, deadline=None)
@given(rows=rating_rows)
def test_click_layouts_round_trip_and_ids_are_idempotent(name, rows):
    render, expect = LAYOUTS[name]
    filename, text = render(rows)
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp) / filename, text)
        tables = get_loader(name)(path)
        again = get_loader(name)(path)
    assert tables.rejected.num_rows == 0
    clicks = tables.events.filter(pc.equal(tables.events.column("event_type"), "click"))
    epoch = dt.datetime(1970, 1, 1, tzinfo=UTC)
    got = [
        (e["user_id"], e["item_id"], (e["ts"] - epoch) // dt.timedelta(milliseconds=1),
         e[SOURCE_ROW])
        for e in clicks.to_pylist()
    ]  # fmt: skip
    assert got == [(*expect(u, i, t), n) for n, (u, i, _, t) in enumerate(rows, start=1)]
    if name.startswith(("movielens", "ml-")):
        liked = [n for n, (_, _, r, _) in enumerate(rows, start=1) if r >= 4]
        positives = tables.events.filter(pc.equal(tables.events.column("event_type"),
                                                  "add_to_cart"))  # fmt: skip
        assert positives.column(SOURCE_ROW).to_pylist() == liked
    assert again.events.column("event_id").equals(tables.events.column("event_id"))
    assert len(pc.unique(tables.events.column("event_id"))) == tables.events.num_rows


dense_value = st.one_of(st.just(""), st.integers(min_value=-(2**20), max_value=2**20).map(str))
cat_value = st.one_of(st.just(""), st.text("0123456789abcdef", min_size=8, max_size=8))
criteo_rows = st.lists(
    st.tuples(st.sampled_from(["0", "1"]), st.lists(dense_value, min_size=13, max_size=13),
              st.lists(cat_value, min_size=26, max_size=26)),  # fmt: skip
    min_size=1,
    max_size=20,
)


@settings(max_examples=25, deadline=None)
@given(rows=criteo_rows)
def test_read_criteo_round_trips_random_rows(rows):
    text = "".join("\t".join([lab, *den, *cat]) + "\n" for lab, den, cat in rows)
    with tempfile.TemporaryDirectory() as tmp:
        frame = read_criteo(write(Path(tmp) / "c.tsv", text))
    assert frame.labels.tolist() == [int(lab) for lab, _, _ in rows]
    expected = np.array([[float(v) if v else np.nan for v in den] for _, den, _ in rows],
                        dtype=np.float32)  # fmt: skip
    np.testing.assert_array_equal(frame.dense, expected)
    assert frame.categorical.tolist() == [cat for _, _, cat in rows]


times = st.datetimes(
    min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(2100, 1, 1), timezones=st.just(UTC)
).map(lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000))


@settings(max_examples=60, deadline=None)
@given(moments=st.lists(times, min_size=1, max_size=20), with_ms=st.booleans())
def test_iso_times_parse_to_the_exact_millisecond(moments, with_ms):
    text = [
        m.strftime("%Y-%m-%dT%H:%M:%S") + (f".{m.microsecond // 1000:03d}Z" if with_ms else "Z")
        for m in moments
    ]
    got = iso_ms(pa.array(text, pa.string())).to_pylist()
    epoch = dt.datetime(1970, 1, 1, tzinfo=UTC)
    one_ms = dt.timedelta(milliseconds=1)
    want = [(m if with_ms else m.replace(microsecond=0)) - epoch for m in moments]
    assert got == [w // one_ms for w in want]


# ---------------------------------------------------------------------------------------------
# CLI


def test_cli_formats_and_peek(tmp_path):
    from typer.testing import CliRunner

    from funnel.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["formats", "--json"])
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.stdout)) == set(LOADERS)
    path = write(tmp_path / "ub.csv", "1,2,3,pv,1511544070\n1,2,3,buy\n2,5,3,buy,1511544071\n")
    result = runner.invoke(app, ["peek", str(path), "--format", "taobao", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert {k: v for k, v in report.items() if k != "seconds"} == {
        "events": 2, "events: booking": 1, "events: click": 1, "items": 2, "rejected": 1
    }  # fmt: skip
    result = runner.invoke(app, ["peek", str(path), "--format", "tabao"])
    assert result.exit_code == 1
    assert "unknown loader format 'tabao'" in " ".join(result.output.split())
    result = runner.invoke(app, ["peek", str(tmp_path / "none.csv"), "--format", "taobao"])
    assert result.exit_code == 1 and "none.csv: no such file" in " ".join(result.output.split())


def test_vectorized_and_small_batch_hashing_give_the_same_ids():
    from funnel.data.loaders._ids import SMALL_HASH_BATCH, md5_hex

    keys = pa.array([f"taobao|{i % 7}|{i}|1511544070000|click|0" for i in range(SMALL_HASH_BATCH)])
    big = md5_hex(keys).to_pylist()  # DuckDB path
    small = md5_hex(keys.slice(0, 10)).to_pylist()  # hashlib path
    assert small == big[:10]
    assert big[-1] == hashlib.md5(keys[-1].as_py().encode()).hexdigest()


field_text = st.one_of(
    st.text(st.characters(blacklist_characters=",\n\r", blacklist_categories=("Cs",)),
            max_size=12),
    st.sampled_from(["+5", "-5", "007", " 5", "1e5", "nan", "inf", "99999999999999999999"]),
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(
    lines=st.lists(
        st.tuples(field_text, field_text, field_text,
                  st.one_of(st.sampled_from(["pv", "buy"]), field_text), field_text),
        min_size=1, max_size=15,
    )
)  # fmt: skip
def test_any_text_is_stored_or_rejected_never_crashes(lines):
    # a valid first line keeps header sniffing out of the way
    text = "1,2,3,pv,1511544070\n" + "".join(",".join(fields) + "\n" for fields in lines)
    with tempfile.TemporaryDirectory() as tmp:
        tables = load_taobao(write(Path(tmp) / "ub.csv", text))
    stored = set(tables.events.column(SOURCE_ROW).to_pylist())
    rejected = tables.rejected.column("source_row").to_pylist()
    assert len(rejected) == len(set(rejected))  # each line rejected once, for its first problem
    assert stored.isdisjoint(rejected)
    assert stored | set(rejected) == set(range(1, len(lines) + 2))  # every line accounted for


FUZZ_FILES = {
    # name: (file name, valid head: header and/or one good line, separator, fields, table)
    "movielens": ("x.inter", "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                  "1\t2\t4\t881250949\n", "\t", 4, "events"),
    "ml-100k": ("u.data", "1\t2\t4\t881250949\n", "\t", 4, "events"),
    "ml-100k-items": ("u.item", "|".join(["1", "T (1995)", "", "", "", *["0"] * 19]) + "\n",
                      "|", 24, "items"),
    "ml-1m": ("ratings.dat", "1::2::4::881250949\n", "::", 4, "events"),
    "criteo": ("c.tsv", criteo_line() + "\n", "\t", 40, "events"),
    "diginetica": ("v.csv", "session_id;user_id;item_id;timeframe;eventdate\n"
                   "1;NA;2;3;2016-05-09\n", ";", 5, "events"),
    "yoochoose": ("y.dat", "1,2014-04-07T10:51:09.277Z,214536502,0\n", ",", 4, "events"),
    "yoochoose-tsv": ("s.tsv", "SessionId\tItemId\tTime\n1\t2\t1396839069\n", "\t", 3,
                      "events"),
}  # fmt: skip
fuzz_field = st.one_of(
    field_text.map(lambda t: t.replace("\t", " ").replace(";", " ").replace("|", " ")
                   .replace(":", " ")),
    st.sampled_from(["", "NA", "0", "1", "2016-02-30", "2014-04-07T10:51:09Z", "S", "1.5"]),
)  # fmt: skip


@pytest.mark.parametrize("case", sorted(FUZZ_FILES))
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_every_format_stores_or_rejects_each_line_never_crashes(case, data):
    filename, head, sep, n_fields, kind = FUZZ_FILES[case]
    # mostly the right field count (so value checks are exercised), sometimes any count
    line = st.one_of(st.lists(fuzz_field, min_size=n_fields, max_size=n_fields),
                     st.lists(fuzz_field, min_size=1, max_size=n_fields + 2))  # fmt: skip
    lines = data.draw(st.lists(line, min_size=1, max_size=8))
    name = case.removesuffix("-items").removesuffix("-tsv")
    body = "".join(sep.join(fields) + "\n" for fields in lines)
    with tempfile.TemporaryDirectory() as tmp:
        tables = get_loader(name)(write(Path(tmp) / filename, head + body))
    n_rows = head.count("\n") + len(lines) - (1 if head.count("\n") == 2 else 0)
    blank = {n for n, fields in enumerate(lines, start=n_rows - len(lines) + 1)
             if sep.join(fields) == ""}  # fmt: skip
    kept = set(getattr(tables, kind).column(SOURCE_ROW).to_pylist())
    rejected = tables.rejected.column("source_row").to_pylist()
    assert len(rejected) == len(set(rejected)) and kept.isdisjoint(rejected)
    assert kept | set(rejected) | blank == set(range(1, n_rows + 1))


# ---------------------------------------------------------------------------------------------
# through ingest: what the loaders hand over passes validation and the accounting holds


@pytest.mark.parametrize(
    ("fmt", "filename", "text", "stored_events"),
    [
        ("taobao", "ub.csv", "1,2,3,pv,1511544070\n1,2,3,buy\n2,5,3,buy,1511544071\n", 2),
        ("ml-1m", "ratings.dat", "1::2::5::978300760\n1::3::x::978300760\n", 2),
        ("yoochoose", "clicks.dat", "1,2014-04-07T10:51:09.277Z,7,3\n1,bad,7,3\n", 1),
        ("criteo", "day.tsv", criteo_line() + "\n" + criteo_line(label="7") + "\n", 2),
        ("diginetica", "v.csv",
         "session_id;user_id;item_id;timeframe;eventdate\n1;NA;2;3;2016-05-09\n1;NA;2\n", 1),
    ],
)  # fmt: skip
def test_ingest_stores_loader_output_and_quarantines_rejects(fmt, filename, text, stored_events,
                                                            tmp_path):  # fmt: skip
    from funnel.data.ingest import ingest_file
    from funnel.workspace import Workspace

    ws = Workspace.init(tmp_path / "ws")
    path = write(tmp_path / filename, text)
    report = ingest_file(ws, path, fmt)
    assert report.by_kind["events"]["stored"] == stored_events
    assert report.by_kind["events"]["quarantined"] == 0  # loader output is always valid
    assert report.quarantined == 1  # the one malformed line, from the loader's rejects
    assert report.read == report.stored + report.quarantined + report.duplicates
    again = ingest_file(ws, path, fmt)
    assert again.stored == 0 and again.duplicates == report.stored


def test_occurrence_index_counts_earlier_repeats_on_both_paths():
    from funnel.data.loaders._ids import SMALL_HASH_BATCH, occurrence_index

    rng = np.random.default_rng(0)
    values = [f"k{v}" for v in rng.integers(0, 500, SMALL_HASH_BATCH + 100)]
    seen: Counter[str] = Counter()
    expected = []
    for v in values:
        expected.append(seen[v])
        seen[v] += 1
    big = occurrence_index(pa.array(values))  # DuckDB hash path
    small = occurrence_index(pa.array(values[:50]))  # dictionary path
    assert big.tolist() == expected
    assert small.tolist() == expected[:50]
