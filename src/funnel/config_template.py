"""The ``funnel.toml`` a workspace made by the CLI starts with: every stage's table, each key
with its default, commented out, so a person sees what can be set without reading the code.

Generated from the stage config dataclasses themselves, so it cannot drift from them; a test
parses it with every line uncommented and checks each table loads as its defaults.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from funnel.config import ConfigError, _toml_value

_STAGES = (
    ("sessions", "funnel.pipeline.sessions", "SessionConfig",
     "a new session after this many minutes without an action"),
    ("embed", "funnel.embed.build", "EmbedConfig",
     "item / query / type skip-gram embeddings (Airbnb, KDD 2018)"),
    ("recall", "funnel.recall.build", "RecallConfig",
     "candidate sources and their merger"),
    ("rank", "funnel.rank.build", "RankConfig",
     "rankers trained on impressions, or on clicks when the log has none"),
    ("rerank", "funnel.rerank.pipeline", "RerankConfig",
     "diversity, scatter rules, sponsored slots, merchandising"),
    ("suggest", "funnel.suggest.model", "SuggestConfig",
     "query completion, related queries, hints"),
    ("generative", "funnel.generative.build", "GenerativeConfig",
     "diffusion / flow recall (off in funnel build unless asked for)"),
)


def stage_config_classes() -> list[tuple[str, type[Any], str]]:
    """(table name, config dataclass, one-line purpose) of every stage, in funnel order."""
    import importlib

    return [(name, getattr(importlib.import_module(module), cls), about)
            for name, module, cls, about in _STAGES]


def _default(field: dataclasses.Field[Any]) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def _line(key: str, value: Any) -> str:
    try:
        text = _toml_value(list(value) if isinstance(value, tuple) else value)
    except ConfigError:
        return f"# {key} = ...  (see the docs)"
    if len(text) > 200:  # e.g. the default feature specs: too long to read here
        return f"# {key} = ...  (the built-in default; see docs/stages.md)"
    return f"# {key} = {text}"


def config_template() -> str:
    """The commented ``funnel.toml``: ``[sessions] gap_minutes = 30`` set, every other key
    shown with its default."""
    lines = [
        "# funnel workspace configuration: one table per stage; unknown keys are errors.",
        "# Every key below is shown with its default; uncomment a line to change it.",
        "",
    ]
    for name, cls, about in stage_config_classes():
        lines += [f"# {about}", f"[{name}]"]
        for field in dataclasses.fields(cls):
            value = _default(field)
            if value is dataclasses.MISSING or value is None or field.name.startswith("_"):
                continue
            if name == "sessions" and field.name == "gap_minutes":
                lines.append(f"gap_minutes = {_toml_value(value)}")
                continue
            lines.append(_line(field.name, value))
        lines.append("")
    return "\n".join(lines)
