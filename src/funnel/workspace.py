"""A workspace: one directory holding config, the event store and artifact versions.

::

    funnel-workspace/
      funnel.toml        stage configuration, one table per stage
      store.duckdb       the event store (items, users, events, truth, sessions, ...)
      quarantine/        rows that failed validation, as Parquet, with file/row/field/reason
      raw/               files written by 'funnel generate' before ingest
      artifacts/         versioned model and index builds, 'current' swapped atomically
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from funnel.artifacts import ArtifactStore
from funnel.config import read_toml
from funnel.exceptions import ConfigError

DEFAULT_WORKSPACE = Path("funnel-workspace")
CONFIG_FILE = "funnel.toml"
STORE_FILE = "store.duckdb"

DEFAULT_CONFIG = """\
# funnel workspace configuration: one table per stage; unknown keys are errors.

[sessions]
gap_minutes = 30
"""


@dataclass(frozen=True)
class Workspace:
    """Paths and handles of one workspace directory."""

    root: Path
    store_file: Path | None = None
    """The store the build reads instead of ``store.duckdb`` (``funnel build --tables``: a
    database loaded from a pipeline run's Parquet); None for the workspace's own."""

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def store_path(self) -> Path:
        return self.store_file if self.store_file is not None else self.root / STORE_FILE

    @property
    def quarantine_dir(self) -> Path:
        return self.root / "quarantine"

    @property
    def raw_dir(self) -> Path:
        return self.root / "raw"

    @property
    def artifacts(self) -> ArtifactStore:
        return ArtifactStore(self.root / "artifacts")

    @classmethod
    def init(cls, root: Path | str = DEFAULT_WORKSPACE, *,
             config: str = DEFAULT_CONFIG) -> Workspace:
        """Create the workspace (idempotent: an existing config is kept as it is); ``config``
        is the funnel.toml text of a new one (the CLI passes every table, commented)."""
        ws = cls(Path(root))
        ws.root.mkdir(parents=True, exist_ok=True)
        if not ws.config_path.exists():
            ws.config_path.write_text(config)
        for sub in (ws.quarantine_dir, ws.raw_dir, ws.artifacts.root):
            sub.mkdir(exist_ok=True)
        from funnel.data.store import EventStore  # local: store depends on workspace paths only

        with EventStore.open(ws.store_path) as store:
            store.ensure_tables()
        return ws

    @classmethod
    def open(cls, root: Path | str = DEFAULT_WORKSPACE) -> Workspace:
        """Open an existing workspace, with a one-line error and the fix if it is not one."""
        ws = cls(Path(root))
        if not ws.config_path.exists():
            raise ConfigError(
                f"{ws.root}: not a funnel workspace (no {CONFIG_FILE}); "
                f"run 'funnel init --workspace {ws.root}' or 'funnel generate' first"
            )
        return ws

    def config(self) -> dict[str, Any]:
        return read_toml(self.config_path)

    def connect(self, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection to the event store."""
        return duckdb.connect(str(self.store_path), read_only=read_only)
