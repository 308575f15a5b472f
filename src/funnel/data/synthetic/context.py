"""The synthetic marketplace's click model with list context, and its exact expected clicks.

Users scan a result list top-down (the cascade of Craswell et al. 2008, with the satisfaction
stop of Chapelle & Zhang's 2009 DBN). At display position ``t`` (1-based), a user who is still
scanning clicks the item with probability

    c_t = exam(t) * attract_t * (1 - strength) ** n_same_t

where ``exam(t) = t ** -exam_power`` is the position bias, ``attract_t`` the item's context-free
attraction and ``n_same_t`` the number of items shown ABOVE it with the same brand: near-duplicate
offers of one brand cannibalize each other, so what else a list shows changes an item's clicks.
After a click the user goes on scanning with probability ``continue_after_click`` (else stops,
satisfied); without a click the user always goes on (``exam`` already models fading attention).

So ``reach_1 = 1``, ``reach_{t+1} = reach_t * (1 - c_t * (1 - continue_after_click))`` and the
true click probability of position ``t`` is ``reach_t * c_t``: the expected clicks of ANY ordering
of a logged list is a closed-form number, what a listwise re-ranker is evaluated by.

With ``strength = 0`` and ``continue_after_click = 1`` the model is the independent
position-based model ``exam(t) * attract_t``, bit for bit.
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "EXAM_POWER",
    "LIST_CONTEXT",
    "click_probs",
    "exam",
    "expected_clicks",
    "expected_clicks_many",
    "marginal_click_probs",
    "same_brand_above",
    "sample_clicks",
]

LIST_CONTEXT: Final = {"context_strength": 0.3, "continue_after_click": 0.7}
"""The list context the listwise re-ranking benchmark generates with (the generator's default
is off): a same-brand item above costs 30% of an item's click chance, 30% of clicks end the
scan. A moderate choice, not a published fit (none citable was found)."""

EXAM_POWER: Final = 0.75
"""Position bias: a user reaching position ``t`` examines it with probability ``t ** -0.75``."""


def exam(n_positions: int, exam_power: float = EXAM_POWER) -> NDArray[np.float64]:
    """``t ** -exam_power`` for display positions ``t = 1..n_positions`` (the position bias)."""
    return np.arange(1, n_positions + 1, dtype=np.float64) ** -exam_power


def _shown_mask(
    shape: tuple[int, ...], shown: ArrayLike | None, k: int | None
) -> NDArray[np.bool_]:
    mask = np.ones(shape, dtype=bool) if shown is None else np.asarray(shown, dtype=bool)
    if mask.shape != shape:
        raise ValueError(f"shown mask has shape {mask.shape}, expected {shape}")
    if k is not None:
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        mask = mask & (np.arange(shape[-1]) < k)
    return mask


def same_brand_above(brand: ArrayLike, shown: ArrayLike | None = None) -> NDArray[np.int64]:
    """Per position (last axis), how many SHOWN items above it carry the same brand.

    Brand ``-1`` (none) never matches, so unbranded items never cannibalize each other.
    """
    b = np.asarray(brand, dtype=np.int64)
    mask = _shown_mask(b.shape, shown, None)
    b = np.where(mask, b, -1)
    same = (b[..., :, None] == b[..., None, :]) & (b[..., None, :] >= 0)  # [.., t, s]
    above = np.tri(b.shape[-1], k=-1, dtype=bool)  # s < t
    return (same & above).sum(axis=-1).astype(np.int64)


def click_probs(
    attract: ArrayLike,
    brand: ArrayLike,
    *,
    strength: float,
    exam_power: float = EXAM_POWER,
    shown: ArrayLike | None = None,
) -> NDArray[np.float64]:
    """``c_t``: the click probability of each position for a user still scanning there.

    Order of operations matters: ``(exam * attract) * penalty`` keeps the off-switch
    (``strength = 0``, penalty exactly 1.0) bit-identical to ``exam * attract``.
    """
    a = np.asarray(attract, dtype=np.float64)
    n_same = same_brand_above(brand, shown)
    if n_same.shape != a.shape:
        raise ValueError(f"attract {a.shape} and brand {n_same.shape} differ in shape")
    return exam(a.shape[-1], exam_power) * a * (1.0 - strength) ** n_same


def marginal_click_probs(
    attract: ArrayLike,
    brand: ArrayLike,
    *,
    strength: float,
    continue_after_click: float,
    exam_power: float = EXAM_POWER,
    k: int | None = None,
    shown: ArrayLike | None = None,
) -> NDArray[np.float64]:
    """``reach_t * c_t`` per position: the true click probability of each impression in its list.

    Works on one list (1-D, display order) or many of one length (2-D, rows are lists);
    ``shown`` (same shape) or ``k`` (top k only) mark what was displayed, the displayed
    positions being a prefix of each row; positions not shown get 0 and change nothing.
    """
    a = np.asarray(attract, dtype=np.float64)
    mask = _shown_mask(a.shape, shown, k)
    c = np.where(mask, click_probs(a, brand, strength=strength, exam_power=exam_power,
                                   shown=mask), 0.0)
    stay = 1.0 - c * (1.0 - continue_after_click)
    reach = np.cumprod(stay, axis=-1)
    reach = np.concatenate([np.ones(a.shape[:-1] + (1,)), reach[..., :-1]], axis=-1)
    return np.asarray(reach * c, dtype=np.float64)


def expected_clicks(
    attract: ArrayLike,
    brand: ArrayLike,
    *,
    strength: float,
    continue_after_click: float,
    exam_power: float = EXAM_POWER,
    k: int | None = None,
) -> float:
    """Exact expected clicks of ONE list in display order (brand codes, -1 = none; top ``k``)."""
    a = np.asarray(attract, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"expected_clicks takes one list (1-D), got shape {a.shape}")
    return float(
        marginal_click_probs(a, brand, strength=strength, continue_after_click=continue_after_click,
                             exam_power=exam_power, k=k).sum()
    )


def expected_clicks_many(
    attract: ArrayLike,
    brand: ArrayLike,
    *,
    strength: float,
    continue_after_click: float,
    exam_power: float = EXAM_POWER,
    k: int | None = None,
    shown: ArrayLike | None = None,
) -> NDArray[np.float64]:
    """Exact expected clicks of each row of a (n_lists, length) matrix; pad rows with ``shown``
    False (or NaN attraction, which counts as not shown)."""
    a = np.asarray(attract, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"expected_clicks_many takes a 2-D matrix, got shape {a.shape}")
    mask = _shown_mask(a.shape, shown, None) & ~np.isnan(a)
    return marginal_click_probs(
        np.nan_to_num(a), brand, strength=strength, continue_after_click=continue_after_click,
        exam_power=exam_power, k=k, shown=mask,
    ).sum(axis=-1)


def sample_clicks(
    attract: ArrayLike,
    brand: ArrayLike,
    shown: ArrayLike,
    u: ArrayLike,
    *,
    strength: float,
    continue_after_click: float,
    exam_power: float = EXAM_POWER,
) -> tuple[NDArray[np.bool_], NDArray[np.float64]]:
    """Draw the clicks of (n_lists, length) lists; returns (clicked, marginal click probability).

    One uniform per position does both draws: click iff ``u < c_t``, and, given that click,
    keep scanning iff ``u < c_t * continue_after_click`` (``u / c_t`` is uniform given the
    click). So with ``strength = 0`` and ``continue_after_click = 1`` the clicks are exactly
    ``u < exam * attract``, the independent model, for the same uniforms.
    """
    a = np.asarray(attract, dtype=np.float64)
    uu = np.asarray(u, dtype=np.float64)
    mask = _shown_mask(a.shape, shown, None)
    if a.ndim != 2 or uu.shape != a.shape:
        raise ValueError(f"attract {a.shape} and u {uu.shape} must be equal 2-D shapes")
    c = np.where(mask, click_probs(a, brand, strength=strength, exam_power=exam_power,
                                   shown=mask), 0.0)
    clicked = np.zeros(a.shape, dtype=bool)
    scanning = np.ones(a.shape[0], dtype=bool)
    for t in range(a.shape[1]):
        hit = scanning & mask[:, t] & (uu[:, t] < c[:, t])
        clicked[:, t] = hit
        scanning &= ~hit | (uu[:, t] < c[:, t] * continue_after_click)
    p = marginal_click_probs(a, brand, strength=strength, continue_after_click=continue_after_click,
                             exam_power=exam_power, shown=mask)
    return clicked, p
