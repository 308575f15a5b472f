"""The time split of an evaluation: a cut-off D, and a training-only copy of the workspace.

Every stage trains on the whole event store it is given, so the honest way to train "as of D"
without touching their code is to copy the rows before D into a fresh workspace (same
``funnel.toml``) and build that. Items created after D are left out too: on the held-out day
they are cold-start items the model has never seen, exactly as in production.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

from funnel.exceptions import ConfigError
from funnel.pipeline.sessions import SessionConfig
from funnel.workspace import Workspace

DEFAULT_TEST_FRACTION = 0.2


def parse_split_date(text: str) -> int:
    """Epoch ms of an ISO date or date-time (UTC when no zone is given).

    >>> parse_split_date("2026-01-02")
    1767312000000
    """
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f"--split-date: expected an ISO date like 2026-01-31 or 2026-01-31T12:00, "
            f"got {text!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def format_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def event_span(ws: Workspace) -> tuple[int, int, int]:
    """(first ts ms, last ts ms, number of events) of the workspace's store."""
    con = ws.connect(read_only=True)
    try:
        lo, hi, n = con.execute(
            "SELECT epoch_ms(min(ts)), epoch_ms(max(ts)), count(*) FROM events"
        ).fetchall()[0]
    finally:
        con.close()
    if not n:
        raise ConfigError(
            f"{ws.store_path}: the events table is empty; ingest or generate events first"
        )
    return int(lo), int(hi), int(n)


OUTLIER_QUANTILE = 0.001
"""The default split ignores the first and last 0.1% of timestamps: real logs carry a few
stray dates (the Taobao sample has events weeks before its real start)."""


def _robust_span(ws: Workspace) -> tuple[int, int]:
    con = ws.connect(read_only=True)
    try:
        lo, hi = con.execute(
            "SELECT quantile_disc(epoch_ms(ts), ?), quantile_disc(epoch_ms(ts), ?) FROM events",
            [OUTLIER_QUANTILE, 1.0 - OUTLIER_QUANTILE]).fetchall()[0]
    finally:
        con.close()
    return int(lo), int(hi)


def choose_split(ws: Workspace, split_ms: int | None = None,
                 test_fraction: float = DEFAULT_TEST_FRACTION) -> int:
    """``split_ms`` checked against the event span, or the start of the span's last
    ``test_fraction`` (span between the 0.1% and 99.9% timestamp quantiles)."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction: expected a float in (0, 1), got {test_fraction!r}")
    lo, hi, _ = event_span(ws)
    if split_ms is None:
        r_lo, r_hi = _robust_span(ws)
        if r_hi <= r_lo:
            r_lo, r_hi = lo, hi
        split = int(r_lo + (1.0 - test_fraction) * (r_hi - r_lo))
        return min(max(split, lo + 1), hi)
    if not lo < split_ms <= hi:
        raise ConfigError(
            f"--split-date: {format_ms(split_ms)} leaves no training or no held-out events; "
            f"expected a moment in ({format_ms(lo)}, {format_ms(hi)}]"
        )
    return split_ms


def training_workspace(ws: Workspace, split_ms: int, root: Path) -> Workspace:
    """A new workspace at ``root`` holding only what was known before ``split_ms``.

    Copies ``funnel.toml``, items created before the split (or undated), all users, events
    before the split and their ``truth`` rows, then rebuilds ``sessions`` from those events.
    A store without items (an event-only log) gets a bare catalog: the ids seen before D.
    """
    from funnel.pipeline.sessions import build_sessions

    if root.exists():
        shutil.rmtree(root)
    train = Workspace.init(root)
    shutil.copyfile(ws.config_path, train.config_path)
    gap = SessionConfig.of(ws.config()).gap_minutes
    con = train.connect()
    try:
        con.execute("SET TimeZone='UTC'")
        con.execute(f"ATTACH '{ws.store_path.resolve()}' AS src (READ_ONLY)")
        cut = "make_timestamptz(CAST(? AS BIGINT) * 1000)"
        con.execute(f"INSERT INTO items SELECT * FROM src.items "
                    f"WHERE created_at IS NULL OR created_at < {cut}", [split_ms])
        con.execute("INSERT INTO users SELECT * FROM src.users")
        con.execute(f"INSERT INTO events SELECT * FROM src.events WHERE ts < {cut}", [split_ms])
        if not con.execute("SELECT count(*) FROM items").fetchall()[0][0]:
            # event-only logs (e.g. DIGINETICA views): a bare catalog of the items seen so far
            con.execute("INSERT INTO items (item_id, market) SELECT item_id, min(market) "
                        "FROM events WHERE item_id IS NOT NULL GROUP BY item_id")
        has_truth = con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = 'src' "
            "AND table_name = 'truth'"
        ).fetchall()[0][0]
        if has_truth:
            con.execute("INSERT INTO truth BY NAME SELECT t.* FROM src.truth t "
                        "SEMI JOIN events e ON e.event_id = t.event_id")
        con.execute("DETACH src")
        build_sessions(con, gap_minutes=gap)
    finally:
        con.close()
    return train
