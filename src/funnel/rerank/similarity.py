"""Item-item similarity as a low-rank factor ``B`` with ``S = B B^T``, diag(S) = 1, S in [0, 1].

Both diversity methods need a similarity in [0, 1] with unit self-similarity (MMR compares
it with relevance in [0, 1]; DPP needs a PSD kernel). Keeping the factor instead of the
n x n matrix lets the greedy loops compute only the rows they visit: O(k n D), not O(n^2 D).

- embeddings: ``B = [v / |v|, 1] / sqrt(2)``, so ``S_ij = (1 + cos_ij) / 2`` (Chen et al. 2018);
- attributes: one-hot per attribute scaled by ``1/sqrt(m)``, so ``S_ij`` is the fraction of
  the ``m`` attributes on which ``i`` and ``j`` agree (an unknown value matches nothing);
- mixed: both factors side by side, weighted, so ``S`` is the weighted mean of the two.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from funnel.rerank.base import ItemFeatures

SIMILARITIES = ("auto", "embedding", "attributes", "mixed")
_HALF_SQRT = float(np.sqrt(0.5))


def embedding_factor(vectors: np.ndarray) -> np.ndarray:
    """``B`` with ``B B^T = (1 + cos) / 2``; zero vectors count as orthogonal to all."""
    v = np.asarray(vectors)
    n, d = v.shape
    out = np.empty((n, d + 1))
    norms = np.sqrt(np.einsum("ij,ij->i", v, v, dtype=np.float64))
    # a zero row stays zero: similarity 1/2 to everything
    scale = _HALF_SQRT / np.maximum(norms, 1e-12)
    np.multiply(v, scale[:, None], out=out[:, :d])
    out[:, d] = _HALF_SQRT
    return out


def attribute_factor(attributes: dict[str, Sequence[str | None]] | None,
                     names: Sequence[str], n: int) -> np.ndarray:
    """One-hot ``B`` with ``(B B^T)_ij`` = share of ``names`` on which ``i`` and ``j`` agree."""
    if not names:
        return np.eye(n)
    attrs = attributes or {}
    blocks: list[np.ndarray] = []
    for name in names:
        values = attrs.get(name)
        if values is None:
            raise ValueError(
                f"similarity needs attribute {name!r} but features.attributes has "
                f"{sorted(attrs)}; pass it or change the 'attributes' parameter"
            )
        codes: dict[str, int] = {}
        col = np.empty(n, dtype=np.int64)
        unknown = 0
        for i, value in enumerate(values):
            if value is None:
                col[i] = -1 - unknown  # each unknown its own value: matches only itself
                unknown += 1
            else:
                col[i] = codes.setdefault(str(value), len(codes))
        width = len(codes) + unknown
        block = np.zeros((n, width))
        idx = np.where(col >= 0, col, len(codes) + (-col - 1))
        block[np.arange(n), idx] = 1.0
        blocks.append(block)
    return np.hstack(blocks) / np.sqrt(len(names))


def missing_inputs(features: ItemFeatures, *, kind: str = "auto",
                   attributes: Sequence[str] = ("category", "brand")) -> str | None:
    """Why ``similarity_factor`` cannot run on ``features`` (None when it can)."""
    if kind == "auto":
        kind = "embedding" if features.vectors is not None else "attributes"
    if kind in ("embedding", "mixed") and features.vectors is None:
        return f"similarity={kind!r} needs item vectors and the list has none"
    if kind in ("attributes", "mixed"):
        absent = [a for a in attributes if a not in features.attributes]
        if absent:
            return f"similarity={kind!r} needs attribute(s) {absent} the list does not have"
    return None


def similarity_factor(features: ItemFeatures, n: int, *, kind: str = "auto",
                      attributes: Sequence[str] = ("category", "brand"),
                      embedding_weight: float = 0.5) -> np.ndarray:
    """The factor ``B`` (n, D) for similarity ``kind`` (see module docstring)."""
    if kind not in SIMILARITIES:
        raise ValueError(
            f"The 'similarity' parameter must be one of {list(SIMILARITIES)}. Got {kind!r}."
        )
    if kind == "auto":
        kind = "embedding" if features.vectors is not None else "attributes"
    if kind in ("embedding", "mixed") and features.vectors is None:
        raise ValueError(
            f"similarity={kind!r} needs features.vectors (item embeddings); got none"
        )
    if kind == "embedding":
        return embedding_factor(np.asarray(features.vectors))
    attr = attribute_factor(dict(features.attributes), list(attributes), n)
    if kind == "attributes":
        return attr
    emb = embedding_factor(np.asarray(features.vectors))
    w = float(embedding_weight)
    return np.hstack([np.sqrt(w) * emb, np.sqrt(1.0 - w) * attr])
