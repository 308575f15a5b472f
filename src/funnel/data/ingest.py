"""Ingest files into the event store: read, validate, store or quarantine, one transaction each.

Guarantees (each has a test):
- counts in = stored + duplicates + quarantined, per file;
- re-ingesting a file stores nothing twice (ids, or content hashes where the source has none);
- a crash, kill or Ctrl-C mid-file leaves the store as it was (one DuckDB transaction per file,
  the quarantine file is written to a temporary name and only renamed after the commit).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from funnel.data.loaders.base import REJECTED_SCHEMA, SOURCE_FILE, SOURCE_ROW, SourceTables
from funnel.data.store import EventStore
from funnel.data.validate import QUARANTINE_SCHEMA, validate_table
from funnel.exceptions import DataFileError
from funnel.workspace import Workspace

GENERIC_FORMATS = ("parquet", "csv", "tsv", "jsonl")
EXTENSIONS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
KINDS = ("items", "users", "events", "truth")


@dataclass
class IngestReport:
    """What happened to one source file."""

    path: str
    format: str
    read: int = 0
    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    by_kind: dict[str, dict[str, int]] = field(default_factory=dict)
    quarantine_file: str | None = None

    def as_json(self) -> dict[str, int]:
        return {
            "read": self.read,
            "stored": self.stored,
            "quarantined": self.quarantined,
            "duplicates": self.duplicates,
        }


def detect_format(path: Path, fmt: str | None) -> str:
    if fmt:
        return fmt.lower()
    suffixes = [s.lower() for s in path.suffixes]
    for suffix in reversed(suffixes):
        if suffix in EXTENSIONS:
            return EXTENSIONS[suffix]
    raise DataFileError(
        str(path),
        "cannot tell the format from the extension; pass --format "
        f"({', '.join(GENERIC_FORMATS)} or a loader name, see 'funnel ingest --help')",
    )


def detect_kind(path: Path, columns: Sequence[str], kind: str | None) -> str:
    """Which contract table a generic file feeds: explicit, by columns, then by file name."""
    if kind:
        if kind not in KINDS:
            raise DataFileError(str(path), f"unknown --kind {kind!r}; expected one of {KINDS}")
        return kind
    cols = set(columns)
    if "event_type" in cols:
        return "events"
    if "p_click" in cols or "p_book" in cols:
        return "truth"
    if "item_id" in cols and cols & {"title", "category", "brand", "price", "created_at"}:
        return "items"
    if "user_id" in cols and not cols & {"item_id", "ts"}:
        return "users"
    stem = path.name.lower()
    for candidate in KINDS:
        if stem.startswith(candidate) or stem.startswith(candidate.rstrip("s")):
            return candidate
    raise DataFileError(
        str(path),
        "cannot tell whether rows are items, users or events; add an 'event_type' column "
        "or pass --kind",
    )


def _read_csv(path: Path, delimiter: str) -> tuple[pa.Table, pa.Table]:
    with open(path, newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh, delimiter=delimiter), None)
    if not header:
        raise DataFileError(str(path), "empty file (no header row)")
    skipped: list[tuple[int, str]] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        skipped.append((int(row.number or 0), row.text))
        return "skip"

    table = pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(use_threads=False),
        parse_options=pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=on_invalid),
        convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in header}, strings_can_be_null=True
        ),
    )
    bad_rows = {number - 1 for number, _ in skipped}  # pyarrow counts the header as row 1
    total = table.num_rows + len(bad_rows)
    good_rows = [r for r in range(1, total + 1) if r not in bad_rows]
    table = table.append_column(SOURCE_ROW, pa.array(good_rows, pa.int64()))
    rejected = pa.table(
        {
            "source_file": [str(path)] * len(skipped),
            "source_row": [n - 1 for n, _ in skipped],
            "field": [None] * len(skipped),
            "reason": [f"expected {len(header)} fields" for _ in skipped],
            "raw": [text for _, text in skipped],
        },
        schema=REJECTED_SCHEMA,
    )
    return table, rejected


def _read_jsonl(path: Path) -> tuple[pa.Table, pa.Table]:
    columns: dict[str, list[str | None]] = {}
    rows: list[int] = []
    rejected: list[dict[str, object]] = []
    n = 0
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise ValueError("not a JSON object")
            except ValueError as err:
                rejected.append(
                    {
                        "source_file": str(path),
                        "source_row": n,
                        "field": None,
                        "reason": f"invalid JSON: {err}",
                        "raw": line.rstrip("\n")[:2048],
                    }
                )
                continue
            index = len(rows)
            rows.append(n)
            for key, value in obj.items():
                col = columns.setdefault(str(key), [None] * index)
                if value is None:
                    col.append(None)
                elif isinstance(value, dict | list):
                    col.append(json.dumps(value, ensure_ascii=False))
                else:
                    col.append(str(value).lower() if isinstance(value, bool) else str(value))
            for col in columns.values():
                if len(col) < len(rows):
                    col.append(None)
    data = {k: pa.array(v, pa.string()) for k, v in columns.items()}
    data[SOURCE_ROW] = pa.array(rows, pa.int64())
    return pa.table(data), pa.Table.from_pylist(rejected, schema=REJECTED_SCHEMA)


def check_source(path: Path, fmt: str | None = None, kind: str | None = None) -> str:
    """The format ``path`` will be read with, or the :class:`DataFileError` reading it would
    raise for a missing file, an unknown format or kind: checked before anything is written,
    so a mistyped command creates no workspace."""
    if not path.exists():
        raise DataFileError(str(path), "no such file or directory")
    fmt = detect_format(path, fmt)
    if fmt not in GENERIC_FORMATS:
        from funnel.data.loaders import LOADERS

        if fmt not in LOADERS:
            raise DataFileError(str(path), f"unknown --format {fmt!r}; expected one of "
                                f"{', '.join([*GENERIC_FORMATS, *sorted(LOADERS)])}")
    if kind is not None and kind not in KINDS:
        raise DataFileError(str(path), f"unknown --kind {kind!r}; expected one of {KINDS}")
    return fmt


def read_source(path: Path, fmt: str | None = None, kind: str | None = None) -> SourceTables:
    """Read one file (generic contract-shaped file, or a named real-data format)."""
    fmt = check_source(path, fmt, kind)
    if fmt not in GENERIC_FORMATS:
        from funnel.data.loaders import get_loader  # the registry of real-data formats

        return get_loader(fmt)(path)
    if path.is_dir():
        raise DataFileError(str(path), f"is a directory; format {fmt} reads single files")
    try:
        if fmt == "parquet":
            table = pq.read_table(path)
            table = table.append_column(
                SOURCE_ROW, pa.array(range(1, table.num_rows + 1), pa.int64())
            )
            rejected = REJECTED_SCHEMA.empty_table()
        elif fmt in ("csv", "tsv"):
            table, rejected = _read_csv(path, "," if fmt == "csv" else "\t")
        else:
            table, rejected = _read_jsonl(path)
    except DataFileError:
        raise
    except (OSError, UnicodeDecodeError, pa.ArrowException) as err:
        raise DataFileError(str(path), f"unreadable as {fmt}: {err}") from None
    table = table.append_column(SOURCE_FILE, pa.array([str(path)] * table.num_rows, pa.string()))
    which = detect_kind(path, table.column_names, kind)
    return SourceTables(**{which: table}, rejected=rejected)


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    paths = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for p in paths:
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def ingest_file(
    ws: Workspace,
    path: Path,
    fmt: str | None = None,
    kind: str | None = None,
    *,
    before_commit: Callable[[], None] | None = None,
) -> IngestReport:
    """Validate and store one file in a single transaction; quarantine what fails.

    ``before_commit`` is a fault-injection point for tests (called inside the transaction).
    """
    path = Path(path)
    source = read_source(path, fmt, kind)
    report = IngestReport(path=str(path), format=detect_format(path, fmt))
    digest = file_digest(path)
    quarantine_parts = []
    if source.rejected.num_rows:
        main_kind = next(iter(source.kinds()), "events")
        quarantine_parts.append(
            source.rejected.append_column(
                "kind", pa.array([main_kind] * source.rejected.num_rows, pa.string())
            )
        )
    ws.quarantine_dir.mkdir(parents=True, exist_ok=True)
    final_q = ws.quarantine_dir / f"{path.stem}-{digest[:12]}.parquet"
    tmp_q = final_q.with_suffix(f".tmp-{os.getpid()}")
    with EventStore.open(ws.store_path) as store:
        store.ensure_tables()
        con = store.con
        con.execute("BEGIN TRANSACTION")
        try:
            # kinds in dependency order: items and users before the events that cite them
            for kind_name in KINDS:
                table = source.kinds().get(kind_name)
                if table is None:
                    continue
                result = validate_table(con, kind_name, table, source_file=str(path))
                counts = store.insert(kind_name, result.valid)
                report.by_kind[kind_name] = {
                    "read": result.n_read,
                    "stored": counts.stored,
                    "duplicates": counts.duplicates,
                    "quarantined": result.quarantine.num_rows,
                }
                report.read += result.n_read
                report.stored += counts.stored
                report.duplicates += counts.duplicates
                if result.quarantine.num_rows:
                    quarantine_parts.append(result.quarantine)
            report.read += source.rejected.num_rows
            report.quarantined = sum(t.num_rows for t in quarantine_parts)
            if quarantine_parts:
                pq.write_table(
                    pa.concat_tables([t.cast(QUARANTINE_SCHEMA) for t in quarantine_parts]), tmp_q
                )
                report.quarantine_file = str(final_q)
            con.execute(
                "INSERT INTO ingest_log (path, sha256, format, read, stored, quarantined, "
                "duplicates, quarantine_file) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    str(path),
                    digest,
                    report.format,
                    report.read,
                    report.stored,
                    report.quarantined,
                    report.duplicates,
                    report.quarantine_file,
                ],
            )
            if before_commit is not None:
                before_commit()
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            tmp_q.unlink(missing_ok=True)
            raise
    if quarantine_parts:
        os.replace(tmp_q, final_q)
    return report


def quarantine_count(ws: Workspace) -> int:
    """Rows currently in the workspace's quarantine files."""
    files = sorted(ws.quarantine_dir.glob("*.parquet"))
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def generated_files(raw: Path) -> list[Path]:
    """The files ``funnel.data.synthetic.generate`` writes, in ingest order."""
    return [
        raw / "items.parquet",
        raw / "users.parquet",
        *sorted((raw / "events").glob("*.parquet")),
        *sorted((raw / "truth").glob("*.parquet")),
    ]
