"""``config.json`` of a saved recall component: class name + constructor parameters (P7)."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any, ClassVar, Self

from funnel._checks import check_is_fitted
from funnel.exceptions import ArtifactError
from funnel.recall.toplists import TopLists

FORMAT = "funnel.recall/1"


def write_config(path: Path, cls: str, params: dict[str, Any]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "class": cls, "params": params}
    (path / "config.json").write_text(json.dumps(payload, indent=2, ensure_ascii=False))


def read_config(path: Path, cls: str) -> dict[str, Any]:
    """The saved constructor parameters; ArtifactError names the file when it does not fit."""
    cfg_path = path / "config.json"
    if not cfg_path.exists():
        raise ArtifactError(f"{cfg_path}: missing; rebuild with 'funnel index'")
    cfg = json.loads(cfg_path.read_text())
    if cfg.get("format") != FORMAT or cfg.get("class") != cls:
        raise ArtifactError(
            f"{cfg_path}: expected format {FORMAT!r} class {cls!r}; "
            f"got {cfg.get('format')!r} class {cfg.get('class')!r}"
        )
    params: dict[str, Any] = cfg["params"]
    return params


NON_NEGATIVE = (lambda v: isinstance(v, int | float) and v >= 0, "a float >= 0")
"""A ``validate_params`` check for event weights."""


class TopListsPersistence:
    """``save``/``load`` for a source whose learned state is one :class:`TopLists` attribute.

    Subclasses name the attribute and its file stem in ``_toplists``; the saved ``config.json``
    carries the class name and ``get_params()``, so ``load`` rebuilds the same estimator.
    """

    _toplists: ClassVar[tuple[str, str]]  # (attribute, file stem)

    def get_params(self) -> dict[str, Any]:
        """The constructor's keyword arguments as set on ``self`` (scikit-learn's convention)."""
        names = inspect.signature(type(self).__init__).parameters
        return {name: getattr(self, name) for name in names if name != "self"}

    def save(self, path: Path | str) -> None:
        attribute, stem = self._toplists
        check_is_fitted(self, attribute)
        write_config(Path(path), type(self).__name__, self.get_params())
        getattr(self, attribute).save(Path(path), stem)

    @classmethod
    def load(cls, path: Path | str) -> Self:
        attribute, stem = cls._toplists
        obj = cls(**read_config(Path(path), cls.__name__))
        setattr(obj, attribute, TopLists.load(Path(path), stem))
        return obj
