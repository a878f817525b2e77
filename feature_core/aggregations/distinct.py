"""approx_count_distinct: a HyperLogLog sketch (:mod:`feature_core.sketches`).

Spark collects a bucket's distinct values and the shared code sketches them; the JVM twin
``lfp.speed.SketchRegisters`` keeps a tile's 2^p registers. Both give the same sketch.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from feature_core import sketches
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

#: The HLL-registers aggregate (one for every value type: values are hashed as strings).
SKETCH_REGISTERS = "lfp_sketch_registers"


@primitive
@dataclass(frozen=True)
class Hll(Primitive):
    """A HyperLogLog sketch string of the distinct values, or null."""

    kind_name = "hll"
    jvm_functions = {SKETCH_REGISTERS: "lfp.speed.SketchRegisters"}

    @property
    def precision(self) -> int:
        return self.param or sketches.DEFAULT_PRECISION

    def lift(self, value: Any, event_time: int) -> Partial:
        return None if value is None else sketches.sketch_of([str(value)], self.precision)

    def combine(self, left: Partial, right: Partial) -> Partial:
        return sketches.merge(left, right)

    @cached_property
    def merge_many(self) -> Callable[[Sequence[Partial]], Partial]:
        return merging_present(sketches.merge_many)

    def from_pairs(self, pairs: Iterable[tuple[int, Any]]) -> Partial:
        values = [str(v) for _, v in pairs if v is not None]
        return sketches.sketch_of(values, self.precision) if values else None

    def windowed(self, column: ColumnEvents, ranges: Ranges) -> list[Partial]:
        """Per register, a monotonic deque of ranks, so the window's registers are exact."""
        precision = self.precision
        cells: dict[Any, tuple[int, int]] = {}  # value -> (register, rank), hashed once each
        register = np.zeros(len(column.values), dtype=np.int64)
        rank = np.zeros(len(column.values), dtype=np.int64)
        for i, value in enumerate(column.values):
            if value is None:
                continue
            found = cells.get(value)
            if found is None:
                found = cells[value] = sketches.cell(str(value), precision)
            register[i], rank[i] = found
        kept: dict[int, deque[int]] = {}  # register -> event indices, ranks decreasing
        current: dict[int, int] = {}  # register -> rank of the window's events
        result: list[Partial] = []
        pushed = popped = 0
        present = column.present
        for lo, hi in zip(ranges.lo.tolist(), ranges.hi.tolist(), strict=True):
            while pushed < hi:
                if present[pushed]:
                    r, q = int(register[pushed]), int(rank[pushed])
                    queue = kept.setdefault(r, deque())
                    while queue and rank[queue[-1]] <= q:
                        queue.pop()
                    queue.append(pushed)
                    current[r] = int(rank[queue[0]])
                pushed += 1
            while popped < lo:
                if present[popped]:
                    r = int(register[popped])
                    queue = kept[r]
                    if queue and queue[0] == popped:
                        queue.popleft()
                        if queue:
                            current[r] = int(rank[queue[0]])
                        else:
                            del current[r]
                popped += 1
            result.append(sketches.encode(current, precision) if current else None)
        return result

    def spark_sql(self, columns: SparkColumns) -> str:
        return f"COLLECT_SET(CAST({columns.value} AS STRING))"

    def from_spark(self, raw: Any) -> Partial:
        return self.from_pairs((0, value) for value in raw or [])

    def flink_form(self, columns: FlinkColumns) -> FlinkForm:
        sql = f"{SKETCH_REGISTERS}(CAST({columns.value} AS STRING), {self.precision})"
        return FlinkForm(sql, "hll", self.precision)

    def from_flink(self, raw: Any) -> Partial:
        """The registers' bytes (SketchRegisters)."""
        return None if raw is None else sketches.encode_dense(raw, self.precision)


@kind
@dataclass(frozen=True)
class ApproxCountDistinct(AggregationKind):
    """The number of distinct values, estimated (standard error 1.04 / sqrt(2^precision))."""

    name = "approx_count_distinct"
    column_types = ("string",)

    def check(self) -> None:
        precision = self.options.precision or sketches.DEFAULT_PRECISION
        if not 4 <= precision <= 16:
            raise ValueError("approx_count_distinct precision must be within 4..16")

    @property
    def primitives(self) -> tuple[Primitive, ...]:
        return (Primitive("hll", self.options.precision or sketches.DEFAULT_PRECISION),)

    @property
    def result(self) -> Result:
        return Result("integer")

    def finalize_output(self, ir: IR, t: int, output: int) -> Any:
        return sketches.estimate(ir[0])

    def reference(self, events: Sequence[tuple[int, Any]], t: int, output: int) -> Any:
        precision = self.options.precision or sketches.DEFAULT_PRECISION
        registers = sketches.registers_of({str(v) for _, v in events}, precision)
        return sketches.estimate(sketches.encode(registers, precision) if registers else None)
