"""All-but-the-top post-processing: hand-computed cases, errors, and the collapse it undoes."""

from __future__ import annotations

import numpy as np
import pytest

from funnel.embed.postprocess import all_but_the_top


def test_centering_by_hand() -> None:
    v = np.array([[3.0, 1.0], [1.0, 1.0], [2.0, 4.0]])  # mean (2, 2)
    out = all_but_the_top(v)
    want = np.array([[1.0, -1.0], [-1.0, -1.0], [0.0, 2.0]])
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(out, want, atol=1e-6)


def test_weighted_mean_and_removed_component() -> None:
    v = np.array([[2.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 3.0, 1.0], [1.0, -3.0, 1.0]])
    out = all_but_the_top(v, weights=np.array([1.0, 1.0, 0.0, 0.0]))  # mean (1, 0, 1)
    np.testing.assert_allclose(out[2], [0.0, 1.0, 0.0], atol=1e-6)
    top = all_but_the_top(v, n_components=1)  # the top direction (y axis) is removed
    np.testing.assert_allclose(top[:, 1], 0.0, atol=1e-6)
    np.testing.assert_allclose(np.abs(top[:2, 0]), 1.0, atol=1e-6)


def test_collapsed_vectors_regain_their_geometry() -> None:
    rng = np.random.default_rng(0)
    signal = rng.normal(size=(400, 16))
    collapsed = 20.0 * np.ones(16) + signal  # every vector along one shared direction
    unit = collapsed / np.linalg.norm(collapsed, axis=1, keepdims=True)
    fixed = all_but_the_top(collapsed)
    a, b = rng.integers(0, 400, 2000), rng.integers(0, 400, 2000)
    ok = a != b
    raw_cos = np.einsum("ij,ij->i", unit[a[ok]], unit[b[ok]])
    new_cos = np.einsum("ij,ij->i", fixed[a[ok]], fixed[b[ok]])
    s = signal / np.linalg.norm(signal, axis=1, keepdims=True)
    true_cos = np.einsum("ij,ij->i", s[a[ok]], s[b[ok]])
    assert raw_cos.mean() > 0.9 and abs(new_cos.mean()) < 0.05
    assert np.corrcoef(new_cos, true_cos)[0, 1] > 0.95
    np.testing.assert_allclose(np.linalg.norm(fixed, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"vectors": np.ones(3)}, "vectors: expected an"),
    ({"vectors": np.ones((4, 3)), "n_components": 3}, r"n_components: expected an int in \[0, 2\]"),
    ({"vectors": np.ones((4, 3)), "weights": np.ones(3)}, "weights: expected 4 non-negative"),
    ({"vectors": np.ones((4, 3)), "weights": -np.ones(4)}, "weights: expected 4 non-negative"),
])
def test_errors_name_the_parameter(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        all_but_the_top(**kwargs)


def test_build_with_center_writes_centred_trained_vectors(tmp_path, small_sim) -> None:
    from funnel.embed.build import EmbedConfig, build_embeddings
    from funnel.vectors import load_vectors

    from .test_build import workspace_with_sessions

    tables = {}
    for center in (False, True):
        ws = workspace_with_sessions(tmp_path / f"ws{center}", small_sim)
        config = EmbedConfig(dim=8, epochs=2, query_dim=4, query_epochs=2, type_dim=4,
                             type_epochs=2, n_threads=1, center=center)
        with ws.artifacts.begin() as build:
            metrics = build_embeddings(ws, build, config)
            build.commit()
        tables[center] = load_vectors(ws.artifacts.require_current() / "embeddings", "item")
    n = int(metrics["items"])  # trained rows first, cold-start rows after
    raw, centred = tables[False].vectors[:n], tables[True].vectors[:n]
    assert tables[True].ids == tables[False].ids
    np.testing.assert_allclose(centred, all_but_the_top(raw), atol=1e-5)
    assert np.linalg.norm(centred.mean(axis=0)) < np.linalg.norm(raw.mean(axis=0))
