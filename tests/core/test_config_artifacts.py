"""Typed config round-trip, workspace errors, and atomic artifact versions."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from funnel._checks import check_is_fitted, positive_int, validate_params
from funnel.artifacts import ArtifactStore
from funnel.config import dump_toml, from_mapping, read_toml, section, to_mapping
from funnel.exceptions import ArtifactError, ConfigError, NotFittedError
from funnel.workspace import Workspace


@dataclass(frozen=True)
class Knobs:
    dim: int = 32
    lr: float = 0.025
    name: str = "x"
    buckets: tuple[str, ...] = ("market",)
    limit: int | None = None


def test_config_round_trips_through_toml(tmp_path: Path):
    knobs = Knobs(dim=64, lr=0.5, name="a \"quoted\" name", buckets=("market", "price"), limit=3)
    path = tmp_path / "f.toml"
    path.write_text(dump_toml({"embed": to_mapping(knobs)}))
    assert section(read_toml(path), "embed", Knobs) == knobs
    assert section({}, "embed", Knobs) == Knobs()


def test_config_refuses_unknown_keys_and_wrong_types():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) dimm; valid keys are"):
        from_mapping(Knobs, {"dimm": 3})
    with pytest.raises(ConfigError, match=r"\.dim: expected int, got '3'"):
        from_mapping(Knobs, {"dim": "3"})
    with pytest.raises(ConfigError, match="must be a table"):
        section({"embed": 3}, "embed", Knobs)
    assert from_mapping(Knobs, {"lr": 1}).lr == 1  # an int is a fine float


def test_read_toml_names_the_file(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[x\n")
    with pytest.raises(ConfigError, match="bad.toml: invalid TOML"):
        read_toml(bad)
    with pytest.raises(ConfigError, match="funnel init"):
        read_toml(tmp_path / "missing.toml")


def test_workspace_open_explains_the_fix(tmp_path: Path):
    with pytest.raises(ConfigError, match="not a funnel workspace.*funnel init"):
        Workspace.open(tmp_path)
    ws = Workspace.init(tmp_path / "w")
    (ws.config_path).write_text("[sessions]\ngap_minutes = 45\n")
    Workspace.init(ws.root)  # idempotent: keeps the user's config
    assert ws.config()["sessions"]["gap_minutes"] == 45


def test_validate_params_and_check_is_fitted():
    with pytest.raises(ValueError, match="The 'dim' parameter must be an int > 0. Got -1 instead."):
        validate_params({"dim": -1}, {"dim": (positive_int, "an int > 0")})

    class Est:
        def __init__(self) -> None:
            self.alpha = 1

    est = Est()
    with pytest.raises(NotFittedError, match="Est instance is not fitted"):
        check_is_fitted(est)
    est.weights_ = [1]
    check_is_fitted(est)


def test_artifact_builds_are_atomic_and_inherit_current(tmp_path: Path):
    store = ArtifactStore(tmp_path / "artifacts")
    assert store.current() is None
    with pytest.raises(ArtifactError, match="funnel build"):
        store.require_current()
    with store.begin() as build:
        (build.component("embeddings") / "a.txt").write_text("v1")
    first = store.require_current()
    assert (first / "embeddings" / "a.txt").read_text() == "v1"

    # a failed build changes nothing that serves
    with pytest.raises(RuntimeError), store.begin() as build:
        (build.component("rank") / "m.txt").write_text("half")
        raise RuntimeError("training crashed")
    assert store.require_current() == first
    assert not [p for p in store.root.iterdir() if p.name.startswith(".staging")]

    # a new build inherits other components and replaces only its own
    with store.begin() as build:
        (build.component("rank") / "m.txt").write_text("v2")
    second = store.require_current()
    assert second != first
    assert (second / "embeddings" / "a.txt").read_text() == "v1"
    assert (second / "rank" / "m.txt").read_text() == "v2"
    assert not (first / "rank").exists()  # the old version is untouched
    assert os.readlink(store.root / "current") == second.name
    assert store.versions() == sorted([first.name, second.name])


def test_each_version_keeps_its_own_manifest_issue_19(tmp_path: Path):
    # issue 19: staging hard-links the current version's files, and the manifest was written
    # through the link, so after a second build v0001's manifest said v0002
    import json

    store = ArtifactStore(tmp_path / "artifacts")
    with store.begin() as build:
        (build.component("embeddings") / "a.txt").write_text("v1")
    first = store.require_current()
    with store.begin() as build:
        (build.component("rank") / "m.txt").write_text("v2")
    second = store.require_current()
    one = json.loads((first / "manifest.json").read_text())
    two = json.loads((second / "manifest.json").read_text())
    assert one["version"] == first.name and two["version"] == second.name
    assert set(one["components"]) == {"embeddings"}
    assert set(two["components"]) == {"embeddings", "rank"}
    assert not list(second.glob(".*.tmp"))


def test_dump_toml_round_trips_scatter_rules_as_inline_tables() -> None:
    import tomllib

    raw = {"rerank": {"scatter": [{"attribute": "brand", "max_count": 2, "window": 5}],
                      "method": "dpp"}}
    assert tomllib.loads(dump_toml(raw)) == raw


def test_differing_files_names_changed_missing_and_ignored_files(tmp_path):
    from funnel.artifacts import differing_files

    a, b = tmp_path / "a", tmp_path / "b"
    for root in (a, b):
        (root / "recall" / "covisit").mkdir(parents=True)
        (root / "recall" / "covisit" / "neighbors.npz").write_bytes(b"same")
        (root / "embeddings").mkdir()
    (a / "embeddings" / "item_vectors.npy").write_bytes(b"\x00\x01")
    (b / "embeddings" / "item_vectors.npy").write_bytes(b"\x00\x02")
    (a / "embeddings" / "config.json").write_text('{"seconds": 1.0}')
    (b / "embeddings" / "config.json").write_text('{"seconds": 2.0}')
    (b / "embeddings" / "query_vectors.npy").write_bytes(b"only in b")
    parts = ("recall/covisit", "embeddings")
    assert differing_files(a, b, parts, ignore={"embeddings/config.json"}) == [
        "embeddings/item_vectors.npy", "embeddings/query_vectors.npy"]
    assert differing_files(a, a, parts) == []
