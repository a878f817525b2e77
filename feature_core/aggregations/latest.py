"""last and last_k: the newest values, as ``[time, value]`` pairs.

Pairs order as Python lists do, by time, then by value, so events at the same
millisecond are ordered by value: ``last`` keeps the largest of them, in every engine.
The JVM twin is ``lfp.speed.LatestPairs`` (one class per value type).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import chain
from typing import Any

import numpy as np

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
    kind,
    primitive,
)

#: Flink SQL type -> the Java class of the latest-pairs aggregate for values of it.
LATEST_PAIRS = {
    "STRING": "lfp.speed.LatestStrings",
    "BIGINT": "lfp.speed.LatestLongs",
    "DOUBLE": "lfp.speed.LatestDoubles",
    "BOOLEAN": "lfp.speed.LatestBooleans",
}


def latest_pairs_function(sql_type: str) -> str:
    """The SQL name of the latest-pairs aggregate for values of ``sql_type``."""
    return f"lfp_latest_pairs_{sql_type.lower()}"


def spark_pair(columns: SparkColumns) -> str:
    """A ``(t, v)`` struct of a non-null value: structs order by time, then value."""
    return (
        f"CASE WHEN {columns.value} IS NOT NULL "
        f"THEN named_struct('t', {columns.time}, 'v', {columns.value}) END"
    )


def spark_pairs(raw: Any) -> list[tuple[int, Any]]:
    """Spark's structs (one, a list, or null) as pairs."""
    if raw is None:
        return []
    items = [raw] if hasattr(raw, "asDict") or isinstance(raw, dict) else raw
    return [(item["t"], item["v"]) for item in items]


@primitive
@dataclass(frozen=True)
class Last(Primitive):
    """The newest ``[time, value]`` pair, or null."""

    kind_name = "last"
    jvm_functions = {latest_pairs_function(t): c for t, c in LATEST_PAIRS.items()}

    def lift(self, value: Any, event_time: int) -> Partial:
        return None if value is None else [event_time, value]

    def combine(self, left: Partial, right: Partial) -> Partial:
        return max(left, right)

    @cached_property
    def merge_many(self) -> Callable[[Sequence[Partial]], Partial]:
        def merge_present(partials: Sequence[Partial]) -> Partial:
            present = [p for p in partials if p is not None]
            return max(present) if present else None  # by time, then value

        return merge_present

    def normalize(self, partial: Partial) -> Partial:
        return None if partial is None else [int(partial[0]), partial[1]]

    def windowed(self, column: ColumnEvents, ranges: Ranges) -> list[Partial]:
        positions = np.where(column.present, np.arange(len(column.values)), -1)
        newest = np.maximum.accumulate(positions) if len(positions) else positions
        result: list[Partial] = []
        for lo, hi in zip(ranges.lo.tolist(), ranges.hi.tolist(), strict=True):
            i = int(newest[hi - 1]) if hi > 0 else -1
            result.append([int(column.times[i]), column.values[i]] if i >= lo and i >= 0 else None)
        return result

    def spark_sql(self, columns: SparkColumns) -> str:
        return f"MAX({spark_pair(columns)})"  # struct order: time, then value

    def from_spark(self, raw: Any) -> Partial:
        return self.from_pairs(spark_pairs(raw))

    def flink_form(self, columns: FlinkColumns) -> FlinkForm:
        if columns.is_event_time:
            # The latest event time is its own value: a native MAX, no pairs to collect.
            sql = f"MAX({columns.time}) FILTER (WHERE {columns.value} IS NOT NULL)"
            return FlinkForm(sql, "last_time")
        function = latest_pairs_function(columns.sql_type or "")
        return FlinkForm(f"{function}({columns.time}, {columns.value}, 1)", "last", 1)

    def from_flink(self, raw: Any) -> Partial:
        if raw is not None and not isinstance(raw, (list, tuple)):
            return self.from_pairs([(raw, raw)])  # last(event_time)
        return self.from_pairs((pair[0], pair[1]) for pair in raw or [])


