"""Scatter rules: at most ``m`` items sharing an attribute value in any ``w`` consecutive slots.

The greedy fills positions top to bottom and puts at each one the best-ranked remaining item
that breaks no rule, so an input that already complies comes out unchanged and every move
costs the least relevance it can at that position. Items fixed in advance (pins, sponsored
slots) count in every window they fall in. When no remaining item fits, the least-violating
one is placed (``on_violation="relax"``) and the :class:`ScatterReport` says where, which rule,
which value, and why; ``on_violation="raise"`` raises :class:`ScatterError` with that report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from funnel.exceptions import FunnelError

ON_VIOLATION = ("relax", "raise")


@dataclass(frozen=True)
class ScatterRule:
    """At most ``max_count`` items with the same ``attribute`` value per ``window`` positions."""

    attribute: str
    max_count: int = 1
    window: int = 3

    def __post_init__(self) -> None:
        if not isinstance(self.attribute, str) or not self.attribute:
            raise ValueError(
                f"ScatterRule.attribute must be a non-empty str; got {self.attribute!r}"
            )
        for name in ("max_count", "window"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"ScatterRule.{name} must be an int >= 1; got {v!r}")

    def __str__(self) -> str:
        return f"{self.attribute}: at most {self.max_count} per {self.window} positions"


@dataclass(frozen=True)
class ScatterViolation:
    """One placement that broke a rule, and why nothing else could go there."""

    position: int
    row: int
    rule: ScatterRule
    value: str
    reason: str


@dataclass(frozen=True)
class ScatterReport:
    """What the scatter step did: violations (if any), moves, and the relevance it cost."""

    violations: tuple[ScatterViolation, ...]
    moved: int
    """Positions whose item differs from the input order's item at that position."""
    pulled_in: int
    """Items shown that were beyond the first ``k`` of the input order."""
    ndcg_vs_input: float
    """DCG of the output's scores over DCG of the input's first ``k`` (1.0 = no loss)."""

    @property
    def satisfied(self) -> bool:
        return not self.violations

    def summary(self) -> str:
        if self.satisfied:
            return (f"all scatter rules hold ({self.moved} positions changed, "
                    f"{self.pulled_in} items pulled in, NDCG vs input {self.ndcg_vs_input:.3f})")
        lines = [f"{len(self.violations)} scatter rule violation(s):"]
        lines += [f"  position {v.position}: {v.rule} broken by {v.rule.attribute}="
                  f"{v.value!r} ({v.reason})" for v in self.violations]
        return "\n".join(lines)


class ScatterError(FunnelError, ValueError):
    """Scatter rules could not be satisfied and the configuration asked to fail."""

    def __init__(self, report: ScatterReport) -> None:
        super().__init__(report.summary())
        self.report = report


def _value(values: Mapping[str, Sequence[str | None]], attr: str, row: int) -> str | None:
    col = values.get(attr)
    if col is None:
        return None
    v = col[row]
    return None if v is None else str(v)


def _bad_windows(slots: list[int], pos: int, row: int, rule: ScatterRule,
                 col: list[str | None] | None) -> list[int]:
    """Starts of the windows containing ``pos`` over the limit if ``row`` goes at ``pos``."""
    if col is None:
        return []
    v = col[row]
    if v is None:
        return []
    size = len(slots)
    bad: list[int] = []
    for start in range(max(0, pos - rule.window + 1), pos + 1):
        end = min(size, start + rule.window)
        count = 1
        for p in range(start, end):
            r = slots[p]
            if p != pos and r >= 0 and col[r] == v:
                count += 1
        if count > rule.max_count:
            bad.append(start)
        if end == size:  # later windows are clipped copies of this one
            break
    return bad


def _columns(values: Mapping[str, Sequence[str | None]], rules: Sequence[ScatterRule]
             ) -> list[list[str | None] | None]:
    """Each rule's attribute column as str-or-None (None when the attribute is absent)."""
    cache: dict[str, list[str | None] | None] = {}
    for rule in rules:
        if rule.attribute not in cache:
            col = values.get(rule.attribute)
            cache[rule.attribute] = (None if col is None
                                     else [None if v is None else str(v) for v in col])
    return [cache[rule.attribute] for rule in rules]


