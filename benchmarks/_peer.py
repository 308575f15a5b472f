"""The neural sequential peer (RecTools SASRec) seen from the main venv (issue 17).

RecTools pins numpy < 2 on Python 3.11, so it lives in its own virtualenv, ``.venv-peer``
(``make peer-venv``). This module (standard library only) writes the sessions to temporary JSON
files, runs ``benchmarks/peers/sasrec.py`` with that venv's python under a timeout, and reads the
top-k back::

    from _peer import peer_available, peer_name, peer_recommend   # benchmarks/ is on sys.path

    reason = peer_available()          # None, or one line naming `make peer-venv`
    if reason is None:
        recs = peer_recommend(train_sessions, prefixes, k=20, seed=0)

Every failure raises :class:`PeerError` with a one-line message naming what failed.
"""

from __future__ import annotations

import functools
import json
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PEER_PYTHON = REPO / ".venv-peer" / "bin" / "python"
PEER_SCRIPT = REPO / "benchmarks" / "peers" / "sasrec.py"
PROBE = (
    "import rectools, torch; from rectools.models import SASRecModel; print(rectools.__version__)"
)
PROBE_TIMEOUT_S = 180.0
DEFAULT_TIMEOUT_S = 1800.0


class PeerError(RuntimeError):
    """The peer could not be run or gave an unreadable answer (one-line message)."""


@dataclass(frozen=True)
class PeerResult:
    """Top-k item ids per prefix plus what the peer script reported (``meta``: library,
    version, params, n_cold, fit_seconds, recommend_seconds, ...) and the total wall time."""

    recommendations: list[list[str]]
    meta: dict[str, Any] = field(default_factory=dict)
    wall_seconds: float = 0.0


def _one_line(text: str, limit: int = 300) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    line = lines[-1] if lines else "(no output)"
    return line if len(line) <= limit else line[: limit - 3] + "..."


@functools.cache
def _probe(python: str) -> tuple[str | None, str | None]:
    """(version, None) when ``python`` imports RecTools' SASRec, else (None, reason)."""
    if not Path(python).exists():
        return None, f"peer venv missing ({python} not found): run `make peer-venv`"
    try:
        proc = subprocess.run(
            [python, "-c", PROBE], capture_output=True, text=True, timeout=PROBE_TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"peer venv python failed to start ({type(e).__name__}): run `make peer-venv`"
    if proc.returncode != 0:
        why = _one_line(proc.stderr)
        return None, f"peer venv cannot import RecTools SASRec ({why}): run `make peer-venv`"
    return proc.stdout.strip() or "?", None


def peer_available(python: str | Path = PEER_PYTHON) -> str | None:
    """None when ``.venv-peer/bin/python`` exists and imports RecTools' SASRecModel, else a
    one-line reason naming ``make peer-venv``. The probe (a few seconds) is cached."""
    return _probe(str(python))[1]


def peer_name(python: str | Path = PEER_PYTHON) -> str:
    """E.g. ``"RecTools 0.19.0 SASRec"`` (the version as installed in the peer venv)."""
    version = _probe(str(python))[0]
    return f"RecTools {version or '(not installed)'} SASRec"


def write_inputs(
    directory: Path, train_sessions: Sequence[Sequence[Any]], prefixes: Sequence[Sequence[Any]]
) -> tuple[Path, Path]:
    """The two input files of ``peers/sasrec.py`` (ids as strings), in ``directory``."""
    train = directory / "train.json"
    pref = directory / "prefixes.json"
    train.write_text(json.dumps({"sessions": [[str(i) for i in s] for s in train_sessions]}))
    pref.write_text(json.dumps({"prefixes": [[str(i) for i in p] for p in prefixes]}))
    return train, pref


def read_output(path: Path, n_prefixes: int, k: int) -> tuple[list[list[str]], dict[str, Any]]:
    """(top-k per prefix, the rest of the output) from the peer's JSON; checks the shape."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise PeerError(f"peer wrote no output file {path.name}") from None
    except (OSError, ValueError) as e:
        raise PeerError(f"peer output {path.name} unreadable: {e}") from None
    recs = data.pop("recommendations", None) if isinstance(data, dict) else None
    if not isinstance(recs, list) or not all(isinstance(r, list) for r in recs):
        raise PeerError(f"peer output {path.name} has no list of recommendation lists")
    if len(recs) != n_prefixes:
        raise PeerError(f"peer returned {len(recs)} recommendation lists for {n_prefixes} prefixes")
    if any(len(r) > k for r in recs):
        raise PeerError(f"peer returned more than k={k} items for a prefix")
    return [[str(i) for i in r] for r in recs], data


def peer_run(
    train_sessions: Sequence[Sequence[Any]],
    prefixes: Sequence[Sequence[Any]],
    k: int = 20,
    seed: int = 0,
    *,
    filter_prefix_items: bool = False,
    epochs: int | None = None,
    session_max_len: int | None = None,
    loss: str | None = None,
    n_negatives: int = 256,
    threads: int = 0,
    timeout: float = DEFAULT_TIMEOUT_S,
    python: str | Path = PEER_PYTHON,
    script: str | Path = PEER_SCRIPT,
) -> PeerResult:
    """Train the peer on ``train_sessions`` (each one user; ordered item ids) and recommend
    ``k`` items for each prefix (a user whose history is the prefix). ``epochs=None`` keeps the
    library default, and so does ``loss=None`` (full softmax); ``filter_prefix_items`` drops the
    prefix's own items (default: none)."""
    if k < 1:
        raise PeerError(f"k must be >= 1, got {k}")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="funnel-peer-") as tmp:
        directory = Path(tmp)
        train, pref = write_inputs(directory, train_sessions, prefixes)
        out = directory / "out.json"
        exe, path = str(Path(python).absolute()), str(Path(script).absolute())
        cmd = [exe, path, "--train", str(train), "--prefixes", str(pref), "--out", str(out)]
        cmd += ["--k", str(k), "--seed", str(seed), "--threads", str(threads)]
        if epochs is not None:
            cmd += ["--epochs", str(epochs)]
        if session_max_len is not None:
            cmd += ["--session-max-len", str(session_max_len)]
        if loss is not None:
            cmd += ["--loss", loss, "--n-negatives", str(n_negatives)]
        if filter_prefix_items:
            cmd.append("--filter-prefix-items")
        try:
            proc = subprocess.run(  # cwd: stray files (lightning_logs/) land in the temp dir
                cmd, capture_output=True, text=True, timeout=timeout, cwd=directory
            )
        except FileNotFoundError:
            raise PeerError(f"peer python {python} not found: run `make peer-venv`") from None
        except subprocess.TimeoutExpired:
            raise PeerError(f"peer {Path(script).name} timed out after {timeout:g} s") from None
        if proc.returncode != 0:
            raise PeerError(
                f"peer {Path(script).name} exited with {proc.returncode}: {_one_line(proc.stderr)}"
            )
        recs, meta = read_output(out, len(prefixes), k)
    return PeerResult(recs, meta, time.perf_counter() - t0)


def peer_recommend(
    train_sessions: list[list[str]],
    prefixes: list[list[str]],
    k: int = 20,
    seed: int = 0,
    **kwargs: Any,
) -> list[list[str]]:
    """Top-``k`` item ids per prefix from the peer (see :func:`peer_run` for ``kwargs``)."""
    return peer_run(train_sessions, prefixes, k, seed, **kwargs).recommendations
