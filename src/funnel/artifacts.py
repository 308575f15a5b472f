"""Versioned artifact directories, swapped atomically.

Layout inside a workspace::

    artifacts/
      v0001-20261121T192000/   one complete build: embeddings/, recall/, rank/, suggest/, ...
      v0002-20261121T201500/
      current -> v0002-...     a symlink, replaced with an atomic rename

A build writes into a hidden staging directory (``.staging-*``) that starts as a hard-linked
copy of ``current``; only :meth:`ArtifactBuild.commit` renames it to a version and swaps
``current``. A failed or killed build leaves a staging directory behind and never touches what
is serving (DESIGN: artifacts are versioned and swapped atomically).
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from funnel.exceptions import ArtifactError

CURRENT = "current"
MANIFEST = "manifest.json"


def _link_tree(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` with hard links (cheap; files are never modified in place)."""

    def link(s: str, d: str) -> None:
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    shutil.copytree(src, dst, copy_function=link, symlinks=True)


@dataclass
class ArtifactBuild:
    """A staging directory for a new artifact version; use as a context manager."""

    store: ArtifactStore
    path: Path
    components: list[str] = field(default_factory=list)
    committed: Path | None = None

    def component(self, name: str) -> Path:
        """A fresh, empty subdirectory ``name`` (any previous content is replaced)."""
        target = self.path / name
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        if name not in self.components:
            self.components.append(name)
        return target

    def commit(self) -> Path:
        """Rename staging to the next version and point ``current`` at it atomically."""
        manifest_path = self.path / MANIFEST
        manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
        built = manifest.get("components", {})
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for name in self.components:
            built[name] = now
        version = self.store.next_version_name()
        manifest.update({"version": version, "created_at": now, "components": built})
        # staging starts as hard links to the current version's files: write a new file and
        # rename it over the link, so the previous version keeps its own manifest (issue 19)
        fresh = manifest_path.with_name(f".{MANIFEST}.tmp")
        fresh.write_text(json.dumps(manifest, indent=2, sort_keys=True))
        os.replace(fresh, manifest_path)
        final = self.store.root / version
        os.rename(self.path, final)
        self.store.set_current(version)
        self.committed = final
        return final

    def abort(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> ArtifactBuild:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None and self.committed is None:
            self.commit()
        elif exc_type is not None:
            self.abort()


@dataclass
class ArtifactStore:
    """The ``artifacts/`` directory of a workspace."""

    root: Path

    def versions(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and p.name.startswith("v") and not p.is_symlink()
        )

    def next_version_name(self) -> str:
        versions = self.versions()
        n = int(versions[-1][1:5]) + 1 if versions else 1
        return f"v{n:04d}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"

    def current(self) -> Path | None:
        """The directory ``current`` points at, or None before the first build."""
        link = self.root / CURRENT
        if not link.is_symlink():
            return None
        return (self.root / os.readlink(link)).resolve()

    def require_current(self) -> Path:
        path = self.current()
        if path is None:
            raise ArtifactError(
                f"{self.root}: no artifact has been built yet; run 'funnel build' first"
            )
        return path

    def set_current(self, version: str) -> None:
        if not (self.root / version).is_dir():
            raise ArtifactError(f"{self.root / version}: no such artifact version")
        tmp = self.root / f".current-{os.getpid()}-{time.monotonic_ns()}"
        os.symlink(version, tmp)
        os.replace(tmp, self.root / CURRENT)  # atomic on POSIX

    def begin(self) -> ArtifactBuild:
        """Start a build that inherits every component of ``current``."""
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f".staging-{os.getpid()}-{time.monotonic_ns()}"
        current = self.current()
        if current is not None:
            _link_tree(current, staging)
        else:
            staging.mkdir()
        return ArtifactBuild(self, staging)


def differing_files(a: Path, b: Path, components: Sequence[str],
                    ignore: Collection[str] = ()) -> list[str]:
    """Files under ``components`` of two artifact versions whose bytes differ or that exist in
    one only (paths relative to the version; ``ignore``: files that hold timings). Two builds
    of one log, from the event store and from a Spark run's tables, should give none."""
    out = []
    for part in components:
        names = {p.relative_to(a) for p in (a / part).rglob("*") if p.is_file()}
        names |= {p.relative_to(b) for p in (b / part).rglob("*") if p.is_file()}
        for name in sorted(names):
            if str(name) in ignore:
                continue
            if not ((a / name).is_file() and (b / name).is_file()
                    and filecmp.cmp(a / name, b / name, shallow=False)):
                out.append(str(name))
    return out
