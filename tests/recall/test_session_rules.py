"""Session-based recommenders against textbook implementations of Ludewig & Jannach (2018).

Each oracle below is written from the paper's definition in plain Python with exact
fractions; the fitted estimators must give the same items in the same order (ties by id)
and the same scores, on hand-made and on random logs.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Collection, Sequence
from fractions import Fraction

import pytest

from funnel.exceptions import ArtifactError, NotFittedError
from funnel.recall.base import RecallRequest
from funnel.recall.session_rules import LastItemCooccurrence, SequentialRules, SessionKNN

Log = list[list[str]]


def _rank(score: dict[str, Fraction], k: int, exclude: Collection[str]) -> tuple[list, list]:
    best = sorted((i for i, v in score.items() if i not in exclude and v > 0),
                  key=lambda i: (-score[i], i))[:k]
    return best, [float(score[i]) for i in best]


def _known_prefix(log: Log, prefix: Sequence[str]) -> list[str]:
    seen = {i for s in log for i in s}
    return [i for i in prefix if i in seen]


def cooc_oracle(log: Log, prefix: Sequence[str], k: int, exclude: Collection[str] = ()):
    pre = _known_prefix(log, prefix)
    if not pre:
        return [], []
    score: dict[str, Fraction] = defaultdict(Fraction)
    for s in log:
        if pre[-1] in s:
            for j in set(s) - {pre[-1]}:
                score[j] += 1
    return _rank(score, k, exclude)


def sr_oracle(log: Log, prefix: Sequence[str], k: int, exclude: Collection[str] = (),
              steps: int = 10):
    pre = _known_prefix(log, prefix)
    if not pre:
        return [], []
    score: dict[str, Fraction] = defaultdict(Fraction)
    for s in log:
        for p in range(len(s)):
            for q in range(p + 1, min(len(s), p + steps + 1)):
                if s[p] == pre[-1]:
                    score[s[q]] += Fraction(1, q - p)
    return _rank(score, k, exclude)


def sknn_oracle(log: Log, times: Sequence[float] | None, prefix: Sequence[str], n: int,
                exclude: Collection[str] = (), k: int = 100, sample_size: int = 500):
    pre = _known_prefix(log, prefix)
    if not pre:
        return [], []
    weight = {item: Fraction(p, len(pre)) for p, item in enumerate(pre, start=1)}
    t = times if times is not None else list(range(len(log)))
    recency = {s: r for r, s in enumerate(sorted(range(len(log)), key=lambda s: (t[s], s)))}
    sharing = [s for s in range(len(log)) if set(log[s]) & set(pre)]
    sample = sorted(sharing, key=recency.__getitem__)[-sample_size:]
    sim = {s: sum((weight[i] for i in set(log[s]) if i in weight), Fraction(0)) for s in sample}
    neighbours = sorted(sample, key=lambda s: (-sim[s], -recency[s]))[:k]
    score: dict[str, Fraction] = defaultdict(Fraction)
    for s in neighbours:
        for item in set(log[s]):
            score[item] += sim[s]
    return _rank(score, n, exclude)


def _same(got: tuple[list, list], want: tuple[list, list]) -> None:
    assert got[0] == want[0]
    assert got[1] == pytest.approx(want[1], rel=1e-12)


# ---------------------------------------------------------------------------------------------
# hand-computed values

SR_LOG = [["a", "b", "c", "b"], ["b", "c"], ["c", "a", "b"]]


def test_sr_hand_computed() -> None:
    sr = SequentialRules(steps=2).fit(SR_LOG)
    # b -> c: gap 1 in sessions 1 and 2; b -> b: gap 2 in session 1
    assert sr.recommend(["x", "a", "b"], 5) == (["c", "b"], [2.0, 0.5])
    assert sr.recommend(["b"], 5, exclude={"b"}) == (["c"], [2.0])
    # a -> b gap 1 (session 3) and gap 1 (session 1); a -> c gap 2; a -> b gap 3 is too far
    assert sr.recommend(["a"], 5) == (["b", "c"], [2.0, 0.5])
    got = SequentialRules(steps=3).fit(SR_LOG).recommend(["a"], 5)
    assert got[0] == ["b", "c"] and got[1] == pytest.approx([2 + 1 / 3, 0.5])


SKNN_LOG = [["a", "b"], ["b", "c"], ["a", "c", "d"], ["e"]]
SKNN_TIMES = [1.0, 2.0, 3.0, 4.0]


def test_sknn_hand_computed() -> None:
    # prefix (a, c): weights a = 1/2, c = 1; sims s0 = 1/2, s1 = 1, s2 = 3/2; s3 shares nothing
    full = SessionKNN().fit(SKNN_LOG, times=SKNN_TIMES).recommend(["a", "c"], 10)
    assert full == (["c", "a", "b", "d"], [2.5, 2.0, 1.5, 1.5])
    # k = 2 keeps s2 and s1: c = 5/2, a = d = 3/2 (tie by id), b = 1
    top2 = SessionKNN(k=2).fit(SKNN_LOG, times=SKNN_TIMES).recommend(["a", "c"], 10)
    assert top2 == (["c", "a", "d", "b"], [2.5, 1.5, 1.5, 1.0])
    # the two most recent sharing sessions are s1 and s2 as well
    recent = SessionKNN(sample_size=2).fit(SKNN_LOG, times=SKNN_TIMES)
    assert recent.recommend(["a", "c"], 10) == top2
    assert recent.recommend(["a", "c"], 2, exclude=["c"]) == (["a", "d"], [1.5, 1.5])
    # reversed times: s0 and s1 are now the most recent sharing sessions
    old = SessionKNN(sample_size=2).fit(SKNN_LOG, times=SKNN_TIMES[::-1])
    assert old.recommend(["a", "c"], 10) == (["b", "c", "a"], [1.5, 1.0, 0.5])


def test_cooc_hand_computed() -> None:
    cooc = LastItemCooccurrence().fit(SR_LOG)
    assert cooc.recommend(["b", "a"], 5) == (["b", "c"], [2.0, 2.0])
    assert cooc.recommend(["a", "b"], 5) == (["c", "a"], [3.0, 2.0])


# ---------------------------------------------------------------------------------------------
# oracles on hand-made and random logs

TINY = [["a", "b", "a", "c"], ["c", "d"], ["b", "d", "e", "b"], [], ["e"], ["a", "e", "d"]]


def _random_log(seed: int) -> tuple[Log, list[float], list[tuple[list[str], int, set[str]]]]:
    rng = random.Random(seed)
    vocab = [f"{rng.choice(['i', ''])}{n}" for n in range(rng.randint(3, 14))]  # "10" < "9"
    log = [[rng.choice(vocab) for _ in range(rng.randint(0, 9))] for _ in range(rng.randint(1, 30))]
    times = [float(rng.randint(0, 8)) for _ in log]  # many ties in time
    queries = []
    for _ in range(15):
        prefix = [rng.choice([*vocab, "unseen"]) for _ in range(rng.randint(1, 6))]
        exclude = set(rng.sample(vocab, rng.randint(0, 3)))
        queries.append((prefix, rng.choice([1, 3, 50]), exclude))
    return log, times, queries


def _tiny_queries() -> list[tuple[list[str], int, set[str]]]:
    return [(["a"], 10, set()), (["b", "a"], 2, set()), (["a", "b"], 10, {"e"}),
            (["zz", "d"], 10, set()), (["zz"], 10, set()), (["e", "e", "a"], 1, {"b"})]


CASES = [("tiny", TINY, [0.0, 1.0, 1.0, 2.0, 5.0, 3.0], _tiny_queries())] + [
    (f"random{seed}", *_random_log(seed)) for seed in range(25)
]


@pytest.mark.parametrize(("name", "log", "times", "queries"), CASES, ids=[c[0] for c in CASES])
def test_cooc_matches_oracle(name: str, log: Log, times: list[float], queries: list) -> None:
    model = LastItemCooccurrence().fit(log, times=times)
    for prefix, k, exclude in queries:
        _same(model.recommend(prefix, k, exclude=exclude), cooc_oracle(log, prefix, k, exclude))


@pytest.mark.parametrize("steps", [1, 3, 10])
@pytest.mark.parametrize(("name", "log", "times", "queries"), CASES, ids=[c[0] for c in CASES])
def test_sr_matches_oracle(
    name: str, log: Log, times: list[float], queries: list, steps: int
) -> None:
    model = SequentialRules(steps=steps).fit(log)
    for prefix, k, exclude in queries:
        want = sr_oracle(log, prefix, k, exclude, steps=steps)
        _same(model.recommend(prefix, k, exclude=exclude), want)


@pytest.mark.parametrize(("k", "sample_size"), [(100, 500), (3, 500), (2, 4), (50, 3)])
@pytest.mark.parametrize("timed", [True, False])
@pytest.mark.parametrize(("name", "log", "times", "queries"), CASES, ids=[c[0] for c in CASES])
def test_sknn_matches_oracle(
    name: str, log: Log, times: list[float], queries: list, timed: bool, k: int, sample_size: int
) -> None:
    t = times if timed else None
    model = SessionKNN(k=k, sample_size=sample_size).fit(log, times=t)
    for prefix, n, exclude in queries:
        want = sknn_oracle(log, t, prefix, n, exclude, k=k, sample_size=sample_size)
        _same(model.recommend(prefix, n, exclude=exclude), want)


# ---------------------------------------------------------------------------------------------
# persistence, serving, input checks

MODELS = [LastItemCooccurrence(), SequentialRules(steps=3), SessionKNN(k=3, sample_size=4)]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.name)
def test_save_load_round_trip(model, tmp_path) -> None:
    log, times, queries = _random_log(7)
    model.fit(log, times=times).save(tmp_path / "m")
    loaded = type(model).load(tmp_path / "m")
    assert loaded.get_params() == model.get_params()
    for prefix, k, exclude in queries:
        assert loaded.recommend(prefix, k, exclude=exclude) == model.recommend(
            prefix, k, exclude=exclude
        )


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.name)
def test_load_refuses_unknown_config_keys(model, tmp_path) -> None:
    model.fit(TINY).save(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["params"]["windw"] = 3
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ArtifactError, match="windw"):
        type(model).load(tmp_path)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.name)
def test_candidates_answer_from_recent_items_without_them(model) -> None:
    model.fit(TINY)
    got = model.candidates(RecallRequest(recent_items=["b", "a"], k=3))
    want = model.recommend(["b", "a"], 3, exclude={"a", "b"})
    assert got.item_ids.tolist() == want[0]
    assert got.scores.tolist() == pytest.approx(want[1])
    assert len(model.candidates(RecallRequest(recent_items=[], k=3))) == 0
    assert len(model.candidates(RecallRequest(recent_items=["nope"], k=3))) == 0


@pytest.mark.parametrize("model", [LastItemCooccurrence(), SequentialRules(), SessionKNN()],
                         ids=lambda m: m.name)
def test_bad_input_names_the_parameter(model) -> None:
    with pytest.raises(NotFittedError):
        model.recommend(["a"], 3)
    with pytest.raises(ValueError, match="'sessions'"):
        model.fit("abc")
    with pytest.raises(ValueError, match="'sessions'"):
        model.fit(["ab", "cd"])
    with pytest.raises(ValueError, match="'sessions'"):
        model.fit([["a", 1]])
    with pytest.raises(ValueError, match="'times'"):
        model.fit([["a"], ["b"]], times=[1.0])
    with pytest.raises(ValueError, match="'times'"):
        model.fit([["a"], ["b"]], times=["noon", "night"])
    with pytest.raises(ValueError, match="'times'"):
        model.fit([["a"], ["b"]], times=[1.0, float("nan")])
    model.fit(TINY)
    with pytest.raises(ValueError, match="'prefix'"):
        model.recommend("a", 3)
    for k in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="'k'"):
            model.recommend(["a"], k)
    with pytest.raises(ValueError, match="'exclude'"):
        model.recommend(["a"], 3, exclude="b")


@pytest.mark.parametrize(("model", "name"), [
    (SequentialRules(steps=0), "steps"), (SessionKNN(k=0), "k"),
    (SessionKNN(sample_size=-1), "sample_size"),
    (LastItemCooccurrence(exclude_recent=1), "exclude_recent"),
])
def test_bad_hyperparameter_names_it(model, name: str) -> None:
    with pytest.raises(ValueError, match=f"'{name}'"):
        model.fit(TINY)


def test_numpy_input_gives_the_same_model() -> None:
    import numpy as np

    log, times, queries = _random_log(3)
    as_arrays = np.empty(len(log), dtype=object)
    as_arrays[:] = [np.asarray(s, dtype=str) for s in log]
    for make in (LastItemCooccurrence, SequentialRules, SessionKNN):
        a = make().fit(log, times=times)
        b = make().fit(as_arrays, times=np.asarray(times))
        for prefix, k, exclude in queries:
            assert a.recommend(prefix, k, exclude=exclude) == b.recommend(
                np.asarray(prefix), k, exclude=exclude
            )


def test_empty_log_fits_and_recommends_nothing() -> None:
    for model in (LastItemCooccurrence(), SequentialRules(), SessionKNN()):
        assert model.fit([[], []]).recommend(["a"], 5) == ([], [])


# ---------------------------------------------------------------------------------------------
# served: built into the artifact and answering the engine's recall from recent clicks


def test_synthetic_build_serves_the_session_sources(tmp_path) -> None:
    from funnel.build import synthetic_workspace
    from funnel.engine.core import Engine
    from funnel.features.personalization import RecentActions
    from funnel.recall.build import load_recall

    # no embeddings or ranker: they cost most of the build and do not touch these sources
    ws = synthetic_workspace(tmp_path, events=8_000, seed=5,
                             stages=("catalog", "recall", "rerank"))
    artifact = ws.artifacts.require_current()
    assert {"cooc", "sr", "sknn"} <= {p.name for p in (artifact / "recall").iterdir()}
    con = ws.connect(read_only=True)
    try:
        clicks = con.sql(
            "SELECT items FROM sessions WHERE len(items) >= 4 ORDER BY session_id LIMIT 1"
        ).fetchall()[0][0][:-1]
    finally:
        con.close()

    bundle = load_recall(artifact)
    assert {"cooc", "sr", "sknn"} <= set(bundle.sources)
    merged = bundle.merger.recall(RecallRequest(recent_items=tuple(clicks), k=1000))
    bundle.merger.close()
    sr = SequentialRules.load(artifact / "recall" / "sr")
    want = sr.recommend(clicks, bundle.config.quota_sr, exclude=clicks)[0]
    assert want and set(want) <= set(merged.item_ids.tolist())
    for name in ("cooc", "sr", "sknn"):
        assert merged.provenance.found_by(name).any(), name  # type: ignore[attr-defined]

    engine = Engine.load(artifact)
    out = engine.run(query="", user_id=None, market=None, filters={}, k=20,
                     state=RecentActions(clicks=tuple(clicks)), debug=True)
    assert out.debug is not None and len(out.item_ids) == 20
    found = set().union(*(e.get("recall_sources", {}) for e in out.debug))
    assert {"cooc", "sr", "sknn"} <= found
    assert not set(clicks) & {i for i, e in zip(out.item_ids, out.debug, strict=True)
                              if set(e.get("recall_sources", {})) <= {"cooc", "sr", "sknn"}}

    # the [recall] table sets their quotas and whether recent items are left out
    from funnel.recall.build import RecallConfig, build_recall

    build = ws.artifacts.begin()
    build_recall(ws, build, RecallConfig(session_exclude_recent=False, quota_sr=7))
    again = load_recall(build.commit())
    assert again.merger.quotas is not None and again.merger.quotas["sr"] == 7
    assert not any(again.sources[n].exclude_recent for n in ("cooc", "sr", "sknn"))
    sknn = again.sources["sknn"]
    assert sknn.candidates(RecallRequest(recent_items=clicks, k=50)).item_ids.tolist() == (
        sknn.recommend(clicks, 50)[0]
    )
