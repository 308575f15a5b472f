"""Query-item match features: hand-computed values, typos, CJK, browse requests."""

from __future__ import annotations

import numpy as np
import pytest

from funnel.features.query_match import QUERY_MATCH_FEATURES, query_match_features, terms


def one(query, title, category="loft", brand="Aurora Inn", market="paris"):
    out = query_match_features([query], [title], [category], [brand], [market])
    return {k: float(v[0]) for k, v in out.items()}


def test_hand_computed_values():
    f = one("Paris LOFT pool", "Aurora Inn cozy loft near old town 舒适 阁楼")
    # 'paris' (market) and 'loft' (title/category) match, 'pool' does not: 2 of 3
    assert f["qm_term_share"] == pytest.approx(2 / 3)
    assert f["qm_category"] == 1.0 and f["qm_market"] == 1.0 and f["qm_brand"] == 0.0
    assert f["qm_has_query"] == 1.0
    assert one("aurora inn", "x")["qm_brand"] == 1.0


def test_typos_count_only_as_fuzzy_matches():
    f = one("parsi cabni", "cozy cabin")
    assert f["qm_term_share"] == 0.0
    assert f["qm_fuzzy_share"] == 1.0  # 'parsi'~'paris', 'cabni'~'cabin': one edit each
    # the shared typo rule (funnel.text): one edit, so 'hiltn' is 'hilton' (a character-trigram
    # overlap missed it) but two edits are not a typo
    assert one("hiltn", "Hilton Opera")["qm_fuzzy_share"] == 1.0
    assert one("hlitno", "Hilton Opera")["qm_fuzzy_share"] == 0.0
    # plurals are the analyzer's stem on both sides: an exact match, not a typo
    assert one("lofts", "cozy loft")["qm_term_share"] == 1.0
    typing = one("cozy par", "cozy loft")
    assert typing["qm_term_share"] == 0.5 and typing["qm_fuzzy_share"] == 1.0  # 'par' -> 'paris'
    assert one("pa", "cozy loft")["qm_fuzzy_share"] == 0.0  # two letters say too little


def test_cjk_and_full_width_are_folded():
    f = one("巴黎　阁楼", "Aurora Inn cozy loft 舒适 阁楼 巴黎")  # ideographic space
    assert f["qm_term_share"] == 1.0
    assert terms("ＬＯＦＴ") == frozenset({"loft"})


def test_browse_requests_are_all_zero_and_columns_align():
    out = query_match_features(["", None, "villa"], ["a villa"] * 3, ["villa"] * 3,
                               [None] * 3, [None] * 3)
    assert set(out) == set(QUERY_MATCH_FEATURES)
    assert np.array_equal(out["qm_has_query"], [0, 0, 1])
    assert np.array_equal(out["qm_category"], [0, 0, 1])
    assert all(v.dtype == np.float32 and len(v) == 3 for v in out.values())
