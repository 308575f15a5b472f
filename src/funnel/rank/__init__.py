"""CTR/CVR and learning-to-rank models, calibration and combined scores."""

from funnel.rank.base import Ranker, RankingData, fix_position, undo_negative_sampling
from funnel.rank.registry import RANKERS, get_ranker

__all__ = [
    "RANKERS",
    "Ranker",
    "RankingData",
    "fix_position",
    "get_ranker",
    "undo_negative_sampling",
]
