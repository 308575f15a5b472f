"""``funnel evaluate``: train as of D, replay the held-out period through the served funnel,
and write ``report.html`` + ``report.json``.

Example::

    result = evaluate_workspace(Workspace.open("shop"), out_dir=Path("shop/eval"))
    result.figures["funnel.booking.ndcg@10"]
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from funnel.compute_threads import threads_limited
from funnel.evaluate.cases import KINDS, HeldOut, held_out_cases
from funnel.evaluate.oracle import generator_config
from funnel.evaluate.replay import (
    diversity_figures,
    latency_figures,
    margin_figures,
    offline_engine,
    quality_figures,
    replay,
    tradeoff_lists,
)
from funnel.evaluate.skew import feature_skew_figures
from funnel.evaluate.split import choose_split, format_ms, training_workspace
from funnel.evaluate.stages import (
    embedding_figures,
    ranker_figures,
    ranker_predictions,
    recall_figures,
    suggest_figures,
)
from funnel.pipeline.sessions import SessionConfig
from funnel.workspace import Workspace

Progress = Callable[[str, int | None], None]
"""``progress(step, total)`` starts a step; ``progress("", None)`` advances it by one."""


@dataclass(frozen=True)
class EvalConfig:
    """Knobs of one evaluation run."""

    k: int = 10
    max_cases: int | None = 2000
    """At most this many cases of each kind (seeded sample); None = all."""
    max_ranker_requests: int | None = 3000
    curve_lists: int = 100
    recall_ks: tuple[int, ...] = (10, 100, 500)
    seed: int = 0
    deterministic: bool = True
    """Train single-threaded where threads change results (the skip-gram's Hogwild updates),
    so two runs with one seed give the same figures; False keeps the workspace's threads."""

    def __post_init__(self) -> None:
        if not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"k: expected an int >= 1, got {self.k!r}")
        if self.max_cases is not None and self.max_cases < 1:
            raise ValueError(f"max_cases: expected an int >= 1 or None, got {self.max_cases!r}")


@dataclass
class EvalResult:
    figures: dict[str, float]
    notes: list[str]
    not_applicable: dict[str, str]
    details: dict[str, Any] = field(default_factory=dict)
    images: dict[str, bytes] = field(default_factory=dict)
    json_path: Path | None = None
    html_path: Path | None = None


DETERMINISTIC = {"embed": {"n_threads": 1}}
"""funnel.toml values a deterministic evaluation trains with: the only threaded trainer whose
result depends on thread timing is the skip-gram (Hogwild); the rankers, GBDT and co-visitation
are seeded and single-threaded or order-independent already (two runs gave identical figures
with this override, 228 of 419 differed without it)."""


def make_deterministic(ws: Workspace) -> None:
    """Apply :data:`DETERMINISTIC` to a training workspace's funnel.toml."""
    from funnel.config import dump_toml

    raw = ws.config()
    for section, values in DETERMINISTIC.items():
        raw.setdefault(section, {}).update(values)
    ws.config_path.write_text(dump_toml(raw))


def prepare_training(ws: Workspace, split_ms: int, root: Path,
                     stages: Sequence[str] | None = None, *, deterministic: bool = True) -> Path:
    """Build every stage on the events before ``split_ms`` into a workspace at ``root``
    (with :data:`DETERMINISTIC` applied to its funnel.toml when ``deterministic``)."""
    from funnel.cli.build import DEFAULT_STAGES, run_build

    train = training_workspace(ws, split_ms, root)
    if deterministic:
        make_deterministic(train)
    run_build(train, tuple(stages or DEFAULT_STAGES))
    return train.artifacts.require_current()


MIN_IMPRESSIONS = 100
MIN_SEARCHES = 20


