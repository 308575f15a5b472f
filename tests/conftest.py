"""Suite-wide settings: one thread per library so parallel work doesn't oversubscribe 2 cores."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

try:  # torch is a core dependency, but keep collection working if it is broken
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass
