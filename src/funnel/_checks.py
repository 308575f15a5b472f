"""Shared argument and state checks for estimators (scikit-learn style, without sklearn)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from funnel.exceptions import NotFittedError


def check_is_fitted(estimator: object, attributes: str | list[str] | None = None) -> None:
    """Raise ``NotFittedError`` unless ``estimator`` has its learned (trailing ``_``) state."""
    if attributes is None:
        fitted = any(k.endswith("_") and not k.startswith("_") for k in vars(estimator))
    else:
        names = [attributes] if isinstance(attributes, str) else attributes
        fitted = all(getattr(estimator, n, None) is not None for n in names)
    if not fitted:
        name = type(estimator).__name__
        raise NotFittedError(f"This {name} instance is not fitted yet: call 'fit' before using it.")


Constraint = Callable[[Any], bool]


def validate_params(params: Mapping[str, Any], table: Mapping[str, tuple[Constraint, str]]) -> None:
    """Validate ``params`` against a declarative ``{name: (predicate, expectation)}`` table.

    Raises ``ValueError`` naming the parameter, the value received and what was expected.
    """
    for name, (ok, expected) in table.items():
        if name not in params:
            continue
        value = params[name]
        try:
            good = bool(ok(value))
        except Exception:  # a predicate that cannot even run on the value is a failure too
            good = False
        if not good:
            raise ValueError(f"The '{name}' parameter must be {expected}. Got {value!r} instead.")


def positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def non_negative_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def positive_float(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and v > 0


def unit_interval(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and 0.0 <= v <= 1.0
