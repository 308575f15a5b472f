"""Registry of ranker families, keyed by the names configs use (STYLE P8)."""

from __future__ import annotations

from funnel.rank.base import Ranker
from funnel.rank.din import DINRanker
from funnel.rank.forest import RandomForestRanker
from funnel.rank.gbdt import GBDTRanker, LambdaMARTRanker
from funnel.rank.torch_ranker import (
    DCNv2Ranker,
    DeepFMRanker,
    FFMRanker,
    FMRanker,
    LRRanker,
    WideDeepRanker,
)

RANKERS: dict[str, type[Ranker]] = {
    "lr": LRRanker,
    "fm": FMRanker,
    "ffm": FFMRanker,
    "widedeep": WideDeepRanker,
    "deepfm": DeepFMRanker,
    "dcnv2": DCNv2Ranker,
    "gbdt": GBDTRanker,
    "lambdamart": LambdaMARTRanker,
    "rf": RandomForestRanker,
    "din": DINRanker,
}


def get_ranker(name: str) -> type[Ranker]:
    """The ranker class registered as ``name``; ``ValueError`` lists the valid names."""
    if name not in RANKERS:
        raise ValueError(f"unknown ranker {name!r}; expected one of {', '.join(sorted(RANKERS))}")
    return RANKERS[name]
