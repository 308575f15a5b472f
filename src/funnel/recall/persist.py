"""``config.json`` of a saved recall component: class name + constructor parameters (P7)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from funnel.exceptions import ArtifactError

FORMAT = "funnel.recall/1"


def write_config(path: Path, cls: str, params: dict[str, Any]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "class": cls, "params": params}
    (path / "config.json").write_text(json.dumps(payload, indent=2, ensure_ascii=False))


def read_config(path: Path, cls: str) -> dict[str, Any]:
    """The saved constructor parameters; ArtifactError names the file when it does not fit."""
    cfg_path = path / "config.json"
    if not cfg_path.exists():
        raise ArtifactError(f"{cfg_path}: missing; rebuild with 'funnel index'")
    cfg = json.loads(cfg_path.read_text())
    if cfg.get("format") != FORMAT or cfg.get("class") != cls:
        raise ArtifactError(
            f"{cfg_path}: expected format {FORMAT!r} class {cls!r}; "
            f"got {cfg.get('format')!r} class {cfg.get('class')!r}"
        )
    params: dict[str, Any] = cfg["params"]
    return params
