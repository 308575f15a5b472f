"""The handful of SQL spellings DuckDB and Spark SQL disagree on, behind one small interface.

Every batch stage is written once (``funnel.pipeline.stages``) as SQL that both engines run;
where they differ (epoch milliseconds, ordered list aggregates, exploding a list with positions,
global regex replace, string casts) the stage text calls a method of a :class:`Dialect`.
Keeping the differences here, a few lines each, is what stops the two engines' definitions
from drifting apart.
"""

from __future__ import annotations

from dataclasses import dataclass

ENGINES = ("duckdb", "spark")


@dataclass(frozen=True)
class Dialect:
    """SQL fragments for one engine (``name`` is ``"duckdb"`` or ``"spark"``)."""

    name: str

    def __post_init__(self) -> None:
        if self.name not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}; got {self.name!r}")

    def epoch_ms(self, expr: str) -> str:
        """Milliseconds since 1970 (UTC) of a timestamp, as BIGINT."""
        if self.name == "duckdb":
            return f"epoch_ms({expr})"
        return f"unix_millis({expr})"

    def ordered_list(self, value: str, order: str, where: str, elem_type: str) -> str:
        """``value`` of the rows matching ``where``, ordered by ``order``; ``[]`` if none.

        Spark has no ``ORDER BY`` inside ``collect_list``: it collects (order, value) structs,
        sorts them (``order`` must be unique within a group) and keeps the values.
        """
        if self.name == "duckdb":
            return (
                f"coalesce(list({value} ORDER BY {order}) FILTER (WHERE {where}), "
                f"[]::{elem_type}[])"
            )
        return (
            f"transform(array_sort(collect_list(named_struct('o', {order}, 'v', {value})) "
            f"FILTER (WHERE {where})), x -> x.v)"
        )

    def positions(self, values: str, pos: str, value: str) -> str:
        """Select-list fragment: one row per element of the list ``values``, as columns
        ``pos`` (1-based) and ``value``; an empty list gives no rows."""
        if self.name == "duckdb":
            return (f"unnest({values}) AS {value}, "
                    f"unnest(range(1, len({values}) + 1)) AS {pos}")
        return f"inline(transform({values}, (x, i) -> named_struct('{pos}', i + 1, '{value}', x)))"

    def last_non_null(self, value: str) -> str:
        """The window function: the last non-NULL ``value`` of the frame (append ``OVER``)."""
        if self.name == "duckdb":
            return f"last_value({value} IGNORE NULLS)"
        return f"last_value({value}, true)"

    def regex_replace_all(self, expr: str, pattern: str, repl: str) -> str:
        """Replace every match of a Java/RE2-compatible ``pattern`` (no quotes inside)."""
        if self.name == "duckdb":
            return f"regexp_replace({expr}, '{pattern}', '{repl}', 'g')"
        escaped = pattern.replace("\\", "\\\\")  # Spark string literals unescape backslashes
        return f"regexp_replace({expr}, '{escaped}', '{repl}')"

    def date_str(self, expr: str) -> str:
        """``YYYY-MM-DD`` (UTC) of a timestamp: the partition key ``dt``."""
        if self.name == "duckdb":
            return f"strftime({expr}, '%Y-%m-%d')"
        return f"date_format({expr}, 'yyyy-MM-dd')"


DUCKDB = Dialect("duckdb")
SPARK = Dialect("spark")
