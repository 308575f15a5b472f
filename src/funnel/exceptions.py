"""Small typed exception hierarchy shared by every stage.

Each exception carries the data a caller needs to act on it, and its message names what was
received and what was expected (STYLE P10).
"""

from __future__ import annotations


class FunnelError(Exception):
    """Base class of every error funnel raises on purpose."""


class ConfigError(FunnelError, ValueError):
    """A configuration file or value is invalid (unknown key, wrong type, bad value)."""


class NotFittedError(FunnelError, AttributeError):
    """An estimator was used before ``fit``."""


class ModelFitError(FunnelError, RuntimeError):
    """Training could not proceed (e.g. empty corpus after filtering)."""


class DataFileError(FunnelError, OSError):
    """A whole input file could not be read (missing, unreadable, wrong format)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class ArtifactError(FunnelError, RuntimeError):
    """An artifact directory is missing, incomplete or of an unknown format."""
