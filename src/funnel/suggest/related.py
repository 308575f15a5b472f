"""Related queries ("people also search"): session co-occurrence, query embeddings, refinements.

Co-occurrence counts ordered pairs of queries within a few steps of each other in a search
session (the next query weighs most); embeddings add neighbours a session never paired; token
neighbours add the refinements (one word more) and generalisations (one word less) people
move to. Each is scaled to [0, 1] per anchor, weighted and summed, and candidates that only
re-spell the anchor (same token set) are dropped.

Related queries stay in the anchor's context ("barcelona loft" must not lead to "tokyo modern
villa" because both are lodgings a vector finds alike): a candidate from another market (or,
where either query has no clear market, another category) is kept only when at least
:data:`CROSS_MIN_SESSIONS` search sessions hold both, i.e. the logs show people moving between
them. See :func:`context_filter`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from funnel.suggest.normalize import normalize_query
from funnel.vectors import VectorTable

Neighbours = dict[int, dict[int, float]]

CROSS_MIN_SESSIONS = 3
"""Search sessions holding both queries that let a related query cross markets/categories."""

DOMINANT_SHARE = 0.6
"""A query belongs to a market (category) when this share of its searches (clicks) is there;
a generic query ('loft', 'hotel') belongs to none and is compared on nothing."""


def cooccurrence(sessions: list[list[int]], *, window: int = 3) -> Neighbours:
    """Pair weights within ``window`` steps: forward ``1/d``, backward ``0.5/d``, max-scaled."""
    acc: Neighbours = defaultdict(lambda: defaultdict(float))
    for ids in sessions:
        for i, a in enumerate(ids):
            for d in range(1, window + 1):
                if i + d >= len(ids):
                    break
                b = ids[i + d]
                if a == b:
                    continue
                acc[a][b] += 1.0 / d
                acc[b][a] += 0.5 / d
    out: Neighbours = {}
    for a, nb in acc.items():
        top = max(nb.values())
        out[a] = {b: w / top for b, w in nb.items()}
    return out


def embedding_neighbours(
    queries: list[str], table: VectorTable | None, *, top: int = 20, chunk: int = 1024
) -> Neighbours:
    """Cosine neighbours among ``queries`` that have a vector in ``table`` (clipped at 0)."""
    if table is None or not table.ids:
        return {}
    index = {q: i for i, q in enumerate(queries)}
    rows, ours = [], []
    for r, qid in enumerate(table.ids):
        j = index.get(normalize_query(qid))
        if j is not None:
            rows.append(r)
            ours.append(j)
    if len(rows) < 2:
        return {}
    vec = table.vectors[np.asarray(rows)].astype(np.float32)
    vec /= np.maximum(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12)
    ours_arr = np.asarray(ours)
    kk = min(top + 1, len(rows))
    out: Neighbours = {}
    for start in range(0, len(rows), chunk):
        sims = vec[start : start + chunk] @ vec.T  # (chunk, m)
        part = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
        for r in range(sims.shape[0]):
            a = int(ours_arr[start + r])
            nb = {}
            for c in part[r]:
                b = int(ours_arr[c])
                s = float(sims[r, c])
                if b != a and s > 0:
                    nb[b] = s
            if nb:
                out[a] = nb
    return out


def token_neighbours(queries: list[str], score: np.ndarray, *, top: int = 20) -> Neighbours:
    """Refinements and generalisations: queries with one token more (weight 1) or one token
    less (weight 0.5) than the anchor, the more searched first, scaled to [0, 1] per anchor."""
    sigs = [frozenset(q.split()) for q in queries]
    by_sig: dict[frozenset[str], int] = {}
    for i in np.argsort(-score, kind="stable"):
        by_sig.setdefault(sigs[int(i)], int(i))
    postings: dict[str, list[int]] = defaultdict(list)
    for i, sig in enumerate(sigs):
        for tok in sig:
            postings[tok].append(i)
    out: Neighbours = {}
    for a, sig in enumerate(sigs):
        if not sig:
            continue
        lists = sorted((postings[t] for t in sig), key=len)
        cand = set(lists[0]).intersection(*lists[1:]) if len(lists) > 1 else set(lists[0])
        sup = sorted((b for b in cand if len(sigs[b]) == len(sig) + 1),
                     key=lambda b: (-score[b], b))[:top]
        nb: dict[int, float] = {}
        if sup:
            best = float(score[sup[0]]) or 1.0
            nb.update({b: float(score[b]) / best for b in sup})
        for tok in sig:
            b = by_sig.get(sig - {tok})
            if b is not None and b != a:
                nb[b] = max(nb.get(b, 0.0), 0.5)
        if nb:
            out[a] = nb
    return out


def merge_related(
    queries: list[str],
    cooc: Neighbours,
    emb: Neighbours,
    tok: Neighbours | None = None,
    *,
    embedding_weight: float = 0.5,
    token_weight: float = 0.5,
    top: int = 10,
    keep: Callable[[int, int], bool] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merged top lists as CSR ``(indptr, ids, scores)``, deduped against the anchor; ``keep``
    (see :func:`context_filter`) drops candidates outside the anchor's context."""
    sigs = [frozenset(q.split()) for q in queries]
    indptr = [0]
    ids: list[int] = []
    scores: list[float] = []
    for a in range(len(queries)):
        merged: dict[int, float] = defaultdict(float)
        for b, w in cooc.get(a, {}).items():
            merged[b] += w
        for b, w in emb.get(a, {}).items():
            merged[b] += embedding_weight * w
        for b, w in (tok or {}).get(a, {}).items():
            merged[b] += token_weight * w
        seen = {sigs[a]}
        for b, s in sorted(merged.items(), key=lambda kv: (-kv[1], kv[0])):
            if sigs[b] in seen or (keep is not None and not keep(a, b)):
                continue
            seen.add(sigs[b])
            ids.append(b)
            scores.append(s)
            if len(seen) > top:
                break
        indptr.append(len(ids))
    return (
        np.asarray(indptr, dtype=np.int64),
        np.asarray(ids, dtype=np.int32),
        np.asarray(scores, dtype=np.float32),
    )


