"""Re-ranking: shape the ranked list as a whole (diversity, scatter rules, slots)."""

from funnel.rerank.base import ItemFeatures, Reranker
from funnel.rerank.dpp import DPPReranker, dpp_greedy, dpp_greedy_lowrank
from funnel.rerank.mmr import MMRReranker, RelevanceReranker, mmr_greedy, mmr_greedy_lowrank

__all__ = [
    "DPPReranker",
    "ItemFeatures",
    "MMRReranker",
    "RelevanceReranker",
    "Reranker",
    "dpp_greedy",
    "dpp_greedy_lowrank",
    "mmr_greedy",
    "mmr_greedy_lowrank",
]
