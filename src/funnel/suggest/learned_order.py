"""The learned order of completions: LambdaMART (LightGBM ``lambdarank``) over candidate
features, scored per request by a numba walk of the dumped trees.

LightGBM's ``Booster.predict`` costs ~0.1-0.3 ms of Python and thread set-up per call, most of
the 1 ms budget of a keystroke; the same trees as flat arrays score 30 candidates in
microseconds. ``predict_lightgbm`` keeps LightGBM as the oracle (tests demand equal scores).
Saved as LightGBM's text model (no pickle); the arrays are rebuilt from it at load.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numba as nb
import numpy as np

from funnel._checks import check_is_fitted, positive_float, positive_int, validate_params
from funnel.exceptions import ArtifactError
from funnel.suggest.saved import read_header

_FORMAT = "funnel.suggest.learned_order/1"


@nb.njit(cache=True, nogil=True)
def _walk(x: np.ndarray, feat: np.ndarray, thr: np.ndarray, left: np.ndarray,
          right: np.ndarray, leaf: np.ndarray) -> np.ndarray:  # pragma: no cover - numba
    n = x.shape[0]
    out = np.zeros(n)
    for t in range(feat.shape[0]):
        for i in range(n):
            node = 0
            if feat[t, 0] < 0:  # a single-leaf tree
                out[i] += leaf[t, 0]
                continue
            while node >= 0:
                node = left[t, node] if x[i, feat[t, node]] <= thr[t, node] else right[t, node]
            out[i] += leaf[t, -node - 1]
    return out


def _flatten(dump: dict[str, Any]) -> tuple[np.ndarray, ...]:
    """Per-tree node arrays (feature, threshold, children; leaf ~i) from ``dump_model()``."""
    trees = dump["tree_info"]
    nodes = max(max(t["num_leaves"] - 1, 1) for t in trees) if trees else 1
    leaves = max(max(t["num_leaves"], 1) for t in trees) if trees else 1
    feat = np.full((len(trees), nodes), -1, np.int32)
    thr = np.zeros((len(trees), nodes))
    left = np.zeros((len(trees), nodes), np.int32)
    right = np.zeros((len(trees), nodes), np.int32)
    leaf = np.zeros((len(trees), leaves))
    for t, tree in enumerate(trees):
        stack = [tree["tree_structure"]]
        while stack:
            node = stack.pop()
            if "leaf_value" in node:
                leaf[t, node.get("leaf_index", 0)] = node["leaf_value"]
                continue
            if node["decision_type"] != "<=" or node.get("missing_type", "None") == "NaN":
                raise ValueError("learned order trees must use numeric '<=' splits without "
                                 "NaN handling; retrain with finite features")
            i = node["split_index"]
            feat[t, i] = node["split_feature"]
            thr[t, i] = node["threshold"]
            for side, arr in (("left_child", left), ("right_child", right)):
                child = node[side]
                arr[t, i] = child["split_index"] if "split_index" in child else \
                    -child.get("leaf_index", 0) - 1
                stack.append(child)
    return feat, thr, left, right, leaf


class LearnedOrder:
    """LambdaMART ranker of completion candidates.

    Parameters
    ----------
    n_estimators, num_leaves, learning_rate, min_child_samples : LightGBM's.
    seed : int
        LightGBM's random seed (deterministic single-threaded training).
    """

    def __init__(self, *, n_estimators: int = 150, num_leaves: int = 15,
                 learning_rate: float = 0.08, min_child_samples: int = 20,
                 seed: int = 0) -> None:
        self.n_estimators = n_estimators
        self.num_leaves = num_leaves
        self.learning_rate = learning_rate
        self.min_child_samples = min_child_samples
        self.seed = seed

    def get_params(self) -> dict[str, int | float]:
        return {"n_estimators": self.n_estimators, "num_leaves": self.num_leaves,
                "learning_rate": self.learning_rate,
                "min_child_samples": self.min_child_samples, "seed": self.seed}

    def clone(self) -> LearnedOrder:
        """An unfitted copy with the same hyperparameters."""
        return LearnedOrder(n_estimators=self.n_estimators, num_leaves=self.num_leaves,
                            learning_rate=self.learning_rate,
                            min_child_samples=self.min_child_samples, seed=self.seed)

    def fit(self, x: np.ndarray, y: np.ndarray, group: np.ndarray,
            feature_names: list[str]) -> LearnedOrder:
        """Train on rows ``x`` (candidates), relevance ``y`` and ``group`` sizes (prefixes)."""
        import lightgbm as lgb

        validate_params(self.get_params(), {
            "n_estimators": (positive_int, "a positive int"),
            "num_leaves": (lambda v: positive_int(v) and v >= 2, "an int >= 2"),
            "learning_rate": (positive_float, "a float > 0"),
            "min_child_samples": (positive_int, "a positive int")})
        if not np.all(np.isfinite(x)):
            raise ValueError("x must be finite; fill missing features before training")
        if int(group.sum()) != len(x) or len(y) != len(x):
            raise ValueError(f"group sizes must sum to the rows of x ({len(x)}) and y must "
                             f"have one label per row; got {int(group.sum())} and {len(y)}")
        params = {"objective": "lambdarank", "learning_rate": self.learning_rate,
                  "num_leaves": self.num_leaves, "min_child_samples": self.min_child_samples,
                  "lambdarank_truncation_level": 10, "eval_at": [10], "verbose": -1,
                  "seed": self.seed, "deterministic": True, "num_threads": 1,
                  "use_missing": False}
        data = lgb.Dataset(x, y, group=group, feature_name=feature_names,
                           free_raw_data=True)
        booster = lgb.train(params, data, num_boost_round=self.n_estimators)
        self.model_text_ = booster.model_to_string()
        self.feature_names_ = list(feature_names)
        self._post_load()
        return self

    def _post_load(self) -> None:
        import lightgbm as lgb

        dump = lgb.Booster(model_str=self.model_text_).dump_model()
        self.trees_ = _flatten(dump)
        _walk(np.zeros((1, dump["max_feature_idx"] + 1)), *self.trees_)  # JIT now, not at a request

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Ranking scores of the rows of ``x`` (higher first): numba, no LightGBM call."""
        check_is_fitted(self, "trees_")
        return _walk(np.ascontiguousarray(x, dtype=np.float64), *self.trees_)

    def predict_lightgbm(self, x: np.ndarray) -> np.ndarray:
        """The same scores from LightGBM itself: the test oracle for :meth:`predict`."""
        import lightgbm as lgb

        check_is_fitted(self, "model_text_")
        return np.asarray(lgb.Booster(model_str=self.model_text_).predict(x))

    def save(self, directory: Path) -> None:
        """``order.txt`` (LightGBM's text model) and ``order.json`` (params, features)."""
        check_is_fitted(self, "model_text_")
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "order.txt").write_text(self.model_text_)
        (directory / "order.json").write_text(json.dumps(
            {"format": _FORMAT, "params": self.get_params(), "features": self.feature_names_}))

    @classmethod
    def load(cls, directory: Path) -> LearnedOrder:
        path = directory / "order.json"
        if not path.exists() or not (directory / "order.txt").exists():
            raise ArtifactError(f"{directory}: no learned order (order.json + order.txt)")
        meta = read_header(path, _FORMAT)
        obj = cls(**meta["params"])
        obj.model_text_ = (directory / "order.txt").read_text()
        obj.feature_names_ = list(meta["features"])
        obj._post_load()
        return obj
