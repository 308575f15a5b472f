"""Typed configuration that round-trips: TOML sections mapped onto frozen dataclasses.

A workspace's ``funnel.toml`` has one table per stage (``[sessions]``, ``[embed]``, ...). Each
stage declares a frozen dataclass and reads its table with :func:`section`, which refuses
unknown keys and wrong types, so a typo is an error rather than an ignored setting (STYLE P7).
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from funnel.exceptions import ConfigError

T = TypeVar("T")


def _type_ok(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if origin in (list, tuple):
        args = typing.get_args(annotation)
        inner = args[0] if args else Any
        return isinstance(value, list | tuple) and all(_type_ok(v, inner) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


def from_mapping(cls: type[T], raw: Mapping[str, Any], *, where: str = "config") -> T:
    """Build dataclass ``cls`` from ``raw``, refusing unknown keys and mistyped values."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - fields)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; "
            f"valid keys are {', '.join(sorted(fields))}"
        )
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        annotation = hints[key]
        if not _type_ok(value, annotation):
            raise ConfigError(
                f"{where}.{key}: expected {getattr(annotation, '__name__', annotation)}, "
                f"got {value!r}"
            )
        if typing.get_origin(annotation) is tuple and isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)


def to_mapping(obj: Any) -> dict[str, Any]:
    """The plain-dict form of a config dataclass, ready for JSON or TOML."""
    out = dataclasses.asdict(obj)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def read_toml(path: Path) -> dict[str, Any]:
    """Read a TOML file with a one-line error naming the file on failure."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as err:
        raise ConfigError(f"{path}: no such config file; run 'funnel init' first") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: invalid TOML: {err}") from err


def section(raw: Mapping[str, Any], name: str, cls: type[T]) -> T:
    """Table ``[name]`` of a parsed ``funnel.toml`` as dataclass ``cls`` (defaults if absent)."""
    table = raw.get(name, {})
    if not isinstance(table, Mapping):
        raise ConfigError(f"funnel.toml: [{name}] must be a table, got {table!r}")
    return from_mapping(cls, table, where=f"funnel.toml [{name}]")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):  # an inline table, e.g. one [[rerank.scatter]] rule
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()
                               if v is not None) + "}"
    raise ConfigError(f"cannot write {value!r} to TOML")


def dump_toml(sections: Mapping[str, Mapping[str, Any]]) -> str:
    """Write ``{section: {key: scalar|list|table}}`` as TOML text (None values omitted; nested
    tables inline, so ``[[rerank.scatter]]`` rules round-trip as a list of inline tables)."""
    lines: list[str] = []
    for name, table in sections.items():
        lines.append(f"[{name}]")
        for key, value in table.items():
            if value is not None:
                lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)
