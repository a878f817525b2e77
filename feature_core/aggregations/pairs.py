"""last, last_k, first and first_k: the newest or oldest values, as ``[time, value]`` pairs.

Pairs order as Python lists do: by time, then by value (strings by code point, ``False``
before ``True``), so events at the same millisecond are ordered by value. ``last`` keeps
the largest pair (at one millisecond: the larger value) and ``last_k`` the k largest,
newest first; ``first`` and ``first_k`` are the mirror: the smallest pairs, oldest first
(at one millisecond: the smaller value first). Each direction is one class here, the
newest one and the oldest one, so the two can never drift apart.

The JVM twin is ``lfp.speed.LatestPairs``, run newest first (``lfp.speed.Latest*``) or
oldest first (``lfp.speed.Earliest*``), one class per value type. It emits the k pairs in
this partial's order, which the tile sink writes with its pair shapes (``last`` takes the
first pair, ``last_k`` writes them in the order emitted).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import islice
from typing import Any, ClassVar

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
    merging_present,
    primitive,
)

_VALUE_TYPES = {"STRING": "Strings", "BIGINT": "Longs", "DOUBLE": "Doubles", "BOOLEAN": "Booleans"}


def pairs_function(sql_type: str, newest: bool) -> str:
    """The SQL name of the pairs aggregate for values of ``sql_type``, in one direction."""
    return f"lfp_{'latest' if newest else 'earliest'}_pairs_{sql_type.lower()}"


def _jvm_functions(newest: bool) -> dict[str, str]:
    prefix = "lfp.speed.Latest" if newest else "lfp.speed.Earliest"
    return {pairs_function(t, newest): prefix + name for t, name in _VALUE_TYPES.items()}


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


def ordered_pairs(partials: Sequence[Partial], k: int | None, newest: bool) -> list[Partial]:
    """The k first pairs of partials each already in order (newest or oldest first): a
    k-way merge that stops after k pairs (all of them: ``k`` None)."""
    return list(islice(heapq.merge(*filter(None, partials), reverse=newest), k))


@dataclass(frozen=True)
class _OnePair(Primitive):
    """The newest (``newest``) or oldest ``[time, value]`` pair, or null."""

    newest: ClassVar[bool] = True

    def lift(self, value: Any, event_time: int) -> Partial:
        return None if value is None else [event_time, value]

    def combine(self, left: Partial, right: Partial) -> Partial:
        return max(left, right) if self.newest else min(left, right)

    @cached_property
    def merge_many(self) -> Callable[[Sequence[Partial]], Partial]:
        return merging_present(max if self.newest else min)  # by time, then value

    def normalize(self, partial: Partial) -> Partial:
        return None if partial is None else [int(partial[0]), partial[1]]

    def windowed(self, column: ColumnEvents, ranges: Ranges) -> list[Partial]:
        """Events are sorted by (time, value): a range's pair is its last present event
        before ``hi`` (newest) or its first at or after ``lo`` (oldest)."""
        count = len(column.values)
        result: list[Partial] = []
        if self.newest:
            positions = np.where(column.present, np.arange(count), -1)
            found = np.maximum.accumulate(positions) if count else positions
            picks = [int(found[hi - 1]) if hi > 0 else -1 for hi in ranges.hi.tolist()]
            keep = [lo <= i for i, lo in zip(picks, ranges.lo.tolist(), strict=True)]
        else:
            positions = np.where(column.present, np.arange(count), count)
            found = np.minimum.accumulate(positions[::-1])[::-1] if count else positions
            picks = [int(found[lo]) if lo < count else count for lo in ranges.lo.tolist()]
            keep = [i < hi for i, hi in zip(picks, ranges.hi.tolist(), strict=True)]
        for i, kept in zip(picks, keep, strict=True):
            result.append([int(column.times[i]), column.values[i]] if kept and i >= 0 else None)
        return result

    def spark_sql(self, columns: SparkColumns) -> str:
        # Struct order: time, then value (the algebra's tie rule).
        return f"{'MAX' if self.newest else 'MIN'}({spark_pair(columns)})"

    def from_spark(self, raw: Any) -> Partial:
        """MAX (MIN) of the pair structs: the one pair, or null (as :meth:`from_pairs`
        of it, without a merge per tile)."""
        if raw is None or raw["v"] is None:
            return None
        return [int(raw["t"]), raw["v"]]

    def flink_form(self, columns: FlinkColumns) -> FlinkForm:
        if columns.is_event_time:
            # The newest (oldest) event time is its own value: a native MAX (MIN), no
            # pairs to collect; the sink writes it as (t, t).
            native = "MAX" if self.newest else "MIN"
            sql = f"{native}({columns.time}) FILTER (WHERE {columns.value} IS NOT NULL)"
            return FlinkForm(sql, "last_time")
        function = pairs_function(columns.sql_type or "", self.newest)
        # The aggregate emits its one pair as a list; the sink's "last" takes its first.
        return FlinkForm(f"{function}({columns.time}, {columns.value}, 1)", "last", 1)

    def from_flink(self, raw: Any) -> Partial:
        if raw is not None and not isinstance(raw, (list, tuple)):
            return self.from_pairs([(raw, raw)])  # of the event time itself
        return self.from_pairs((pair[0], pair[1]) for pair in raw or [])


@dataclass(frozen=True)
class _KPairs(Primitive):
    """The k newest (``newest``: newest first) or oldest (oldest first) pairs."""

    newest: ClassVar[bool] = True

    @property
    def identity(self) -> Partial:
        return []

    def lift(self, value: Any, event_time: int) -> Partial:
        return [] if value is None else [[event_time, value]]

    def merge(self, left: Partial, right: Partial) -> Partial:
        return sorted([*(left or []), *(right or [])], reverse=self.newest)[: self.param]

    @cached_property
    def merge_many(self) -> Callable[[Sequence[Partial]], Partial]:
        k, newest = self.param, self.newest
        return lambda partials: ordered_pairs(partials, k, newest)

    def normalize(self, partial: Partial) -> Partial:
        return [[int(t), v] for t, v in (partial or [])]

    def windowed(self, column: ColumnEvents, ranges: Ranges) -> list[Partial]:
        k = self.param or 1
        present = np.flatnonzero(column.present)
        first = np.searchsorted(present, ranges.lo, side="left")
        end = np.searchsorted(present, ranges.hi, side="left")
        result: list[Partial] = []
        for a, b in zip(first.tolist(), end.tolist(), strict=True):
            chosen = present[max(a, b - k) : b][::-1] if self.newest else present[a : min(b, a + k)]
            result.append([[int(column.times[i]), column.values[i]] for i in chosen])
        return result

    def spark_sql(self, columns: SparkColumns) -> str:
        ascending = "false" if self.newest else "true"
        pair = spark_pair(columns)
        return f"SLICE(SORT_ARRAY(COLLECT_LIST({pair}), {ascending}), 1, {self.param})"

    def from_spark(self, raw: Any) -> Partial:
        """Spark's sorted slice, sorted once more here (as :meth:`from_pairs` would, one
        sort in all instead of one per pair)."""
        pairs = [[int(t), v] for t, v in spark_pairs(raw) if v is not None]
        return sorted(pairs, reverse=self.newest)[: self.param]

    def flink_form(self, columns: FlinkColumns) -> FlinkForm:
        function = pairs_function(columns.sql_type or "", self.newest)
        k = self.param or 1
        # Emitted in this partial's order: the sink's "last_k" keeps that order.
        return FlinkForm(f"{function}({columns.time}, {columns.value}, {k})", "last_k", k)

    def from_flink(self, raw: Any) -> Partial:
        return self.from_pairs((pair[0], pair[1]) for pair in raw or [])


@primitive
@dataclass(frozen=True)
class Last(_OnePair):
    """The newest ``[time, value]`` pair, or null."""

    kind_name = "last"
    jvm_functions = _jvm_functions(newest=True)


@primitive
@dataclass(frozen=True)
class LastK(_KPairs):
    """The k newest ``[time, value]`` pairs, newest first."""

    kind_name = "last_k"
    jvm_functions = Last.jvm_functions


@primitive
@dataclass(frozen=True)
class First(_OnePair):
    """The oldest ``[time, value]`` pair, or null."""

    kind_name = "first"
    newest = False
    jvm_functions = _jvm_functions(newest=False)


@primitive
@dataclass(frozen=True)
class FirstK(_KPairs):
    """The k oldest ``[time, value]`` pairs, oldest first."""

    kind_name = "first_k"
    newest = False
    jvm_functions = First.jvm_functions


Primitive.LAST = Last("last")


@dataclass(frozen=True)
class _OneValueKind(AggregationKind):
    """The value of the newest (oldest) event, null over no events."""

    newest: ClassVar[bool] = True

    @property
    def primitives(self) -> tuple[Primitive, ...]:
        return (Primitive(self.name),)

    @property
    def result(self) -> Result:
        return Result("column")

    def finalize_output(self, ir: IR, t: int, output: int) -> Any:
        return ir[0][1] if ir[0] else None

    def reference(self, events: Sequence[tuple[int, Any]], t: int, output: int) -> Any:
        """Plainly, by sorting the pairs."""
        return sorted(events, reverse=self.newest)[0][1] if events else None


@dataclass(frozen=True)
class _KValuesKind(AggregationKind):
    """The values of the k newest (oldest) events, newest (oldest) first."""

    newest: ClassVar[bool] = True

    def check(self) -> None:
        if not self.options.k or self.options.k < 1:
            raise ValueError(
                f"{self.name} needs k >= 1 (e.g. Aggregation({self.name!r}, 'merchant_id', k=5))"
            )

    @property
    def primitives(self) -> tuple[Primitive, ...]:
        return (Primitive(self.name, self.options.k),)

    @property
    def result(self) -> Result:
        return Result("column", "list")

    def finalize_output(self, ir: IR, t: int, output: int) -> Any:
        return [v for _, v in ir[0]]

    def reference(self, events: Sequence[tuple[int, Any]], t: int, output: int) -> Any:
        """Plainly, by sorting the pairs."""
        return [v for _, v in sorted(events, reverse=self.newest)[: self.options.k or 1]]


@kind
@dataclass(frozen=True)
class LastKind(_OneValueKind):
    """The newest value (at one millisecond: the largest), null over no events."""

    name = "last"


@kind
@dataclass(frozen=True)
class LastKKind(_KValuesKind):
    """The k newest values, newest first."""

    name = "last_k"


@kind
@dataclass(frozen=True)
class FirstKind(_OneValueKind):
    """The oldest value (at one millisecond: the smallest), null over no events."""

    name = "first"
    newest = False


@kind
@dataclass(frozen=True)
class FirstKKind(_KValuesKind):
    """The k oldest values, oldest first (at one millisecond: smallest first)."""

    name = "first_k"
    newest = False
