"""The next-item protocol end to end: split, build the funnel on the train part, replay.

Two inputs:

- a workspace (:func:`workspace_split`): its sessions split by start time
  (:func:`funnel.evaluate.next_item.split_by_start`); the funnel is built on a copy of the
  workspace holding only the events before the cut
  (:func:`funnel.evaluate.split.training_workspace`);
- a session-rec style pair of files (:func:`file_split`): the train file is ingested into a
  fresh workspace by the real ingest path with the named loader, sessionized and built; the
  test file is ingested and sessionized the same way, and its sessions are replayed.

Then :func:`run_next_item` asks the served funnel, each of its recall sources alone, the
merger's fused list and the simple baselines for every case.

Example::

    split = workspace_split(Workspace.open("shop"), Path("/tmp/ni"))
    run = run_next_item(split, build=True)
    run.figures["hr20_new_funnel"]
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from funnel.compute_threads import threads_limited
from funnel.evaluate.next_item import (
    AnonymousFunnel,
    EngineRecommender,
    K,
    NextItemRecommender,
    NextItemResult,
    ReturningUserFunnel,
    Session,
    evaluate_next_item,
    filter_test,
    session_baselines,
    split_by_start,
    workspace_sessions,
)
from funnel.evaluate.replay import GENERATIVE
from funnel.exceptions import ConfigError
from funnel.pipeline.sessions import SessionConfig
from funnel.workspace import Workspace

WITHOUT_GENERATIVE = "funnel_without_generative"
"""The served funnel with the generative recall source left out (when the artifact has it)."""

Progress = Callable[[str, int], None]


@dataclass
class SplitData:
    """A training workspace (built or not) and the test sessions to replay against it."""

    train_ws: Workspace
    train: list[Session]
    test: list[Session]
    test_raw: int
    """Test sessions before items unseen in training were dropped."""
    cut_ms: int | None = None


@dataclass
class NextItemRun:
    result: NextItemResult
    figures: dict[str, float]
    notes: list[str] = field(default_factory=list)
    artifact: Path | None = None


def _gap(ws: Workspace) -> float:
    return SessionConfig.of(ws.config()).gap_minutes


def workspace_split(ws: Workspace, root: Path, *, test_fraction: float = 0.2) -> SplitData:
    """Split ``ws``'s sessions by start time; the training workspace goes to ``root/train``."""
    from funnel.evaluate.split import training_workspace

    split = split_by_start(workspace_sessions(ws), test_fraction)
    train_ws = training_workspace(ws, split.cut_ms, Path(root) / "train")
    train = workspace_sessions(train_ws)
    known = {i for s in train for i in s.items}
    return SplitData(train_ws, train, filter_test(split.test, known), len(split.test),
                     split.cut_ms)


def ingest_sessionized(path: Path, fmt: str, root: Path, *, gap_minutes: float = 30.0
                       ) -> Workspace:
    """A fresh workspace at ``root`` with ``path`` ingested by loader ``fmt`` and sessionized
    (what ``funnel init``, ``funnel ingest --format``, ``funnel sessions`` do)."""
    import shutil

    from funnel.data.ingest import ingest_file
    from funnel.data.store import EventStore
    from funnel.pipeline.sessions import build_sessions

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such file; pass an existing session log")
    if root.exists():
        shutil.rmtree(root)
    ws = Workspace.init(root)
    if gap_minutes != 30.0:
        ws.config_path.write_text(f"[sessions]\ngap_minutes = {gap_minutes!r}\n")
    report = ingest_file(ws, path, fmt)
    stored = sum(int(c.get("stored", 0)) for c in report.by_kind.values())
    if not stored:
        raise ConfigError(f"{path}: nothing stored by the {fmt!r} loader "
                          f"({report.by_kind}); is --format right?")
    with EventStore.open(ws.store_path) as store:
        build_sessions(store.con, gap_minutes=gap_minutes)
    return ws


