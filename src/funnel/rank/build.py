"""Train the configured rankers from a workspace into the ``rank`` artifact component.

Layout of ``<artifact>/rank/``::

    metrics.json        per-model test metrics, Bayes-optimal figures, the split
    serving.json        which model serves, calibrator, item-counter prior, recent_k
    models/<name>/      each ranker's config.json + features.json + weights / model.txt
    cvr/                optional post-click booking model (pCVR) for pCTR x pCVR
    items.parquet       item snapshot (attributes + counters at the end of the log) for serving
    reliability.png     reliability plot of the serving model before/after calibration
    importance.json     permutation importance (test-slice AUC drop per feature spec, interval)
                        and the model's own importance, per model
    heldout_scores.parquet  the serving model's scores on the validation and test
                        impressions (event_id, group_id, click, score): logged lists scored by
                        a ranker that never trained on them, which the listwise re-ranker
                        learns from

A store without impressions (a click log) trains the same rankers on clicks against sampled
negatives (:mod:`funnel.rank.implicit`); ``metrics.json`` then holds the sampling figures
(``implicit.*``) and the held-out AUC of single recall signals (``baseline.*``) beside the models'.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from funnel.artifacts import ArtifactBuild
from funnel.config import section, to_mapping
from funnel.embed.types import TypeEmbeddings, TypeLookup
from funnel.exceptions import ConfigError, ModelFitError
from funnel.features.history import DEFAULT_HISTORY_LEN
from funnel.features.personalization import ItemVectorLookup, cooccurrence_vectors
from funnel.features.training_set import TrainingRows, TrainingSetConfig, build_training_set
from funnel.rank.base import Ranker, specs_of
from funnel.rank.calibration import get_calibrator, reliability_plot
from funnel.rank.defaults import CLICK_LOG_FEATURES, DEFAULT_FEATURES
from funnel.rank.implicit import ImplicitConfig, implicit_training_set
from funnel.rank.importance import permutation_importance, select_features
from funnel.rank.metrics import auc, evaluate, logloss, one_positive_group_auc, one_positive_hr_mrr
from funnel.rank.recall_features import RECALL_FEATURE_SOURCES, recall_feature_specs
from funnel.rank.registry import RANKERS, get_ranker
from funnel.rank.split import (
    STREAM_MEMORY,
    Split,
    group_split,
    memory_split,
    ranking_data,
    streamed_split,
    time_split,
)
from funnel.rank.torch_ranker import TorchRanker
from funnel.vectors import save_vectors
from funnel.workspace import Workspace


@dataclass(frozen=True)
class RankConfig:
    """The ``[rank]`` table of funnel.toml."""

    models: tuple[str, ...] = ("lr", "fm", "deepfm", "gbdt")
    serve_model: str = "deepfm"
    epochs: int = 8
    batch_size: int = 1024
    embedding_dim: int = 8
    learning_rate: float = 0.003
    weight_decay: float = 1e-3
    """L2 on every weight, embeddings included (Adam's coupled decay). Without it FM and DeepFM
    overfit the id and cross fields after one epoch on the marketplace (see rank.defaults)."""
    negative_rate: float = 1.0
    calibration: str = "isotonic"
    valid_fraction: float = 0.1
    test_fraction: float = 0.2
    recent_k: int = 10
    history_len: int = DEFAULT_HISTORY_LEN
    """Actions of the user's behaviour sequence in a row (``hist_*`` columns) and the length the
    ``din`` ranker attends over; serving cuts the live state to the same length."""
    oof_folds: int = 2
    """Session features of training rows from item vectors trained without the row's user
    (this many user folds, ``rank.oof_vectors``); 0 = the served vectors (skewed, see there).
    Only when the embeddings stage was built (the co-click fallback is always full-data)."""
    train_cvr: bool = True
    implicit_models: tuple[str, ...] = ("gbdt",)
    """The models trained when the store has no impressions (clicks with sampled negatives):
    GBDT alone by default, the best of the four on the DIGINETICA sample (test AUC .731 vs
    DeepFM .709, LR .673) and the one that fits a 70k-click log in seconds, not minutes."""
    implicit_serve_model: str = "gbdt"
    implicit_order: str = "auto"
    """What a click-trained build serves: "fused" (recall's fused order; the ranker is trained
    and measured only), "ranker", or "auto": the ranker where it beats the fused order on both
    HR@20 and MRR@20 of at least ``implicit_min_lists`` held-out candidate lists (the latest
    sessions' clicks), else the fused order. On MovieLens-100K (444 lists) it serves the ranker
    (next-item HR@20 0.290 vs 0.267 fused); on the DIGINETICA sample (30 lists) the fused order,
    where the ranker's served HR@20 was 0.318 vs 0.341."""
    implicit_min_lists: int = 200
    importance_repeats: int = 5
    """Permutation importance of every model on the test slice (``rank.importance``): this many
    seeded shuffles per feature spec (0 = off); written to ``importance.json``."""
    importance_rows: int = 5000
    """At most this many test rows for the importance (each shuffle re-scores them all)."""
    select: bool = False
    """Drop the feature specs whose permutation interval on the validation slice includes 0
    and refit (``funnel train --select``); the model saves what it dropped and why."""
    ddp_processes: int = 0
    """Train each torch ranker with this many local ``torchrun`` processes reading Parquet
    shards of the training rows (``funnel.distributed``); 0 = in this process. With
    impressions, N >= 1 also streams the rows (``rank.split.streamed_split``): the training
    slice goes to the shards a batch at a time and never into the build process (1 = one
    trainer process streaming every shard); rankers that are not torch read it back whole."""
    seed: int = 0
    features: list[dict[str, Any]] = field(default_factory=list)
    """Feature specs (JSON form); empty = the defaults in ``funnel.rank.defaults``."""

    def __post_init__(self) -> None:
        unknown = [m for m in self.models if m not in RANKERS]
        if unknown or not self.models:
            raise ConfigError(
                f"[rank] models: unknown {unknown or 'empty list'}; choose from {sorted(RANKERS)}"
            )
        if self.serve_model not in self.models:
            raise ConfigError(
                f"[rank] serve_model {self.serve_model!r} must be one of models {self.models}"
            )
        bad = [m for m in self.implicit_models if m not in RANKERS]
        if bad or not self.implicit_models or self.implicit_serve_model not in \
                self.implicit_models:
            raise ConfigError(
                f"[rank] implicit_models {list(self.implicit_models)} must be non-empty names "
                f"from {sorted(RANKERS)} and hold implicit_serve_model "
                f"{self.implicit_serve_model!r}")
        if self.implicit_order not in ("fused", "ranker", "auto"):
            raise ConfigError(f"[rank] implicit_order {self.implicit_order!r} must be one of "
                              "'fused', 'ranker', 'auto'")
        if not 0 < self.valid_fraction + self.test_fraction < 0.9:
            raise ConfigError("[rank] valid_fraction + test_fraction must be in (0, 0.9)")
        if not isinstance(self.importance_repeats, int) or self.importance_repeats == 1 \
                or self.importance_repeats < 0:
            raise ConfigError(f"[rank] importance_repeats: expected 0 (off) or an int >= 2, got "
                              f"{self.importance_repeats!r}")
        if not isinstance(self.importance_rows, int) or self.importance_rows < 100:
            raise ConfigError(f"[rank] importance_rows: expected an int >= 100, got "
                              f"{self.importance_rows!r}")
        if not isinstance(self.ddp_processes, int) or self.ddp_processes < 0:
            raise ConfigError(f"[rank] ddp_processes: expected 0 (off) or a positive int, got "
                              f"{self.ddp_processes!r}")
        if not isinstance(self.oof_folds, int) or self.oof_folds == 1 or self.oof_folds < 0:
            raise ConfigError(f"[rank] oof_folds: expected 0 (off) or an int >= 2, got "
                              f"{self.oof_folds!r}")

    @classmethod
    def from_workspace(cls, workspace: Workspace) -> RankConfig:
        return section(workspace.config(), "rank", cls)


MIN_ROWS = 100
"""Fewer impressions (or, without them, clicks) than this train no ranker."""
CVR_SKIP = ("no impressions; ingest impression events (with the clicks and bookings they led to) "
            "to train the booking model")
"""Why a click-trained rank stage has no post-click booking model (``skipped.cvr``)."""


def use_catalog_items(con: duckdb.DuckDBPyConnection, build: ArtifactBuild) -> bool:
    """Make ``items`` on ``con`` read the build's catalog when the catalog stage derived items
    from the events (a click log without a catalog): every query of this stage then sees them.
    True when it did."""
    path = build.path / "catalog" / "items.parquet"
    meta = build.path / "catalog" / "meta.json"
    if not path.exists() or not meta.exists() \
            or not json.loads(meta.read_text()).get("derived_from_events"):
        return False
    items = pq.read_table(path)
    for name, kind in (("attributes", pa.string()), ("created_at", pa.timestamp("ms", tz="UTC"))):
        if name not in items.column_names:
            items = items.append_column(name, pa.nulls(items.num_rows, kind))
    con.register("items", items)
    return True


def _tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables")
            .fetchall()}


def item_vectors(
    con: duckdb.DuckDBPyConnection, embeddings_dir: Path | None, types_out: Path | None = None,
    seed: int = 0,
) -> ItemVectorLookup:
    """Embedding-artifact vectors if built, else an SVD of in-session co-clicks (fallback).

    User/item types come from the embeddings artifact's ``type`` table when it has one; else
    they are trained here from the store's bookings (saved to ``types_out`` for serving), so
    ``emb_type_sim`` is never silently zero.
    """
    markets = dict(con.sql("SELECT item_id, market FROM items").fetchall())
    catalog = con.sql(
        "SELECT item_id, market, category, brand, price FROM items"
    ).to_arrow_table().to_pylist()
    if embeddings_dir is not None and (embeddings_dir / "item_vectors.npy").exists():
        lookup = ItemVectorLookup.from_directory(embeddings_dir, item_market=markets,
                                                 catalog=catalog)
    else:
        if "sessions" in _tables(con):
            sessions = [s for (s,) in con.sql("SELECT items FROM sessions").fetchall() if s]
        else:
            sessions = [
                s for (s,) in con.sql(
                    "SELECT list(item_id ORDER BY ts) FROM events WHERE event_type = 'click' "
                    "GROUP BY user_id, CAST(ts AS DATE)"
                ).fetchall() if s
            ]
        ids, vec = cooccurrence_vectors(sessions, dim=16)
        lookup = ItemVectorLookup(ids, vec, item_market=markets)
    if lookup.item_brand is None:  # user_brand_lift
        lookup.item_brand = {str(r["item_id"]): r["brand"] for r in catalog}
    if lookup.item_category is None:  # user_category_lift
        lookup.item_category = {str(r["item_id"]): r.get("category") for r in catalog}
    if lookup.types is None:
        model = fit_types(con, seed)
        if model is not None:
            lookup.types = TypeLookup.from_model(model, catalog)
            if types_out is not None:
                model.save(types_out)
    return lookup


def fit_types(con: duckdb.DuckDBPyConnection, seed: int = 0) -> TypeEmbeddings | None:
    """User/item-type embeddings from the store's booking events (None if too few)."""
    bookings = con.sql(
        "SELECT user_id, ts, item_id FROM events "
        "WHERE event_type = 'booking' AND item_id IS NOT NULL AND user_id IS NOT NULL"
    ).to_arrow_table()
    if bookings.num_rows < 20:
        return None
    items = con.sql("SELECT item_id, market, category, brand, price FROM items").to_arrow_table()
    try:
        return TypeEmbeddings(16, seed=seed).fit(bookings, items)
    except ModelFitError:
        return None


def item_snapshot(con: duckdb.DuckDBPyConnection, prior_ctr: float) -> pa.Table:
    """Item attributes and counters over the whole log: what serving knows about each item."""
    return con.sql(f"""
        SELECT it.item_id, it.title, it.category, it.brand, it.market, it.price, it.bid,
               coalesce(c.imps, 0) AS item_imps_before,
               coalesce(c.clicks, 0) AS item_clicks_before,
               coalesce(c.books, 0) AS item_bookings_before,
               (coalesce(c.clicks, 0) + 10 * {prior_ctr!r}) / (coalesce(c.imps, 0) + 10)
                   AS item_ctr_before
        FROM items it LEFT JOIN (
            SELECT item_id,
                   count(*) FILTER (WHERE event_type = 'impression') AS imps,
                   count(*) FILTER (WHERE event_type = 'click') AS clicks,
                   count(*) FILTER (WHERE event_type = 'booking') AS books
            FROM events WHERE item_id IS NOT NULL GROUP BY item_id
        ) c USING (item_id)
    """).to_arrow_table()


def make_ranker(name: str, config: RankConfig, features: list[dict[str, Any]],
                verbose: bool = False) -> Ranker:
    cls = get_ranker(name)
    if name in ("gbdt", "lambdamart", "rf"):
        return cls(features, seed=config.seed, verbose=False)
    extra = {"history_len": config.history_len} if name == "din" else {}
    return cls(
        features, epochs=config.epochs, batch_size=config.batch_size,
        embedding_dim=config.embedding_dim, learning_rate=config.learning_rate,
        weight_decay=config.weight_decay, seed=config.seed, verbose=verbose, **extra,
    )


def build_rank(
    workspace: Workspace,
    build: ArtifactBuild,
    config: RankConfig | None = None,
    *,
    verbose: bool = False,
    log: Callable[[str], None] | None = None,
    implicit: ImplicitConfig | None = None,
) -> dict[str, Any]:
    """Train every configured ranker, evaluate on the most recent impressions, write ``rank/``.

    Without impressions (fewer than ``MIN_ROWS``), the rankers train on clicks with sampled
    negatives (``implicit``, :mod:`funnel.rank.implicit`) and are evaluated on the most recent
    clicks against their negatives. Returns flat metrics (``<model>.auc``, ``<model>.logloss``,
    ``bayes.logloss``, gaps, ``implicit.*`` and ``baseline.*`` for click training, ...).
    """
    config = config or RankConfig.from_workspace(workspace)
    build.path.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=build.path, prefix="rows-") as scratch:
        return _build_rank(workspace, build, config, Path(scratch), verbose=verbose,
                           say=log or (lambda _msg: None), implicit=implicit)


