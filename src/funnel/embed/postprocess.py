"""Post-processing of trained item vectors: "all-but-the-top" (Mu & Viswanath, ICLR 2018).

Skip-gram vectors trained on a small click log share a common direction (every item drifts
along the first gradient signal; random-pair cosine 0.4-0.97 on the synthetic marketplace),
so cosine similarity mostly measures that shared direction and item popularity. Subtracting
the mean vector, optionally removing the top principal components, and renormalizing keeps
the relative geometry and drops the common part.
"""

from __future__ import annotations

import numpy as np


def all_but_the_top(vectors: np.ndarray, n_components: int = 0,
                    weights: np.ndarray | None = None) -> np.ndarray:
    """Unit rows of ``vectors`` minus their (optionally ``weights``-weighted) mean and minus
    their projection on the top ``n_components`` principal directions."""
    v = np.asarray(vectors, dtype=np.float64)
    if v.ndim != 2 or v.shape[0] < 2:
        raise ValueError(f"vectors: expected an (n >= 2, d) array, got shape {v.shape}")
    if not isinstance(n_components, int) or not 0 <= n_components < v.shape[1]:
        raise ValueError(
            f"n_components: expected an int in [0, {v.shape[1] - 1}], got {n_components!r}")
    w = None
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (v.shape[0],) or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"weights: expected {v.shape[0]} non-negative weights with a "
                             f"positive sum, got shape {w.shape}")
    centred = v - np.average(v, axis=0, weights=w)
    if n_components:
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        top = vt[:n_components]
        centred = centred - (centred @ top.T) @ top
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    return (centred / np.maximum(norms, 1e-12)).astype(np.float32)
