"""Slot mixing: sponsored items at configured positions, and merchandising rules.

- Sponsored candidates (``ecpm = pCTR x bid`` from the ranking stage) fill the configured
  positions in decreasing eCPM, admitted only at or above ``ecpm_floor``; an item both
  sponsored and organic is shown once, as sponsored.
- Merchandising rules match an item by id or by ``attribute == value`` and ``pin`` it to a
  position, ``boost`` its score by ``amount`` times the list's score range (amount 1 lifts it
  above every unboosted item), or ``bury`` it below every unburied item.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from funnel.config import from_mapping
from funnel.exceptions import ConfigError

ACTIONS = ("pin", "boost", "bury")


@dataclass(frozen=True)
class MerchRule:
    """One merchandising rule (``[[rerank.merch]]`` in funnel.toml)."""

    action: str
    item_id: str | None = None
    attribute: str | None = None
    value: str | None = None
    position: int | None = None
    amount: float = 1.0

    def __post_init__(self) -> None:
        where = f"merch rule {self.action!r}"
        if self.action not in ACTIONS:
            raise ConfigError(f"merch rule action must be one of {list(ACTIONS)}; "
                              f"got {self.action!r}")
        by_id = self.item_id is not None
        by_attr = self.attribute is not None or self.value is not None
        if by_id == by_attr or (by_attr and (self.attribute is None or self.value is None)):
            raise ConfigError(f"{where}: set either item_id, or both attribute and value; got "
                              f"item_id={self.item_id!r}, attribute={self.attribute!r}, "
                              f"value={self.value!r}")
        if self.action == "pin" and (self.position is None or self.position < 0):
            raise ConfigError(f"{where}: needs position >= 0 (0 = top); got {self.position!r}")
        if self.action != "pin" and self.position is not None:
            raise ConfigError(f"{where}: position applies to pin only; got {self.position!r}")
        if self.action == "boost" and not self.amount > 0:
            raise ConfigError(f"{where}: amount must be > 0; got {self.amount!r}")

    @classmethod
    def from_dict(cls, raw: Mapping[str, object], where: str = "merch rule") -> MerchRule:
        return from_mapping(cls, raw, where=where)

    def matches(self, item_ids: Sequence[str],
                attributes: Mapping[str, Sequence[str | None]]) -> np.ndarray:
        """Boolean mask of the items this rule applies to."""
        if self.item_id is not None:
            return np.array([i == self.item_id for i in item_ids], dtype=bool)
        col = attributes.get(str(self.attribute))
        if col is None:
            return np.zeros(len(item_ids), dtype=bool)
        return np.array([v is not None and str(v) == self.value for v in col], dtype=bool)


@dataclass(frozen=True)
class MerchOutcome:
    """Adjusted scores, which rows are buried, and rows pinned to positions."""

    scores: np.ndarray
    buried: np.ndarray  # bool mask
    pins: dict[int, int]  # position -> row
    notes: tuple[str, ...]


def apply_merch(item_ids: Sequence[str], scores: np.ndarray,
                attributes: Mapping[str, Sequence[str | None]],
                rules: Sequence[MerchRule]) -> MerchOutcome:
    """Apply boost and bury to ``scores`` and resolve pins (first rule wins a position)."""
    s = np.asarray(scores, dtype=np.float64).copy()
    spread = float(s.max() - s.min()) if s.size else 0.0
    spread = spread if spread > 0 else 1.0
    buried = np.zeros(s.shape[0], dtype=bool)
    pins: dict[int, int] = {}
    notes: list[str] = []
    for rule in rules:
        mask = rule.matches(item_ids, attributes)
        if rule.action == "boost":
            s[mask] += rule.amount * spread
        elif rule.action == "bury":
            buried |= mask
        else:
            rows = np.flatnonzero(mask)
            target = rule.item_id or f"{rule.attribute}={rule.value}"
            if rows.size == 0:
                notes.append(f"pin {target}@{rule.position}: not among the candidates")
                continue
            row = int(rows[np.argmax(s[rows])])  # attribute pins take the best match
            position = rule.position
            assert position is not None  # MerchRule validates: a pin has a position
            if position in pins or row in pins.values():
                notes.append(f"pin {target}@{position}: position or item already pinned")
                continue
            pins[int(position)] = row
    return MerchOutcome(s, buried, pins, tuple(notes))


@dataclass(frozen=True)
class SponsoredPlan:
    """Which sponsored items are shown where, and which were refused and why."""

    placed: dict[int, str]  # position -> sponsored item id
    ecpm: dict[str, float]
    below_floor: tuple[str, ...]


def plan_sponsored(sponsored_ids: Sequence[str], ecpm: Sequence[float] | np.ndarray,
                   positions: Sequence[int], *, floor: float, k: int,
                   taken: Sequence[int] = ()) -> SponsoredPlan:
    """Assign sponsored items to ``positions`` (those < k and not ``taken``) by eCPM."""
    e = np.asarray(ecpm, dtype=np.float64)
    if e.shape != (len(sponsored_ids),):
        raise ValueError(f"sponsored ecpm must have one value per sponsored id "
                         f"({len(sponsored_ids)}); got shape {e.shape}")
    if not np.all(np.isfinite(e)):
        raise ValueError("sponsored ecpm must be finite; got NaN or inf values")
    if len(set(map(str, sponsored_ids))) != len(sponsored_ids):
        raise ValueError("sponsored ids must be unique; got duplicates")
    order = np.argsort(-e, kind="stable")
    admitted = [int(i) for i in order if e[i] >= floor]
    below = tuple(str(sponsored_ids[int(i)]) for i in order if e[i] < floor)
    slots = sorted({int(p) for p in positions if 0 <= p < k} - set(taken))
    placed = {p: str(sponsored_ids[i]) for p, i in zip(slots, admitted, strict=False)}
    return SponsoredPlan(placed, {str(sponsored_ids[i]): float(e[i]) for i in admitted},
                         below)
