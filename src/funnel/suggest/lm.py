"""A word bigram language model of the query log: how plausible a whole query is.

Scores candidates that no one typed in full (suffix-built completions) and is a ranking feature
for all. Interpolated absolute discounting (Kneser-Ney without the continuation counts), with
``<s>``/``</s>`` so "cabin tokyo" and "tokyo cabin" differ. Stored as sorted int64 bigram keys
and float32 log-probabilities (no dict of pairs), searched with one ``searchsorted`` per request.

A bigram model cannot see that "rome loft tokyo" names two cities; :meth:`NgramLM.clashes` can:
two words that are each common yet never share a logged query (expected together at least
``clash_expected`` times if independent) are taken to exclude each other.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from funnel._checks import check_is_fitted, validate_params
from funnel.suggest.saved import read_header

_FORMAT = "funnel.suggest.lm/1"
_BOS, _EOS = 0, 1


class NgramLM:
    """Word bigram LM with interpolated absolute discounting.

    Parameters
    ----------
    discount : float
        Absolute discount D in (0, 1) taken from every seen bigram and given to the unigram.
    """

    def __init__(self, *, discount: float = 0.75, clash_expected: float = 3.0) -> None:
        self.discount = discount
        self.clash_expected = clash_expected

    def get_params(self) -> dict[str, float]:
        return {"discount": self.discount, "clash_expected": self.clash_expected}

    def fit(self, texts: Sequence[str], weights: Sequence[float] | np.ndarray | None = None
            ) -> NgramLM:
        """Count words and word pairs of ``texts`` (each ``weights[i]`` times)."""
        validate_params(self.get_params(), {"discount": (
            lambda v: isinstance(v, float) and 0.0 < v < 1.0, "a float in (0, 1)")})
        w = np.ones(len(texts)) if weights is None else np.asarray(weights, dtype=np.float64)
        if w.shape != (len(texts),):
            raise ValueError(f"weights must have one value per text ({len(texts)}); "
                             f"got shape {w.shape}")
        vocab: dict[str, int] = {"<s>": _BOS, "</s>": _EOS}
        uni: defaultdict[int, float] = defaultdict(float)
        bi: defaultdict[int, float] = defaultdict(float)
        pending: list[tuple[list[int], float]] = []
        for text, weight in zip(texts, w.tolist(), strict=True):
            ids = [_BOS] + [vocab.setdefault(t, len(vocab)) for t in text.split()] + [_EOS]
            pending.append((ids, weight))
        nv = len(vocab)
        pairs: set[int] = set()
        df = np.zeros(nv)
        for ids, weight in pending:
            for a, b in zip(ids, ids[1:], strict=False):
                uni[b] += weight
                bi[a * nv + b] += weight
            words = ids[1:-1]
            for i, a in enumerate(words):
                for b in words[i + 1:]:
                    pairs.add(min(a, b) * nv + max(a, b))
            df[list(set(words))] += weight
        uni_arr = np.zeros(nv)
        for i, c in uni.items():
            uni_arr[i] = c
        total = uni_arr.sum()
        p_uni = (uni_arr + 0.5) / (total + 0.5 * (nv + 1))  # add-half: no word has p = 0
        keys = np.fromiter(bi.keys(), np.int64, len(bi))
        counts = np.fromiter(bi.values(), np.float64, len(bi))
        order = np.argsort(keys)
        keys, counts = keys[order], counts[order]
        ctx = keys // nv
        ctx_total = np.bincount(ctx, weights=counts, minlength=nv)
        ctx_types = np.bincount(ctx, minlength=nv).astype(np.float64)
        d = self.discount
        with np.errstate(divide="ignore", invalid="ignore"):
            backoff = np.where(ctx_total > 0, d * ctx_types / ctx_total, 1.0)
        prob = (np.maximum(counts - d, 0.0) / ctx_total[ctx]
                + backoff[ctx] * p_uni[keys % nv])
        self.vocab_ = vocab
        self.keys_ = keys
        self.logp_ = np.log(prob).astype(np.float32)
        self.log_backoff_ = np.log(backoff).astype(np.float32)
        self.log_unigram_ = np.log(p_uni).astype(np.float32)
        self.log_oov_ = float(np.log(0.5 / (total + 0.5 * (nv + 1))))
        self.pairs_ = np.sort(np.fromiter(pairs, np.int64, len(pairs)))
        self.df_ = df.astype(np.float32)
        self.n_texts_ = float(w.sum())  # searches: df and pairs are "expected in searches"
        self._post_load()
        return self

    def _post_load(self) -> None:
        self._nv = len(self.vocab_)

    def _pairs(self, texts: Iterable[str]) -> tuple[list[int], list[int], list[int]]:
        """(context id, word id, owner text) of every bigram; unknown words get id -1."""
        ctx: list[int] = []
        word: list[int] = []
        owner: list[int] = []
        get = self.vocab_.get
        for i, text in enumerate(texts):
            prev = _BOS
            for tok in text.split():
                cur = get(tok, -1)
                ctx.append(prev)
                word.append(cur)
                owner.append(i)
                prev = cur
            ctx.append(prev)
            word.append(_EOS)
            owner.append(i)
        return ctx, word, owner

    def clashes(self, texts: Sequence[str], n_typed: int) -> np.ndarray:
        """True for texts where a word after the first ``n_typed`` and one of those never share
        a logged query although both are common (two cities, a word said twice)."""
        check_is_fitted(self, "pairs_")
        get = self.vocab_.get
        keys: list[int] = []
        owner: list[int] = []
        expect: list[float] = []
        df = self.df_
        for i, text in enumerate(texts):
            ids = [get(t, -1) for t in text.split()]
            for b in ids[n_typed:]:
                if b < 0:
                    continue
                for a in ids[:n_typed]:
                    if a >= 0:
                        keys.append(min(a, b) * self._nv + max(a, b))
                        owner.append(i)
                        expect.append(float(df[a]) * float(df[b]))
        out = np.zeros(len(texts), dtype=bool)
        if not keys or not len(self.pairs_):
            return out
        k = np.asarray(keys, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.pairs_, k), len(self.pairs_) - 1)
        unseen = self.pairs_[pos] != k
        common = np.asarray(expect) / max(self.n_texts_, 1.0) >= self.clash_expected
        out[np.asarray(owner)[unseen & common]] = True
        return out

    def score(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Total log-probability of each text and the number of predicted tokens (words + end)."""
        check_is_fitted(self, "keys_")
        ctx_l, word_l, owner_l = self._pairs(texts)
        ctx = np.asarray(ctx_l, dtype=np.int64)
        word = np.asarray(word_l, dtype=np.int64)
        owner = np.asarray(owner_l, dtype=np.int64)
        known_w = word >= 0
        known_c = ctx >= 0
        uni = np.where(known_w, self.log_unigram_[np.maximum(word, 0)], self.log_oov_)
        keys = ctx * self._nv + word
        pos = np.searchsorted(self.keys_, keys)
        pos = np.minimum(pos, len(self.keys_) - 1)
        hit = known_w & known_c & (self.keys_[pos] == keys)
        backed = np.where(known_c, self.log_backoff_[np.maximum(ctx, 0)], 0.0) + uni
        logp = np.where(hit, self.logp_[pos], backed).astype(np.float64)
        n = len(texts)
        return (np.bincount(owner, weights=logp, minlength=n),
                np.bincount(owner, minlength=n).astype(np.float64))

    def save(self, directory: Path) -> None:
        """``lm.json`` (vocabulary, params) and ``lm.npz`` (arrays, no pickle)."""
        check_is_fitted(self, "keys_")
        directory.mkdir(parents=True, exist_ok=True)
        words = [w for w, _ in sorted(self.vocab_.items(), key=lambda kv: kv[1])]
        (directory / "lm.json").write_text(json.dumps(
            {"format": _FORMAT, "params": self.get_params(), "words": words,
             "log_oov": self.log_oov_, "n_texts": self.n_texts_}, ensure_ascii=False))
        np.savez(directory / "lm.npz", keys=self.keys_, logp=self.logp_,
                 log_backoff=self.log_backoff_, log_unigram=self.log_unigram_,
                 pairs=self.pairs_, df=self.df_)

    @classmethod
    def load(cls, directory: Path) -> NgramLM:
        path = directory / "lm.json"
        meta = read_header(path, _FORMAT)
        obj = cls(**meta["params"])
        obj.vocab_ = {w: i for i, w in enumerate(meta["words"])}
        obj.log_oov_ = float(meta["log_oov"])
        obj.n_texts_ = float(meta["n_texts"])
        with np.load(directory / "lm.npz", allow_pickle=False) as data:
            obj.keys_ = data["keys"]
            obj.logp_ = data["logp"]
            obj.log_backoff_ = data["log_backoff"]
            obj.log_unigram_ = data["log_unigram"]
            obj.pairs_ = data["pairs"]
            obj.df_ = data["df"]
        obj._post_load()
        return obj