@primitive
@dataclass(frozen=True)
class LastK(Primitive):
    """The k newest ``[time, value]`` pairs, newest first."""

    kind_name = "last_k"
    jvm_functions = Last.jvm_functions

    @property
    def identity(self) -> Partial:
        return []

    def lift(self, value: Any, event_time: int) -> Partial:
        return [] if value is None else [[event_time, value]]

    def merge(self, left: Partial, right: Partial) -> Partial:
        return sorted([*(left or []), *(right or [])], reverse=True)[: self.param]

    @cached_property
    def merge_many(self) -> Callable[[Sequence[Partial]], Partial]:
        k = self.param
        return lambda partials: sorted(chain.from_iterable(filter(None, partials)), reverse=True)[
            :k
        ]

    def normalize(self, partial: Partial) -> Partial:
        return [[int(t), v] for t, v in (partial or [])]

    def windowed(self, column: ColumnEvents, ranges: Ranges) -> list[Partial]:
        k = self.param or 1
        present = np.flatnonzero(column.present)
        first = np.searchsorted(present, ranges.lo, side="left")
        end = np.searchsorted(present, ranges.hi, side="left")
        result: list[Partial] = []
        for a, b in zip(first.tolist(), end.tolist(), strict=True):
            chosen = present[max(a, b - k) : b][::-1]
            result.append([[int(column.times[i]), column.values[i]] for i in chosen])
        return result

    def spark_sql(self, columns: SparkColumns) -> str:
        pair = spark_pair(columns)
        return f"SLICE(SORT_ARRAY(COLLECT_LIST({pair}), false), 1, {self.param})"

    def from_spark(self, raw: Any) -> Partial:
        return self.from_pairs(spark_pairs(raw))

    def flink_form(self, columns: FlinkColumns) -> FlinkForm:
        function = latest_pairs_function(columns.sql_type or "")
        k = self.param or 1
        return FlinkForm(f"{function}({columns.time}, {columns.value}, {k})", "last_k", k)

    def from_flink(self, raw: Any) -> Partial:
        return self.from_pairs((pair[0], pair[1]) for pair in raw or [])


Primitive.LAST = Last("last")


def newest(events: Sequence[tuple[int, Any]], k: int) -> list[tuple[int, Any]]:
    """The k newest events, newest first: plainly, by sorting."""
    return sorted(events, reverse=True)[:k]


@kind
@dataclass(frozen=True)
class LastKind(AggregationKind):
    """The newest value (at one millisecond: the largest), null over no events."""

    name = "last"

    @property
    def primitives(self) -> tuple[Primitive, ...]:
        return (Primitive.LAST,)

    @property
    def result(self) -> Result:
        return Result("column")

    def finalize_output(self, ir: IR, t: int, output: int) -> Any:
        return ir[0][1] if ir[0] else None

    def reference(self, events: Sequence[tuple[int, Any]], t: int, output: int) -> Any:
        return newest(events, 1)[0][1] if events else None


@kind
@dataclass(frozen=True)
class LastKKind(AggregationKind):
    """The k newest values, newest first."""

    name = "last_k"

    def check(self) -> None:
        if not self.options.k or self.options.k < 1:
            raise ValueError("last_k needs k >= 1 (e.g. Aggregation('last_k', 'merchant_id', k=5))")

    @property
    def primitives(self) -> tuple[Primitive, ...]:
        return (Primitive("last_k", self.options.k),)

    @property
    def result(self) -> Result:
        return Result("column", "list")

    def finalize_output(self, ir: IR, t: int, output: int) -> Any:
        return [v for _, v in ir[0]]

    def reference(self, events: Sequence[tuple[int, Any]], t: int, output: int) -> Any:
        return [v for _, v in newest(events, self.options.k or 1)]