def dominant(counts: Mapping[str, float], *, share: float = DOMINANT_SHARE) -> str | None:
    """The value holding at least ``share`` of ``counts``, else None (no clear one)."""
    total = sum(counts.values())
    if total <= 0:
        return None
    value, n = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
    return value if n >= share * total else None


def query_markets(texts: Sequence[str], markets: Sequence[str | None],
                  index: Mapping[str, int], n: int) -> list[str | None]:
    """Each mined query's market: the dominant market of its searches (None if mixed)."""
    counts: list[Counter[str]] = [Counter() for _ in range(n)]
    for text, market in zip(texts, markets, strict=True):
        q = index.get(text)
        if q is not None and market is not None:
            counts[q][market] += 1
    return [dominant(c) for c in counts]


def query_categories(clicked: Sequence[Mapping[str, int]],
                     category_of: Callable[[str], str | None]) -> list[str | None]:
    """Each mined query's category: the dominant category of its clicked items (None if mixed
    or never clicked)."""
    out: list[str | None] = []
    for items in clicked:
        cats: Counter[str] = Counter()
        for item, n in items.items():
            cat = category_of(item)
            if cat is not None:
                cats[cat] += n
        out.append(dominant(cats))
    return out


def session_pairs(sessions: list[list[int]]) -> Counter[tuple[int, int]]:
    """Unordered query pairs -> how many search sessions hold both."""
    pairs: Counter[tuple[int, int]] = Counter()
    for ids in sessions:
        uniq = sorted(set(ids))
        for i, a in enumerate(uniq):
            for b in uniq[i + 1:]:
                pairs[(a, b)] += 1
    return pairs


def context_filter(
    markets: Sequence[str | None],
    categories: Sequence[str | None],
    sessions: list[list[int]],
    *,
    min_sessions: int = CROSS_MIN_SESSIONS,
) -> Callable[[int, int], bool]:
    """``keep(anchor, candidate)``: same context, or a crossing the sessions show.

    Two queries are in different contexts when both have a market and the markets differ, or,
    when either has none, both have a category and the categories differ.
    """
    pairs = session_pairs(sessions)

    def keep(a: int, b: int) -> bool:
        if markets[a] is not None and markets[b] is not None:
            same = markets[a] == markets[b]
        elif categories[a] is not None and categories[b] is not None:
            same = categories[a] == categories[b]
        else:
            same = True
        return same or pairs[(min(a, b), max(a, b))] >= min_sessions

    return keep
