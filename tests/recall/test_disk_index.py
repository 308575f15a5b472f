"""DiskIVFPQIndex against exact search, its save/load round trip and its named errors."""

from __future__ import annotations

import numpy as np
import pytest

from funnel.exceptions import ArtifactError, DataFileError, NotFittedError
from funnel.recall.disk_index import DiskIVFPQIndex


def _clustered(n: int, d: int, n_queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around 200 random centres; queries from the same mixture, not the set."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(200, d))
    x = centres[rng.integers(0, 200, n)] + 0.35 * rng.normal(size=(n, d))
    q = centres[rng.integers(0, 200, n_queries)] + 0.35 * rng.normal(size=(n_queries, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return x.astype(np.float32), q.astype(np.float32)


def _exact_top(x: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(q @ x.T), axis=1, kind="stable")[:, :k]


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    pairs = zip(found, truth, strict=True)
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in pairs]))


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return _clustered(20_000, 32, 200)


@pytest.fixture(scope="module")
def fitted(data, tmp_path_factory) -> tuple[DiskIVFPQIndex, object]:
    """Fitted from a .npy file, as at scale (the file becomes the re-ranking store)."""
    x, _ = data
    path = tmp_path_factory.mktemp("vecs") / "vectors.npy"
    np.save(path, x)
    return DiskIVFPQIndex(nlist=128, nprobe=16, shortlist=100).fit(path), path


def test_recall_against_exact_search(data, fitted):
    # 20k x 32 unit vectors, 128 lists, 16 probed, 16 PQ bytes, 100 re-ranked: 0.99 here
    x, q = data
    index, _ = fitted
    got = index.search(q, 10)
    assert got.ids.shape == (200, 10) and got.ids.dtype == np.int64
    assert _recall(got.ids, _exact_top(x, q, 10)) >= 0.9
    # the scores are exact inner products of the returned rows, best first
    np.testing.assert_allclose(got.scores, np.einsum("qd,qkd->qk", q, x[got.ids]), rtol=1e-5)
    assert (np.diff(got.scores, axis=1) <= 0).all()


def test_single_query_matches_the_batch(data, fitted):
    _, q = data
    index, _ = fitted
    one = index.search(q[3], 10)
    assert one.ids.shape == (10,)
    np.testing.assert_array_equal(one.ids, index.search(q[:5], 10).ids[3])


def test_fit_from_an_array_equals_fit_from_its_file(data, fitted):
    x, q = data
    from_file, _ = fitted
    from_array = DiskIVFPQIndex(nlist=128, nprobe=16, shortlist=100).fit(x)
    np.testing.assert_array_equal(from_array.search(q, 10).ids, from_file.search(q, 10).ids)


def test_save_load_round_trip_gives_the_same_results(data, fitted, tmp_path):
    _, q = data
    index, _ = fitted
    index.save(tmp_path / "idx")
    loaded = DiskIVFPQIndex.load(tmp_path / "idx")
    assert isinstance(loaded.vectors_, np.memmap) and len(loaded) == len(index)
    before, after = index.search(q, 10), loaded.search(q, 10)
    np.testing.assert_array_equal(after.ids, before.ids)
    np.testing.assert_array_equal(after.scores, before.scores)
    # settable search parameters survive, and an array-fitted index saves its vectors too
    loaded.nprobe, loaded.shortlist = 4, 20
    DiskIVFPQIndex(nlist=16).fit(data[0][:2000]).save(tmp_path / "small")
    assert DiskIVFPQIndex.load(tmp_path / "small").vectors_.shape == (2000, 32)


def test_wrong_dimension_and_bad_k_are_named(data, fitted):
    _, q = data
    index, _ = fitted
    with pytest.raises(ValueError, match=r"queries must have shape \(d,\) or \(n, d\) with d=32"):
        index.search(q[:, :16], 10)
    for k in (0, -1, 2.5):
        with pytest.raises(ValueError, match="'k' parameter must be a positive int"):
            index.search(q[0], k)
    for name in ("nprobe", "shortlist"):
        setattr(index, name, 0)
        try:
            with pytest.raises(ValueError, match=f"'{name}' parameter must be a positive int"):
                index.search(q[0], 10)
        finally:
            index.nprobe, index.shortlist = 16, 100


def test_bad_fit_input_is_named(tmp_path):
    x, _ = _clustered(2000, 32, 1)
    with pytest.raises(DataFileError, match=r"nope\.npy: missing; pass an existing \.npy"):
        DiskIVFPQIndex().fit(tmp_path / "nope.npy")
    with pytest.raises(ValueError, match="must be float32 or float16; got float64"):
        DiskIVFPQIndex(nlist=16).fit(x.astype(np.float64))
    with pytest.raises(ValueError, match=r"must be a non-empty \(n, d\) matrix"):
        DiskIVFPQIndex().fit(x[0])
    with pytest.raises(ValueError, match="'pq_m' parameter must be even and divide d=32"):
        DiskIVFPQIndex(nlist=16, pq_m=5).fit(x)
    with pytest.raises(ValueError, match=r"at least 39 \* nlist = 3900 vectors.*lower nlist"):
        DiskIVFPQIndex(nlist=100).fit(x)
    bad = x.copy()
    bad[1500, 3] = np.nan
    with pytest.raises(ValueError, match="must be finite"):
        DiskIVFPQIndex(nlist=16, train_size=1000).fit(bad)
    with pytest.raises(NotFittedError, match="call 'fit'"):
        DiskIVFPQIndex().search(x[0], 10)


def test_missing_or_mismatched_artifact_files_are_named(fitted, tmp_path):
    index, _ = fitted
    with pytest.raises(ArtifactError, match=r"config\.json: missing; re-save"):
        DiskIVFPQIndex.load(tmp_path / "nothing")
    index.save(tmp_path / "idx")
    (tmp_path / "idx" / "vectors.npy").unlink()
    with pytest.raises(ArtifactError, match=r"idx/vectors\.npy: missing; re-save the index"):
        DiskIVFPQIndex.load(tmp_path / "idx")
    index.save(tmp_path / "idx2")
    (tmp_path / "idx2" / "vectors.npy").unlink()  # a hard link to the fixture's file: not "wb"
    np.save(tmp_path / "idx2" / "vectors.npy", np.zeros((10, 32), np.float32))
    with pytest.raises(ArtifactError, match=r"vectors\.npy: shape \(10, 32\) float32 does not"):
        DiskIVFPQIndex.load(tmp_path / "idx2")
