"""Combined ranking scores: pCTR, pCTR x pCVR (expected bookings), pCTR x bid (eCPM)."""

from __future__ import annotations

import numpy as np

SCORE_KINDS = ("pctr", "pctr_pcvr", "ecpm")


def combined_score(
    kind: str,
    p_ctr: np.ndarray,
    p_cvr: np.ndarray | None = None,
    bid: np.ndarray | None = None,
) -> np.ndarray:
    """The score to sort by. ``ecpm`` is ``1000 * pCTR * bid`` (items without bid score 0)."""
    p_ctr = np.asarray(p_ctr, dtype=np.float64)
    if kind == "pctr":
        return p_ctr
    if kind == "pctr_pcvr":
        if p_cvr is None:
            raise ValueError("kind 'pctr_pcvr' needs p_cvr (post-click conversion probabilities)")
        return p_ctr * np.asarray(p_cvr, dtype=np.float64)
    if kind == "ecpm":
        if bid is None:
            raise ValueError("kind 'ecpm' needs bid (one bid per candidate)")
        b = np.nan_to_num(np.asarray(bid, dtype=np.float64), nan=0.0)
        return 1000.0 * p_ctr * b
    raise ValueError(f"kind must be one of {SCORE_KINDS}; got {kind!r}")
