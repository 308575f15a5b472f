"""Per-stage figures on the held-out period, each computed by that stage's own metric code.

- ranker: AUC / group AUC / logloss / ECE (``funnel.rank.metrics``) of the served ranker on
  held-out impressions, features assembled by ``ServingRanker.columns`` from the replayed
  state (the logged position replaces the serving position, as in training), with and
  without the session state; on synthetic data the Bayes-optimal figures of the true p_click
  (``funnel.data.synthetic.bayes_metrics``) on the same rows;
- recall: recall@K per source and merged (``funnel.recall.evaluate.recall_table``);
- suggestion: completion MRR of held-out searches (``funnel.suggest.evaluate``);
- embeddings: category cohesion of nearest neighbours (``funnel.embed.evaluate``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb
import numpy as np

from funnel.evaluate.cases import Case, HeldOut
from funnel.features.personalization import RecentActions


def ranker_predictions(engine: Any, requests: Sequence[Case]) -> dict[str, np.ndarray]:
    """Labels, predictions (as served / anonymous / without the user id / without the session
    state), true p_click and request groups, row-aligned. The last two split the
    personalization gain between the ranker's user-id embedding and the session features."""
    rank = engine.rank
    y: list[np.ndarray] = []
    p: list[np.ndarray] = []
    p0: list[np.ndarray] = []
    p_no_user: list[np.ndarray] = []
    p_no_session: list[np.ndarray] = []
    truth: list[np.ndarray] = []
    group: list[np.ndarray] = []
    for g, case in enumerate(requests):
        ids = [i for i, _, _ in case.impressions]
        pos = np.array([q for _, q, _ in case.impressions], dtype=np.int64)
        targets = set(case.targets)
        # as served (the user's id and state) and as for an anonymous visitor (neither)
        empty = RecentActions(max_len=case.state.max_len)
        for user, state, sink in ((case.user_id, case.state, p), (None, empty, p0),
                                  (None, case.state, p_no_user),
                                  (case.user_id, empty, p_no_session)):
            cols = rank.columns(ids, query=case.query, market=case.market, state=state,
                                user_id=user)
            cols["position"] = pos
            sink.append(np.asarray(rank.calibrator.predict(rank.ranker.predict_proba(cols)),
                                   dtype=np.float64))
        y.append(np.array([i in targets for i in ids], dtype=np.float64))
        truth.append(np.array([np.nan if t is None else t for _, _, t in case.impressions],
                              dtype=np.float64))
        group.append(np.full(len(ids), g, dtype=np.int64))
    cat = (lambda parts: np.concatenate(parts) if parts else np.empty(0))  # noqa: E731
    return {"y": cat(y), "p": cat(p), "p_no_state": cat(p0), "p_no_user": cat(p_no_user),
            "p_no_session": cat(p_no_session), "p_true": cat(truth), "group": cat(group)}


def ranker_figures(preds: dict[str, np.ndarray]) -> dict[str, float]:
    """Ranker metrics of ``ranker_predictions`` output (empty when they cannot be computed)."""
    from funnel.rank.metrics import auc, ece, group_auc, logloss

    y = preds["y"]
    out: dict[str, float] = {}
    if y.size == 0 or y.min() == y.max():
        return out
    out["rank.impressions"] = float(y.size)
    out["rank.requests"] = float(len(np.unique(preds["group"])))
    out["rank.ctr"] = float(y.mean())
    for tag, key in (("", "p"), (".no_personalization", "p_no_state"),
                     (".no_user_id", "p_no_user"), (".no_session", "p_no_session")):
        if key not in preds:
            continue
        p = preds[key]
        out[f"rank{tag}.auc"] = auc(y, p)
        out[f"rank{tag}.group_auc"] = group_auc(y, p, preds["group"])
        out[f"rank{tag}.logloss"] = logloss(y, p)
        out[f"rank{tag}.ece"] = ece(y, p)
    truth = preds["p_true"]
    if truth.size and not np.isnan(truth).any():
        from funnel.data.synthetic import bayes_metrics

        b_auc, b_ll = bayes_metrics(truth, y.astype(bool))
        out["bayes.auc"] = b_auc
        out["bayes.logloss"] = b_ll
        out["bayes.group_auc"] = group_auc(y, truth, preds["group"])
        out["gap.auc"] = b_auc - out["rank.auc"]
        out["gap.logloss"] = out["rank.logloss"] - b_ll
        out["gap.group_auc"] = out["bayes.group_auc"] - out["rank.group_auc"]
    return out