def _columns_read(config: RankConfig, features: list[dict[str, Any]]) -> set[str]:
    """Every training-row column a configured ranker (or the booking model) fits from, plus
    the ids and labels the build reads."""
    from funnel.distributed.spec_fit import fit_columns

    columns = {"event_id", "group_id", "click", "booking", *fit_columns(specs_of(features))}
    for name in config.models:
        model = make_ranker(name, config, features)
        if isinstance(model, TorchRanker):  # DIN adds its history fields
            columns |= set(fit_columns(model._feature_specs()))
    return columns


def _enough_impressions(n: int, workspace: Workspace) -> int:
    if n < MIN_ROWS:
        raise ModelFitError(
            f"{workspace.store_path}: only {n} impressions to train the ranker on; need "
            f">= {MIN_ROWS}; ingest a longer log")
    return n


def _build_rank(
    workspace: Workspace, build: ArtifactBuild, config: RankConfig, scratch: Path, *,
    verbose: bool, say: Callable[[str], None], implicit: ImplicitConfig | None,
) -> dict[str, Any]:
    """:func:`build_rank` with its scratch directory (training rows, shards) made."""
    con = workspace.connect(read_only=True)
    try:
        missing = {"events", "items"} - _tables(con)
        if missing:
            raise ConfigError(f"{workspace.store_path}: missing table(s) {sorted(missing)}; "
                              "run 'funnel ingest' or 'funnel generate' first")
        use_catalog_items(con, build)
        n_imps = _count(con, "impression")
        clicks_only = n_imps < MIN_ROWS
        if clicks_only:
            n_clicks = _count(con, "click")
            if n_clicks < MIN_ROWS:
                raise ModelFitError(
                    f"{workspace.store_path}: only {n_imps} impressions and {n_clicks} clicks "
                    f"in the store; need >= {MIN_ROWS} of either to train a ranker")
            say(f"{n_imps} impressions: training on {n_clicks:,} clicks with sampled negatives")
        emb_dir = build.path / "embeddings"
        out = build.component("rank")
        vectors = item_vectors(con, emb_dir if emb_dir.exists() else None, types_out=out,
                               seed=config.seed)
        say(f"item vectors: {len(vectors.ids)} items, dim {vectors.dim}")
        ts_cfg = TrainingSetConfig(recent_k=config.recent_k, history_len=config.history_len,
                                   seed=config.seed)
        vectors_for = None
        if config.oof_folds and (emb_dir / "item_vectors.npy").exists() \
                and "sessions" in _tables(con):
            from funnel.rank.oof_vectors import out_of_fold_vectors

            vectors_for = out_of_fold_vectors(con, vectors, emb_dir, config.oof_folds)
            say(f"out-of-fold item vectors: {config.oof_folds} user folds"
                if vectors_for is not None else "out-of-fold vectors: too few sessions, off")
        features = list(config.features) or DEFAULT_FEATURES
        recall_sources: tuple[str, ...] = ()
        if clicks_only and not config.features:  # what recall knew: the log's strongest signal
            recall_sources = RECALL_FEATURE_SOURCES
            features = [*CLICK_LOG_FEATURES, *recall_feature_specs(recall_sources)]
        # the columns some model reads, and the ids and labels: the held-out slices (and a
        # training slice in memory) keep only these
        keep = None if clicks_only else _columns_read(config, features)
        sampling: dict[str, float] = {}
        split: Split
        streamed = bool(config.ddp_processes) and not clicks_only
        if clicks_only:
            from funnel.recall.build import RecallConfig

            icfg = implicit or ImplicitConfig(recent_k=config.recent_k, seed=config.seed)
            table, lists, sampling = implicit_training_set(
                con, icfg, vectors, vectors_for,
                recall_config=section(workspace.config(), "recall", RecallConfig))
            if table.num_rows < MIN_ROWS:  # the funnel serves the fused recall order
                return {"skipped": f"only {table.num_rows} rows of recalled clicks and their "
                        f"negatives; need >= {MIN_ROWS}: no click was recalled from other "
                        "sessions often enough (a longer log enables it)"}
            groups = np.asarray(table.column("group_id").to_numpy(zero_copy_only=False))
            split = memory_split(table, group_split(groups, config.valid_fraction,
                                                    config.test_fraction),
                                 config.negative_rate, config.seed)
            n_rows = table.num_rows
            del table  # the split holds what is read
        elif streamed:  # the training slice goes to shard files, never into this process
            con.execute(f"SET memory_limit = '{STREAM_MEMORY}'")  # this build's connection
            with TrainingRows.open(con, ts_cfg, vectors, vectors_for, workdir=scratch) as stream:
                n_rows = _enough_impressions(stream.rows, workspace)
                say(f"training set: streaming {n_rows:,} impressions to shards")
                split = streamed_split(stream, config.valid_fraction, config.test_fraction,
                                       config.negative_rate, config.seed, scratch / "train",
                                       config.ddp_processes, keep=keep)
        else:
            table = build_training_set(con, ts_cfg, vectors, vectors_for, workdir=scratch)
            n_rows = _enough_impressions(table.num_rows, workspace)
            split = memory_split(table, time_split(n_rows, config.valid_fraction,
                                                   config.test_fraction),
                                 config.negative_rate, config.seed, keep=keep)
            del table  # the columns no model reads go with it
        if vectors_for is not None:
            vectors_for.save(out / "oof")
        truth = None
        if "truth" in _tables(con):
            truth = dict(con.sql("SELECT event_id, p_click FROM truth WHERE p_click IS NOT NULL")
                         .fetchall())
        prior = split.click_rate
        snapshot = item_snapshot(con, prior)
    finally:
        con.close()
    rows = "rows of recalled clicks and their negatives" if clicks_only else "impressions"
    say(f"training set: {n_rows:,} {rows}, positive share {prior:.4f}")
    valid, test = split.valid, split.test
    if not (emb_dir / "item_vectors.npy").exists():  # fallback vectors travel with the model
        save_vectors(out, "item", vectors.ids, vectors.vectors)
    metrics: dict[str, Any] = {"rows.train": float(split.train_rows),
                               "rows.test": float(len(test))}
    model_names, serve_model = config.models, config.serve_model
    if clicks_only:
        model_names, serve_model = config.implicit_models, config.implicit_serve_model
        metrics["trained_on"] = "clicks with sampled negatives (no impressions)"
        metrics.update(sampling)
        metrics.update(_baselines(split.test_rows))
    bayes = None
    if truth:
        ids = split.test_rows.column("event_id").to_pylist()
        p_true = np.array([truth.get(e, np.nan) for e in ids])
        if np.isfinite(p_true).all():
            bayes = {"auc": auc(test.label, p_true), "logloss": logloss(test.label, p_true)}
            metrics["bayes.auc"], metrics["bayes.logloss"] = bayes["auc"], bayes["logloss"]
    models: dict[str, Ranker] = {}
    importance: dict[str, dict[str, Any]] = {}
    for name in model_names:
        say(f"training {name}")
        model = make_ranker(name, config, features, verbose)
        if config.ddp_processes and isinstance(model, TorchRanker):
            from funnel.distributed.launch import fit_with_torchrun

            shards = split.train_shards
            model, world = fit_with_torchrun(
                model, shards if shards is not None else split.train(), valid, build.path,
                config.ddp_processes)
            metrics[f"{name}.ddp_world_size"] = float(world)
        else:
            if split.train_shards is not None:
                say(f"{name} trains in this process: reading the {split.train_rows:,} streamed "
                    "training rows into memory (only torch rankers train from the shards)")
            model = model.fit(split.train(), valid)
        if config.select:
            chosen = select_features(model, split.train(), valid, test,
                                     repeats=config.importance_repeats or 5, seed=config.seed,
                                     max_rows=config.importance_rows)
            metrics.update(chosen.metrics(name))
            model = chosen.model
            say(f"{name}: kept {len(chosen.kept)} features, dropped "
                f"{', '.join(str(d['name']) for d in chosen.dropped) or 'none'}; AUC "
                f"{chosen.auc_before:.4f} -> {chosen.auc_after:.4f}; 500 candidates "
                f"{chosen.score_500_ms_before:.2f} -> {chosen.score_500_ms_after:.2f} ms")
        oob_auc = getattr(model, "oob_auc_", None)  # the random forest's out-of-bag AUC
        if oob_auc is not None:
            metrics[f"{name}.oob_auc"] = float(oob_auc)
        p = model.predict_proba(test.columns)
        if clicks_only:  # one positive per group: group AUC without a rank sort per group
            assert test.group is not None  # training-set rows carry their request's group
            for k, v in evaluate(test.label, p).items():
                metrics[f"{name}.{k}"] = v
            metrics[f"{name}.group_auc"] = one_positive_group_auc(test.label, p, test.group)
        else:
            for k, v in evaluate(test.label, p, test.group).items():
                metrics[f"{name}.{k}"] = v
        if bayes:
            metrics[f"{name}.gap_logloss"] = metrics[f"{name}.logloss"] - bayes["logloss"]
            metrics[f"{name}.gap_auc"] = bayes["auc"] - metrics[f"{name}.auc"]
        if config.importance_repeats:
            report = permutation_importance(model, test, repeats=config.importance_repeats,
                                            seed=config.seed, max_rows=config.importance_rows)
            metrics.update(report.metrics(name))
            importance[name] = report.to_dict()
        model.save(out / "models" / name)
        models[name] = model
    if importance:
        top = importance.get(serve_model, {}).get("features", [])
        metrics["importance.top"] = ", ".join(f["name"] for f in top[:3])
        (out / "importance.json").write_text(json.dumps(
            {"serve_model": serve_model, "held_out": "test", "models": importance}, indent=1))
    serving = models[serve_model]
    order = "ranker"
    if clicks_only:
        order = "ranker" if config.implicit_order == "ranker" else "fused"
        if lists.num_rows:
            compared = compare_with_fused(serving, lists)
            metrics.update(compared)
            # "auto": the learned order only where it does at least as well as recall's own
            if config.implicit_order == "auto" and \
                    compared["lists.n"] >= config.implicit_min_lists and \
                    compared["lists.hr20_ranker"] >= compared["lists.hr20_fused"] and \
                    compared["lists.mrr20_ranker"] >= compared["lists.mrr20_fused"]:
                order = "ranker"
        say(f"click-trained ranker: serving the {order} order ([rank] implicit_order "
            f"{config.implicit_order!r})")
        metrics["serving.order"] = order
    p_valid = serving.predict_proba(valid.columns)
    calibrator = get_calibrator(config.calibration).fit(p_valid, valid.label)
    p_test = serving.predict_proba(test.columns)
    p_cal = calibrator.predict(p_test)
    metrics["serving.ece_raw"] = evaluate(test.label, p_test)["ece"]
    metrics["serving.ece_calibrated"] = evaluate(test.label, p_cal)["ece"]
    (out / "reliability.png").write_bytes(reliability_plot(
        {serve_model: (p_test, test.label), "calibrated": (p_cal, test.label)},
        title=f"{serve_model} on the most recent {len(test):,} "
              f"{'clicks and their negatives' if clicks_only else 'impressions'}",
    ))
    if not clicks_only:
        pq.write_table(heldout_scores(pa.concat_tables([split.valid_rows, split.test_rows]),
                                      np.concatenate([p_valid, p_test])),
                       out / HELDOUT_SCORES)
    if clicks_only:
        metrics["skipped.cvr"] = CVR_SKIP
    elif config.train_cvr:
        cvr_rows = split.clicked_train_rows
        books = np.asarray(cvr_rows.column("booking"))
        if books.sum() >= 30 and (1 - books).sum() >= 30:
            cvr = ranking_data(cvr_rows, slice(0, cvr_rows.num_rows), "booking")
            cvr_model = make_ranker("gbdt", config, features).fit(cvr)
            cvr_model.save(out / "cvr")
            metrics["cvr.train_rows"] = float(len(cvr))
    pq.write_table(snapshot, out / "items.parquet")
    serving_cfg = {
        "model": serve_model,
        "calibrator": calibrator.to_dict(),
        "recent_k": config.recent_k,
        "history_len": config.history_len,
        "serving_position": 1,
        "recall_features": list(recall_sources),
        "order": order,
        "state": "session" if clicks_only else "user",  # what the training rows replayed
        "has_cvr": (out / "cvr").exists(),
    }
    (out / "serving.json").write_text(json.dumps(serving_cfg))
    (out / "metrics.json").write_text(json.dumps(
        {"metrics": metrics, "config": to_mapping(config)}, indent=2, sort_keys=True
    ))
    return metrics


