"""The file round-trip of benchmarks/_peer.py (issue 17), without the peer venv.

The peer itself (RecTools SASRec in ``.venv-peer``) is not run here: a stand-in script run by
this interpreter reads the inputs with the peer script's own readers and answers in its output
format, so the writer, the subprocess call, the reader and the error paths are all exercised.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


peer = _load("_peer_under_test", BENCH / "_peer.py")
sasrec = _load("_peer_sasrec_under_test", BENCH / "peers" / "sasrec.py")  # stdlib-only at import

FAKE = """\
import argparse, json, sys
sys.path.insert(0, {peers!r})
from sasrec import read_prefixes, read_train
ap = argparse.ArgumentParser()
for a in ("--train", "--prefixes", "--out", "--threads", "--epochs", "--session-max-len"):
    ap.add_argument(a)
ap.add_argument("--k", type=int)
ap.add_argument("--seed", type=int)
ap.add_argument("--filter-prefix-items", action="store_true")
args = ap.parse_args()
train, prefixes = read_train(__import__("pathlib").Path(args.train)), read_prefixes(
    __import__("pathlib").Path(args.prefixes))
seen = [i for s in train for i in s]
recs = [(list(reversed(p)) if not args.filter_prefix_items else []) + seen for p in prefixes]
json.dump({{"recommendations": [r[: args.k] for r in recs], "library": "fake",
           "n_train_sessions": len(train), "seed": args.seed, "epochs": args.epochs}},
          open(args.out, "w"))
"""


@pytest.fixture
def fake(tmp_path: Path) -> Path:
    script = tmp_path / "fake_peer.py"
    script.write_text(FAKE.format(peers=str(BENCH / "peers")))
    return script


def test_inputs_round_trip_through_the_peer_readers(tmp_path: Path) -> None:
    train = [["1", "2", "3"], [4, 5], []]
    prefixes = [["7"], ["8", 9]]
    tr, pr = peer.write_inputs(tmp_path, train, prefixes)
    assert sasrec.read_train(tr) == [["1", "2", "3"], ["4", "5"], []]
    assert sasrec.read_prefixes(pr) == [["7"], ["8", "9"]]
    tsv = tmp_path / "train.tsv"
    tsv.write_text("session_id\titem_id\na\t1\nb\t4\na\t2\n")
    assert sasrec.read_train(tsv) == [["1", "2"], ["4"]]
    (tmp_path / "t.json").write_text(json.dumps([{"session_id": "x", "items": [1, 2]}]))
    assert sasrec.read_train(tmp_path / "t.json") == [["1", "2"]]


def test_peer_run_round_trip(fake: Path) -> None:
    train = [["a", "b"], ["c"]]
    prefixes = [["x", "y"], [], ["z"]]
    res = peer.peer_run(train, prefixes, k=3, seed=5, epochs=2, python=sys.executable, script=fake)
    assert res.recommendations == [["y", "x", "a"], ["a", "b", "c"], ["z", "a", "b"]]
    assert res.meta == {"library": "fake", "n_train_sessions": 2, "seed": 5, "epochs": "2"}
    got = peer.peer_recommend(
        train, prefixes, 2, filter_prefix_items=True, python=sys.executable, script=fake
    )
    assert got == [["a", "b"]] * 3


def test_errors_are_one_line(tmp_path: Path, fake: Path) -> None:
    crash = tmp_path / "crash.py"
    crash.write_text("import sys\nsys.exit('boom: the model broke\\n')\n")
    with pytest.raises(peer.PeerError, match=r"crash\.py exited with 1: boom: the model broke$"):
        peer.peer_run([["a"]], [["a"]], python=sys.executable, script=crash)
    slow = tmp_path / "slow.py"
    slow.write_text("import time\ntime.sleep(30)\n")
    with pytest.raises(peer.PeerError, match="timed out after 0.5 s"):
        peer.peer_run([["a"]], [["a"]], timeout=0.5, python=sys.executable, script=slow)
    with pytest.raises(peer.PeerError, match="make peer-venv"):
        peer.peer_run([["a"]], [["a"]], python=tmp_path / "nope" / "python", script=fake)
    silent = tmp_path / "silent.py"
    silent.write_text("")
    with pytest.raises(peer.PeerError, match="no output file"):
        peer.peer_run([["a"]], [["a"]], python=sys.executable, script=silent)
    out = tmp_path / "out.json"
    out.write_text(json.dumps({"recommendations": [["a"]]}))
    with pytest.raises(peer.PeerError, match="1 recommendation lists for 2 prefixes"):
        peer.read_output(out, 2, 20)
    with pytest.raises(peer.PeerError, match="more than k=0"):
        peer.read_output(out, 1, 0)


def test_peer_available_names_make_peer_venv(tmp_path: Path) -> None:
    reason = peer.peer_available(tmp_path / "no-venv" / "bin" / "python")
    assert reason is not None and "make peer-venv" in reason and "\n" not in reason
    assert "not installed" in peer.peer_name(tmp_path / "no-venv" / "bin" / "python")
