"""count, sum and mean: native SQL partials, with exact prefix sums for the sweep."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from feature_core.aggregations.base import (
    IR,
    NUMERIC,
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


def present_counts(column: ColumnEvents, ranges: Ranges) -> np.ndarray:
    """Non-null values in each range."""
    prefix = np.concatenate(([0], np.cumsum(column.present, dtype=np.int64)))
    return prefix[ranges.hi] - prefix[ranges.lo]


def native_flink(columns: FlinkColumns, sql: str, whole: bool) -> FlinkForm:
    """A native aggregate, cast so its partial keeps its type: a count or an integer
    field's sum, min and max stay BIGINT (exact past 2^53, served as integers as the
    batch view has them)."""
    return FlinkForm(f"CAST({sql} AS {'BIGINT' if whole else 'DOUBLE'})", "native")


@primitive
@dataclass(frozen=True)
class Count(Primitive):
    """Events with a non-null value (all events without a column): an int, merged by +."""

    kind_name = "count"
    native = True

    @property
    def identity(self) -> Partial:
        return 0

    def lift(self, value: Any, event_time: int) -> Partial:
        return 0 if value is None else 1

    def merge(self, left: Partial, right: Partial) -> Partial:
        return int(left or 0) + int(right or 0)

    @cached_property
    def merge_many(self) -> Callable[[Sequence[Partial]], Partial]:
        return lambda partials: sum(map(int, filter(None, partials)))

    def normalize(self, partial: Partial) -> Partial:
        return int(partial or 0)

    def windowed(self, column: ColumnEvents, ranges: Ranges) -> list[Partial]:
        return [int(n) for n in present_counts(column, ranges)]

    def spark_sql(self, columns: SparkColumns) -> str:
        return f"COUNT({columns.value or '*'})"

    def flink_form(self, columns: FlinkColumns) -> FlinkForm:
        return native_flink(columns, f"COUNT({columns.value or '*'})", whole=True)


def _sum_of(present: list[Partial]) -> Partial:
    return sum(present[1:], present[0])  # start from the first: int stays int


@primitive
@dataclass(frozen=True)
class Sum(Primitive):
    """The sum of non-null values, or null when there is none."""

    kind_name = "sum"
    native = True

    def lift(self, value: Any, event_time: int) -> Partial:
        return value

    def combine(self, left: Partial, right: Partial) -> Partial:
        return left + right

    @cached_property
    def merge_many(self) -> Callable[[Sequence[Partial]], Partial]:
        return merging_present(_sum_of)

    def windowed(self, column: ColumnEvents, ranges: Ranges) -> list[Partial]:
        """Prefix sums: exact Python ints for integers, extended precision for floats (so
        differences keep the precision of a sum over the range)."""
        counts = present_counts(column, ranges)
        numbers = [v for v in column.values if v is not None]
        if all(isinstance(v, int) and not isinstance(v, bool) for v in numbers):
            running = [0]
            for v in column.values:
                running.append(running[-1] + (v if v is not None else 0))
            return [
                None if c == 0 else running[h] - running[lo]
                for c, lo, h in zip(counts, ranges.lo, ranges.hi, strict=True)
            ]
        filled = np.array([0.0 if v is None else v for v in column.values], dtype=np.longdouble)
        prefix = np.concatenate((np.zeros(1, dtype=np.longdouble), np.cumsum(filled)))
        sums = prefix[ranges.hi] - prefix[ranges.lo]
        return [None if c == 0 else float(s) for c, s in zip(counts, sums, strict=True)]

    def spark_sql(self, columns: SparkColumns) -> str:
        return f"SUM({columns.value})"

    def flink_form(self, columns: FlinkColumns) -> FlinkForm:
        return native_flink(columns, f"SUM({columns.value})", columns.python_type is int)


Primitive.COUNT = Count("count")
Primitive.SUM = Sum("sum")


@kind
@dataclass(frozen=True)
class CountKind(AggregationKind):
    """The number of events (with a column: of events where it is not null)."""

    name = "count"
    needs_column = False

    @property
    def primitives(self) -> tuple[Primitive, ...]:
        return (Primitive.COUNT,)

    @property
    def result(self) -> Result:
        return Result("integer")

    def finalize_output(self, ir: IR, t: int, output: int) -> Any:
        return int(ir[0] or 0)

    def reference(self, events: Sequence[tuple[int, Any]], t: int, output: int) -> Any:
        return len(events)


@kind
@dataclass(frozen=True)
class SumKind(AggregationKind):
    """The sum of the values, 0.0 over no events."""

    name = "sum"
    column_types = NUMERIC

    @property
    def primitives(self) -> tuple[Primitive, ...]:
        return (Primitive.SUM,)

    @property
    def result(self) -> Result:
        return Result("float")

    def finalize_output(self, ir: IR, t: int, output: int) -> Any:
        return float(ir[0]) if ir[0] is not None else 0.0

    def reference(self, events: Sequence[tuple[int, Any]], t: int, output: int) -> Any:
        return float(sum(v for _, v in events))


@kind
@dataclass(frozen=True)
class MeanKind(AggregationKind):
    """The mean of the values, null over no events."""

    name = "mean"
    column_types = NUMERIC

    @property
    def primitives(self) -> tuple[Primitive, ...]:
        return (Primitive.SUM, Primitive.COUNT)

    @property
    def result(self) -> Result:
        return Result("float")

    def finalize_output(self, ir: IR, t: int, output: int) -> Any:
        total, count = ir
        return None if not count else float(total or 0.0) / int(count)

    def reference(self, events: Sequence[tuple[int, Any]], t: int, output: int) -> Any:
        return sum(v for _, v in events) / len(events) if events else None
