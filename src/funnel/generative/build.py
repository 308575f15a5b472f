"""Train the embedding-space generative recall (DreamRec) from a workspace into an artifact.

Layout of ``<artifact>/generative/``::

    config.json     the GenerativeConfig used, and where the item vectors came from
    item_ids.json   item ids, in the row order of the model's item table
    model/          DreamRec config.json + weights.safetensors

Item vectors come from ``<artifact>/embeddings`` (read with ``funnel.vectors``, never by
importing the embeddings stage); without them a truncated SVD of the session x item matrix
stands in, so the stage still builds on a fresh workspace.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from funnel.artifacts import ArtifactBuild
from funnel.config import section, to_mapping
from funnel.exceptions import ArtifactError, ConfigError, ModelFitError
from funnel.generative.dreamrec import DreamRec, DreamRecConfig
from funnel.generative.recall_source import GenerativeRecall
from funnel.vectors import load_vectors
from funnel.workspace import Workspace


@dataclass(frozen=True)
class GenerativeConfig:
    """The ``[generative]`` table of funnel.toml."""

    history_len: int = 10
    dim: int = 64
    hidden: int = 256
    epochs: int = 10
    guidance: float = 2.0
    sampler: str = "ddim"
    steps: int = 10
    max_sessions: int = 200_000
    holdout_share: float = 0.1
    eval_k: int = 50
    svd_dim: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.holdout_share < 1.0:
            raise ConfigError(
                f"[generative] holdout_share must be in [0, 1). Got {self.holdout_share!r}."
            )

    def dreamrec(self) -> DreamRecConfig:
        return DreamRecConfig(
            history_len=self.history_len, dim=self.dim, hidden=(self.hidden, self.hidden),
            guidance=self.guidance, sampler=self.sampler, steps=self.steps,
            epochs=self.epochs, seed=self.seed,
        )


def _svd_vectors(sequences: list[list[int]], n_items: int, dim: int) -> np.ndarray:
    rows = np.repeat(np.arange(len(sequences)), [len(s) for s in sequences])
    cols = np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences])
    m = sp.csr_matrix((np.ones(len(cols), np.float32), (rows, cols)),
                      shape=(len(sequences), n_items))
    k = max(1, min(dim, min(m.shape) - 1))
    _, s, vt = svds(m, k=k, random_state=0)
    return (vt.T * np.sqrt(s)[None, :]).astype(np.float32)


def build_generative(
    workspace: Workspace, build: ArtifactBuild, config: GenerativeConfig | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> dict[str, Any]:
    """Fit DreamRec on the workspace's sessions and write ``generative/`` into ``build``.

    Returns hit rate @ ``eval_k`` of the held-out last click of the latest sessions, next to a
    popularity baseline's on the same sessions.
    """
    config = config or section(workspace.config(), "generative", GenerativeConfig)
    con = workspace.connect(read_only=True)
    try:
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables")
                  .fetchall()}
        if "sessions" not in tables:
            raise ArtifactError(
                f"{workspace.store_path}: no 'sessions' table; run 'funnel sessions' first"
            )
        rows = con.execute(
            "SELECT items FROM sessions WHERE len(items) >= 2 "
            "ORDER BY start_ts, session_id LIMIT ?", [config.max_sessions],
        ).fetchall()
    finally:
        con.close()
    raw = [list(r[0]) for r in rows]
    emb_dir = build.path / "embeddings"
    if (emb_dir / "item_vectors.npy").exists():
        table = load_vectors(emb_dir, "item")
        ids, vectors, source = table.ids, table.vectors, "embeddings"
        row_of = table.index()
    else:
        ids = sorted({i for s in raw for i in s})
        row_of = {item: row for row, item in enumerate(ids)}
        vectors, source = None, "svd"
    sequences = [[row_of[i] for i in s if i in row_of] for s in raw]
    sequences = [s for s in sequences if len(s) >= 2]
    if len(sequences) < 10:
        raise ModelFitError(
            f"only {len(sequences)} sessions with >= 2 known clicked items; need at least 10"
        )
    n_hold = int(len(sequences) * config.holdout_share)
    train_seqs, held = sequences[: len(sequences) - n_hold], sequences[len(sequences) - n_hold:]
    if vectors is None:
        vectors = _svd_vectors(train_seqs, len(ids), config.svd_dim)
    model = DreamRec(config.dreamrec()).fit(train_seqs, vectors, callback=progress)
    metrics: dict[str, Any] = {
        "sessions": len(sequences), "items": len(ids), "item_vectors": source,
        "final_loss": round(model.loss_trace_[-1], 4),
    }
    if held:
        k = config.eval_k
        hist = [s[:-1] for s in held]
        top, _ = model.recommend(hist, k=k)
        metrics[f"hr{k}_generative"] = float(np.mean([s[-1] in t for s, t in zip(held, top,
                                                                                     strict=True)]))
        ranked = [i for i, _ in Counter(i for s in train_seqs for i in s).most_common()]
        hits = []
        for s, h in zip(held, hist, strict=True):
            seen = set(h)
            hits.append(s[-1] in [i for i in ranked[: k + len(seen)] if i not in seen][:k])
        metrics[f"hr{k}_popularity"] = float(np.mean(hits))
    out = build.component("generative")
    model.save(out / "model")
    (out / "item_ids.json").write_text(json.dumps(ids))
    (out / "config.json").write_text(json.dumps(
        {"config": to_mapping(config), "item_vectors": source}, indent=2))
    return metrics


def load_generative(artifact_dir: Path | str) -> GenerativeRecall:
    """The ``GenerativeRecall`` source of an artifact directory (for the recall merger)."""
    return GenerativeRecall.load(Path(artifact_dir) / "generative")


__all__ = ["GenerativeConfig", "build_generative", "load_generative"]