def file_split(train_path: Path, test_path: Path, fmt: str, root: Path, *,
               gap_minutes: float = 30.0) -> SplitData:
    """A session-rec split given as two files (train, and a later test file)."""
    train_ws = ingest_sessionized(train_path, fmt, Path(root) / "train", gap_minutes=gap_minutes)
    test_ws = ingest_sessionized(test_path, fmt, Path(root) / "test", gap_minutes=gap_minutes)
    train = workspace_sessions(train_ws)
    test = workspace_sessions(test_ws)
    if not train:
        raise ConfigError(f"{train_path}: no session with a click after ingest")
    known = {i for s in train for i in s.items}
    return SplitData(train_ws, train, filter_test(test, known), len(test))


def build_stages(ws: Workspace) -> tuple[tuple[str, ...], list[str]]:
    """``funnel build``'s default stages that the log can train, and why others are left out."""
    from funnel.evaluate.run import stages_for

    return stages_for(ws)


def build_split(split: SplitData, stages: Sequence[str] | None = None, *,
                deterministic: bool = True) -> tuple[Path, float, list[str]]:
    """Build the training workspace, single-threaded where threads change results unless
    ``deterministic`` is False; (artifact dir, seconds, notes)."""
    from funnel.build import run_build
    from funnel.evaluate.run import make_deterministic

    if deterministic:
        make_deterministic(split.train_ws)
    notes: list[str] = []
    if stages is None:
        chosen, notes = build_stages(split.train_ws)
    else:
        chosen = tuple(stages)
    t0 = time.perf_counter()
    run_build(split.train_ws, chosen)
    seconds = time.perf_counter() - t0
    return split.train_ws.artifacts.require_current(), seconds, notes


def run_next_item(
    split: SplitData,
    artifact: Path,
    *,
    k: int = K,
    max_cases: int | None = None,
    seed: int = 0,
    sources: bool = True,
    extra: Sequence[NextItemRecommender] = (),
    progress: Progress | None = None,
    personal: bool = True,
) -> NextItemRun:
    """Replay ``split.test`` through the funnel built at ``artifact``, its recall sources
    (``sources``), the simple baselines and ``extra`` methods; every one on the same cases.
    With ``personal`` and a log with user ids, also the funnel for an anonymous visitor and
    for the returning user (earlier sessions' clicks in the state), and the paired gain."""
    funnel = EngineRecommender.load(artifact, served_k=k)
    without = None
    if GENERATIVE in funnel.engine.recall.sources:  # what generative recall adds, paired
        without = EngineRecommender(funnel.engine.without_recall_source(GENERATIVE),
                                    served_k=k, name=WITHOUT_GENERATIVE)
    try:
        methods: list[NextItemRecommender] = [funnel, *([without] if without else [])]
        if personal and any(s.user_id is not None for s in split.test):
            methods += [AnonymousFunnel(funnel),
                        ReturningUserFunnel.of(funnel, [*split.train, *split.test])]
        if sources:
            methods += funnel.sources()
        methods += session_baselines(split.train)
        methods += list(extra)
        with threads_limited(1):  # the engine asked as the server runs it
            result = evaluate_next_item(methods, split.test, k=k, max_cases=max_cases,
                                        seed=seed, progress=progress)
    finally:
        funnel.engine.close()
        if without is not None:
            without.engine.close()
    result.judged_on = funnel.judged_on
    figures = result.figures()
    import numpy as np

    if without is not None and result.users_new:
        for metric, name in (("hit_new", "hr"), ("rr_new", "mrr")):
            gain = result.paired_gain(funnel.name, WITHOUT_GENERATIVE, metric)
            figures[f"gain_generative_{name}{k}_new"] = gain.mean
            figures[f"gain_generative_{name}{k}_new_ci95"] = gain.ci95
        if without.timings_ms:  # what the source costs a request, measured in the same run
            figures["recommend_p50_ms_without_generative"] = float(
                np.percentile(without.timings_ms, 50))
    ms = np.asarray(funnel.timings_ms, dtype=np.float64)
    figures.update({
        "recommend_p50_ms": float(np.percentile(ms, 50)),
        "recommend_p99_ms": float(np.percentile(ms, 99)),
        "judged_on_new": float(result.judged_on == "new"),
        "train_sessions": float(len(split.train)),
        "test_sessions": float(len(split.test)),
        "test_sessions_raw": float(split.test_raw),
    })
    return NextItemRun(result, figures, artifact=artifact)
