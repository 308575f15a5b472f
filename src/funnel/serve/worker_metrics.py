"""Merge the Prometheus text of several worker processes into one exposition.

Each worker counts its own requests; a scrape through the front must see all of them. Samples
keep their names and gain a ``worker`` label (``sum by`` adds them up), and each metric family's
``# HELP`` / ``# TYPE`` lines appear once, followed by every worker's samples, as the text format
requires.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?(\s.*)$")


def _with_label(line: str, name: str, value: str) -> str:
    match = _SAMPLE.match(line)
    if match is None:
        return line
    metric, labels, rest = match.groups()
    inner = labels[1:-1] if labels else ""
    extra = f'{name}="{value}"'
    return f"{metric}{{{extra}{',' + inner if inner else ''}}}{rest}"


def merge_worker_metrics(texts: Sequence[tuple[str, str]], own: str = "") -> str:
    """``texts`` is (worker label, exposition text) per worker; ``own`` (the front's metrics)
    is appended as it is."""
    families: dict[str, list[str]] = {}
    samples: dict[str, list[str]] = {}
    for worker, text in texts:
        family = ""
        for line in text.splitlines():
            if not line.strip():
                continue
            if line.startswith("#"):
                parts = line.split(maxsplit=3)
                if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                    family = parts[2]
                    head = families.setdefault(family, [])
                    if line not in head:
                        head.append(line)
                continue
            samples.setdefault(family, []).append(_with_label(line, "worker", worker))
    out: list[str] = []
    for family in dict.fromkeys([*families, *samples]):
        out.extend(families.get(family, []))
        out.extend(samples.get(family, []))
    merged = "\n".join(out) + ("\n" if out else "")
    return merged + own
