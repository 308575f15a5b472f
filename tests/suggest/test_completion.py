from __future__ import annotations

import numpy as np
import pytest

from funnel.exceptions import ArtifactError, NotFittedError
from funnel.suggest.completion import QueryCompleter


def _random_queries(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcde "))
    out: set[str] = set()
    while len(out) < n:
        q = "".join(rng.choice(letters, rng.integers(1, 9))).strip()
        if q and "  " not in q:
            out.add(q)
    queries = sorted(out)
    scores = rng.integers(0, 50, len(queries)).astype(float)  # many ties on purpose
    return queries, scores


def _brute(queries: list[str], scores: np.ndarray, prefix: str, k: int) -> list[str]:
    hits = [(-scores[i], q) for i, q in enumerate(queries) if q.startswith(prefix)]
    return [q for _, q in sorted(hits)[:k]]


@pytest.mark.parametrize("block", [1, 2, 4, 32])
def test_exact_topk_equals_brute_force(block: int) -> None:
    """The block sparse table answers exactly what a full scan answers (ties: lexicographic)."""
    queries, scores = _random_queries(1500, seed=block)
    qc = QueryCompleter(block_size=block, candidates=8, typo_min_len=99, pinyin=False)
    qc.fit(queries, scores)
    prefixes = {q[:n] for q in queries[::7] for n in range(0, len(q) + 1)}
    for p in sorted(prefixes):
        got, got_scores = qc.complete(p, 8, normalize=False)
        assert got == _brute(queries, scores, p, 8), p
        assert np.all(np.diff(got_scores) <= 0)


def test_typo_one_edit_of_each_kind() -> None:
    qc = QueryCompleter().fit(["nike running shoes", "adidas boots", "nikon camera"],
                              [10.0, 5.0, 1.0])
    assert qc.complete("nkie r", 3)[0] == ["nike running shoes"]  # transposition
    assert qc.complete("nikr run", 3)[0] == ["nike running shoes"]  # substitution
    assert qc.complete("nie run", 3)[0] == ["nike running shoes"]  # deletion in prefix
    assert qc.complete("niike run", 3)[0] == ["nike running shoes"]  # insertion
    assert qc.complete("adidsa", 3)[0] == ["adidas boots"]
    # two edits are not tolerated, and short prefixes get no typo search
    assert qc.complete("ndiias", 3)[0] == []
    assert qc.complete("nkr", 3)[0] == []


def test_typo_results_rank_below_exact_and_carry_penalty() -> None:
    qc = QueryCompleter(typo_penalty=0.5, typo_below=3).fit(["nike shoes", "mike shoes"],
                                                          [2.0, 10.0])
    got, scores = qc.complete("nike", 5)
    assert got == ["mike shoes", "nike shoes"] or got == ["nike shoes", "mike shoes"]
    assert dict(zip(got, scores, strict=True)) == {"nike shoes": 2.0, "mike shoes": 5.0}
    # exact prefix already fills k: no typo completions
    assert qc.complete("nike", 1)[0] == ["nike shoes"]


def test_cjk_and_pinyin_input() -> None:
    qc = QueryCompleter(typo_below=2).fit(["北京酒店", "北京大学", "上海酒店", "beijing"],
                                        [5.0, 3.0, 4.0, 1.0])
    assert qc.complete("北京", 5)[0] == ["北京酒店", "北京大学"]
    assert qc.complete("ＢＥＩＪＩＮＧ", 5)[0][:2] == ["北京酒店", "北京大学"]  # full-width pinyin
    assert qc.complete("bj", 5)[0] == ["北京酒店", "北京大学"]  # initials
    got, scores = qc.complete("bei jing d", 5)  # spaced full pinyin; the rest is a typo fill
    assert got == ["北京大学", "北京酒店"] and scores.tolist() == [3.0, 1.5]
    assert qc.complete("shjd", 5)[0] == ["上海酒店"]
    assert "北京酒店" in qc and "bjjd" not in qc  # aliases are keys, not queries


def test_personalization_lifts_user_categories_and_market() -> None:
    qc = QueryCompleter(category_lift=1.0, market_lift=0.5).fit(
        ["apple phone", "apple pie", "apple watch"], [10.0, 8.0, 6.0],
        categories=["phones", "food", None], markets=["us", "fr", "fr"],
    )
    assert qc.complete("apple", 3)[0] == ["apple phone", "apple pie", "apple watch"]
    got, scores = qc.complete("apple", 3, categories=["food", "unknown"])
    assert got == ["apple pie", "apple phone", "apple watch"]
    assert scores.tolist() == [16.0, 10.0, 6.0]
    got, scores = qc.complete("apple", 3, market="fr")
    assert got == ["apple pie", "apple phone", "apple watch"]
    assert scores.tolist() == [12.0, 10.0, 9.0]


def test_trailing_space_means_finished_word() -> None:
    qc = QueryCompleter(typo_min_len=99).fit(["nike", "nikes", "nike air"], [1.0, 5.0, 2.0])
    assert qc.complete("nike", 3)[0] == ["nikes", "nike air", "nike"]
    assert qc.complete("nike ", 3)[0] == ["nike air"]


def test_save_load_round_trip_is_identical(tmp_path) -> None:  # type: ignore[no-untyped-def]
    queries, scores = _random_queries(400, seed=3)
    qc = QueryCompleter(block_size=4).fit(queries + ["北京"], np.append(scores, 3.0),
                                          categories=["c"] * 401)
    qc.save(tmp_path / "c")
    back = QueryCompleter.load(tmp_path / "c")
    assert back.get_params() == qc.get_params()
    for p in ["", "a", "ab c", "bj", "abcdx", "北"]:
        a, sa = qc.complete(p, 10, categories=["c"])
        b, sb = back.complete(p, 10, categories=["c"])
        assert a == b and np.array_equal(sa, sb)
    with pytest.raises(ArtifactError, match="no completion index"):
        QueryCompleter.load(tmp_path / "missing")


def test_errors_name_the_problem() -> None:
    with pytest.raises(NotFittedError, match="not fitted"):
        QueryCompleter().complete("a")
    with pytest.raises(ValueError, match="queries must be distinct; got 'a' twice"):
        QueryCompleter().fit(["a", "a"], [1.0, 2.0])
    with pytest.raises(ValueError, match=r"scores must have one value per query \(2\)"):
        QueryCompleter().fit(["a", "b"], [1.0])
    with pytest.raises(ValueError, match="finite and >= 0"):
        QueryCompleter().fit(["a"], [-1.0])
    with pytest.raises(ValueError, match="'block_size' parameter must be a positive int"):
        QueryCompleter(block_size=0).fit(["a"], [1.0])
    qc = QueryCompleter(candidates=4).fit(["a"], [1.0])
    with pytest.raises(ValueError, match=r"k must be an int in \[1, 4\]; got 5"):
        qc.complete("a", 5)
    with pytest.raises(TypeError, match="prefix must be a str; got bytes"):
        qc.complete(b"a")  # type: ignore[arg-type]


def test_index_is_compact() -> None:
    queries, scores = _random_queries(3000, seed=5)
    qc = QueryCompleter(pinyin=False).fit(queries, scores)
    chars = sum(map(len, queries))
    # 2 bytes/char + per-key arrays (offsets 8, score 4, target 8, cat 4, mkt 4) + sparse table
    assert qc.codes_.dtype == np.uint16
    assert qc.nbytes < 2 * chars + 28 * len(queries) + 16 * 4 * len(queries)


def test_astral_characters_switch_to_32_bit_codes() -> None:
    qc = QueryCompleter().fit(["ab", "𠀀b", "a𠀀c"], [1.0, 4.0, 3.0])  # U+20000, beyond BMP
    assert qc.codes_.dtype == np.uint32
    assert qc.complete("𠀀")[0] == ["𠀀b"]
    assert qc.complete("a")[0] == ["a𠀀c", "ab"]
