"""Paired intervals clustered by user, and the synthetic personalization ceiling."""

from __future__ import annotations

import math
from types import SimpleNamespace

import duckdb
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from funnel.evaluate.metrics import clustered_mean_ci, mean_ci
from funnel.evaluate.oracle import (
    PersonalTerms,
    generator_config,
    history_terms,
    impression_ceiling,
)
from funnel.evaluate.run import _ceiling_share

from .conftest import Evaluated


def test_clustered_interval_by_hand() -> None:
    # users a: [1, 3], b: [5]; mean 3; cluster sums of deviations: a = -2 + 0 = -2, b = 2
    mean, half = clustered_mean_ci([1.0, 3.0, 5.0], ["a", "a", "b"])
    assert mean == pytest.approx(3.0)
    assert half == pytest.approx(1.96 * math.sqrt(2 / 1 * (4 + 4)) / 3)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-1, 1, allow_nan=False), min_size=2, max_size=40))
def test_one_case_per_user_is_the_plain_interval(values: list[float]) -> None:
    users = [f"u{i}" for i in range(len(values))]
    got, want = clustered_mean_ci(values, users), mean_ci(values)
    assert got[0] == pytest.approx(want[0])
    assert got[1] == pytest.approx(want[1], abs=1e-12)


def test_clustering_widens_the_interval_of_correlated_cases() -> None:
    rng = np.random.default_rng(0)
    user_effect = np.repeat(rng.normal(size=50), 10)  # 10 cases per user share an effect
    values = user_effect + 0.1 * rng.normal(size=500)
    users = np.repeat([f"u{i}" for i in range(50)], 10).tolist()
    assert clustered_mean_ci(values, users)[1] > 2.5 * mean_ci(values)[1]


def test_clustered_interval_rejects_mismatched_labels() -> None:
    with pytest.raises(ValueError, match="clusters: expected 3 labels"):
        clustered_mean_ci([1.0, 2.0, 3.0], ["a"])
    assert math.isnan(clustered_mean_ci([1.0, 2.0], ["a", "a"])[1])


@pytest.fixture(scope="module")
def terms(evaluated: Evaluated) -> PersonalTerms:
    config = generator_config(evaluated.ws)
    assert config is not None and config.n_events == 12_000 and config.seed == 5
    return PersonalTerms(config)


def test_personal_term_is_the_generators(terms: PersonalTerms, evaluated: Evaluated) -> None:
    from funnel.data.synthetic import latent_state

    state = latent_state(generator_config(evaluated.ws))
    want = 3.0 * float(state["item_vectors"][7] @ state["user_personal"][2])
    got = terms(str(state["user_ids"][2]), [str(state["item_ids"][7]), "no-such-item"])
    assert got[0] == pytest.approx(want, rel=1e-6)
    assert got[1] == 0.0
    assert terms("no-such-user", [str(state["item_ids"][7])]).tolist() == [0.0]


def test_impression_ceiling_removes_exactly_the_personal_term(terms: PersonalTerms) -> None:
    # two requests of one user, true logit = -0.5 * term + term (one position, exam factor 1),
    # clicks on the best item: the truth orders them right, without the term exactly wrong
    user = next(iter(terms.users))
    items = list(terms.items)[:6]
    pers = terms(user, items)
    order = np.argsort(-pers)
    reqs, truth, y, group = [], [], [], []
    for g, chunk in enumerate((order[:3], order[3:])):
        ids = [items[i] for i in chunk]
        imps = tuple((item, 1, None) for item in ids)  # one position: exam factor 1
        reqs.append(SimpleNamespace(user_id=user, impressions=imps))
        truth.extend(1 / (1 + np.exp(-0.5 * pers[chunk])))
        y.extend([1.0, 0.0, 0.0])
        group.extend([g] * 3)
    preds = {"p_true": np.array(truth), "y": np.array(y), "group": np.array(group)}
    out = impression_ceiling(terms, preds, reqs)
    assert out["oracle.bayes.group_auc"] == pytest.approx(1.0)
    assert out["oracle.no_personal.group_auc"] == pytest.approx(0.0)
    assert out["oracle.personal_gain.group_auc"] == pytest.approx(1.0)


def test_ceiling_share() -> None:
    figures = {"rank.group_auc": 0.75, "rank.no_personalization.group_auc": 0.74,
               "oracle.personal_gain.group_auc": 0.04}
    out = _ceiling_share(figures)
    assert out["rank.personal_gain.group_auc"] == pytest.approx(0.01)
    assert out["rank.personal_gain.share_of_ceiling"] == pytest.approx(0.25)
    assert "rank.personal_gain.share_of_history_bound" not in out
    out = _ceiling_share({**figures, "oracle.history_bound.group_auc": 0.02})
    assert out["oracle.history_bound.share_of_ceiling"] == pytest.approx(0.5)
    assert out["rank.personal_gain.share_of_history_bound"] == pytest.approx(0.5)
    assert _ceiling_share({"rank.group_auc": 0.7}) == {}


