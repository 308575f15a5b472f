"""Reusable, shape-documented CTR building blocks (STYLE P9)."""

from funnel.rank.layers.attention import TargetAttention
from funnel.rank.layers.blocks import MLP, LinearTerm
from funnel.rank.layers.embeddings import FieldAwareEmbedding, FieldEmbedding
from funnel.rank.layers.interactions import CrossNetV2, FieldAwareInteraction, FMInteraction

__all__ = [
    "MLP",
    "CrossNetV2",
    "FMInteraction",
    "FieldAwareEmbedding",
    "FieldAwareInteraction",
    "FieldEmbedding",
    "LinearTerm",
    "TargetAttention",
]
