"""LightGBM rankers: GBDT for pointwise CTR and LambdaMART (lambdarank) per request.

Trees read :meth:`FeatureSet.dense` (one column per field; vocab and bucket fields as LightGBM
categoricals). The model is saved in LightGBM's own text format, never pickled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from funnel._checks import (
    check_is_fitted,
    non_negative_int,
    positive_float,
    positive_int,
    validate_params,
)
from funnel.exceptions import ArtifactError, ModelFitError
from funnel.features.specs import FeatureSet, Spec, as_columns
from funnel.rank.base import Ranker, RankingData, fix_position, specs_of, undo_negative_sampling

_PARAMS = {
    "num_leaves": (lambda v: positive_int(v) and v >= 2, "an int >= 2"),
    "learning_rate": (positive_float, "a positive float"),
    "n_estimators": (positive_int, "a positive int"),
    "min_child_samples": (positive_int, "a positive int"),
    "early_stopping_rounds": (non_negative_int, "a non-negative int"),
    "seed": (non_negative_int, "a non-negative int"),
}


class GBDTRanker(Ranker):
    """Gradient-boosted trees with the binary logloss objective (pCTR)."""

    name = "gbdt"
    objective = "binary"

    def __init__(
        self,
        features: Sequence[Spec | Mapping[str, Any]] | FeatureSet = (),
        *,
        num_leaves: int = 31,
        learning_rate: float = 0.05,
        n_estimators: int = 300,
        min_child_samples: int = 20,
        early_stopping_rounds: int = 30,
        position_column: str = "position",
        seed: int = 0,
        verbose: bool = False,
    ) -> None:
        self.features = features
        self.num_leaves = num_leaves
        self.learning_rate = learning_rate
        self.n_estimators = n_estimators
        self.min_child_samples = min_child_samples
        self.early_stopping_rounds = early_stopping_rounds
        self.position_column = position_column
        self.seed = seed
        self.verbose = verbose

    def get_params(self) -> dict[str, Any]:
        return {
            "features": self.features,
            "num_leaves": self.num_leaves,
            "learning_rate": self.learning_rate,
            "n_estimators": self.n_estimators,
            "min_child_samples": self.min_child_samples,
            "early_stopping_rounds": self.early_stopping_rounds,
            "position_column": self.position_column,
            "seed": self.seed,
            "verbose": self.verbose,
        }

    def _lgb_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "objective": self.objective,
            "num_leaves": self.num_leaves,
            "learning_rate": self.learning_rate,
            "min_child_samples": self.min_child_samples,
            "seed": self.seed,
            "deterministic": True,
            "num_threads": 1,
            "verbose": -1,
        }
        if self.objective == "lambdarank":
            params["metric"] = "ndcg"
            params["eval_at"] = [10]
        return params

    def _dataset(self, data: RankingData, reference: lgb.Dataset | None = None) -> lgb.Dataset:
        x, cats = self.features_.dense(data.columns)
        group = None
        if self.objective == "lambdarank":
            if data.group is None:
                raise ValueError("LambdaMART needs data.group (request ids); got None")
            order = np.argsort(np.asarray(data.group), kind="stable")
            data = data.take(order)
            x = x[order]
            _, group = np.unique(np.asarray(data.group), return_counts=True)
            if not np.all(np.diff(np.unique(np.asarray(data.group), return_index=True)[1]) >= 0):
                raise ModelFitError("internal: groups not contiguous after sort")
        return lgb.Dataset(
            x, label=data.label, group=group, categorical_feature=cats,
            feature_name=self.features_.field_names, reference=reference, free_raw_data=False,
        )

    def fit(self, train: RankingData, valid: RankingData | None = None) -> GBDTRanker:
        validate_params(self.get_params(), _PARAMS)
        if len(train) == 0:
            raise ModelFitError("train has 0 rows; expected at least one labelled row")
        self.features_ = FeatureSet(specs_of(self.features)).fit(train.columns)
        dtrain = self._dataset(train)
        callbacks: list[Any] = []
        valid_sets = []
        if valid is not None:
            valid_sets = [self._dataset(valid, dtrain)]
            if self.early_stopping_rounds:
                callbacks.append(lgb.early_stopping(self.early_stopping_rounds, verbose=False))
        if self.verbose:
            callbacks.append(lgb.log_evaluation(50))
        self.booster_ = lgb.train(
            self._lgb_params(), dtrain, num_boost_round=self.n_estimators,
            valid_sets=valid_sets, callbacks=callbacks,
        )
        self.negative_rate_ = float(train.negative_rate)
        return self

    def _dense(self, X: Any, at_position: int | None) -> np.ndarray:
        check_is_fitted(self, "booster_")
        columns = as_columns(X)
        if at_position is not None:
            columns = fix_position(columns, self.position_column, at_position)
        return self.features_.dense(columns)[0]

    def score(self, X: Any, *, at_position: int | None = None) -> np.ndarray:
        """Raw model score (log-odds for GBDT, a ranking score for LambdaMART)."""
        # one thread: requests are small and OpenMP threads fight over shared cores
        return np.asarray(self.booster_.predict(self._dense(X, at_position), raw_score=True,
                                                num_threads=1), dtype=np.float64)

    def predict_dense(self, x: np.ndarray) -> np.ndarray:
        """:meth:`predict_proba` from already-encoded input (``features_.dense`` output): lets
        permutation importance shuffle encoded columns instead of re-encoding raw ones."""
        check_is_fitted(self, "booster_")
        raw = np.asarray(self.booster_.predict(x, raw_score=True, num_threads=1),
                         dtype=np.float64)
        return undo_negative_sampling(1.0 / (1.0 + np.exp(-raw)), self.negative_rate_)

    def predict_proba(self, X: Any, *, at_position: int | None = None) -> np.ndarray:
        return self.predict_dense(self._dense(X, at_position))

    def _save_model(self, directory: Path) -> dict[str, Any]:
        self.booster_.save_model(str(directory / "model.txt"))
        return {"negative_rate": self.negative_rate_}

    def _load_model(self, directory: Path, state: Mapping[str, Any]) -> None:
        path = directory / "model.txt"
        if not path.exists():
            raise ArtifactError(f"{path}: missing")
        self.booster_ = lgb.Booster(model_file=str(path))
        self.negative_rate_ = float(state["negative_rate"])


class LambdaMARTRanker(GBDTRanker):
    """LambdaMART (Burges 2010) via LightGBM's lambdarank objective, optimizing NDCG per request.

    ``predict_proba`` is the sigmoid of the ranking score: order-preserving, not calibrated.
    """

    name = "lambdamart"
    objective = "lambdarank"
