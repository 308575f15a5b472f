"""A writer killed with SIGKILL strands no acknowledged event (issue 19 probe: 50 of 100
accepted events stayed in a dead worker's ``.open`` segment through three restarts)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

from funnel.serve.spool import EventSpool

WRITER = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from funnel.serve.spool import EventSpool
    spool = EventSpool(Path(sys.argv[1]))
    for i in range(100):
        spool.append([{"event_id": f"e{i}", "user_id": "u", "event_type": "click",
                       "item_id": f"i{i % 7}", "ts": "2024-05-01T10:00:00Z"}])
    spool._fh.write('{"event_id": "cut-off-mid-wri')  # a write the crash interrupted
    spool._fh.flush()
    print("acked 100", flush=True)
    time.sleep(60)
""")


def _killed_after_100_acks(spool_dir: Path, while_alive: Callable[[], None]) -> None:
    with subprocess.Popen([sys.executable, "-c", WRITER, str(spool_dir)],
                          stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "acked 100"
        while_alive()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def test_a_killed_writers_open_segment_is_recovered_whole(tmp_path: Path) -> None:
    live = EventSpool(tmp_path)

    def untouched_while_alive() -> None:
        assert live.recover() == 0  # the writer is alive: its segment is left alone
        assert not live.ready_segments()

    _killed_after_100_acks(tmp_path, untouched_while_alive)

    assert live.recover() == 1
    assert not list(tmp_path.glob("*.open"))
    [segment] = live.ready_segments()
    lines = segment.read_text().splitlines()
    assert [json.loads(line)["event_id"] for line in lines] == [f"e{i}" for i in range(100)]


def test_flush_ingests_a_dead_writers_events(tmp_path: Path) -> None:
    from funnel.data.store import EventStore
    from funnel.workspace import Workspace

    ws = Workspace.init(tmp_path / "ws")
    _killed_after_100_acks(ws.root / "spool", lambda: None)
    stored = EventSpool(ws.root / "spool").flush_to_store(ws)
    assert stored == 100
    with EventStore.open(ws.store_path, read_only=True) as store:
        n = store.con.execute("SELECT count(*) FROM events WHERE user_id = 'u'").fetchone()
    assert n == (100,)
    assert not list((ws.root / "spool").iterdir())
