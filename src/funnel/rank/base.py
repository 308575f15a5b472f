"""The ranker interface every model implements, and the data it trains on."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from funnel.exceptions import ArtifactError, ConfigError
from funnel.features.specs import FeatureSet, Spec, as_columns, spec_from_dict, spec_to_dict


@dataclass
class RankingData:
    """Rows to learn from: raw feature columns, a 0/1 label, optional request groups.

    ``negative_rate`` is the probability with which negatives were kept when the set was built
    (negative downsampling); rankers undo it at prediction (He et al. 2014, section 3.4).
    """

    columns: dict[str, np.ndarray]
    label: np.ndarray
    group: np.ndarray | None = None
    negative_rate: float = 1.0

    def __post_init__(self) -> None:
        self.columns = as_columns(self.columns)
        self.label = np.asarray(self.label, dtype=np.float32)
        n = len(self.label)
        for name, col in self.columns.items():
            if len(col) != n:
                raise ValueError(f"column '{name}' has {len(col)} rows; the label has {n}")
        if self.group is not None and len(self.group) != n:
            raise ValueError(f"group has {len(self.group)} rows; the label has {n}")
        if not 0 < self.negative_rate <= 1:
            raise ValueError(f"negative_rate must be in (0, 1]; got {self.negative_rate!r}")

    def __len__(self) -> int:
        return len(self.label)

    def take(self, rows: np.ndarray) -> RankingData:
        return RankingData(
            {k: v[rows] for k, v in self.columns.items()},
            self.label[rows],
            None if self.group is None else np.asarray(self.group)[rows],
            self.negative_rate,
        )


def undo_negative_sampling(p: np.ndarray, rate: float) -> np.ndarray:
    """Map a probability learned on negatives kept at ``rate`` back to the true scale."""
    if rate >= 1.0:
        return p
    return p / (p + (1.0 - p) / rate)


def specs_of(features: Sequence[Spec | Mapping[str, Any]] | FeatureSet) -> list[Spec]:
    if isinstance(features, FeatureSet):
        return list(features.specs)
    return [spec_from_dict(f) if isinstance(f, Mapping) else f for f in features]


def fix_position(
    columns: dict[str, np.ndarray], column: str, position: int
) -> dict[str, np.ndarray]:
    """Serving-time position-bias correction: score every candidate as if shown at ``position``."""
    if column not in columns:
        return columns
    out = dict(columns)
    out[column] = np.full(len(columns[column]), position, dtype=np.int64)
    return out


class Ranker(ABC):
    """A pointwise (or listwise) ranker over raw feature columns.

    Parameters go to ``__init__`` unchanged; ``fit`` learns ``features_`` (the fitted
    :class:`FeatureSet`) and the model, and returns ``self``.

    Example
    -------
    >>> ranker = get_ranker("deepfm")(features=[{"type": "vocab", "name": "item"}], epochs=3)
    >>> ranker.fit(train, valid).predict_proba(valid.columns)  # doctest: +SKIP
    """

    name: str = ""
    features_: FeatureSet
    """The fitted feature specs (set by ``fit`` and :meth:`load`)."""
    selection_: dict[str, Any]
    """What feature selection dropped and why, when it ran (:mod:`funnel.rank.importance`)."""

    def __init__(
        self, features: Sequence[Spec | Mapping[str, Any]] | FeatureSet = (), **params: Any
    ) -> None:
        """Every ranker takes its feature specs first and its hyperparameters as keywords,
        stored unchanged (:meth:`get_params` returns them); each family defines its own."""
        raise NotImplementedError(f"{type(self).__name__} must define __init__")

    @abstractmethod
    def fit(self, train: RankingData, valid: RankingData | None = None) -> Ranker:
        """Fit feature specs and model on ``train``; early-stop on ``valid`` when given."""

    @abstractmethod
    def predict_proba(self, X: Any, *, at_position: int | None = None) -> np.ndarray:
        """P(label = 1) per row, (n,) float64, corrected for negative downsampling.

        ``at_position`` replaces the position column (if a feature uses it) by a constant, the
        serving-time way to remove position bias learned from the logs.
        """

    @abstractmethod
    def _save_model(self, directory: Path) -> dict[str, Any]:
        """Write model files; return extra JSON state for ``config.json``."""

    @abstractmethod
    def _load_model(self, directory: Path, state: Mapping[str, Any]) -> None: ...

    @abstractmethod
    def get_params(self) -> dict[str, Any]: ...

    def save(self, directory: Path) -> None:
        """``config.json`` + ``features.json`` + the model's own files; never pickle."""
        from funnel._checks import check_is_fitted

        check_is_fitted(self, "features_")
        directory.mkdir(parents=True, exist_ok=True)
        params = self.get_params()
        params["features"] = [spec_to_dict(s) for s in specs_of(params["features"])]
        state = self._save_model(directory)
        selection = getattr(self, "selection_", None)
        if selection:  # what feature selection dropped and why (rank.importance)
            state = {**state, "selection": selection}
        self.features_.save(directory / "features.json")
        payload = {"ranker": self.name, "params": params, "state": state}
        (directory / "config.json").write_text(json.dumps(payload, indent=2))

    @staticmethod
    def load(directory: Path) -> Ranker:
        """Rebuild any registered ranker from :meth:`save` output."""
        from funnel.rank.registry import get_ranker

        path = directory / "config.json"
        if not path.exists():
            raise ArtifactError(f"{path}: missing; not a saved ranker directory")
        raw = json.loads(path.read_text())
        if set(raw) != {"ranker", "params", "state"}:
            raise ConfigError(f"{path}: expected keys ranker, params, state; got {sorted(raw)}")
        cls = get_ranker(raw["ranker"])
        params = dict(raw["params"])
        for key in ("hidden_units",):
            if key in params and isinstance(params[key], list):
                params[key] = tuple(params[key])
        try:
            ranker = cls(**params)
        except TypeError as err:
            raise ConfigError(f"{path}: bad params for {raw['ranker']!r}: {err}") from None
        ranker.features_ = FeatureSet.load(directory / "features.json")
        ranker._load_model(directory, raw["state"])
        if raw["state"].get("selection"):  # older artifacts have none
            ranker.selection_ = raw["state"]["selection"]
        return ranker
