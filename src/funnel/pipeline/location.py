"""Where pipeline tables live: a local directory or a URL, read through pyarrow's file systems.

Spark writes to any URL its Hadoop connectors know; the build side reads the same URL with
pyarrow (``s3://``, ``hdfs://``, ``gs://`` with the matching pyarrow support, ``file://``), so
``funnel build --tables`` needs no second reader per store.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.fs as pafs

HADOOP_SCHEMES = {"s3a": "s3", "s3n": "s3"}

Location = Path | str
"""A local directory, or a URL any engine that reads it understands (``s3://``, ``hdfs://``,
``file://``; pyarrow's file systems read them on the build side)."""


def is_url(location: Location) -> bool:
    return "://" in str(location)


def as_location(text: str) -> Location:
    """A command-line argument as a location: a URL stays a string (``Path`` would turn
    ``s3a://bucket`` into ``s3a:/bucket``), anything else is a local path."""
    return text if is_url(text) else Path(text)


def join(location: Location, name: str) -> Location:
    """``location/name``, keeping a URL a string (``Path`` would fold its ``//``)."""
    return f"{str(location).rstrip('/')}/{name}" if is_url(location) else Path(location) / name


def filesystem(location: Location) -> tuple[pafs.FileSystem, str]:
    """pyarrow's file system for ``location`` and the path on it."""
    if is_url(location):
        return pafs.FileSystem.from_uri(pyarrow_uri(str(location)))
    return pafs.LocalFileSystem(), str(Path(location).resolve())


def pyarrow_uri(url: str) -> str:
    """``url`` as pyarrow names it: Spark's Hadoop connectors call S3 ``s3a://`` (older ones
    ``s3n://``), pyarrow ``s3://``; a run written by Spark records its input that way."""
    scheme, rest = url.split("://", 1)
    return f"{HADOOP_SCHEMES.get(scheme, scheme)}://{rest}"
