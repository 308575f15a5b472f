"""Rare-prefix completions, session context, the learned order and its LightGBM-free scoring."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from funnel.suggest.autocomplete import AutoCompleter, IndexData, OrderExample
from funnel.suggest.context import SessionContext
from funnel.suggest.evaluate import MostPopularCompletion, completion_metrics
from funnel.suggest.learned_order import LearnedOrder
from funnel.suggest.lm import NgramLM
from funnel.suggest.rare import SuffixCompleter

TINY = (["tokyo cheap hotel"] * 4 + ["paris cheap hotel"] * 3 + ["rome cheap hotel"] * 3
        + ["rome luxury villa"] * 3 + ["berlin"] * 5 + ["tokyo"] * 6 + ["cheap flights"] * 2)


def test_rare_prefix_absent_from_log_gets_a_completion_built_from_suffixes() -> None:
    lines = list(TINY)
    ac = AutoCompleter(suffix_min_count=3).fit_index(IndexData.from_lines(lines, min_count=2))
    assert not any(q.startswith("berlin c") for q in lines)  # no logged completion at all
    got, _ = ac.complete("berlin cheap ho", 5)
    assert got[0] == "berlin cheap hotel"
    got, _ = ac.complete("berlin ch", 5)
    assert "berlin cheap hotel" in got
    # only suffixes ending >= 3 searches: "cheap flights" (2) is never glued onto "berlin"
    assert "berlin cheap flights" not in got
    # every built completion ends in a logged suffix
    table = SuffixCompleter(min_count=3).fit(lines, np.ones(len(lines)))
    for cand, count, _ in table.candidates("berlin ch"):
        assert count >= 3 and cand.startswith("berlin ")


def test_lm_prefers_logged_word_order_and_rejects_implausible_builds() -> None:
    lm = NgramLM().fit(TINY)
    total, n = lm.score(["tokyo cheap hotel", "hotel cheap tokyo", "villa cheap berlin"])
    avg = total / n
    assert avg[0] > avg[1] and avg[0] > avg[2]
    ac = AutoCompleter(suffix_min_count=3, plausible_quantile=0.0).fit_index(
        IndexData.from_lines(list(TINY), min_count=2))
    for prefix in ("berlin cheap ho", "tokyo lu", "paris ch"):
        got, _ = ac.complete(prefix, 5)
        _, ntok = ac.sources_.lm.score(got)
        assert np.all(ac.sources_.lm.score(got)[0] / ntok >= ac.sources_.lm_floor - 1e-9)


def test_built_completion_never_joins_words_that_exclude_each_other() -> None:
    lines, _ = _planted_log(3000, 3)
    ac = AutoCompleter().fit_index(IndexData.from_lines(lines))
    for prefix in ("paris lo", "rome l", "lyon ro", "berlin lisb"):
        got, _ = ac.complete(prefix, 10)
        city = prefix.split()[0]
        # two cities never share a query in this log: none is glued after another
        assert all(sum(w in _CITIES for w in q.split()) == 1 for q in got), got
        assert all(q.startswith(city) for q in got)
    assert ac.sources_.lm.clashes(["paris london", "paris loft"], 1).tolist() == [True, False]


_CITIES = {"paris", "london", "lisbon", "rome", "berlin", "lyon"}


def _planted_log(n: int, seed: int) -> tuple[list[str], list[OrderExample]]:
    """Searches in sessions: a city, then often the city plus a stay type."""
    rng = np.random.default_rng(seed)
    cities = ["paris", "london", "lisbon", "rome", "berlin", "lyon"]
    stays = ["loft", "hotel", "studio", "villa", "hostel", "lodge"]
    pop = np.array([6, 5, 3, 3, 2, 1], float)
    lines: list[str] = []
    examples: list[OrderExample] = []
    while len(lines) < n:
        city = cities[int(rng.choice(6, p=pop / pop.sum()))]
        lines.append(city)
        examples.append(OrderExample(city, SessionContext()))
        if rng.random() < 0.7:
            q = f"{city} {stays[int(rng.integers(0, 6))]}"
            lines.append(q)
            examples.append(OrderExample(q, SessionContext(previous_query=city)))
    return lines, examples


def test_context_previous_query_paris_lo_gets_paris_loft_first() -> None:
    lines, examples = _planted_log(4000, 0)
    lines += ["london"] * 300  # "london" is by far the most popular "lo" completion
    order = LearnedOrder(n_estimators=60, min_child_samples=5)
    ac = AutoCompleter(order=order).fit(lines, examples[-1500:])
    assert ac.order_ is not None
    got, _ = ac.complete("lo", 5, context=SessionContext(previous_query="paris"))
    assert got[0] == "paris loft"
    assert ac.complete("lo", 5)[0][0] == "london"


def test_learned_order_not_below_mpc_on_the_training_logs_own_prefixes() -> None:
    lines, examples = _planted_log(6000, 1)
    ac = AutoCompleter(order=LearnedOrder(n_estimators=60)).fit(lines, examples[-2000:])
    counts = Counter(lines)
    mpc = MostPopularCompletion().fit(list(counts), list(counts.values()))
    tests = lines[:: max(len(lines) // 400, 1)]
    ctx = examples[:: max(len(lines) // 400, 1)]
    ours = completion_metrics(
        lambda p, k, t: ac.complete(p, k, context=ctx[t].context, normalize=False)[0], tests)
    base = completion_metrics(lambda p, k, t: mpc.complete(p, k), tests)
    assert ours["mrr"] >= base["mrr"]
    assert ours["success@10"] >= base["success@10"]


def test_numba_tree_scores_equal_lightgbm_predict() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 6))
    x[:, 2] = rng.integers(0, 3, 3000)  # ties on thresholds
    y = (x[:, 0] + 0.5 * x[:, 2] + rng.normal(0, 0.5, 3000) > 1.0).astype(float)
    group = np.full(300, 10)
    order = LearnedOrder(n_estimators=40, num_leaves=7).fit(x, y, group, list("abcdef"))
    fixed = rng.normal(size=(500, 6))
    fixed[:, 2] = rng.integers(0, 3, 500)
    np.testing.assert_array_equal(order.predict(fixed), order.predict_lightgbm(fixed))


def test_save_load_round_trip_exact(tmp_path: Path) -> None:
    lines, examples = _planted_log(3000, 2)
    ac = AutoCompleter(order=LearnedOrder(n_estimators=30)).fit(lines, examples[-1000:])
    ac.save(tmp_path / "ac")
    back = AutoCompleter.load(tmp_path / "ac")
    assert (back.order_ is None) == (ac.order_ is None)
    for prefix, prev in (("l", ""), ("lo", "paris"), ("paris l", ""), ("rome h", "rome"),
                         ("lyon vi", ""), ("zz", "")):
        ctx = SessionContext(previous_query=prev)
        a, sa = ac.complete(prefix, 8, context=ctx)
        b, sb = back.complete(prefix, 8, context=ctx)
        assert a == b
        np.testing.assert_array_equal(sa, sb)


def test_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match="suffix_min_count"):
        AutoCompleter(suffix_min_count=0).fit_index(IndexData.from_lines(["a b"]))
    ac = AutoCompleter().fit_index(IndexData.from_lines(list(TINY)))
    with pytest.raises(ValueError, match="k must be"):
        ac.complete("to", 99)
    with pytest.raises(TypeError, match="prefix"):
        ac.complete(3, 5)  # type: ignore[arg-type]
