"""count_by: the number of events per value of a string, integer or boolean field.

Served as a map (a JSON object) from each value's text (integers in decimal, booleans
``"true"``/``"false"``) to its count. A field that declares its allowed values
(``Field(..., values=[...])``) is served exactly those keys, in the declared order, zeros
included: the declared list bounds the partial, so nothing is dropped (``max_keys``, if
given, is not used). Any other field needs ``max_keys``: past ``max_keys`` distinct values
in a window, the map holds the counts of the ``max_keys`` *smallest* values (strings by
code point, integers numerically, false before true), each count exact, in ascending
order, and the larger values are left out. A field with a known vocabulary should declare
``values=`` instead.

Why the smallest: it is the one truncation that is a monoid. The ``max_keys`` smallest
values of a union are among the ``max_keys`` smallest of each part (fewer than
``max_keys`` values of the union, so of any part, are smaller), so a partial that keeps
only those keeps every count the result needs, exactly, and every merge order gives the
same partial. (Keeping the most frequent values instead would lose counts when merged.)

The partial is ``[[value, count], ...]`` ascending by value (never empty: null is the
identity), not a JSON object: ordering by text would put 10 before 9. State per entity
and window: ``max_keys`` pairs, or one per declared value.

Engines: Spark collects a bucket's values (``COLLECT_LIST``, memory: every value of one
entity's bucket) and the shared code counts them; the speed job's JVM twin
``lfp.speed.CountsByValue`` (one subclass per SQL type) keeps the truncated counts per
event and emits the partial's JSON text.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from feature_core.aggregations.base import (
    IR,
    AggregationKind,
    ColumnEvents,
    FlinkColumns,
    FlinkForm,
    Partial,
    Primitive,
    Ranges,
    Result,
    SparkColumns,
    json_form,
    kind,
    primitive,
)

#: Flink SQL type -> the Java class counting values of it.
COUNTS_BY_VALUE = {
    "STRING": "lfp.speed.CountsByStrings",
    "BIGINT": "lfp.speed.CountsByLongs",
    "BOOLEAN": "lfp.speed.CountsByBooleans",
}


def counts_by_function(sql_type: str) -> str:
    """The SQL name of the per-value counting aggregate for values of ``sql_type``."""
    return f"lfp_count_by_{sql_type.lower()}"


def key_text(value: Any) -> str:
    """A value as a served map key: booleans as JSON spells them, integers in decimal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def smallest(counts: dict[Any, int], limit: int | None) -> Partial:
    """The partial of exact ``counts``: the ``limit`` smallest values (all: ``None``)."""
    if not counts:
        return None
    if limit is None or len(counts) <= limit:
        values = sorted(counts)
    else:
        values = heapq.nsmallest(limit, counts)
    return [[value, counts[value]] for value in values]


def add_counts(counts: dict[Any, int], partial: Partial) -> None:
    for value, count in partial or ():
        counts[value] = counts.get(value, 0) + count


