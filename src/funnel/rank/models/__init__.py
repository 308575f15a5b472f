"""CTR networks: short compositions of ``rank.layers`` (STYLE P9), keyed by registry name."""

from torch import nn

from funnel.rank.models.config import NetworkConfig
from funnel.rank.models.dcnv2 import DCNv2Network
from funnel.rank.models.deepfm import DeepFMNetwork
from funnel.rank.models.din import DINConfig, DINNetwork
from funnel.rank.models.ffm import FFMNetwork
from funnel.rank.models.fm import FMNetwork
from funnel.rank.models.lr import LRNetwork
from funnel.rank.models.widedeep import WideDeepNetwork

NETWORKS: dict[str, type[nn.Module]] = {
    "lr": LRNetwork,
    "fm": FMNetwork,
    "ffm": FFMNetwork,
    "widedeep": WideDeepNetwork,
    "deepfm": DeepFMNetwork,
    "dcnv2": DCNv2Network,
    "din": DINNetwork,
}

__all__ = [
    "NETWORKS",
    "DCNv2Network",
    "DINConfig",
    "DINNetwork",
    "DeepFMNetwork",
    "FFMNetwork",
    "FMNetwork",
    "LRNetwork",
    "NetworkConfig",
    "WideDeepNetwork",
]