def stages_for(ws: Workspace) -> tuple[tuple[str, ...], list[str]]:
    """``funnel build``'s default stages minus those the log cannot train, and why."""
    from funnel.cli.build import DEFAULT_STAGES

    con = ws.connect(read_only=True)
    try:
        imps, clicks, searches = con.execute(
            "SELECT count(*) FILTER (WHERE event_type = 'impression'), "
            "count(*) FILTER (WHERE event_type = 'click' AND item_id IS NOT NULL), "
            "count(*) FILTER (WHERE event_type = 'search' AND query IS NOT NULL) FROM events"
        ).fetchall()[0]
    finally:
        con.close()
    stages, notes = list(DEFAULT_STAGES), []
    if imps < MIN_IMPRESSIONS and clicks < MIN_IMPRESSIONS:
        stages.remove("rank")
        notes.append(f"no rank stage: the log has {imps} impressions and {clicks} clicks (a "
                     f"ranker needs >= {MIN_IMPRESSIONS} of either); the funnel serves the fused "
                     "recall order")
    elif imps < MIN_IMPRESSIONS:
        notes.append(f"rank stage trained on {clicks:,} clicks with recall-sampled negatives "
                     f"(the log has {imps} impressions)")
    if searches < MIN_SEARCHES:
        stages.remove("suggest")
        notes.append(f"no suggest stage: the log has {searches} searches")
    return tuple(stages), notes


def _not_applicable(held: HeldOut, figures: dict[str, float], engine: Any) -> dict[str, str]:
    na: dict[str, str] = {}
    if not held.cases["search"]:
        na["search NDCG/MRR"] = "no held-out request with a logged click (no request ids)"
    if not held.cases["booking"]:
        na["booking NDCG/MRR"] = "no held-out booking events"
    if not held.cases["next_click"]:
        na["next-click NDCG/MRR"] = "every held-out click belongs to a logged request"
    if "rank.auc" not in figures:
        na["ranker AUC / group AUC / logloss / calibration"] = (
            "no held-out impressions with both clicked and unclicked rows"
            if engine.rank is not None else
            "no ranker was trained (the log has no impressions to learn clicks from)")
    if not any(key.startswith("oracle.") for key in figures):
        na["personalization ceiling"] = (
            "needs the generator's latent state: a workspace holding exactly one "
            "'funnel generate' run (raw/*/summary.json) and a trained ranker")
    if "bayes.auc" not in figures:
        na["gap to Bayes-optimal"] = "no true p_click (real data has no 'truth' table)"
    if not any(k.startswith("suggest.") for k in figures):
        na["suggestion MRR"] = "no held-out searches" if engine.suggest is not None \
            else "the artifact has no suggest stage"
    if not any(key.startswith(("funnel.brand_entropy@", "funnel.distinct_categories@"))
               for key in figures):
        na["brand entropy, categories per list"] = "the catalog has no brand or category"
    if "embed.items" in figures and "embed.category_cohesion@10" not in figures:
        na["embedding category cohesion"] = "the catalog has no categories"
    if "embed.items" not in figures:
        na["embedding projection"] = "the artifact has no item embeddings"
    return na


def evaluate_artifact(ws: Workspace, artifact_dir: Path, split_ms: int, *,
                      config: EvalConfig | None = None,
                      progress: Progress | None = None) -> EvalResult:
    """Replay the held-out events of ``ws`` (at/after ``split_ms``) through ``artifact_dir``,
    with the server's one intra-op thread (:mod:`funnel.compute_threads`)."""
    with threads_limited(1):
        return _evaluate_artifact(ws, artifact_dir, split_ms, config=config, progress=progress)


