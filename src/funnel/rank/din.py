"""The ``din`` ranker: DeepFM's fields plus target attention over the user's behaviour sequence.

Why: the marketplace's click model crosses a persistent per-user taste with the item, and the
session centroid similarities recover little of it. DIN (Zhou et al., KDD 2018) learns item-id
embeddings from clicks vs non-clicks and weighs each past action (click, long click, booking,
skip, across sessions) by its relevance to the candidate. The history enters as three
:class:`~funnel.features.specs.VocabSequenceSpec` fields over the ``hist_*`` columns of
:mod:`funnel.features.history`, appended to ``features`` when absent, so the estimator, the
encoded ``(idx, val)`` layout, safetensors and the serving path are those of every
:class:`TorchRanker`; the history ids use the candidate ``item_field``'s vocabulary and rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from funnel._checks import positive_int, validate_params
from funnel.features.history import DEFAULT_HISTORY_LEN, HISTORY_COLUMNS
from funnel.features.specs import FeatureSet, Spec, VocabSequenceSpec, VocabSpec
from funnel.rank.models import DINConfig
from funnel.rank.torch_ranker import TorchRanker

_PARAMS = {
    "history_len": (positive_int, "a positive int"),
    "attention_units": (
        lambda v: isinstance(v, tuple | list) and len(v) > 0 and all(positive_int(h) for h in v),
        "a non-empty tuple of positive ints",
    ),
    "item_field": (lambda v: isinstance(v, str) and bool(v), "a non-empty feature name"),
}


class DINRanker(TorchRanker):
    """Deep Interest Network (Zhou et al. 2018) on the ``hist_*`` behaviour sequence.

    ``history_len``: the last actions attended over (at most the rows' ``history_len``, see
    ``TrainingSetConfig``); ``attention_units``: the activation unit's hidden layers;
    ``item_field``: the candidate's item-id feature (a ``vocab`` spec) whose embedding rows the
    history's ids share. Other parameters are :class:`TorchRanker`'s.
    """

    name = "din"
    config_class = DINConfig

    def __init__(
        self,
        features: Sequence[Spec | Mapping[str, Any]] | FeatureSet = (),
        *,
        history_len: int = DEFAULT_HISTORY_LEN,
        attention_units: tuple[int, ...] = (32,),
        item_field: str = "item_id",
        embedding_dim: int = 8,
        hidden_units: tuple[int, ...] = (64, 32),
        dropout: float = 0.0,
        num_cross_layers: int = 2,
        cross_numeric: bool = False,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-3,
        batch_size: int = 1024,
        epochs: int = 10,
        patience: int = 2,
        position_column: str = "position",
        seed: int = 0,
        verbose: bool = False,
    ) -> None:
        super().__init__(
            features, embedding_dim=embedding_dim, hidden_units=hidden_units, dropout=dropout,
            num_cross_layers=num_cross_layers, cross_numeric=cross_numeric,
            learning_rate=learning_rate, weight_decay=weight_decay, batch_size=batch_size,
            epochs=epochs, patience=patience, position_column=position_column, seed=seed,
            verbose=verbose,
        )
        self.history_len = history_len
        self.attention_units = attention_units
        self.item_field = item_field

    def get_params(self) -> dict[str, Any]:
        return {**super().get_params(), "history_len": self.history_len,
                "attention_units": list(self.attention_units), "item_field": self.item_field}

    def _feature_specs(self) -> list[Spec]:
        """``features`` plus the three history fields (unless already listed), the item ids
        through the candidate field's vocabulary settings, so both fit the same vocabulary."""
        validate_params(self.get_params(), _PARAMS)
        specs = super()._feature_specs()
        item = next((s for s in specs if s.name == self.item_field), None)
        if not isinstance(item, VocabSpec):
            raise ValueError(
                f"The 'item_field' parameter must name a 'vocab' feature of 'features'. Got "
                f"{self.item_field!r} ({'absent' if item is None else item.type}) instead.")
        items, kinds, ages = HISTORY_COLUMNS
        wanted = [
            VocabSequenceSpec(items, key=item.sources[0], min_count=item.min_count,
                              max_size=item.max_size, max_len=self.history_len),
            VocabSequenceSpec(kinds, max_len=self.history_len),
            VocabSequenceSpec(ages, max_len=self.history_len),
        ]
        have = {s.name: s for s in specs}
        for spec in wanted:
            if spec.name in have and have[spec.name] != spec:
                raise ValueError(f"feature {spec.name!r} is the DIN history field; expected "
                                 f"{spec!r}, got {have[spec.name]!r} (leave it out of features)")
        return specs + [s for s in wanted if s.name not in have]

    def _network_config(self, fs: FeatureSet) -> DINConfig:
        names = fs.field_names
        field = {n: f for f, n in enumerate(names)}
        assert fs.states_ is not None
        hist = tuple(field[c] for c in HISTORY_COLUMNS)
        item, items = field[self.item_field], field[HISTORY_COLUMNS[0]]
        if fs.states_[item]["vocab"] != fs.states_[items]["vocab"]:  # same settings, same data
            raise ValueError(f"history ids and {self.item_field!r} fitted different vocabularies")
        return DINConfig(
            num_features=fs.num_features,
            num_fields=fs.num_fields,
            slot_fields=tuple(int(f) for f in fs.slot_fields),
            history_fields=(hist[0], hist[1], hist[2]),
            item_field=item,
            item_shift=int(fs.offsets[item] - fs.offsets[items]),
            embedding_dim=self.embedding_dim,
            hidden_units=tuple(self.hidden_units),
            attention_units=tuple(self.attention_units),
            dropout=float(self.dropout),
            fm_fields=tuple(
                f for f, s in enumerate(fs.specs)
                if f not in hist and (self.cross_numeric or s.type != "numeric")
            ),
        )