def recall_figures(engine: Any, held: HeldOut, ks: Sequence[int] = (10, 100, 500)
                   ) -> dict[str, float]:
    """``recall.{source}.{click|booking}.recall@K`` over the held-out cases; with a generative
    source also ``merged_without_generative`` and the paired gain of the merged list with it
    (``recall.generative_gain.{kind}.recall@K`` and its ``.ci95``, per case)."""
    from funnel.evaluate.metrics import mean_ci
    from funnel.evaluate.replay import GENERATIVE
    from funnel.recall.evaluate import MERGED, EvalCase, hit, recall_ranks, recall_rows

    cases: list[EvalCase] = []
    for kind in ("search", "next_click", "booking"):
        for case in held.cases[kind]:
            target_kind = "booking" if kind == "booking" else "next_click"
            recent = tuple(case.state.clicks[-5:])
            cases += [EvalCase(recent, t, target_kind, case.market, case.query or None)
                      for t in case.targets]
    if not cases:
        return {}
    mergers = {MERGED: engine.recall.merger}
    without = f"{MERGED}_without_{GENERATIVE}"
    if GENERATIVE in engine.recall.sources:
        mergers[without] = engine.without_recall_source(GENERATIVE).recall.merger
    ranks = recall_ranks(list(engine.recall.sources.values()), cases, k=max(ks),
                         mergers=mergers)
    out: dict[str, float] = {}
    for row in recall_rows(ranks, cases, ks):
        label = "click" if row["target"] == "next_click" else "booking"
        for key, value in row.items():
            if key not in ("source", "target"):
                out[f"recall.{row['source']}.{label}.{key}"] = float(value)
    if without in ranks:  # paired per case: the merged list with the source minus without it
        for target_kind, label in (("next_click", "click"), ("booking", "booking")):
            rows = [i for i, c in enumerate(cases) if c.kind == target_kind]
            for k in ks if rows else ():
                diff = np.array([float(hit(ranks[MERGED][i], k)) - float(hit(ranks[without][i], k))
                                 for i in rows])
                mean, half = mean_ci(diff)
                out[f"recall.{GENERATIVE}_gain.{label}.recall@{k}"] = mean
                out[f"recall.{GENERATIVE}_gain.{label}.recall@{k}.ci95"] = half
    return out


def suggest_figures(engine: Any, con: duckdb.DuckDBPyConnection, split_ms: int, *,
                    k: int = 10, max_searches: int = 500, seed: int = 0) -> dict[str, float]:
    """Completion MRR of held-out searches: the served suggester vs most-popular completion."""
    if engine.suggest is None:
        return {}
    from funnel.suggest.evaluate import MostPopularCompletion, completion_metrics
    from funnel.suggest.mining import load_searches

    model = engine.suggest
    cfg = model.config
    test = load_searches(con, config=cfg.mining() if cfg is not None else None, since_ms=split_ms)
    rows = np.arange(len(test))
    if len(rows) == 0:
        return {}
    if len(rows) > max_searches:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_searches, replace=False))
    queries = [str(test.text[r]) for r in rows]
    users = [str(test.user[r]) for r in rows]
    ours = completion_metrics(lambda p, kk, t: model.complete(p, kk, user_id=users[t])[0],
                              queries, k=k)
    mpc = MostPopularCompletion().fit(model.queries_, model.query_stats_["count"])
    base = completion_metrics(lambda p, kk, t: mpc.complete(p, kk), queries, k=k)
    return {"suggest.searches": float(len(queries)), "suggest.prefixes": ours["pairs"],
            "suggest.mrr": ours["mrr"], f"suggest.success@{k}": ours[f"success@{k}"],
            "suggest.mpc.mrr": base["mrr"], f"suggest.mpc.success@{k}": base[f"success@{k}"]}


def embedding_figures(engine: Any) -> dict[str, float]:
    """Share of nearest neighbours with the same category (and the same within a market)."""
    if engine.item_vectors is None:
        return {}
    from funnel.embed.evaluate import neighbour_cohesion

    table = engine.item_vectors
    ids = list(table.ids)
    attrs = engine.catalog.attributes(ids)
    category = dict(zip(ids, attrs["category"], strict=True))
    market = dict(zip(ids, attrs["market"], strict=True))
    out = {"embed.items": float(len(ids)),
           "embed.mean_random_cosine": mean_random_cosine(table.vectors)}
    if all(c is None for c in category.values()):
        return out
    return {
        **out,
        "embed.category_cohesion@10": neighbour_cohesion(ids, table.vectors, category, k=10),
        "embed.category_cohesion_in_market@10": neighbour_cohesion(
            ids, table.vectors, category, k=10, within=market),
    }


def mean_random_cosine(vectors: np.ndarray, pairs: int = 5000, seed: int = 0) -> float:
    """Mean cosine of random distinct item pairs: near 0 for a spread-out space, near 1 when
    every vector points the same way (a collapsed embedding carries little similarity signal)."""
    v = np.asarray(vectors, dtype=np.float64)
    if len(v) < 2:
        return float("nan")
    u = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    rng = np.random.default_rng(seed)
    a = rng.integers(0, len(u), pairs)
    b = (a + rng.integers(1, len(u), pairs)) % len(u)  # never the same row
    return float((u[a] * u[b]).sum(1).mean())
