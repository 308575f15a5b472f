"""The ``funnel`` command line: one module per stage, registered on one typer app.

Each stage module registers its commands on import (one import line per module, sorted).
"""

from __future__ import annotations

from funnel.cli import build as _build  # noqa: F401
from funnel.cli import data as _data  # noqa: F401
from funnel.cli import embed as _embed  # noqa: F401
from funnel.cli import evaluate as _evaluate  # noqa: F401
from funnel.cli import generative as _generative  # noqa: F401
from funnel.cli import loaders as _loaders  # noqa: F401
from funnel.cli import pipeline as _pipeline  # noqa: F401
from funnel.cli import rank as _rank  # noqa: F401
from funnel.cli import recall as _recall  # noqa: F401
from funnel.cli import rerank as _rerank  # noqa: F401
from funnel.cli import serve as _serve  # noqa: F401
from funnel.cli import suggest as _suggest  # noqa: F401
from funnel.cli._app import app

__all__ = ["app"]
