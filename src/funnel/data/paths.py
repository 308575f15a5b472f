"""Where the repository and the shared real-data slices live.

The real public datasets are kept outside the repository (their licences forbid copying them
in), at ``<repo>/../shared/data``. Tests and benchmarks resolve them here so the location can be
moved with one environment variable instead of edits in every file.
"""

from __future__ import annotations

import os
from pathlib import Path

SHARED_DATA_ENV = "FUNNEL_SHARED_DATA"
"""Environment variable that overrides :func:`shared_data_dir`."""


def repo_root() -> Path:
    """The repository root (the directory holding ``pyproject.toml`` and ``src/``)."""
    # this file is <repo>/src/funnel/data/paths.py
    return Path(__file__).resolve().parents[3]


def shared_data_dir() -> Path:
    """The shared real-data directory: ``$FUNNEL_SHARED_DATA`` or ``<repo>/../shared/data``.

    The directory may not exist (e.g. on a fresh clone); callers check and skip.
    """
    override = os.environ.get(SHARED_DATA_ENV)
    if override:
        return Path(override).expanduser().resolve()
    return (repo_root() / ".." / "shared" / "data").resolve()
