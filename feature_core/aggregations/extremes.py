"""min and max: native SQL partials, a monotonic deque for the sweep."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

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
from feature_core.aggregations.counting import native_flink


@dataclass(frozen=True)
class _Extreme(Primitive):
    smaller: ClassVar[bool] = False

    def lift(self, value: Any, event_time: int) -> Partial:
        return value

    def combine(self, left: Partial, right: Partial) -> Partial:
        return min(left, right) if self.smaller else max(left, right)

    @cached_property
    def merge_many(self) -> Callable[[Sequence[Partial]], Partial]:
        return merging_present(min if self.smaller else max)

    def windowed(self, column: ColumnEvents, ranges: Ranges) -> list[Partial]:
        """A monotonic deque: the ranges only move forward."""
        values, kept, smaller = column.values, deque(), self.smaller
        result: list[Partial] = []
        pushed = 0
        for lo, hi in zip(ranges.lo.tolist(), ranges.hi.tolist(), strict=True):
            while pushed < hi:
                value = values[pushed]
                if value is not None:
                    while kept and (
                        values[kept[-1]] >= value if smaller else values[kept[-1]] <= value
                    ):
                        kept.pop()
                    kept.append(pushed)
                pushed += 1
            while kept and kept[0] < lo:
                kept.popleft()
            result.append(values[kept[0]] if kept else None)
        return result

    def spark_sql(self, columns: SparkColumns) -> str:
        return f"{self.kind.upper()}({columns.value})"

    def flink_form(self, columns: FlinkColumns) -> FlinkForm:
        sql = f"{self.kind.upper()}({columns.value})"
        return native_flink(columns, sql, columns.python_type is int)


@primitive
@dataclass(frozen=True)
class Min(_Extreme):
    """The smallest value, or null."""

    kind_name = "min"
    native = True
    smaller = True


@primitive
@dataclass(frozen=True)
class Max(_Extreme):
    """The largest value, or null."""

    kind_name = "max"
    native = True


Primitive.MIN = Min("min")
Primitive.MAX = Max("max")


@dataclass(frozen=True)
class _ExtremeKind(AggregationKind):
    column_types = NUMERIC

    @property
    def primitives(self) -> tuple[Primitive, ...]:
        return (Primitive(self.name),)

    @property
    def result(self) -> Result:
        return Result("column")

    def finalize_output(self, ir: IR, t: int, output: int) -> Any:
        return ir[0]


@kind
@dataclass(frozen=True)
class MinKind(_ExtremeKind):
    """The smallest value, null over no events."""

    name = "min"

    def reference(self, events: Sequence[tuple[int, Any]], t: int, output: int) -> Any:
        return min((v for _, v in events), default=None)


@kind
@dataclass(frozen=True)
class MaxKind(_ExtremeKind):
    """The largest value, null over no events."""

    name = "max"

    def reference(self, events: Sequence[tuple[int, Any]], t: int, output: int) -> Any:
        return max((v for _, v in events), default=None)
