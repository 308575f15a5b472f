"""Reading a saved suggestion component's JSON header: present, and written in this format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from funnel.exceptions import ArtifactError

REBUILD = "rebuild with 'funnel suggest build'"


def read_header(path: Path, fmt: str) -> dict[str, Any]:
    """The JSON object at ``path``; ArtifactError naming the file and the fix when it is missing
    or was written by another version of its format."""
    if not path.exists():
        raise ArtifactError(f"{path}: missing; {REBUILD}")
    meta: dict[str, Any] = json.loads(path.read_text())
    if meta.get("format") != fmt:
        raise ArtifactError(f"{path}: format {meta.get('format')!r}, expected {fmt!r}; {REBUILD}")
    return meta
