"""Scatter rules: hand-worked cases and a property test that the rules hold on every output."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from funnel.rerank.scatter import ScatterError, ScatterRule, find_violations, scatter


def test_hand_worked_brand_rule() -> None:
    # brands A A A B C B, at most 1 A per 2 positions -> A B A C A? only 3 A's and 3 others
    brands = {"brand": ["A", "A", "A", "B", "C", "B"]}
    rows, report = scatter(range(6), brands, [ScatterRule("brand", 1, 2)], k=6)
    # pos0 A(0); pos1 first non-A is B(3); pos2 A(1); pos3 C(4); pos4 A(2); pos5 B(5)
    assert rows.tolist() == [0, 3, 1, 4, 2, 5]
    assert report.satisfied
    assert report.moved == 4  # positions 1..4 changed; 0 and 5 kept their item
    assert report.pulled_in == 0


def test_compliant_input_is_unchanged() -> None:
    values = {"brand": ["A", "B", "A", "B"], "seller": ["s", "t", "u", "s"]}
    rules = [ScatterRule("brand", 1, 2), ScatterRule("seller", 1, 3)]
    rows, report = scatter([0, 1, 2, 3], values, rules, k=4)
    assert rows.tolist() == [0, 1, 2, 3]
    assert report.satisfied and report.moved == 0 and report.ndcg_vs_input == 1.0


def test_pulls_in_items_beyond_k() -> None:
    values = {"category": ["x", "x", "x", "y"]}
    rows, report = scatter(range(4), values, [ScatterRule("category", 1, 3)], k=2)
    assert rows.tolist() == [0, 3]
    assert report.pulled_in == 1
    # rank-based gains: (1 + 1/4 / log2 3) / (1 + 1/2 / log2 3)
    want = (1 + 0.25 / np.log2(3)) / (1 + 0.5 / np.log2(3))
    assert report.ndcg_vs_input == pytest.approx(want)


def test_unsatisfiable_rule_is_reported() -> None:
    values = {"brand": ["A", "A", "A", "B"]}
    rule = ScatterRule("brand", 1, 2)
    rows, report = scatter(range(4), values, [rule], k=4)
    # A B A then only A is left: placed anyway, reported at position 3
    assert rows.tolist() == [0, 3, 1, 2]
    assert not report.satisfied
    (v,) = report.violations
    assert (v.position, v.row, v.value, v.rule) == (3, 2, "A", rule)
    assert "position 3: brand: at most 1 per 2 positions broken by brand='A'" in report.summary()
    with pytest.raises(ScatterError, match="1 scatter rule violation") as err:
        scatter(range(4), values, [rule], k=4, on_violation="raise")
    assert err.value.report.violations == report.violations


def test_fixed_items_count_in_windows() -> None:
    values = {"brand": ["A", "A", "B", "C", "A"]}
    # row 4 (brand A) is pinned at position 1: positions 0 and 2 must avoid A
    rows, report = scatter([0, 1, 2, 3], values, [ScatterRule("brand", 1, 2)], k=4,
                           fixed={1: 4})
    assert rows.tolist() == [2, 4, 3, 0]
    assert report.satisfied


def test_two_fixed_items_conflict_reported() -> None:
    values = {"brand": ["A", "A", "B"]}
    rows, report = scatter([2], values, [ScatterRule("brand", 1, 2)], k=3, fixed={0: 0, 1: 1})
    assert rows.tolist() == [0, 1, 2]
    assert [v.position for v in report.violations] == [0]
    assert "fixed item" in report.violations[0].reason


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="ScatterRule.window must be an int >= 1; got 0"):
        ScatterRule("brand", 1, 0)
    with pytest.raises(ValueError, match="'on_violation' parameter must be one of"):
        scatter([0], {"brand": ["a"]}, [], k=1, on_violation="ignore")


alphabet = st.sampled_from(["a", "b", "c", None])


@st.composite
def scatter_cases(draw: st.DrawFn):
    n = draw(st.integers(1, 25))
    brands = draw(st.lists(alphabet, min_size=n, max_size=n))
    sellers = draw(st.lists(st.sampled_from(["s", "t"]), min_size=n, max_size=n))
    rules = draw(st.lists(st.builds(ScatterRule, st.sampled_from(["brand", "seller"]),
                                    st.integers(1, 3), st.integers(1, 5)), max_size=3))
    k = draw(st.integers(1, 30))
    order = draw(st.permutations(list(range(n))))
    n_fixed = draw(st.integers(0, min(2, n)))
    fixed_rows = order[:n_fixed]
    positions = draw(st.lists(st.integers(0, 8), min_size=n_fixed, max_size=n_fixed,
                              unique=True))
    return {"brand": brands, "seller": sellers}, rules, k, order, dict(
        zip(positions, fixed_rows, strict=True))


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(scatter_cases())
def test_rules_hold_on_every_output_or_are_reported(case) -> None:
    values, rules, k, order, fixed = case
    rows, report = scatter(order, values, rules, k, fixed=fixed)
    shown_fixed = {p: r for p, r in fixed.items() if p < k}
    assert len(rows) == min(k, len(order) - len(fixed) + len(shown_fixed))
    assert len(set(rows.tolist())) == len(rows)  # no item twice
    for pos, row in shown_fixed.items():
        assert row in rows.tolist()
        if len(rows) == k:
            assert rows[pos] == row  # in place (a short list moves them up to its end)
    assert not set(rows.tolist()) & {r for p, r in fixed.items() if p >= k}
    found = find_violations(rows, values, rules)
    # the independent checker agrees with the report: satisfied <=> no window over its limit
    assert report.satisfied == (not found)
    if not fixed and not find_violations(order[:k], values, rules):
        assert rows.tolist() == order[:k]  # a compliant input is kept as it is
