"""The frozen config every CTR network is built from (shape only: no optimizer, no paths)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NetworkConfig:
    num_features: int
    num_fields: int
    slot_fields: tuple[int, ...]
    """Field of each input slot (length M); a sequence feature owns several slots."""
    embedding_dim: int = 8
    hidden_units: tuple[int, ...] = (64, 32)
    dropout: float = 0.0
    num_cross_layers: int = 2
    fm_fields: tuple[int, ...] = ()
    """Fields in the FM pairwise term (empty = all). Numeric fields are left out by default,
    as in DeepCTR: a standardized value scales its embedding, so one outlier inflates every
    pair it is in; they still enter the linear term (and DeepFM's MLP)."""
