"""The ``funnel`` command line: one module per stage, registered on one typer app.

Each stage module registers its commands on import (one import line per module, sorted);
:data:`PANELS` then files every command under a help panel, in workflow order.
"""

from __future__ import annotations

from typer.models import CommandInfo, TyperInfo

from funnel.cli import build as _build  # noqa: F401
from funnel.cli import data as _data  # noqa: F401
from funnel.cli import embed as _embed  # noqa: F401
from funnel.cli import evaluate as _evaluate  # noqa: F401
from funnel.cli import generative as _generative  # noqa: F401
from funnel.cli import loaders as _loaders  # noqa: F401
from funnel.cli import pipeline as _pipeline  # noqa: F401
from funnel.cli import query as _query  # noqa: F401
from funnel.cli import rank as _rank  # noqa: F401
from funnel.cli import recall as _recall  # noqa: F401
from funnel.cli import rerank as _rerank  # noqa: F401
from funnel.cli import serve as _serve  # noqa: F401
from funnel.cli import suggest as _suggest  # noqa: F401
from funnel.cli._app import app

PANELS: dict[str, tuple[str, ...]] = {
    "Data": ("generate", "init", "ingest", "formats", "peek", "sessions", "stats",
             "quarantine"),
    "Build": ("build", "pipeline"),
    "Serve": ("serve", "search", "recommend", "suggest"),
    "Evaluate": ("evaluate",),
    "Aliases": ("embed", "index", "train", "rerank-build", "train-generative", "recall-eval",
                "evaluate-recall", "rerank-curve"),
}
"""``funnel --help`` in the order a person works: data -> build -> serve -> evaluate. The
aliases (old one-stage and evaluation names; ``funnel build --help`` lists them) are hidden."""


def _file_into_panels() -> None:
    order = {name: (p, j) for p, names in enumerate(PANELS.values()) for j, name in
             enumerate(names)}
    panel_of = {name: panel for panel, names in PANELS.items() for name in names}
    infos: list[CommandInfo | TyperInfo] = [*app.registered_commands, *app.registered_groups]
    for info in infos:
        name = info.name or (info.callback.__name__ if info.callback else "")
        if name not in panel_of:
            raise RuntimeError(f"funnel.cli.PANELS: command {name!r} has no panel; add it")
        info.rich_help_panel = panel_of[name]
    app.registered_commands.sort(
        key=lambda c: order[c.name or (c.callback.__name__ if c.callback else "")])


_file_into_panels()

__all__ = ["app"]
