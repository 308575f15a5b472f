"""Metrics and calibration against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from funnel.exceptions import ConfigError, NotFittedError
from funnel.rank.calibration import (
    IsotonicCalibrator,
    PlattCalibrator,
    calibrator_from_dict,
    get_calibrator,
    reliability_bins,
    reliability_plot,
)
from funnel.rank.metrics import auc, ece, evaluate, group_auc, logloss, ndcg_at_k
from funnel.rank.scores import combined_score


def test_auc_by_hand() -> None:
    # pairs (pos, neg): (0.8>0.3) (0.8>0.5) (0.4>0.3) (0.4<0.5) -> 3/4
    assert auc([1, 0, 1, 0], [0.8, 0.3, 0.4, 0.5]) == 0.75
    assert auc([1, 0], [0.5, 0.5]) == 0.5  # a tie counts one half
    with pytest.raises(ValueError, match="both classes"):
        auc([1, 1], [0.2, 0.3])
    with pytest.raises(ValueError, match="same length"):
        auc([1, 0], [0.2])


def test_group_auc_weights_by_impressions_and_skips_one_class_groups() -> None:
    y = [1, 0, 1, 0, 0, 1, 1]
    p = [0.9, 0.1, 0.2, 0.6, 0.3, 0.5, 0.5]
    g = ["a", "a", "b", "b", "b", "c", "c"]
    # a: 1.0 (2 rows); b: pos 0.2 vs 0.6, 0.3 -> 0/2 = 0.0 (3 rows); c: one class, skipped
    assert group_auc(y, p, g) == pytest.approx((1.0 * 2 + 0.0 * 3) / 5)


def test_logloss_by_hand() -> None:
    assert logloss([1, 0], [0.8, 0.4]) == pytest.approx(-(np.log(0.8) + np.log(0.6)) / 2)


def test_ndcg_by_hand() -> None:
    # group x: ranking by p gives rels [0, 1, 1] -> dcg = 1/log2(3) + 1/log2(4)
    # ideal [1, 1, 0] -> 1 + 1/log2(3); group y has no relevant row and is skipped
    y = [1, 0, 1, 0, 0]
    p = [0.2, 0.9, 0.1, 0.3, 0.4]
    g = [1, 1, 1, 2, 2]
    expected = (1 / np.log2(3) + 1 / np.log2(4)) / (1 + 1 / np.log2(3))
    assert ndcg_at_k(y, p, g, k=10) == pytest.approx(expected)
    assert ndcg_at_k(y, p, g, k=1) == 0.0
    with pytest.raises(ValueError, match="k must be >= 1"):
        ndcg_at_k(y, p, g, k=0)


def test_ece_by_hand() -> None:
    # bin [0.1,0.2): p mean 0.15, y mean 0.5 (2 rows); bin [0.9,1): p 0.95, y 1 (2 rows)
    y = [0, 1, 1, 1]
    p = [0.1, 0.2 - 1e-9, 0.95, 0.95]
    expected = (abs(0.15 - 0.5) * 2 + abs(0.95 - 1.0) * 2) / 4
    assert ece(y, p, n_bins=10) == pytest.approx(expected, abs=1e-8)
    out = evaluate(np.array(y), np.array(p), groups=np.array([0, 0, 1, 1]))
    assert set(out) == {"auc", "logloss", "ece", "group_auc", "ndcg@10"}


def test_isotonic_is_monotone_and_fixes_a_distortion() -> None:
    rng = np.random.default_rng(0)
    true_p = rng.random(20000)
    y = (rng.random(20000) < true_p).astype(float)
    skewed = true_p**3  # a monotone but badly calibrated score
    cal = IsotonicCalibrator().fit(skewed, y)
    fixed = cal.predict(skewed)
    assert np.all(np.diff(cal.predict(np.linspace(0, 1, 50))) >= -1e-12)
    assert ece(y, fixed) < 0.02 < ece(y, skewed)
    again = calibrator_from_dict(cal.to_dict())
    np.testing.assert_array_equal(again.predict(skewed), fixed)


def test_isotonic_interpolates_between_block_centres_by_hand() -> None:
    # scores 0.1, 0.2 | 0.3, 0.4 with labels 0, 1 | 0, 1: PAV pools (0.2:1, 0.3:0) into one
    # block -> blocks {0.1: 0}, {0.2, 0.3: 0.5}, {0.4: 1} with centres 0.1, 0.25, 0.4
    cal = IsotonicCalibrator().fit(np.array([0.1, 0.2, 0.3, 0.4]), np.array([0, 1, 0, 1]))
    assert cal.x_ == pytest.approx([0.1, 0.25, 0.4]) and cal.y_ == pytest.approx([0, 0.5, 1])
    got = cal.predict(np.array([0.05, 0.2, 0.25, 0.3, 0.5]))
    want = np.array([0.0, 1 / 3, 0.5, 2 / 3, 1.0])  # interior linear; tails flat at 0 and 1
    raw = np.array([0.05, 0.2, 0.25, 0.3, 0.5])
    np.testing.assert_allclose(got, (1 - 1e-6) * want + 1e-6 * raw, atol=1e-12)
    assert np.all(np.diff(got) > 0)  # even the flat tails keep the raw order


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1), n=st.integers(2, 400),
    rate=st.floats(0.01, 0.9), calibrator=st.sampled_from(["isotonic", "platt"]),
)
def test_calibration_never_reorders_distinct_scores(seed, n, rate, calibrator) -> None:
    """Within a request, calibrated scores keep the raw order strictly (no new ties)."""
    rng = np.random.default_rng(seed)
    p_fit = rng.beta(1.0, 6.0, size=n).astype(np.float32).astype(np.float64)
    y_fit = (rng.random(n) < rate).astype(float)
    cal = get_calibrator(calibrator).fit(p_fit, y_fit)
    request = np.unique(rng.beta(1.0, 6.0, size=500).astype(np.float32)).astype(np.float64)
    out = cal.predict(request)
    assert np.all(np.diff(out) > 0), calibrator
    assert np.all((out >= 0) & (out <= 1))


def test_isotonic_keeps_order_and_calibrates_a_ranker_like_score() -> None:
    """Adjacent top-10 scores of a request never tie after calibration, and the ECE is as low
    as a step-function isotonic fit reaches (measured 0.0052 vs 0.0069 for the step fit on
    DeepFM scores of the marketplace; here on a distorted known-probability score)."""
    rng = np.random.default_rng(4)
    true_p = rng.beta(1.0, 9.0, size=60_000)
    y = (rng.random(len(true_p)) < true_p).astype(float)
    raw = np.sqrt(true_p)  # monotone, badly calibrated, all distinct
    cal = IsotonicCalibrator().fit(raw[:30_000], y[:30_000])
    out = cal.predict(raw[30_000:])
    for g in range(0, 30_000, 50):  # 600 "requests" of 50 candidates
        top = np.sort(out[g : g + 50])[::-1][:10]
        assert np.all(np.diff(top) < 0)
    assert np.array_equal(np.argsort(-out), np.argsort(-raw[30_000:]))
    assert ece(y[30_000:], out) < 0.01 < ece(y[30_000:], raw[30_000:])


def test_platt_recovers_known_coefficients() -> None:
    rng = np.random.default_rng(1)
    z = rng.normal(size=40000)
    p_model = 1 / (1 + np.exp(-z))
    y = (rng.random(40000) < 1 / (1 + np.exp(-(2.0 * z - 1.0)))).astype(float)
    cal = PlattCalibrator().fit(p_model, y)
    assert cal.a_ == pytest.approx(2.0, abs=0.1)
    assert cal.b_ == pytest.approx(-1.0, abs=0.1)
    again = calibrator_from_dict(cal.to_dict())
    np.testing.assert_array_equal(again.predict(p_model[:10]), cal.predict(p_model[:10]))


def test_calibrator_errors() -> None:
    with pytest.raises(NotFittedError):
        PlattCalibrator().predict(np.array([0.5]))
    with pytest.raises(ValueError, match="unknown calibrator 'beta'"):
        get_calibrator("beta")
    with pytest.raises(ConfigError, match="kind"):
        calibrator_from_dict({"kind": "platt", "a": 1.0})


def test_reliability_plot_is_a_png() -> None:
    p = np.array([0.1, 0.15, 0.8, 0.85])
    y = np.array([0, 0, 1, 1])
    mean_p, rate, count = reliability_bins(p, y, n_bins=2)
    assert mean_p.tolist() == pytest.approx([0.125, 0.825]) and rate.tolist() == [0, 1]
    assert count.tolist() == [2, 2]
    png = reliability_plot({"model": (p, y)})
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000


def test_combined_scores() -> None:
    ctr = np.array([0.1, 0.2])
    assert combined_score("pctr", ctr).tolist() == [0.1, 0.2]
    assert combined_score("pctr_pcvr", ctr, p_cvr=np.array([0.5, 0.1])) == pytest.approx(
        [0.05, 0.02]
    )
    assert combined_score("ecpm", ctr, bid=np.array([2.0, np.nan])) == pytest.approx([200.0, 0.0])
    with pytest.raises(ValueError, match="needs bid"):
        combined_score("ecpm", ctr)
    with pytest.raises(ValueError, match="kind must be one of"):
        combined_score("ctr", ctr)