def scatter(order: Sequence[int] | np.ndarray, values: Mapping[str, Sequence[str | None]],
            rules: Sequence[ScatterRule], k: int, *,
            fixed: Mapping[int, int] | None = None,
            scores: np.ndarray | None = None,
            on_violation: str = "relax") -> tuple[np.ndarray, ScatterReport]:
    """Fill ``k`` positions from ``order`` (row indices, best first) obeying ``rules``.

    Parameters
    ----------
    order : rows in preferred order; rows in ``fixed`` are skipped here.
    values : attribute name -> one value per row (rows index into these columns).
    rules : the scatter rules; an attribute missing from ``values`` never matches.
    k : number of positions to fill (clamped to the rows available).
    fixed : position -> row placed there regardless (pins, sponsored slots).
    scores : per-row scores, for the report's ``ndcg_vs_input`` (defaults to rank-based).
    on_violation : "relax" places the least-violating item; "raise" raises ScatterError.

    Returns
    -------
    (rows, report): the rows shown in position order, and the :class:`ScatterReport`.
    """
    if on_violation not in ON_VIOLATION:
        raise ValueError(
            f"The 'on_violation' parameter must be one of {list(ON_VIOLATION)}; "
            f"got {on_violation!r}"
        )
    order_list = [int(r) for r in order]
    fixed_rows = {int(r) for r in (fixed or {}).values()}
    queue = [r for r in order_list if r not in fixed_rows]
    fixed = _compact_fixed(fixed or {}, int(k), len(queue))
    k_eff = min(int(k), len(queue) + len(fixed))
    slots = [-1] * k_eff
    for p, r in fixed.items():
        slots[p] = r
    violations: list[ScatterViolation] = []
    seen: set[tuple[int, int, str]] = set()  # (rule, window start, value): report a window once
    cols = _columns(values, rules)
    checks = list(zip(rules, cols, strict=True))

    def record(pos: int, row: int, reason: str) -> None:
        for r_i, (rule, col) in enumerate(checks):
            value = str(None if col is None else col[row])
            new = [w for w in _bad_windows(slots, pos, row, rule, col)
                   if (r_i, w, value) not in seen]
            seen.update((r_i, w, value) for w in new)
            if new:
                violations.append(ScatterViolation(pos, row, rule, value, reason))
    taken = np.zeros(len(queue), dtype=bool)
    first_free = 0
    for pos in range(k_eff):
        if pos in fixed:
            row = fixed[pos]
            record(pos, row, "fixed item (pin or sponsored slot) breaks the rule")
            continue
        while first_free < len(queue) and taken[first_free]:
            first_free += 1
        best_q, best_bad = -1, None
        for qi in range(first_free, len(queue)):
            if taken[qi]:
                continue
            row = queue[qi]
            bad = 0
            for rule, col in checks:
                bad += len(_bad_windows(slots, pos, row, rule, col))
            if bad == 0:
                best_q, best_bad = qi, 0
                break
            if best_bad is None or bad < best_bad:
                best_q, best_bad = qi, bad
        if best_q < 0:
            break
        row = queue[best_q]
        if best_bad:
            remaining = int((~taken).sum())
            record(pos, row, f"each of the {remaining} remaining candidates breaks a rule here")
        taken[best_q] = True
        slots[pos] = row
    rows = np.array([s for s in slots if s >= 0], dtype=np.int64)
    report = ScatterReport(
        violations=tuple(violations),
        moved=sum(1 for p, r in enumerate(rows) if p >= len(order_list) or order_list[p] != r),
        pulled_in=len(set(rows.tolist()) - set(order_list[:k_eff])),
        ndcg_vs_input=_dcg_ratio(rows, order_list, k_eff, scores),
    )
    if violations and on_violation == "raise":
        raise ScatterError(report)
    return rows, report


def _compact_fixed(fixed: Mapping[int, int], k: int, n_free: int) -> dict[int, int]:
    """Fixed rows at positions < k; those past the end of a short list move up to its end.

    A fixed row at position >= k is below the cut and not shown.
    """
    inside = sorted((int(p), int(r)) for p, r in fixed.items() if 0 <= p < k)
    size = min(k, n_free + len(inside))
    out: dict[int, int] = {}
    top = size - 1
    for p, r in reversed(inside):
        pos = min(p, top)
        out[pos] = r
        top = pos - 1
    return out


def _dcg_ratio(rows: np.ndarray, order: list[int], k: int, scores: np.ndarray | None) -> float:
    reference = order[:k]
    if len(reference) == 0:
        return 1.0
    if scores is None:  # rank-based gains: the input's first item is worth the most
        gains = {r: 1.0 / (1 + i) for i, r in enumerate(order)}
        gain = np.array([gains.get(int(r), 0.0) for r in rows])
        ref = np.array([gains[r] for r in reference])
    else:
        s = np.asarray(scores, dtype=np.float64)
        s = s - s.min() if s.size else s  # DCG needs non-negative gains
        gain, ref = s[rows], s[np.array(reference)]
    disc = 1.0 / np.log2(np.arange(2, max(len(rows), len(ref)) + 2))
    ideal = float((ref * disc[: len(ref)]).sum())
    return 1.0 if ideal <= 0 else float((gain * disc[: len(gain)]).sum()) / ideal


def find_violations(rows: Sequence[int], values: Mapping[str, Sequence[str | None]],
                    rules: Sequence[ScatterRule]) -> list[tuple[ScatterRule, int, str]]:
    """Every ``(rule, window_start, value)`` over its limit in ``rows``: an independent check."""
    out: list[tuple[ScatterRule, int, str]] = []
    rows = list(rows)
    for rule in rules:
        for start in range(max(1, len(rows) - rule.window + 1)):
            counts: dict[str, int] = {}
            for r in rows[start: start + rule.window]:
                v = _value(values, rule.attribute, r)
                if v is not None:
                    counts[v] = counts.get(v, 0) + 1
            out += [(rule, start, v) for v, c in counts.items() if c > rule.max_count]
    return out
