"""What a person sees in a terminal: ``funnel generate``, ``build`` and ``serve`` under a
pseudo-terminal (80 columns, a long clone path), as issue 20 asks. ~60 s in all (the build
is most of it).

A pipe hides what a terminal shows (rich draws spinners and bars only on a tty), so each
command runs with its stdin/stdout/stderr on a pty; the captured transcript must show progress
while the work runs and end with the next command to type.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

COLUMNS = 80
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
SPINNER = set("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏")


def run_in_pty(args: list[str], *, timeout: float,
               until: Callable[[], bool] | None = None) -> str:
    """Run ``args`` on a fresh 80-column pty; return everything it wrote (raw, with escapes).

    With ``until``, send SIGINT (Ctrl-C) once it returns True (a server answers) and keep
    reading until the process exits.
    """
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, COLUMNS, 0, 0))
    env = {**os.environ, "COLUMNS": str(COLUMNS), "LINES": "24", "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env,
                            close_fds=True, start_new_session=True)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    interrupted = False
    try:
        while True:
            if time.monotonic() > deadline:
                raise AssertionError(f"{args[3:]} still running after {timeout} s:\n"
                                     + out.decode(errors="replace")[-3000:])
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed its side
                    chunk = b""
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
            if until is not None and not interrupted and until():
                time.sleep(0.5)  # let the startup lines reach the pty
                proc.send_signal(signal.SIGINT)
                interrupted = True
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        os.close(master)
    assert proc.returncode == 0 or interrupted, out.decode(errors="replace")[-3000:]
    return out.decode(errors="replace")


def screen_lines(raw: str) -> list[str]:
    """The lines left on the screen: escapes dropped, each ``\\r`` redraw keeps its last."""
    text = ANSI.sub("", raw).replace("\r\n", "\n")
    return [line.split("\r")[-1].rstrip() for line in text.split("\n")]


def last_words(raw: str) -> str:
    return next(line for line in reversed(screen_lines(raw)) if line.strip())


def funnel(*args: str) -> list[str]:
    return [sys.executable, "-m", "funnel.cli", *args]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tty") / ("a-long-clone-path-" * 5) / "ws"


@pytest.fixture(scope="module")
def generated(root: Path) -> str:
    return run_in_pty(funnel("generate", "-w", str(root), "--events", "20000"), timeout=120)


@pytest.fixture(scope="module")
def built(root: Path, generated: str) -> str:
    run_in_pty(funnel("sessions", "-w", str(root)), timeout=60)
    return run_in_pty(funnel("build", "-w", str(root)), timeout=300)


@pytest.fixture(scope="module")
def served(root: Path, built: str) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    yield run_in_pty(funnel("serve", "-w", str(root), "--port", str(port)), timeout=120,
                     until=lambda: _answers(f"http://127.0.0.1:{port}/health"))


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def test_generate_shows_a_bar_with_counts(generated: str) -> None:
    text = ANSI.sub("", generated)
    assert "generating" in text and "━" in text  # rich's bar, drawn while it works
    assert "ingesting" in text
    assert "Bayes-optimal AUC" in text
    # the table fits; only the next command may be longer (one line, never wrapped)
    assert all(len(line) <= COLUMNS for line in screen_lines(generated)
               if not line.startswith("next: "))


def test_generate_ends_with_the_next_command(generated: str, root: Path) -> None:
    assert last_words(generated) == f"next: funnel sessions -w {root} && funnel build -w {root}"


@pytest.mark.slow  # the build is ~40 s on 2 cores
def test_build_shows_a_spinner_stage_lines_and_the_next_command(built: str, root: Path) -> None:
    text = ANSI.sub("", built)
    assert SPINNER & set(text), "no spinner frame while the stages ran"
    lines = screen_lines(built)
    for stage in ("catalog", "embeddings", "recall", "rank", "rerank", "suggest"):
        assert any(re.fullmatch(rf"✓ {stage} \d+\.\d s", line) for line in lines), stage
    # the next command is one line, never wrapped, even though it is longer than 80 columns
    assert last_words(built) == (f"next: funnel serve -w {root}   (every figure: funnel build "
                                 f"-w {root} --details, or --json)")


@pytest.mark.slow  # needs the build
def test_serve_prints_where_and_stops_cleanly(served: str, root: Path) -> None:
    text = ANSI.sub("", served)
    assert re.search(r"serving v\d{4}-\S+ at http://127\.0\.0\.1:\d+/", text)
    assert "Traceback" not in text


@pytest.mark.slow
def test_serve_says_what_to_do_next(served: str) -> None:
    text = ANSI.sub("", served)
    assert "next: open http://127.0.0.1:" in text and "/search -H 'content-type" in text