HELDOUT_SCORES = "heldout_scores.parquet"


def heldout_scores(t: pa.Table, scores: np.ndarray) -> pa.Table:
    """``(event_id, group_id, click, score)`` of the held-out impressions ``t`` (validation and
    test): the re-rank stage trains on lists the ranker did not fit, so their scores look like
    serving's."""
    return pa.table({"event_id": t.column("event_id"), "group_id": t.column("group_id"),
                     "click": t.column("click"),
                     "score": pa.array(np.asarray(scores, dtype=np.float64))})


def compare_with_fused(model: Ranker, lists: pa.Table, k: int = 20) -> dict[str, float]:
    """HR@k and MRR@k of ``model``'s order and of the fused recall order (``rec_rrf``) on
    whole held-out candidate lists (``implicit_training_set``'s ``lists``)."""
    data = ranking_data(lists, slice(0, lists.num_rows), "click")
    groups = np.asarray(lists.column("group_id").to_numpy(zero_copy_only=False))
    label = np.asarray(data.label, dtype=np.float64)
    out: dict[str, float] = {"lists.n": float(len(np.unique(groups)))}
    for name, scores in (("ranker", np.asarray(model.predict_proba(data.columns), np.float64)),
                         ("fused", np.asarray(lists.column("rec_rrf"), np.float64))):
        hr, mrr = one_positive_hr_mrr(scores, label, groups, k)
        out[f"lists.hr{k}_{name}"], out[f"lists.mrr{k}_{name}"] = hr, mrr
    return out


