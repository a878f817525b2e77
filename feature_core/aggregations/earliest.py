"""first and first_k: the oldest values, as ``[time, value]`` pairs, oldest first.

The mirror of :mod:`feature_core.aggregations.latest`. Pairs order as Python lists do, by
time, then by value, and these keep the smallest pairs: events at the same millisecond
are ordered by value, so ``first`` keeps the *smallest* of them (``last`` keeps the
largest), and ``first_k`` lists them smallest first, in every engine. Strings order by
code point, ``False`` before ``True``.

The JVM twin is ``lfp.speed.LatestPairs`` run oldest first (``lfp.speed.Earliest*``, one
class per value type): it emits the k smallest pairs ascending, which is this partial's
own order, so the tile sink writes them with the pair shapes it knows (``last`` takes
the first pair, ``last_k`` writes them in the order emitted).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import islice
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
from feature_core.aggregations.latest import spark_pair, spark_pairs

#: Flink SQL type -> the Java class of the earliest-pairs aggregate for values of it.
EARLIEST_PAIRS = {
    "STRING": "lfp.speed.EarliestStrings",
    "BIGINT": "lfp.speed.EarliestLongs",
    "DOUBLE": "lfp.speed.EarliestDoubles",
    "BOOLEAN": "lfp.speed.EarliestBooleans",
}


def earliest_pairs_function(sql_type: str) -> str:
    """The SQL name of the earliest-pairs aggregate for values of ``sql_type``."""
    return f"lfp_earliest_pairs_{sql_type.lower()}"


@primitive
@dataclass(frozen=True)
class First(Primitive):
    """The oldest ``[time, value]`` pair, or null."""

    kind_name = "first"
    jvm_functions = {earliest_pairs_function(t): c for t, c in EARLIEST_PAIRS.items()}

    def lift(self, value: Any, event_time: int) -> Partial:
        return None if value is None else [event_time, value]

    def combine(self, left: Partial, right: Partial) -> Partial:
        return min(left, right)

    @cached_property
    def merge_many(self) -> Callable[[Sequence[Partial]], Partial]:
        def merge_present(partials: Sequence[Partial]) -> Partial:
            present = [p for p in partials if p is not None]
            return min(present) if present else None  # by time, then value

        return merge_present

    def normalize(self, partial: Partial) -> Partial:
        return None if partial is None else [int(partial[0]), partial[1]]

    def windowed(self, column: ColumnEvents, ranges: Ranges) -> list[Partial]:
        # Events are sorted by (time, value): a range's oldest pair is its first present
        # event, the next present position at or after its start.
        count = len(column.values)
        positions = np.where(column.present, np.arange(count), count)
        following = np.minimum.accumulate(positions[::-1])[::-1] if count else positions
        result: list[Partial] = []
        for lo, hi in zip(ranges.lo.tolist(), ranges.hi.tolist(), strict=True):
            i = int(following[lo]) if lo < count else count
            result.append([int(column.times[i]), column.values[i]] if i < hi else None)
        return result

    def spark_sql(self, columns: SparkColumns) -> str:
        return f"MIN({spark_pair(columns)})"  # struct order: time, then value

    def from_spark(self, raw: Any) -> Partial:
        return self.from_pairs(spark_pairs(raw))

    def flink_form(self, columns: FlinkColumns) -> FlinkForm:
        if columns.is_event_time:
            # The oldest event time is its own value: a native MIN, written as (t, t).
            sql = f"MIN({columns.time}) FILTER (WHERE {columns.value} IS NOT NULL)"
            return FlinkForm(sql, "last_time")
        function = earliest_pairs_function(columns.sql_type or "")
        # The aggregate emits its one pair as a list; the sink's "last" takes its first.
        return FlinkForm(f"{function}({columns.time}, {columns.value}, 1)", "last", 1)

    def from_flink(self, raw: Any) -> Partial:
        if raw is not None and not isinstance(raw, (list, tuple)):
            return self.from_pairs([(raw, raw)])  # first(event_time)
        return self.from_pairs((pair[0], pair[1]) for pair in raw or [])


@primitive
@dataclass(frozen=True)
class FirstK(Primitive):
    """The k oldest ``[time, value]`` pairs, oldest first."""

    kind_name = "first_k"
    jvm_functions = First.jvm_functions

    @property
    def identity(self) -> Partial:
        return []

    def lift(self, value: Any, event_time: int) -> Partial:
        return [] if value is None else [[event_time, value]]

    def merge(self, left: Partial, right: Partial) -> Partial:
        return sorted([*(left or []), *(right or [])])[: self.param]

    @cached_property
    def merge_many(self) -> Callable[[Sequence[Partial]], Partial]:
        k = self.param
        # Each partial is sorted already: a k-way merge that stops after k pairs.
        return lambda partials: smallest_pairs(partials, k)

    def normalize(self, partial: Partial) -> Partial:
        return [[int(t), v] for t, v in (partial or [])]

    def windowed(self, column: ColumnEvents, ranges: Ranges) -> list[Partial]:
        k = self.param or 1
        present = np.flatnonzero(column.present)
        first = np.searchsorted(present, ranges.lo, side="left")
        end = np.searchsorted(present, ranges.hi, side="left")
        result: list[Partial] = []
        for a, b in zip(first.tolist(), end.tolist(), strict=True):
            chosen = present[a : min(b, a + k)]
            result.append([[int(column.times[i]), column.values[i]] for i in chosen])
        return result

    def spark_sql(self, columns: SparkColumns) -> str:
        pair = spark_pair(columns)
        return f"SLICE(SORT_ARRAY(COLLECT_LIST({pair}), true), 1, {self.param})"

    def from_spark(self, raw: Any) -> Partial:
        return self.from_pairs(spark_pairs(raw))

    def flink_form(self, columns: FlinkColumns) -> FlinkForm:
        function = earliest_pairs_function(columns.sql_type or "")
        k = self.param or 1
        # Emitted oldest first, this partial's order: the sink's "last_k" keeps that order.
        return FlinkForm(f"{function}({columns.time}, {columns.value}, {k})", "last_k", k)

    def from_flink(self, raw: Any) -> Partial:
        return self.from_pairs((pair[0], pair[1]) for pair in raw or [])


def smallest_pairs(partials: Sequence[Partial], k: int | None) -> list[Partial]:
    """The k smallest pairs of ascending partials, ascending (all of them: ``k`` None)."""
    return list(islice(heapq.merge(*filter(None, partials)), k))


FIRST = First("first")


def oldest(events: Sequence[tuple[int, Any]], k: int) -> list[tuple[int, Any]]:
    """The k oldest events, oldest first: plainly, by sorting."""
    return sorted(events)[:k]


@kind
@dataclass(frozen=True)
class FirstKind(AggregationKind):
    """The oldest value (at one millisecond: the smallest), null over no events."""

    name = "first"

    @property
    def primitives(self) -> tuple[Primitive, ...]:
        return (FIRST,)

    @property
    def result(self) -> Result:
        return Result("column")

    def finalize_output(self, ir: IR, t: int, output: int) -> Any:
        return ir[0][1] if ir[0] else None

    def reference(self, events: Sequence[tuple[int, Any]], t: int, output: int) -> Any:
        return oldest(events, 1)[0][1] if events else None


@kind
@dataclass(frozen=True)
class FirstKKind(AggregationKind):
    """The k oldest values, oldest first (at one millisecond: smallest first)."""

    name = "first_k"

    def check(self) -> None:
        if not self.options.k or self.options.k < 1:
            raise ValueError(
                "first_k needs k >= 1 (e.g. Aggregation('first_k', 'merchant_id', k=5))"
            )

    @property
    def primitives(self) -> tuple[Primitive, ...]:
        return (Primitive("first_k", self.options.k),)

    @property
    def result(self) -> Result:
        return Result("column", "list")

    def finalize_output(self, ir: IR, t: int, output: int) -> Any:
        return [v for _, v in ir[0]]

    def reference(self, events: Sequence[tuple[int, Any]], t: int, output: int) -> Any:
        return [v for _, v in oldest(events, self.options.k or 1)]
