"""Merchandising rules and sponsored-slot admission."""

from __future__ import annotations

import numpy as np
import pytest

from funnel.exceptions import ConfigError
from funnel.rerank.slots import MerchRule, apply_merch, plan_sponsored


def test_boost_bury_pin_by_hand() -> None:
    ids = ["a", "b", "c", "d"]
    scores = np.array([4.0, 3.0, 2.0, 0.0])  # spread 4
    attrs = {"brand": ["X", "Y", "Y", "Z"]}
    rules = [MerchRule("boost", item_id="c", amount=0.5),
             MerchRule("bury", attribute="brand", value="X"),
             MerchRule("pin", item_id="d", position=0)]
    out = apply_merch(ids, scores, attrs, rules)
    np.testing.assert_allclose(out.scores, [4.0, 3.0, 4.0, 0.0])  # c: 2 + 0.5 * 4
    assert out.buried.tolist() == [True, False, False, False]
    assert out.pins == {0: 3}
    assert out.notes == ()


def test_pin_missing_item_and_conflicts_are_noted() -> None:
    out = apply_merch(["a", "b"], np.array([1.0, 0.0]), {},
                      [MerchRule("pin", item_id="zz", position=1),
                       MerchRule("pin", item_id="a", position=0),
                       MerchRule("pin", item_id="b", position=0)])
    assert out.pins == {0: 0}
    assert out.notes == ("pin zz@1: not among the candidates",
                         "pin b@0: position or item already pinned")


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ({"action": "promote", "item_id": "a"}, "action must be one of"),
        ({"action": "pin", "item_id": "a"}, "needs position >= 0"),
        ({"action": "bury"}, "set either item_id, or both attribute and value"),
        ({"action": "bury", "attribute": "brand"}, "both attribute and value"),
        ({"action": "boost", "item_id": "a", "amount": -1.0}, "amount must be > 0"),
        ({"action": "bury", "item_id": "a", "weight": 2}, r"unknown key\(s\) weight"),
    ],
)
def test_merch_rule_errors(raw: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        MerchRule.from_dict(raw)


def test_sponsored_admitted_above_floor_in_ecpm_order() -> None:
    plan = plan_sponsored(["s1", "s2", "s3", "s4"], [0.05, 0.30, 0.12, 0.20],
                          positions=[2, 0, 9], floor=0.10, k=5, taken=[2])
    # slots < k and not taken: [0]; best eCPM admitted: s2; s1 refused (below floor)
    assert plan.placed == {0: "s2"}
    assert plan.below_floor == ("s1",)
    assert set(plan.ecpm) == {"s2", "s4", "s3"}


def test_sponsored_errors() -> None:
    with pytest.raises(ValueError, match=r"one value per sponsored id \(2\); got shape \(1,\)"):
        plan_sponsored(["a", "b"], [1.0], [0], floor=0, k=3)
    with pytest.raises(ValueError, match="unique"):
        plan_sponsored(["a", "a"], [1.0, 2.0], [0], floor=0, k=3)