def _count(con: duckdb.DuckDBPyConnection, event_type: str) -> int:
    rows = con.execute("SELECT count(*) FROM events WHERE event_type = ? "
                       "AND item_id IS NOT NULL", [event_type]).fetchall()
    return int(rows[0][0])


BASELINES = {"popularity": "item_clicks_before", "covisit": "rec_covisit_score",
             "cooc": "rec_cooc_score", "sr": "rec_sr_score", "sknn": "rec_sknn_score",
             "rrf": "rec_rrf",
             "emb_last_click": "emb_last_click_sim", "emb_click": "emb_click_sim"}
"""Single recall signals the click-trained ranker should beat: held-out AUC of each alone."""


def _baselines(t: pa.Table) -> dict[str, float]:
    """``baseline.<signal>.auc`` / ``.group_auc`` on the test rows (positives vs negatives)."""
    if t.num_rows == 0:
        return {}
    y = np.asarray(t.column("click"), dtype=np.float32)
    groups = np.asarray(t.column("group_id").to_numpy(zero_copy_only=False))
    out: dict[str, float] = {}
    for name, column in BASELINES.items():
        if column in t.column_names:
            score = np.asarray(t.column(column), dtype=np.float64)  # ties count one half
            out[f"baseline.{name}.auc"] = auc(y, score)
            out[f"baseline.{name}.group_auc"] = one_positive_group_auc(y, score, groups)
    return out
