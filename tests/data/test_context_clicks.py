"""The click model with list context: exact expected clicks, its sampler, and the generator."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from funnel.data.schema import TRUTH_SCHEMA
from funnel.data.synthetic import MarketplaceConfig, generate_tables
from funnel.data.synthetic.context import (
    EXAM_POWER,
    LIST_CONTEXT,
    exam,
    expected_clicks,
    expected_clicks_many,
    marginal_click_probs,
    same_brand_above,
    sample_clicks,
)

OFF = {"context_strength": 0.0, "continue_after_click": 1.0}
# The pre-context truth columns; their digests below were computed from the generator BEFORE
# list context existed (sha256 of each column's name and repr(to_pylist())).
OLD_TRUTH = ["event_id", "p_click", "p_book", "intent_category", "intent_brand", "intent_market"]
GOLDEN = {
    (5000, 3, 2048): (
        "24d14d219ec59a262c7f505b354c0fa9837186714825e74d98efb406a52d2ed4",
        "d72a7dcb1640e2658a255e4059b0d22dbca5975bfdc5476352ddecdf38f85152",
    ),
    (6000, 5, 150): (  # several chunks and a truncated last one
        "306782992450ea133ac349a17fd25f464ebf2df805a578385d89778109e92e9e",
        "ecba8305f47e5ca35270b890b20fea8bbe24c9f1ae106f090b1abac122973857",
    ),
}


def _digest(table: pa.Table) -> str:
    h = hashlib.sha256()
    for name in table.column_names:
        h.update(name.encode())
        h.update(repr(table[name].to_pylist()).encode())
    return h.hexdigest()


# --- the closed form ----------------------------------------------------------------------


def test_expected_clicks_by_hand() -> None:
    # exam_power 1: exam = 1, 1/2, 1/3. Items 1 and 2 share brand 7, item 3 is brand 9.
    # c1 = 1 * 0.5                 = 0.5
    # c2 = 1/2 * 0.4 * (1 - 0.5)^1 = 0.1
    # c3 = 1/3 * 0.3               = 0.1
    # reach1 = 1; reach2 = 1 - 0.5 * (1 - 0.5) = 0.75; reach3 = 0.75 * (1 - 0.1 * 0.5) = 0.7125
    # E = 1 * 0.5 + 0.75 * 0.1 + 0.7125 * 0.1 = 0.5 + 0.075 + 0.07125 = 0.64625
    kw = {"strength": 0.5, "continue_after_click": 0.5, "exam_power": 1.0}
    attract, brand = [0.5, 0.4, 0.3], [7, 7, 9]
    assert expected_clicks(attract, brand, **kw) == pytest.approx(0.64625, abs=1e-15)
    marg = marginal_click_probs(attract, brand, **kw)
    np.testing.assert_allclose(marg, [0.5, 0.075, 0.07125], atol=1e-15)
    assert expected_clicks(attract, brand, **kw, k=2) == pytest.approx(0.575, abs=1e-15)
    assert expected_clicks(attract, brand, **kw, k=0) == 0.0


def test_unbranded_items_never_match() -> None:
    assert same_brand_above([-1, -1, 3, 3, -1, 3]).tolist() == [0, 0, 0, 1, 0, 2]
    assert same_brand_above([[1, 1, 1]], shown=[[True, True, False]]).tolist() == [[0, 1, 0]]


def test_off_switch_is_the_independent_model() -> None:
    rng = np.random.default_rng(0)
    attract, brand = rng.random(20), rng.integers(-1, 3, size=20)
    e = exam(20) * attract
    assert np.array_equal(exam(20), np.arange(1, 21, dtype=np.float64) ** -EXAM_POWER)
    assert np.array_equal(
        marginal_click_probs(attract, brand, strength=0.0, continue_after_click=1.0), e)
    assert expected_clicks(attract, brand, strength=0.0, continue_after_click=1.0) == (
        pytest.approx(e.sum(), rel=1e-15))


def test_sampler_mean_matches_expected_clicks() -> None:
    attract = np.array([0.6, 0.55, 0.3, 0.5, 0.2, 0.45, 0.35, 0.1])
    brand = np.array([1, 1, 2, 1, -1, 2, -1, 3])
    kw = {"strength": 0.4, "continue_after_click": 0.6}
    n = 200_000
    rng = np.random.default_rng(11)
    clicked, p = sample_clicks(np.tile(attract, (n, 1)), np.tile(brand, (n, 1)),
                               np.ones((n, 8), bool), rng.random((n, 8)), **kw)
    exact = expected_clicks(attract, brand, **kw)
    clicks = clicked.sum(axis=1)
    # 5 standard errors of the mean (about 0.005 here): a fixed seed, so no flakiness either way
    assert abs(clicks.mean() - exact) < 5 * clicks.std() / np.sqrt(n)
    np.testing.assert_allclose(clicked.mean(axis=0), p[0], atol=5 * 0.5 / np.sqrt(n))
    np.testing.assert_array_equal(p[0], marginal_click_probs(attract, brand, **kw))


def test_sampler_off_switch_equals_independent_draws() -> None:
    rng = np.random.default_rng(5)
    attract = rng.random((300, 20))
    brand = rng.integers(-1, 4, size=(300, 20))
    shown = np.arange(20)[None, :] < rng.integers(10, 21, size=300)[:, None]
    u = rng.random((300, 20))
    clicked, p = sample_clicks(attract, brand, shown, u, **{
        "strength": 0.0, "continue_after_click": 1.0})
    e = exam(20) * attract
    np.testing.assert_array_equal(clicked, shown & (u < e))
    np.testing.assert_array_equal(p[shown], e[shown])


def test_many_lists_agree_with_one_by_one() -> None:
    rng = np.random.default_rng(2)
    attract = rng.random((50, 12))
    brand = rng.integers(-1, 3, size=(50, 12))
    length = rng.integers(1, 13, size=50)
    padded = np.where(np.arange(12)[None, :] < length[:, None], attract, np.nan)
    kw = {"strength": 0.3, "continue_after_click": 0.7}
    many = expected_clicks_many(padded, brand, **kw)
    one = [expected_clicks(attract[i, : length[i]], brand[i, : length[i]], **kw)
           for i in range(50)]
    np.testing.assert_allclose(many, one, rtol=1e-13)


@pytest.mark.parametrize("cont", [1.0, 0.7])
def test_moving_a_duplicate_down_raises_expected_clicks(cont: float) -> None:
    # brand 1 at positions 1 and 2 (a near-duplicate); positions 3-5 are other brands and the
    # item at 5 has the duplicate's attraction. Swapping 2 and 5 moves the penalty lower down.
    attract = [0.5, 0.4, 0.3, 0.35, 0.4]
    before, after = [1, 1, 2, 3, 4], [1, 4, 2, 3, 1]
    for strength in (0.3, 0.8):
        kw = {"strength": strength, "continue_after_click": cont}
        assert expected_clicks(attract, after, **kw) > expected_clicks(attract, before, **kw)
    kw = {"strength": 0.0, "continue_after_click": cont}
    assert expected_clicks(attract, after, **kw) == expected_clicks(attract, before, **kw)


lists = st.integers(1, 20).flatmap(lambda n: st.tuples(
    st.lists(st.floats(0.0, 1.0), min_size=n, max_size=n),
    st.lists(st.integers(-1, 3), min_size=n, max_size=n),
))


@settings(max_examples=200, deadline=None)
@given(lists, st.floats(0.0, 1.0), st.floats(0.0, 1.0), st.floats(0.0, 1.0),
       st.integers(0, 20))
def test_properties(
    ab: tuple[list[float], list[int]], s1: float, s2: float, cont: float, k: int
) -> None:
    attract, brand = ab
    lo, hi = sorted((s1, s2))
    marg = marginal_click_probs(attract, brand, strength=lo, continue_after_click=cont, k=k)
    assert ((marg >= 0.0) & (marg <= 1.0)).all()
    e_lo = expected_clicks(attract, brand, strength=lo, continue_after_click=cont, k=k)
    assert marg.sum() == pytest.approx(e_lo, rel=1e-12, abs=1e-15)
    e_hi = expected_clicks(attract, brand, strength=hi, continue_after_click=cont, k=k)
    assert e_hi <= e_lo + 1e-12  # more cannibalization never adds clicks


# --- the generator ------------------------------------------------------------------------


@pytest.mark.parametrize(("n_events", "seed", "chunk_sessions"), sorted(GOLDEN))
def test_off_switch_reproduces_the_old_generator(
    n_events: int, seed: int, chunk_sessions: int
) -> None:
    cfg = MarketplaceConfig(n_events=n_events, seed=seed, chunk_sessions=chunk_sessions, **OFF)
    tables = generate_tables(cfg)
    events, truth = GOLDEN[(n_events, seed, chunk_sessions)]
    assert _digest(tables["events"]) == events
    assert _digest(tables["truth"].select(OLD_TRUTH)) == truth
    types = tables["events"]["event_type"].to_numpy(zero_copy_only=False)
    imp = types == "impression"
    pos = tables["events"]["position"].to_numpy(zero_copy_only=False)[imp].astype(np.float64)
    p_click = tables["truth"]["p_click"].to_numpy(zero_copy_only=False)[imp]
    p_attract = tables["truth"]["p_attract"].to_numpy(zero_copy_only=False)[imp]
    assert np.array_equal(p_click, pos**-EXAM_POWER * p_attract)  # bit for bit


@pytest.fixture(scope="module")
def context_tables() -> dict[str, pa.Table]:
    return generate_tables(MarketplaceConfig(n_events=8000, seed=2, **LIST_CONTEXT))


def test_truth_p_attract(context_tables: dict[str, pa.Table]) -> None:
    truth, events = context_tables["truth"], context_tables["events"]
    assert truth.schema.equals(TRUTH_SCHEMA)
    assert TRUTH_SCHEMA.names.index("p_attract") == TRUTH_SCHEMA.names.index("p_click") + 1
    types = events["event_type"].to_numpy(zero_copy_only=False)
    pa_ = truth["p_attract"].to_numpy(zero_copy_only=False)
    has = (types == "impression") | (types == "click")
    assert ((pa_[has] > 0) & (pa_[has] < 1)).all()
    assert truth["p_attract"].null_count == int((~has).sum())
    pos = events["position"].to_numpy(zero_copy_only=False)[has].astype(np.float64)
    p_click = truth["p_click"].to_numpy(zero_copy_only=False)[has]
    # the in-list click probability never exceeds the context-free one, and is below it somewhere
    assert (p_click <= pos**-EXAM_POWER * pa_[has] * (1 + 1e-12)).all()
    assert (p_click < pos**-EXAM_POWER * pa_[has] * (1 - 1e-6)).any()


def test_truth_p_click_is_the_list_marginal(context_tables: dict[str, pa.Table]) -> None:
    """Rebuild one list per request from the tables and recompute p_click from p_attract."""
    cfg = MarketplaceConfig(**LIST_CONTEXT)
    ev, tr = context_tables["events"], context_tables["truth"]
    imp = pc.equal(ev["event_type"], "impression")
    rows = ev.filter(imp).select(["request_id", "item_id", "position"]).to_pandas()
    rows["p_click"] = tr.filter(imp)["p_click"].to_numpy()
    rows["p_attract"] = tr.filter(imp)["p_attract"].to_numpy()
    brands = dict(zip(context_tables["items"]["item_id"].to_pylist(),
                      context_tables["items"]["brand"].to_pylist(), strict=True))
    codes = {b: i for i, b in enumerate(sorted(set(brands.values())))}
    for _, g in list(rows.groupby("request_id"))[:200]:
        g = g.sort_values("position")
        assert g["position"].tolist() == list(range(1, len(g) + 1))
        want = marginal_click_probs(
            g["p_attract"].to_numpy(), [codes[brands[i]] for i in g["item_id"]],
            strength=cfg.context_strength, continue_after_click=cfg.continue_after_click)
        np.testing.assert_allclose(g["p_click"].to_numpy(), want, rtol=1e-12)


def test_config_knobs_are_validated() -> None:
    for bad in (-0.1, 1.5, "0.3", True):
        with pytest.raises((ValueError, TypeError)):
            MarketplaceConfig(context_strength=bad)  # type: ignore[arg-type]
        with pytest.raises((ValueError, TypeError)):
            MarketplaceConfig(continue_after_click=bad)  # type: ignore[arg-type]


def test_cli_passes_the_knobs(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from funnel.cli import app

    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["generate", "--events", "3000", "--seed", "1", "--out",
                                   str(out), "--json", "--context-strength", "0.5",
                                   "--continue-after-click", "0.9"])
    assert res.exit_code == 0, res.output
    shown = json.loads(res.output)
    assert shown["context_strength"] == 0.5 and shown["continue_after_click"] == 0.9
    record = json.loads((out / "summary.json").read_text())
    assert record["config"]["context_strength"] == 0.5
    assert record["config"]["continue_after_click"] == 0.9
    res = CliRunner().invoke(app, ["generate", "--events", "3000", "--out", str(out),
                                   "--context-strength", "1.5"])
    assert res.exit_code != 0
