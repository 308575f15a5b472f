"""Completion candidates of one request and their ranking features.

Three sources: the exact prefix index (most-popular completion, personalised, typo tolerant),
suffix-built completions for rare prefixes, and the session context. Each candidate gets one
row of :data:`FEATURES`; the MPC signals (exact rank, count, score) are features, so the learned
order starts from MPC and can only add to it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from funnel.suggest.completion import QueryCompleter
from funnel.suggest.context import SessionContext, context_candidates
from funnel.suggest.lm import NgramLM
from funnel.suggest.normalize import BlockList
from funnel.suggest.query_stats import QueryStats
from funnel.suggest.rare import SuffixCompleter

FEATURES = [
    "src_exact", "src_rare", "src_context", "exact_rank", "exact_score", "logged", "log_count",
    "log_score", "recency", "lm_total", "lm_avg", "lm_gain", "suffix_count", "suffix_words",
    "n_chars", "n_words", "extra_chars", "prefix_chars", "n_exact", "typo", "rewrite",
    "category_match",
    "market_match", "has_previous", "previous_overlap", "previous_equal", "previous_extends",
]


@dataclass
class Sources:
    """The fitted parts candidates come from and are scored with."""

    completer: QueryCompleter
    suffixes: SuffixCompleter
    lm: NgramLM
    stats: QueryStats
    block: BlockList
    lm_floor: float  # per-token log-probability below which a built completion is implausible


def gather(src: Sources, prefix: str, ctx: SessionContext, pool: int
           ) -> tuple[list[str], np.ndarray]:
    """The candidates of a normalized ``prefix`` and their feature rows (len(FEATURES) cols).

    Suffix-built and context candidates that are not logged queries must pass the block list
    and the language-model floor; logged queries always may.
    """
    cq = src.completer
    exact, exact_scores = cq.complete(prefix, min(pool, cq.candidates),
                                      categories=ctx.categories, market=ctx.market,
                                      normalize=False)
    rows: dict[str, list[float]] = {}
    for r, (q, s) in enumerate(zip(exact, exact_scores.tolist(), strict=True)):
        rows[q] = [1.0, 0.0, 0.0, float(r), math.log1p(s), 0.0, -1.0]
    n_pool = float(len(exact))
    for q, s, j in src.suffixes.candidates(prefix):
        row = rows.get(q)
        if row is None:
            rows[q] = [0.0, 1.0, 0.0, n_pool, 0.0, math.log1p(s), float(j)]
        else:
            row[1] = 1.0
            row[5], row[6] = math.log1p(s), float(j)
    for q in context_candidates(cq, prefix, ctx.previous_query):
        row = rows.get(q)
        if row is None:
            rows[q] = [0.0, 0.0, 1.0, n_pool, 0.0, 0.0, -1.0]
        else:
            row[2] = 1.0
    if not rows:
        return [], np.zeros((0, len(FEATURES)))
    texts = list(rows)
    n = len(texts)
    head = prefix[: prefix.rfind(" ") + 1].strip()
    lm_total, n_tok = src.lm.score([*texts, head] if head else texts)
    head_lm = float(lm_total[n]) if head else 0.0
    lm_l = lm_total[:n].tolist()
    lm_avg = (lm_total[:n] / n_tok[:n]).tolist()
    at = src.stats.lookup(texts).tolist()
    built = [i for i in range(n) if at[i] < 0]
    clash = dict(zip(built, src.lm.clashes([texts[i] for i in built], head.count(" ") + 1)
                     .tolist(), strict=True)) if built and head else {}
    st = src.stats
    floor, block = src.lm_floor, src.block
    blocking = bool(block.terms or block.phrases)
    cats = {st.category_id(c) for c in ctx.categories}
    has_mkt = ctx.market is not None
    mkt = st.market_id(ctx.market)
    prev = ctx.previous_query
    prev_words = set(prev.split())
    prev_head = prev + " "
    plen, stripped = float(len(prefix)), prefix.rstrip()
    kept: list[str] = []
    out: list[list[float]] = []
    for i, t in enumerate(texts):
        r = at[i]
        if r < 0 and (lm_avg[i] < floor or clash.get(i, False)
                      or (blocking and block.blocks(t))):
            continue  # a built completion that is not a plausible query
        b = rows[t]
        if r >= 0:
            lc, ls, rc = (math.log1p(float(st.count_[r])), math.log1p(float(st.score_[r])),
                          float(st.recency_[r]))
            qc, qm = int(st.category_[r]), int(st.market_[r])
        else:
            lc = ls = rc = 0.0
            qc = qm = -1
        words = t.split()
        nw = len(words)
        typed = t.startswith(prefix) or t == stripped
        if prev:
            pf = [1.0, len(prev_words.intersection(words)) / nw, float(t == prev),
                  float(t.startswith(prev_head))]
        else:
            pf = [0.0, -1.0, 0.0, 0.0]
        kept.append(t)
        out.append([
            b[0], b[1], b[2], b[3], b[4], float(r >= 0), lc, ls, rc, lm_l[i], lm_avg[i],
            lm_l[i] - head_lm, b[5], b[6], float(len(t)), float(nw), len(t) - plen, plen,
            n_pool, float(not typed and b[2] == 0.0), float(not typed and b[2] > 0.0),
            -1.0 if qc < 0 else float(qc in cats),
            -1.0 if qm < 0 or not has_mkt else float(qm == mkt), *pf])
    if not kept:
        return [], np.zeros((0, len(FEATURES)))
    return kept, np.array(out)
