"""The ``funnel`` command line: one module per stage, registered on one typer app."""

from __future__ import annotations

# Each stage module registers its commands on import. Keep one line per module.
from funnel.cli import data as _data  # noqa: E402,F401
from funnel.cli import loaders as _loaders  # noqa: E402,F401
from funnel.cli import build as _build  # noqa: E402,F401
from funnel.cli import serve as _serve  # noqa: E402,F401
from funnel.cli import embed as _embed  # noqa: E402,F401
from funnel.cli import recall as _recall  # noqa: E402,F401
from funnel.cli import rerank as _rerank  # noqa: E402,F401
from funnel.cli import suggest as _suggest  # noqa: E402,F401
from funnel.cli import rank as _rank  # noqa: E402,F401
from funnel.cli import generative as _generative  # noqa: E402,F401
from funnel.cli import evaluate as _evaluate  # noqa: E402,F401
from funnel.cli import pipeline as _pipeline  # noqa: E402,F401
from funnel.cli._app import app

__all__ = ["app"]