def test_report_states_the_ceiling_and_clustered_gains(evaluated: Evaluated) -> None:
    f = evaluated.result.figures
    assert 0.5 < f["oracle.no_personal.group_auc"] < f["oracle.bayes.group_auc"]
    assert f["oracle.personal_gain.group_auc"] > 0.01
    for kind in ("search", "booking"):
        key = f"gain.funnel_vs_no_personalization.{kind}.ndcg@10"
        assert f[f"{key}.ci95"] > 0 and f[f"{key}.ci95_cases"] > 0
        assert 0.0 <= f[f"{key}.changed"] <= 1.0
    html = evaluated.out.joinpath("report.html").read_text()
    assert 'id="ceiling"' in html and "clustered by user" in html


def test_no_ceiling_without_a_generator_config(evaluated: Evaluated, tmp_path) -> None:
    ws = SimpleNamespace(raw_dir=tmp_path)
    assert generator_config(ws) is None  # type: ignore[arg-type]
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "summary.json").write_text('{"counts": {}}')
    assert generator_config(ws) is None  # type: ignore[arg-type]


def test_feature_skew_is_measured_before_and_after_the_split(evaluated: Evaluated) -> None:
    f = evaluated.result.figures
    assert f["skew.train.requests"] > 10 and f["skew.held_out.requests"] > 10
    drops = [k for k in f if k.endswith(".group_auc_drop")]
    assert "skew.emb_click_sim.group_auc_drop" in drops
    for key in drops:
        name = key[len("skew."):-len(".group_auc_drop")]
        train, held = f[f"skew.train.{name}.group_auc"], f[f"skew.held_out.{name}.group_auc"]
        assert 0.0 <= train <= 1.0 and 0.0 <= held <= 1.0
        assert f[key] == pytest.approx(train - held)
    assert 'id="skew"' in evaluated.out.joinpath("report.html").read_text()


def _history_store(terms: PersonalTerms, user: str, earlier: list[tuple[str, int, float, bool]],
                   later: list[str]) -> duckdb.DuckDBPyConnection:
    """An in-memory store: ``earlier`` impressions (item, position, true p, clicked) in
    request r1, then ``later`` items shown in request r2 (true p 0.1, not clicked)."""
    rows, truth = [], []
    for j, (item, pos, p, clicked) in enumerate(earlier):
        rows.append((f"e{j}", 1_000, user, "impression", item, "r1", pos))
        truth.append((f"e{j}", p))
        if clicked:
            rows.append((f"c{j}", 2_000, user, "click", item, "r1", pos))
    for j, item in enumerate(later):
        rows.append((f"l{j}", 9_000, user, "impression", item, "r2", j + 1))
        truth.append((f"l{j}", 0.1))
    con = duckdb.connect()
    con.execute("CREATE TABLE events (event_id VARCHAR, ts TIMESTAMP, user_id VARCHAR, "
                "event_type VARCHAR, item_id VARCHAR, request_id VARCHAR, position INTEGER)")
    con.executemany("INSERT INTO events VALUES (?, make_timestamp(? * 1000), ?, ?, ?, ?, ?)",
                    rows)
    con.execute("CREATE TABLE truth (event_id VARCHAR, p_click DOUBLE)")
    con.executemany("INSERT INTO truth VALUES (?, ?)", truth)
    return con


def test_history_terms_after_one_click_by_hand(terms: PersonalTerms) -> None:
    user = next(iter(terms.users))
    a, b = list(terms.items)[:2]
    p = 0.3
    con = _history_store(terms, user, [(a, 1, p, True)], [a, b])
    case = SimpleNamespace(user_id=user, request_id="r2", impressions=((a, 1, 0.1), (b, 2, 0.1)))
    got = history_terms(con, terms, [case])
    # position 1: exam 1, so p0 = s0 = sigmoid(logit(p) - personal(a)), slope s0 (1 - s0),
    # information s0 (1 - s0), residual (1 - s0); one rank-one update of the prior precision
    # (Sherman-Morrison): theta = (1 - s0) / (lam + s0 (1 - s0) |x|^2) x
    x = terms.item_vectors[terms.items[a]]
    s0 = 1 / (1 + np.exp(-(np.log(p / (1 - p)) - terms(user, [a])[0])))
    lam = 1 / (terms.weight * terms.prior_sd) ** 2
    theta = (1 - s0) / (lam + s0 * (1 - s0) * (x @ x)) * x
    assert got[("r2", 1)] == pytest.approx(float(x @ theta), rel=1e-6)
    assert got[("r2", 2)] == pytest.approx(float(terms.item_vectors[terms.items[b]] @ theta),
                                           rel=1e-6)
    # no earlier impression: the prior mean, 0
    first = history_terms(_history_store(terms, user, [], [a]), terms,
                          [SimpleNamespace(user_id=user, request_id="r2",
                                           impressions=((a, 1, 0.1),))])
    assert first == {("r2", 1): 0.0}


def test_history_bound_sits_between_nothing_and_the_ceiling(evaluated: Evaluated) -> None:
    f = evaluated.result.figures
    assert 0.0 < f["oracle.history_bound.group_auc"] < f["oracle.personal_gain.group_auc"]
    assert f["oracle.history_bound.share_of_ceiling"] == pytest.approx(
        f["oracle.history_bound.group_auc"] / f["oracle.personal_gain.group_auc"])
    assert "rank.personal_gain.share_of_history_bound" in f
