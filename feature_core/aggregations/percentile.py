"""approx_percentile: a DDSketch (:mod:`feature_core.ddsketch`), one served value per
percentile.

The sketch's buckets merge by adding counts, so every engine and every merge order gives
the same sketch, byte for byte: Spark collects a bucket's values and the shared code
sketches them; the JVM twin ``lfp.speed.PercentileSketch`` keeps a tile's bucket counts
(bounded by the buckets, not the values) and emits the same serialized sketch.

Options: ``percentiles`` (required, each strictly within (0, 1)) and ``precision``, the
relative accuracy in thousandths (1..100, default 10: 1%). A served percentile ``q`` over
``n`` values is within that relative accuracy of the value of rank ``floor(q * (n-1))``
(0-based) of the sorted values; null over no values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property
from typing import Any

from feature_core import ddsketch
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
    merging_present,
    primitive,
)

#: The bucket-counts aggregate (values as DOUBLE, then m): emits the sketch's JSON text.
PERCENTILE_SKETCH = "lfp_percentile_sketch"


@primitive
@dataclass(frozen=True)
class DDSketch(Primitive):
    """A DDSketch string of the values, or null; ``param`` is ``m``, the buckets per
    binary octave."""

    kind_name = "ddsketch"
    jvm_functions = {PERCENTILE_SKETCH: "lfp.speed.PercentileSketch"}
    flink_emits_json = True

    @property
    def m(self) -> int:
        return self.param or ddsketch.buckets_per_octave(ddsketch.DEFAULT_ACCURACY)

    def lift(self, value: Any, event_time: int) -> Partial:
        return None if value is None else ddsketch.sketch_of([value], self.m)

    def combine(self, left: Partial, right: Partial) -> Partial:
        return ddsketch.merge(left, right)

    @cached_property
    def merge_many(self) -> Callable[[Sequence[Partial]], Partial]:
        return merging_present(ddsketch.merge_many)

    def from_pairs(self, pairs: Iterable[tuple[int, Any]]) -> Partial:
        return ddsketch.sketch_of((v for _, v in pairs if v is not None), self.m)

    def normalize(self, partial: Partial) -> Partial:
        return None if partial is None else str(partial)

    def windowed(self, column: ColumnEvents, ranges: Ranges) -> list[Partial]:
        """Counts are integers, so a window's buckets slide exactly: add the events that
        enter, subtract those that leave."""
        buckets = ddsketch.Buckets(self.m)
        values = column.values
        result: list[Partial] = []
        pushed = popped = 0
        encoded: Partial = None
        changed = False
        for lo, hi in zip(ranges.lo.tolist(), ranges.hi.tolist(), strict=True):
            while pushed < max(hi, lo):
                if values[pushed] is not None:
                    buckets.add(float(values[pushed]))
                    changed = True
                pushed += 1
            while popped < lo:
                if values[popped] is not None:
                    buckets.add(float(values[popped]), -1)
                    changed = True
                popped += 1
            if changed:
                encoded, changed = buckets.encode(), False
            result.append(encoded)
        return result

    def spark_sql(self, columns: SparkColumns) -> str:
        # All of a bucket's values: Spark SQL cannot read a double's bits to key it.
        return f"COLLECT_LIST(CAST({columns.value} AS DOUBLE))"

    def from_spark(self, raw: Any) -> Partial:
        return ddsketch.sketch_of(raw or [], self.m)

    def flink_form(self, columns: FlinkColumns) -> FlinkForm:
        return json_form(f"{PERCENTILE_SKETCH}(CAST({columns.value} AS DOUBLE), {self.m})")


def suffix_of(percentile: float) -> str:
    """The feature name suffix of a percentile: 0.5 -> ``_p50``, 0.999 -> ``_p99_9``
    (distinct percentiles have distinct suffixes: a float's repr is unique)."""
    percent = format((Decimal(repr(float(percentile))) * 100).normalize(), "f")
    return "_p" + percent.replace(".", "_")


@kind
@dataclass(frozen=True)
class ApproxPercentile(AggregationKind):
    """Each percentile of the values within a relative accuracy (default 1%), null over
    no values."""

    name = "approx_percentile"
    column_types = ("integer", "float")

    def check(self) -> None:
        percentiles = self.options.percentiles
        if not percentiles:
            raise ValueError("approx_percentile needs percentiles (e.g. percentiles=[0.5, 0.95])")
        for q in percentiles:
            if isinstance(q, bool) or not isinstance(q, (int, float)):
                raise ValueError(f"approx_percentile: percentile {q!r} is not a number")
            if not 0 < q < 1:
                raise ValueError(f"approx_percentile: percentile {q} is outside (0, 1)")
        seen: set[str] = set()
        for q in percentiles:
            if suffix_of(q) in seen:
                raise ValueError(f"approx_percentile: percentile {q} is listed twice")
            seen.add(suffix_of(q))
        precision = self.options.precision
        if precision is not None and not 1 <= precision <= 100:
            raise ValueError(
                "approx_percentile precision is the relative accuracy in thousandths, "
                f"within 1..100 (10: 1%), not {precision}"
            )

    @property
    def m(self) -> int:
        return ddsketch.buckets_per_octave(self.options.precision or ddsketch.DEFAULT_ACCURACY)

    @property
    def percentiles(self) -> tuple[float, ...]:
        return tuple(float(q) for q in self.options.percentiles or ())

    @property
    def primitives(self) -> tuple[Primitive, ...]:
        return (Primitive("ddsketch", self.m),)

    @property
    def result(self) -> Result:
        return Result("float")

    @property
    def outputs(self) -> tuple[str, ...]:
        return tuple(suffix_of(q) for q in self.percentiles)

    def finalize_output(self, ir: IR, t: int, output: int) -> Any:
        return ddsketch.quantile(ir[0], self.percentiles[output])

    def reference(self, events: Sequence[tuple[int, Any]], t: int, output: int) -> Any:
        """The sorted values' percentile, then its bucket's representative."""
        values = sorted(v for v in (float(v) for _, v in events) if math.isfinite(v))
        if not values:
            return None
        exact = values[ddsketch.rank_of(self.percentiles[output], len(values))]
        sign, key = ddsketch.key_of(exact, self.m) or (0, 0)
        return 0.0 if sign == 0 else sign * ddsketch.representative(key, self.m)