def _evaluate_artifact(ws: Workspace, artifact_dir: Path, split_ms: int, *,
                       config: EvalConfig | None, progress: Progress | None) -> EvalResult:
    from funnel.engine.core import Engine

    cfg = config or EvalConfig()
    step = progress or (lambda _name, _total: None)
    t0 = time.perf_counter()
    engine = offline_engine(Engine.load(Path(artifact_dir)))
    try:
        con = ws.connect(read_only=True)
        try:
            con.execute("SET TimeZone='UTC'")
            gap = SessionConfig.of(ws.config()).gap_minutes
            full = held_out_cases(con, split_ms, gap_minutes=gap)
            held = full.sample(cfg.max_cases, cfg.seed)
            requests = full.requests
            if cfg.max_ranker_requests is not None and len(requests) > cfg.max_ranker_requests:
                rng = np.random.default_rng(cfg.seed + 1)
                keep = np.sort(rng.choice(len(requests), cfg.max_ranker_requests, False))
                requests = [requests[i] for i in keep]
            figures: dict[str, float] = {
                "split_ms": float(split_ms), "held_out.events": float(full.n_events),
                "held_out.users": float(full.n_users),
                **{f"held_out.{k}_cases": float(len(full.cases[k])) for k in KINDS},
                **{f"evaluated.{k}_cases": float(len(held.cases[k])) for k in KINDS},
                "train.clicks_per_item": _clicks_per_item(con, split_ms),
            }
            n_cases = sum(len(v) for v in held.cases.values())
            step("replay", n_cases)
            result = replay(engine, held, k=cfg.k, progress=lambda _n: step("", None))
            figures.update(quality_figures(result, cfg.k))
            for base in result.scores:
                if base != "funnel":
                    figures.update(margin_figures(result, cfg.k, base))
            figures.update(diversity_figures(engine, result, cfg.k))
            figures.update(latency_figures(result.timings))
            step("ranker", None)
            preds = ranker_predictions(engine, requests) if engine.rank is not None else None
            if preds is not None:
                figures.update(ranker_figures(preds))
            generated = generator_config(ws)  # None unless one generation made the events
            figures.update(_ceiling(generated, con, requests, preds))
            figures.update(_ceiling_share(figures))
            step("feature skew", None)
            figures.update(feature_skew_figures(engine, con, split_ms, requests, seed=cfg.seed))
            step("recall", None)
            figures.update(recall_figures(engine, held, cfg.recall_ks))
            step("suggest", None)
            figures.update(suggest_figures(engine, con, split_ms, k=cfg.k, seed=cfg.seed))
            step("list context", None)
            figures.update(_list_context(generated, con, engine, requests, cfg))
        finally:
            con.close()
        step("embeddings", None)
        figures.update(embedding_figures(engine))
        step("trade-off curve", None)
        curve = _curve(engine, held, cfg)
        for point in curve:
            for key, value in point.items():
                if key not in ("method", "diversity"):
                    figures[f"curve.{point['method']}.{point['diversity']:g}.{key}"] = float(
                        value)
        from funnel.evaluate.report import build_images

        images, details = build_images(engine, result, preds, curve, cfg)
        details["curve"] = curve
        if preds is not None:
            details["ranker_predictions"] = preds
        details["cases"] = _case_details(held, result, cfg.k)
        figures["seconds"] = time.perf_counter() - t0
        na = _not_applicable(held, figures, engine)
        notes = [
            f"trained on events before {format_ms(split_ms)}; replayed "
            f"{n_cases} held-out cases through Engine.run (the POST /search code path)",
            "no_personalization asks as an anonymous visitor (no user id, empty RecentActions): "
            "it removes the ranker's user-id embedding and session features AND the recent "
            "items co-visitation recall starts from; no_session keeps the user id",
            "gains are paired (the same cases, per-case differences); their 95% intervals are "
            "clustered by user, since one user's requests share taste and history",
            "offline the recall merger's deadline is lifted so no source is dropped for being "
            "slow; latencies are those of this machine under its current load",
        ]
        return EvalResult(figures, notes, na, details, images)
    finally:
        engine.close()


def _clicks_per_item(con: Any, split_ms: int) -> float:
    """Clicks per clicked item before the split: the density embeddings and id fields learn
    from (the synthetic default is ~9; the personalization ceiling share grows with it)."""
    clicks, items = con.execute(
        "SELECT count(*), count(DISTINCT item_id) FROM events WHERE event_type = 'click' "
        "AND item_id IS NOT NULL AND epoch_ms(ts) < ?", [split_ms]).fetchall()[0]
    return float(clicks) / max(int(items), 1)


def _ceiling(config: Any, con: duckdb.DuckDBPyConnection, requests: Sequence[Any],
             preds: dict[str, np.ndarray] | None) -> dict[str, float]:
    """On a generated workspace (``config``: its generator config): the personalization
    ceiling and the history bound (``funnel.evaluate.oracle``), to set beside the served
    ranker's own gain; empty otherwise."""
    from funnel.evaluate.oracle import PersonalTerms, impression_ceiling

    if config is None or preds is None:
        return {}
    return impression_ceiling(PersonalTerms(config), preds, requests, con)


