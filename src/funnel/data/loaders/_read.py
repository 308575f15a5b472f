"""Reading a source file into lines: Arrow's C++ CSV reader as a line splitter, with a Python
fallback, and 1-based row numbers that match the file (header excluded)."""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from funnel.exceptions import DataFileError


def read_text(path: Path, *, encoding: str = "utf-8") -> str:
    """The decoded text of ``path`` (``.gz`` transparently); raise ``DataFileError`` if unreadable.

    ``encoding="utf-8"`` falls back to latin-1 for files that are not valid UTF-8 (old GroupLens
    files are latin-1), because latin-1 decodes any byte and the ids we need are ASCII anyway.
    """
    _check_file(path)
    try:
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
    except (OSError, EOFError) as err:
        raise DataFileError(str(path), f"cannot read: {err}") from None
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    return text


@dataclass(frozen=True)
class Lines:
    """The non-blank data lines of one file and their 1-based row numbers (header excluded)."""

    path: Path
    text: pa.Array  # string, one per line
    rows: pa.Array  # int64


def read_lines(
    path: Path, *, header: bool, encoding: str = "utf-8"
) -> tuple[str | None, Lines]:
    """Split ``path`` into (header line or None, data lines); blank lines are skipped.

    Lines come from Arrow's CSV reader set up as a one-column, no-quote reader (C++, no Python
    string per line). Files it cannot take that way (not UTF-8, or holding the ASCII record
    separator it uses as a delimiter) fall back to decoding in Python.
    """
    _check_file(path)
    try:
        column = _arrow_lines(path, encoding)
    except (pa.ArrowInvalid, UnicodeDecodeError):
        raw = read_text(path, encoding=encoding).split("\n")
        if raw and raw[-1] == "":
            raw.pop()
        column = pa.array(raw, type=pa.string())
    except OSError as err:
        raise DataFileError(str(path), f"cannot read: {err}") from None
    head: str | None = None
    if header:
        if len(column) == 0:
            raise DataFileError(str(path), "is empty, expected a header line")
        head = column[0].as_py()
        column = column.slice(1)
    rows = pa.array(np.arange(1, len(column) + 1, dtype=np.int64))
    keep = pc.not_equal(column, "")
    return head, Lines(path, column.filter(keep), rows.filter(keep))


_RECORD_SEPARATOR = "\x1e"


def _arrow_lines(path: Path, encoding: str) -> pa.Array:
    table = pa_csv.read_csv(
        path,
        read_options=pa_csv.ReadOptions(
            column_names=["line"],
            encoding="utf8" if encoding == "utf-8" else encoding,
            use_threads=False,
            block_size=1 << 24,
        ),
        parse_options=pa_csv.ParseOptions(
            delimiter=_RECORD_SEPARATOR,
            quote_char=False,
            escape_char=False,
            newlines_in_values=False,
            ignore_empty_lines=False,
        ),
        convert_options=pa_csv.ConvertOptions(
            column_types={"line": pa.string()},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )
    return table.column("line").combine_chunks()


def _check_file(path: Path) -> None:
    if not path.exists():
        raise DataFileError(str(path), "no such file")
    if path.is_dir():
        raise DataFileError(str(path), "is a directory, expected a file")


def first_line(path: Path) -> str:
    """The first non-blank line of ``path`` (for format sniffing; reads only the start)."""
    _check_file(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as fh:
            start = fh.read(1 << 16)
    except (OSError, EOFError) as err:
        raise DataFileError(str(path), f"cannot read: {err}") from None
    text = start.decode("utf-8", errors="replace").lstrip("\ufeff")
    for line in text.split("\n"):
        if line.strip():
            return line.rstrip("\r")
    raise DataFileError(str(path), "is empty")
