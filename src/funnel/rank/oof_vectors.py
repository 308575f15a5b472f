"""Out-of-fold item vectors for the ranker's training rows (train/serve skew of session features).

The item embeddings are trained on the sessions the ranker's training rows come from, so the
session similarities of a training row (``emb_*_sim``, ``taste_contrast_sim``) were computed
with vectors that already saw that row's session: they separate clicks better in training than
on new sessions, and the ranker learns to trust memorized co-clicks (``funnel.evaluate.skew``
measures it). Here users are split into ``folds`` by a stable hash; the rows of a user in fold
``f`` take their session features from vectors trained, with the embedding stage's own
settings, on the sessions of the other folds only. Serving keeps the full-data vectors.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pyarrow as pa

from funnel.exceptions import ModelFitError
from funnel.features.personalization import ItemVectorLookup
from funnel.vectors import load_vectors, save_vectors

if TYPE_CHECKING:
    from funnel.embed.build import EmbedConfig


def user_fold(user_id: str | None, folds: int) -> int:
    """Stable fold of a user (CRC32 of the id; anonymous rows share fold 0)."""
    if user_id is None:
        return 0
    return zlib.crc32(str(user_id).encode()) % folds


def _embed_config(embeddings_dir: Path) -> EmbedConfig:
    """The settings the served vectors were trained with (the artifact's config.json)."""
    from funnel.config import from_mapping
    from funnel.embed.build import EmbedConfig

    path = embeddings_dir / "config.json"
    if not path.exists():
        return EmbedConfig()
    return from_mapping(EmbedConfig, json.loads(path.read_text())["config"])


@dataclass
class FoldVectors:
    """One item-vector lookup per user fold; calling it with a user id gives that user's."""

    lookups: list[ItemVectorLookup]

    def __call__(self, user_id: str | None) -> ItemVectorLookup:
        return self.lookups[user_fold(user_id, len(self.lookups))]

    def save(self, directory: Path) -> None:
        """``fold<k>`` vector tables (the evaluation measures the skew of what was trained on)."""
        directory.mkdir(parents=True, exist_ok=True)
        for k, lookup in enumerate(self.lookups):
            save_vectors(directory, f"fold{k}", lookup.ids, lookup.vectors)
        (directory / "folds.json").write_text(json.dumps({"folds": len(self.lookups)}))

    @classmethod
    def load(cls, directory: Path, full: ItemVectorLookup) -> FoldVectors | None:
        """The saved folds with ``full``'s markets, brands and types; None if none saved."""
        path = directory / "folds.json"
        if not path.exists():
            return None
        folds = int(json.loads(path.read_text())["folds"])
        lookups = []
        for k in range(folds):
            table = load_vectors(directory, f"fold{k}")
            lookups.append(replace(full, ids=list(table.ids), vectors=table.vectors))
        return cls(lookups)


def out_of_fold_vectors(
    con: duckdb.DuckDBPyConnection,
    full: ItemVectorLookup,
    embeddings_dir: Path,
    folds: int = 2,
) -> FoldVectors | None:
    """``user_id -> vectors`` that never saw that user's sessions, or None when a fold cannot
    be trained (too few sessions); markets, brands and types are the full lookup's."""
    from funnel.embed.items import ItemEmbeddings

    if not isinstance(folds, int) or folds < 2:
        raise ValueError(f"folds: expected an int >= 2, got {folds!r}")
    cfg = _embed_config(embeddings_dir)
    sessions = con.sql("SELECT * FROM sessions ORDER BY start_ts, session_id").to_arrow_table()
    items = con.sql("SELECT item_id, market, category, brand, price FROM items").to_arrow_table()
    users = sessions.column("user_id").to_pylist()
    fold = np.array([user_fold(u, folds) for u in users], dtype=np.int64)
    lookups: list[ItemVectorLookup] = []
    for f in range(folds):
        train = sessions.filter(pa.array(fold != f))
        try:
            model = ItemEmbeddings(
                cfg.dim, window=cfg.window, negatives=cfg.negatives,
                market_negatives=cfg.market_negatives, booked_context=cfg.booked_context,
                epochs=cfg.epochs, learning_rate=cfg.learning_rate, sample=cfg.sample,
                min_count=cfg.min_count, min_dwell_ms=cfg.min_dwell_ms,
                n_threads=cfg.n_threads, seed=cfg.seed + 1 + f,
            ).fit(train, items if items.num_rows else None)
        except ModelFitError:
            return None
        if cfg.center:
            from funnel.embed.postprocess import all_but_the_top

            model.vectors_ = all_but_the_top(model.vectors_, cfg.remove_components)
        if cfg.cold_start and items.num_rows:
            model.fill_cold_start(items)
        lookups.append(replace(full, ids=list(model.vocab_), vectors=model.vectors_))
    return FoldVectors(lookups)
