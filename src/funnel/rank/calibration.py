"""Probability calibration (isotonic or Platt) and a reliability plot.

Calibrators store their fitted state as plain JSON (thresholds, or a and b), never pickle.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from funnel._checks import check_is_fitted
from funnel.exceptions import ConfigError


def _inputs(p: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(p, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if p.shape != y.shape or p.size == 0:
        raise ValueError(f"p and y must be non-empty and equally long; got {p.size} and {y.size}")
    return p, y


def _pav(y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Pool-adjacent-violators: the non-decreasing least-squares fit to ``y`` (weights ``w``)."""
    vals, wts, sizes = [], [], []
    for yi, wi in zip(y.tolist(), w.tolist(), strict=True):
        vals.append(yi)
        wts.append(wi)
        sizes.append(1)
        while len(vals) > 1 and vals[-2] > vals[-1]:
            wsum = wts[-2] + wts[-1]
            vals[-2] = (vals[-2] * wts[-2] + vals[-1] * wts[-1]) / wsum
            wts[-2] = wsum
            sizes[-2] += sizes[-1]
            vals.pop()
            wts.pop()
            sizes.pop()
    return np.repeat(vals, sizes)


@dataclass
class IsotonicCalibrator:
    """Monotone step map fitted by PAV on (score, label), interpolated between thresholds."""

    x_: list[float] | None = field(default=None, repr=False)
    y_: list[float] | None = field(default=None, repr=False)
    kind = "isotonic"

    def fit(self, p: np.ndarray, y: np.ndarray) -> IsotonicCalibrator:
        p, y = _inputs(p, y)
        uniq, inverse = np.unique(p, return_inverse=True)
        counts = np.bincount(inverse).astype(np.float64)
        means = np.bincount(inverse, weights=y) / counts
        fitted = _pav(means, counts)
        self.x_, self.y_ = uniq.tolist(), fitted.tolist()
        return self

    def predict(self, p: np.ndarray) -> np.ndarray:
        check_is_fitted(self, ["x_", "y_"])
        return np.interp(np.asarray(p, dtype=np.float64), self.x_, self.y_)

    def to_dict(self) -> dict[str, Any]:
        check_is_fitted(self, ["x_", "y_"])
        return {"kind": self.kind, "x": self.x_, "y": self.y_}


@dataclass
class PlattCalibrator:
    """Platt scaling: sigmoid(a * logit(p) + b), fitted by Newton steps on the logloss."""

    a_: float | None = None
    b_: float | None = None
    kind = "platt"

    def fit(self, p: np.ndarray, y: np.ndarray, n_iter: int = 50) -> PlattCalibrator:
        p, y = _inputs(p, y)
        z = np.log(np.clip(p, 1e-7, 1 - 1e-7) / np.clip(1 - p, 1e-7, 1))
        x = np.stack([z, np.ones_like(z)], axis=1)  # (n, 2)
        theta = np.array([1.0, 0.0])
        for _ in range(n_iter):
            q = 1 / (1 + np.exp(-(x @ theta)))
            grad = x.T @ (q - y)
            hess = (x * (q * (1 - q))[:, None]).T @ x + 1e-9 * np.eye(2)
            step = np.linalg.solve(hess, grad)
            theta -= step
            if np.abs(step).max() < 1e-10:
                break
        self.a_, self.b_ = float(theta[0]), float(theta[1])
        return self

    def predict(self, p: np.ndarray) -> np.ndarray:
        check_is_fitted(self, ["a_", "b_"])
        p = np.asarray(p, dtype=np.float64)
        z = np.log(np.clip(p, 1e-7, 1 - 1e-7) / np.clip(1 - p, 1e-7, 1))
        return 1 / (1 + np.exp(-(self.a_ * z + self.b_)))  # type: ignore[operator]

    def to_dict(self) -> dict[str, Any]:
        check_is_fitted(self, ["a_", "b_"])
        return {"kind": self.kind, "a": self.a_, "b": self.b_}


Calibrator = IsotonicCalibrator | PlattCalibrator
CALIBRATORS: dict[str, type] = {"isotonic": IsotonicCalibrator, "platt": PlattCalibrator}


def get_calibrator(name: str) -> Calibrator:
    if name not in CALIBRATORS:
        raise ValueError(f"unknown calibrator {name!r}; expected one of {sorted(CALIBRATORS)}")
    return CALIBRATORS[name]()  # type: ignore[no-any-return]


def calibrator_from_dict(raw: Mapping[str, Any]) -> Calibrator:
    kind = raw.get("kind")
    if kind == "isotonic" and set(raw) == {"kind", "x", "y"}:
        return IsotonicCalibrator(x_=list(raw["x"]), y_=list(raw["y"]))
    if kind == "platt" and set(raw) == {"kind", "a", "b"}:
        return PlattCalibrator(a_=float(raw["a"]), b_=float(raw["b"]))
    raise ConfigError(
        f"calibrator: expected {{kind: isotonic, x, y}} or {{kind: platt, a, b}}; got keys "
        f"{sorted(raw)} with kind {kind!r}"
    )


def reliability_bins(
    p: np.ndarray, y: np.ndarray, n_bins: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width bin: mean predicted, observed rate, count (empty bins dropped)."""
    p, y = _inputs(p, y)
    bins = np.clip((p * n_bins).astype(np.int64), 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    keep = count > 0
    mean_p = np.bincount(bins, weights=p, minlength=n_bins)[keep] / count[keep]
    rate = np.bincount(bins, weights=y, minlength=n_bins)[keep] / count[keep]
    return mean_p, rate, count[keep]


def reliability_plot(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]], n_bins: int = 10, title: str = ""
) -> bytes:
    """PNG bytes of a reliability diagram, one line per ``{label: (p, y)}``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.5, 4.5), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect")
    for label, (p, y) in curves.items():
        mean_p, rate, _ = reliability_bins(p, y, n_bins)
        ax.plot(mean_p, rate, marker="o", label=label)
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed frequency")
    ax.set_title(title or "reliability")
    ax.legend(loc="upper left")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