@primitive
@dataclass(frozen=True)
class CountBy(Primitive):
    """Counts per value, ``[[value, count], ...]`` ascending by value, at most ``param``
    of them (the smallest; ``None``: all), or null."""

    kind_name = "count_by"
    jvm_functions = {counts_by_function(t): c for t, c in COUNTS_BY_VALUE.items()}
    flink_emits_json = True

    def lift(self, value: Any, event_time: int) -> Partial:
        return None if value is None else [[value, 1]]

    def combine(self, left: Partial, right: Partial) -> Partial:
        counts: dict[Any, int] = {}
        add_counts(counts, left)
        add_counts(counts, right)
        return smallest(counts, self.param)

    @cached_property
    def merge_many(self) -> Callable[[Sequence[Partial]], Partial]:
        limit = self.param

        def merge_counts(partials: Sequence[Partial]) -> Partial:
            counts: dict[Any, int] = {}
            for partial in partials:
                add_counts(counts, partial)
            return smallest(counts, limit)

        return merge_counts

    def from_pairs(self, pairs: Iterable[tuple[int, Any]]) -> Partial:
        return smallest(Counter(v for _, v in pairs if v is not None), self.param)

    def normalize(self, partial: Partial) -> Partial:
        """JSON gives the pairs back as lists of the same types; sorted and summed again
        so any list of pairs reads back canonical."""
        counts: dict[Any, int] = {}
        add_counts(counts, [(value, int(count)) for value, count in partial or ()])
        return smallest(counts, self.param)

    def windowed(self, column: ColumnEvents, ranges: Ranges) -> list[Partial]:
        """Exact counts of a sliding window (both ends only move forward) and its values
        in order: each event is counted in and out once, and a window's partial is read
        off the first ``param`` values."""
        values, limit = column.values, self.param
        counts: dict[Any, int] = {}
        ordered: list[Any] = []  # the values counted in the window, ascending
        result: list[Partial] = []
        pushed = popped = 0
        for lo, hi in zip(ranges.lo.tolist(), ranges.hi.tolist(), strict=True):
            while pushed < hi:
                value = values[pushed]
                if value is not None:
                    if value in counts:
                        counts[value] += 1
                    else:
                        counts[value] = 1
                        insort(ordered, value)
                pushed += 1
            while popped < lo:
                value = values[popped]
                if popped < pushed and value is not None:
                    counts[value] -= 1
                    if not counts[value]:
                        del counts[value]
                        del ordered[bisect_left(ordered, value)]
                popped += 1
            pushed = max(pushed, popped)
            kept = ordered if limit is None else ordered[:limit]
            result.append([[value, counts[value]] for value in kept] if kept else None)
        return result

    def spark_sql(self, columns: SparkColumns) -> str:
        # Spark has no per-value count inside one aggregate: a bucket's values are
        # collected (nulls skipped) and counted by the shared code.
        return f"COLLECT_LIST({columns.value})"

    def from_spark(self, raw: Any) -> Partial:
        return smallest(Counter(raw or ()), self.param)

    def flink_form(self, columns: FlinkColumns) -> FlinkForm:
        function = counts_by_function(columns.sql_type or "")
        return json_form(f"{function}({columns.value}, {self.param or 0})")


@kind
@dataclass(frozen=True)
class CountByKind(AggregationKind):
    """Events per value: a map from the value's text to its count. Declared values: those
    keys in the declared order, zeros included; otherwise the ``max_keys`` smallest values
    seen, ascending (see the module's docstring)."""

    name = "count_by"
    column_types = ("string", "integer", "boolean")

    def check(self) -> None:
        max_keys = self.options.max_keys
        if max_keys is not None and (
            not isinstance(max_keys, int) or isinstance(max_keys, bool) or max_keys < 1
        ):
            raise ValueError(f"count_by max_keys must be an integer >= 1, got {max_keys!r}")
        if self.options.values is None and max_keys is None:
            raise ValueError(
                "count_by needs max_keys on a field without declared values "
                "(e.g. Aggregation('count_by', 'merchant_id', max_keys=20)), "
                "or declare the field's values"
            )

    @property
    def declared(self) -> tuple[Any, ...] | None:
        """The declared values, once each, in order (``None``: none declared)."""
        values = self.options.values
        return None if values is None else tuple(dict.fromkeys(values))

    @property
    def primitives(self) -> tuple[Primitive, ...]:
        # Declared values bound the partial themselves: no truncation.
        limit = None if self.options.values is not None else self.options.max_keys
        return (Primitive("count_by", limit),)

    @property
    def result(self) -> Result:
        return Result("integer", "map")

    def finalize_output(self, ir: IR, t: int, output: int) -> Any:
        counts = dict(map(tuple, ir[0] or ()))
        return self._served(counts, [value for value, _ in ir[0] or ()])

    def reference(self, events: Sequence[tuple[int, Any]], t: int, output: int) -> Any:
        counts = Counter(value for _, value in events)
        return self._served(counts, sorted(counts)[: self.options.max_keys])

    def _served(self, counts: dict[Any, int], seen: list[Any]) -> dict[str, int]:
        """The map: the declared values' counts (zeros too), or those of ``seen``."""
        keys = seen if self.declared is None else self.declared
        return {key_text(value): int(counts.get(value, 0)) for value in keys}