def _list_context(config: Any, con: duckdb.DuckDBPyConnection, engine: Any,
                  requests: Sequence[Any], cfg: EvalConfig) -> dict[str, float]:
    """On a generated workspace (``config``: its generator config) whose clicks have list
    context: the expected clicks per list of the ranker's order, tuned DPP and the listwise
    model (``funnel.evaluate.list_context``)."""
    from funnel.evaluate.list_context import ClickModel, context_figures, context_lists
    from funnel.evaluate.oracle import has_attraction

    if config is None or engine.rank is None or not has_attraction(con):
        return {}
    lists = context_lists(engine, con, requests)
    model = ClickModel(config.context_strength, config.continue_after_click)
    return context_figures(lists, model, k=cfg.k, listwise=engine.rerank.listwise)


def _ceiling_share(figures: dict[str, float]) -> dict[str, float]:
    """The served ranker's personalization gain in group AUC and its share of the ceiling."""
    keys = ("rank.group_auc", "rank.no_personalization.group_auc",
            "oracle.personal_gain.group_auc")
    if not all(key in figures for key in keys):
        return {}
    ours = figures["rank.group_auc"] - figures["rank.no_personalization.group_auc"]
    ceiling = figures["oracle.personal_gain.group_auc"]
    out = {"rank.personal_gain.group_auc": ours}
    if ceiling > 0:
        out["rank.personal_gain.share_of_ceiling"] = ours / ceiling
    bound = figures.get("oracle.history_bound.group_auc", 0.0)
    if ceiling > 0 and bound > 0:
        out["oracle.history_bound.share_of_ceiling"] = bound / ceiling
        out["rank.personal_gain.share_of_history_bound"] = ours / bound
    return out


def _curve(engine: Any, held: HeldOut, cfg: EvalConfig) -> list[dict[str, Any]]:
    from funnel.rerank.curve import tradeoff_curve

    lists = tradeoff_lists(engine, held, max_lists=cfg.curve_lists)
    if not lists:
        return []
    points = tradeoff_curve(lists, k=cfg.k, knobs=(0.0, 0.2, 0.4, 0.6, 0.8))
    return [p.as_dict() for p in points]


def _case_details(held: HeldOut, result: Any, k: int) -> list[dict[str, Any]]:
    """Each evaluated case with what every variant showed (the JSON's audit trail)."""
    out: list[dict[str, Any]] = []
    i = 0
    for kind in KINDS:
        for case in held.cases[kind]:
            row: dict[str, Any] = {"kind": kind, "user_id": case.user_id, "ts_ms": case.ts_ms,
                                   "query": case.query, "market": case.market,
                                   "targets": list(case.targets)}
            for variant, scores in result.scores.items():
                row[variant] = scores.lists[i][:k]
            out.append(row)
            i += 1
    return out


def evaluate_workspace(ws: Workspace, out_dir: Path, *, split_ms: int | None = None,
                       config: EvalConfig | None = None, stages: Sequence[str] | None = None,
                       progress: Progress | None = None) -> EvalResult:
    """Split, train on the past, replay the held-out period, write the report files."""
    from funnel.evaluate.report import write_report

    split = choose_split(ws, split_ms)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    step = progress or (lambda _name, _total: None)
    step("train on the past", None)
    stage_notes: list[str] = []
    if stages is None:
        stages, stage_notes = stages_for(ws)
    deterministic = config.deterministic if config is not None else True
    artifact = prepare_training(ws, split, out_dir / "train-workspace", stages,
                                deterministic=deterministic)
    result = evaluate_artifact(ws, artifact, split, config=config, progress=progress)
    result.notes.extend(stage_notes)
    con = ws.connect(read_only=True)
    try:
        n_items = con.execute("SELECT count(*) FROM items").fetchall()[0][0]
    finally:
        con.close()
    if not n_items:
        result.notes.append("the store has no catalog: items are the ids seen in training "
                            "events, with no title, category or brand (lexical recall and "
                            "attribute diversity have nothing to work with)")
    write_report(result, out_dir, title=f"funnel evaluation of {ws.root}")
    return result


def load_report(path: Path) -> dict[str, Any]:
    """The JSON file written beside the HTML report."""
    return json.loads(Path(path).read_text())
