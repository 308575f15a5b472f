"""Completion beyond most-popular: exact index + rare-prefix suffixes + session context,
in a learned order.

``fit_index`` builds the lookup parts from one period of the log; ``fit_order`` trains the
ranker on later searches (prefix -> the query then submitted) against that index, so the
features the ranker learns from never saw the answer. ``fit`` does both on a log in time
order and refits the index on all of it. A log without users works: context is then empty.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from funnel._checks import check_is_fitted, non_negative_int, positive_int, validate_params
from funnel.suggest.candidates import FEATURES, Sources, gather
from funnel.suggest.completion import QueryCompleter
from funnel.suggest.context import SessionContext
from funnel.suggest.learned_order import LearnedOrder
from funnel.suggest.lm import NgramLM
from funnel.suggest.normalize import BlockList, normalize_query
from funnel.suggest.query_stats import QueryStats
from funnel.suggest.rare import SuffixCompleter
from funnel.suggest.saved import read_header

_FORMAT = "funnel.suggest.autocomplete/1"


@dataclass
class IndexData:
    """One period of the log: the suggestible queries and every logged text (for n-grams)."""

    queries: list[str]
    count: np.ndarray
    score: np.ndarray
    recency: np.ndarray
    categories: list[str | None] | None
    markets: list[str | None] | None
    texts: list[str]
    text_counts: np.ndarray

    @classmethod
    def from_lines(cls, lines: Sequence[str], *, min_count: int = 1,
                   half_life: float | None = None) -> IndexData:
        """From a plain log in time order (no users, no outcomes); recency by position."""
        n = len(lines)
        half = half_life if half_life is not None else max(n / 4.0, 1.0)
        w = np.power(0.5, (n - 1 - np.arange(n)) / half)
        counts: Counter[str] = Counter()
        decayed: dict[str, float] = {}
        for q, wi in zip(lines, w.tolist(), strict=True):
            counts[q] += 1
            decayed[q] = decayed.get(q, 0.0) + wi
        texts = list(counts)
        tc = np.array([counts[t] for t in texts], dtype=np.float64)
        queries = [t for t in texts if counts[t] >= min_count]
        cnt = np.array([counts[q] for q in queries], dtype=np.float64)
        dec = np.array([decayed[q] for q in queries], dtype=np.float64)
        return cls(queries, cnt, cnt, dec / np.maximum(cnt, 1e-9), None, None, texts, tc)


@dataclass(frozen=True)
class OrderExample:
    """A search to learn from: what was submitted, in which context."""

    query: str
    context: SessionContext


class AutoCompleter:
    """Top-k completion of a typed prefix in a learned order.

    Parameters
    ----------
    completer : QueryCompleter
        The (unfitted) exact prefix index to build; its ``candidates`` is the exact pool.
    suffix_max_words, suffix_min_count : int
        The rare-prefix suffix table (see :class:`SuffixCompleter`).
    plausible_quantile : float
        Built completions must score (LM log-probability per token) at least this quantile of
        the logged queries' own scores.
    order : LearnedOrder
        The ranker's hyperparameters.
    order_prefixes : int
        Prefix lengths sampled per training search.
    rewrite_prefixes : int
        Prefixes of the new words sampled per search that refines the previous query (0: the
        learned order never learns to complete "lo" to "paris loft" after "paris").
    block_terms : tuple of str
        Never suggested, also not as parts of built completions.
    """

    def __init__(
        self,
        *,
        completer: QueryCompleter | None = None,
        suffix_max_words: int = 3,
        suffix_min_count: int = 3,
        plausible_quantile: float = 0.02,
        order: LearnedOrder | None = None,
        order_prefixes: int = 8,
        rewrite_prefixes: int = 2,
        block_terms: tuple[str, ...] = (),
        seed: int = 0,
    ) -> None:
        self.completer = completer
        self.suffix_max_words = suffix_max_words
        self.suffix_min_count = suffix_min_count
        self.plausible_quantile = plausible_quantile
        self.order = order
        self.order_prefixes = order_prefixes
        self.rewrite_prefixes = rewrite_prefixes
        self.block_terms = block_terms
        self.seed = seed

    def get_params(self) -> dict[str, object]:
        return {"suffix_max_words": self.suffix_max_words,
                "suffix_min_count": self.suffix_min_count,
                "plausible_quantile": self.plausible_quantile,
                "order_prefixes": self.order_prefixes,
                "rewrite_prefixes": self.rewrite_prefixes, "block_terms": list(self.block_terms),
                "seed": self.seed}

    def _validate(self) -> None:
        validate_params(self.get_params(), {
            "suffix_max_words": (positive_int, "a positive int"),
            "suffix_min_count": (positive_int, "a positive int"),
            "plausible_quantile": (lambda v: isinstance(v, float) and 0.0 <= v < 1.0,
                                   "a float in [0, 1)"),
            "order_prefixes": (positive_int, "a positive int"),
            "rewrite_prefixes": (non_negative_int, "an int >= 0")})

    # -- fitting -------------------------------------------------------------------------
    def fit_index(self, data: IndexData) -> AutoCompleter:
        """Build the exact index, suffix table, language model and query statistics."""
        self._validate()
        proto = self.completer or QueryCompleter()
        completer = QueryCompleter(**proto.get_params()).fit(
            data.queries, data.score, categories=data.categories, markets=data.markets)
        block = BlockList(self.block_terms)
        keep = [i for i, t in enumerate(data.texts) if not block.blocks(t)]
        texts = [data.texts[i] for i in keep]
        tc = data.text_counts[keep]
        suffixes = SuffixCompleter(max_words=self.suffix_max_words,
                                   min_count=self.suffix_min_count).fit(texts, tc)
        lm = NgramLM().fit(texts, tc)
        total, n_tok = lm.score(data.queries)
        floor = float(np.quantile(total / n_tok, self.plausible_quantile)) \
            if len(data.queries) else -np.inf
        stats = QueryStats().fit(data.queries, data.count, data.score, data.recency,
                                 data.categories, data.markets)
        self.sources_ = Sources(completer, suffixes, lm, stats, block, floor)
        return self

    def training_rows(self, examples: Sequence[OrderExample]
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x, y, group sizes) of sampled prefixes of ``examples`` whose answer is a candidate.

        A search that refines the previous one ("paris" -> "paris loft") also teaches the
        rewrite: its user may type only the new words ("lo") and still mean "paris loft".
        """
        check_is_fitted(self, "sources_")
        rng = np.random.default_rng(self.seed)
        xs: list[np.ndarray] = []
        ys: list[np.ndarray] = []
        groups: list[int] = []
        pool = self.sources_.completer.candidates
        for ex in examples:
            q = ex.query
            lens = np.arange(1, min(len(q), 30) + 1)
            if len(lens) > self.order_prefixes:
                lens = rng.choice(lens, self.order_prefixes, replace=False)
            typed = [q[:n] for n in lens.tolist()]
            prev = ex.context.previous_query
            if prev and q.startswith(prev + " ") and self.rewrite_prefixes:
                rest = q[len(prev) + 1:]
                cut = rng.choice(np.arange(1, len(rest) + 1),
                                 min(self.rewrite_prefixes, len(rest)), replace=False)
                typed += [rest[:n] for n in cut.tolist()]
            for p in typed:
                texts, x = gather(self.sources_, p, ex.context, pool)
                if len(texts) < 2 or q not in texts:
                    continue
                y = np.zeros(len(texts))
                y[texts.index(q)] = 1.0
                xs.append(x)
                ys.append(y)
                groups.append(len(texts))
        if not xs:
            return np.zeros((0, len(FEATURES))), np.zeros(0), np.zeros(0, np.int64)
        return np.vstack(xs), np.concatenate(ys), np.asarray(groups, dtype=np.int64)

    def fit_order(self, examples: Sequence[OrderExample]) -> AutoCompleter:
        """Train the learned order; keep it only if its MRR and success@10 are at least the exact
        index's order's (MPC with personalization) on the last fifth of the examples' prefixes."""
        x, y, group = self.training_rows(examples)
        self.order_ = None
        self.order_info_: dict[str, float] = {"order_groups": float(len(group))}
        if len(group) < 20:
            return self
        n_fit = int(len(group) * 0.8)
        cut = int(group[:n_fit].sum())
        trial = (self.order or LearnedOrder()).clone().fit(x[:cut], y[:cut], group[:n_fit],
                                                       FEATURES)
        learned = _mrr(trial.predict(x[cut:]), y[cut:], group[n_fit:])
        base = _mrr(_baseline(x[cut:]), y[cut:], group[n_fit:])
        self.order_info_.update({"order_val_mrr": learned[0], "order_val_mrr_exact": base[0],
                                 "order_val_success10": learned[1],
                                 "order_val_success10_exact": base[1]})
        if learned[0] >= base[0] and learned[1] >= base[1]:
            self.order_ = trial  # the trial itself: a refit on all rows would double the cost
        return self

    def fit(self, lines: Sequence[str], examples: Sequence[OrderExample] | None = None,
            *, order_fraction: float = 0.2, min_count: int = 1,
            max_examples: int = 3000) -> AutoCompleter:
        """Fit on a plain log in time order: index on the first part, order on the last
        ``order_fraction`` (``examples`` give those searches' context; none: no context),
        then the index again on everything."""
        cut = int(len(lines) * (1.0 - order_fraction))
        self.fit_index(IndexData.from_lines(lines[:cut], min_count=min_count))
        late = list(examples) if examples is not None else \
            [OrderExample(q, SessionContext()) for q in lines[cut:]]
        if len(late) > max_examples:
            pick = np.random.default_rng(self.seed).choice(len(late), max_examples,
                                                           replace=False)
            late = [late[i] for i in np.sort(pick)]
        self.fit_order(late)
        return self.fit_index(IndexData.from_lines(lines, min_count=min_count))

    # -- serving -------------------------------------------------------------------------
    def complete(self, prefix: str, k: int = 10, *, context: SessionContext | None = None,
                 normalize: bool = True) -> tuple[list[str], np.ndarray]:
        """The top-``k`` completions of ``prefix`` (learned order) and their scores."""
        check_is_fitted(self, "sources_")
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str; got {type(prefix).__name__} {prefix!r}")
        pool = self.sources_.completer.candidates
        if not positive_int(k) or k > pool:
            raise ValueError(f"k must be an int in [1, {pool}]; got {k!r}")
        text = normalize_query(prefix, keep_trailing_space=True) if normalize else prefix
        ctx = context or SessionContext()
        if ctx.previous_query and normalize:
            ctx = SessionContext(normalize_query(ctx.previous_query), ctx.categories, ctx.market)
        texts, x = gather(self.sources_, text, ctx, pool)
        if not texts:
            return [], np.zeros(0)
        order = getattr(self, "order_", None)
        score = order.predict(x) if order is not None else _baseline(x)
        top = np.lexsort((x[:, 3], -score))[:k]
        return [texts[i] for i in top], score[top]

    # -- persistence ---------------------------------------------------------------------
    def save(self, directory: Path) -> None:
        check_is_fitted(self, "sources_")
        directory.mkdir(parents=True, exist_ok=True)
        s = self.sources_
        s.completer.save(directory / "exact")
        s.suffixes.save(directory / "suffixes")
        s.lm.save(directory / "lm")
        s.stats.save(directory / "stats")
        order = getattr(self, "order_", None)
        if order is not None:
            order.save(directory / "order")
        (directory / "autocomplete.json").write_text(json.dumps(
            {"format": _FORMAT, "params": self.get_params(), "lm_floor": s.lm_floor,
             "order_info": getattr(self, "order_info_", {}), "has_order": order is not None},
            ensure_ascii=False))

    @classmethod
    def load(cls, directory: Path) -> AutoCompleter:
        path = directory / "autocomplete.json"
        meta = read_header(path, _FORMAT)
        params = dict(meta["params"])
        params["block_terms"] = tuple(params["block_terms"])
        obj = cls(**params)
        completer = QueryCompleter.load(directory / "exact")
        obj.completer = QueryCompleter(**completer.get_params())
        obj.sources_ = Sources(completer, SuffixCompleter.load(directory / "suffixes"),
                               NgramLM.load(directory / "lm"), QueryStats.load(directory / "stats"),
                               BlockList(obj.block_terms), float(meta["lm_floor"]))
        obj.order_ = LearnedOrder.load(directory / "order") if meta["has_order"] else None
        obj.order_info_ = dict(meta["order_info"])
        return obj


def _baseline(x: np.ndarray) -> np.ndarray:
    """The order without a ranker: exact results by their rank, then the rest by LM score."""
    i_rank, i_exact, i_lm = FEATURES.index("exact_rank"), 0, FEATURES.index("lm_avg")
    return np.where(x[:, i_exact] > 0, 1000.0 - x[:, i_rank], x[:, i_lm])


def _mrr(score: np.ndarray, y: np.ndarray, group: np.ndarray, k: int = 10
         ) -> tuple[float, float]:
    """Mean reciprocal rank and success@``k`` of the relevant row of each group (ties count
    against it)."""
    rr = []
    start = 0
    for g in group.tolist():
        s, t = score[start:start + g], y[start:start + g]
        start += g
        rank = int((s >= s[int(np.argmax(t))]).sum())
        rr.append(1.0 / rank if rank <= k else 0.0)
    return (float(np.mean(rr)), float(np.mean(np.asarray(rr) > 0))) if rr else (0.0, 0.0)
