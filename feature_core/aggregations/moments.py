"""variance and stddev: count, mean and sum of squared deviations, merged by Chan et al.

The partial is ``[count, mean, m2, mean_low]`` (null: no values): ``mean + mean_low`` is
the mean as a double-double (about 32 significant digits) and ``m2`` the sum of squared
deviations from it. The low part is what keeps large common offsets exact: a merge's m2
term is ``delta^2 * na * nb / n`` with ``delta`` the difference of the two means, and a
mean rounded to one double near 1e9 is off by up to 6e-8, an error that enters every
merge's term linearly. With ``[count, mean, m2]`` alone, 1e9 + noise in [-1, 1] came out
2e-7 to 1.5e-6 relative from the two-pass variance; with the low part, under 1e-14.

Every engine computes in doubles (an integer field's values are converted first) with the
same operations in the same order, so the JVM twin ``lfp.speed.Moments`` emits the very
floats this module computes for the same values in the same order. Spark collects a
bucket's values and :meth:`Moments.from_pairs` finishes them in two passes: its VAR_POP
updates a one-double mean per value (Welford), which has the error above.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from typing import Any

from feature_core.aggregations.base import (
    IR,
    NUMERIC,
    AggregationKind,
    FlinkColumns,
    FlinkForm,
    Partial,
    Primitive,
    Result,
    SparkColumns,
    json_form,
    kind,
    primitive,
)

#: The SQL name of the JVM twin (a tile's moments as the partial's JSON text).
MOMENTS_FUNCTION = "lfp_moments"


def two_sum(a: float, b: float) -> tuple[float, float]:
    """``(s, e)`` with ``s = fl(a + b)`` and ``s + e == a + b`` exactly (Knuth): the
    rounding error of one addition, so the mean can carry what a double drops."""
    s = a + b
    b_part = s - a
    return s, (a - (s - b_part)) + (b - b_part)


def combine_moments(left: Sequence[Any], right: Sequence[Any]) -> list[Any]:
    """Chan et al.'s merge of two present partials, the mean kept as a double-double.

    ``Moments.java`` repeats these operations in this order (accumulating a value is
    merging ``[1, value, 0.0, 0.0]`` into the accumulator): change both together."""
    n_a, mean_a, m2_a, low_a = left
    n_b, mean_b, m2_b, low_b = right
    n = n_a + n_b
    difference, difference_error = two_sum(mean_b, -mean_a)
    delta = difference + (difference_error + (low_b - low_a))
    moved, moved_error = two_sum(mean_a, delta * (float(n_b) / float(n)))
    mean, low = two_sum(moved, moved_error + low_a)
    m2 = m2_a + m2_b + delta * delta * (float(n_a) * float(n_b) / float(n))
    return [n, mean, m2, low]


def _number(value: Any) -> float:
    """A JSON number of a partial as a float: null is how a non-finite one is written
    (orjson and the JVM sink both do), read back as NaN."""
    return math.nan if value is None else float(value)


@primitive
@dataclass(frozen=True)
class Moments(Primitive):
    """``[count, mean, m2, mean_low]`` of the non-null values, or null."""

    kind_name = "moments"
    jvm_functions = {MOMENTS_FUNCTION: "lfp.speed.Moments"}
    flink_emits_json = True

    def lift(self, value: Any, event_time: int) -> Partial:
        return None if value is None else [1, float(value), 0.0, 0.0]

    def combine(self, left: Partial, right: Partial) -> Partial:
        return combine_moments(left, right)

    def normalize(self, partial: Partial) -> Partial:
        if partial is None:
            return None
        count, mean, m2, low = partial
        return [int(count), _number(mean), _number(m2), _number(low)]

    def from_pairs(self, pairs: Iterable[tuple[int, Any]]) -> Partial:
        """Two passes over the values (the finishing of Spark's collected values): the
        mean as an exact sum rounded twice (``math.fsum``), then the squared deviations
        from it, corrected by the deviations' own sum (Chan, Golub and LeVeque's
        corrected two-pass form). As exact as folding, and a C loop per pass instead
        of a Python merge per value."""
        values = [float(v) for _, v in pairs if v is not None]
        count = len(values)
        if count == 0:
            return None
        try:
            mean = math.fsum(values) / count
            # sum(values) - count * mean exactly, once rounded: the mean's low part.
            low = math.fsum(chain(values, repeat(-mean, count))) / count
            mean, low = two_sum(mean, low)
            deviations = [(v - mean) - low for v in values]
            m2 = math.fsum(d * d for d in deviations) - math.fsum(deviations) ** 2 / count
        except (OverflowError, ValueError):  # squares past 1e308: fold, it overflows to inf
            return super().from_pairs((0, v) for v in values)
        return [count, mean, max(m2, 0.0), low]

    def spark_sql(self, columns: SparkColumns) -> str:
        return f"COLLECT_LIST(CAST({columns.value} AS DOUBLE))"

    def from_spark(self, raw: Any) -> Partial:
        return self.from_pairs((0, value) for value in raw or [])

    def flink_form(self, columns: FlinkColumns) -> FlinkForm:
        return json_form(f"{MOMENTS_FUNCTION}(CAST({columns.value} AS DOUBLE))")


MOMENTS = Moments("moments")


@dataclass(frozen=True)
class _Spread(AggregationKind):
    """A variance-based kind: the sample form (SQL's VAR_SAMP, null under 2 values) or,
    with ``population=True``, the population form (VAR_POP, null without values)."""

    column_types = NUMERIC

    def check(self) -> None:
        if not isinstance(self.options.population, bool):
            raise ValueError(f"{self.name} population must be true or false")

    @property
    def primitives(self) -> tuple[Primitive, ...]:
        return (MOMENTS,)

    @property
    def result(self) -> Result:
        return Result("float")

    def _divisor(self, count: int) -> int:
        return count if self.options.population else count - 1

    def from_variance(self, variance: float) -> float:
        """The served value of a variance."""
        return variance

    def finalize_output(self, ir: IR, t: int, output: int) -> Any:
        partial = ir[0]
        if partial is None or self._divisor(partial[0]) < 1:
            return None
        variance = partial[2] / self._divisor(partial[0])
        # Past ~1e154 the squares overflow a double; served as null, as JSON has no inf.
        return self.from_variance(variance) if math.isfinite(variance) else None

    def reference(self, events: Sequence[tuple[int, Any]], t: int, output: int) -> Any:
        """Two passes: the mean, then the squared deviations from it, less the square of
        their sum over the count, which removes what the mean's rounding adds (without
        it, 1e9 + noise in [-1e-3, 1e-3] was off by up to 4e-7 from exact rationals,
        with it by 1e-16)."""
        values = [float(v) for _, v in events]
        if self._divisor(len(values)) < 1:
            return None
        mean = math.fsum(values) / len(values)
        deviations = [v - mean for v in values]
        squares = math.fsum(d * d for d in deviations) - math.fsum(deviations) ** 2 / len(values)
        return self.from_variance(max(squares, 0.0) / self._divisor(len(values)))


@kind
@dataclass(frozen=True)
class VarianceKind(_Spread):
    """The variance of the values: sample (n - 1) unless ``population=True`` (n)."""

    name = "variance"


@kind
@dataclass(frozen=True)
class StddevKind(_Spread):
    """The standard deviation: the square root of the variance, the same two forms."""

    name = "stddev"

    def from_variance(self, variance: float) -> float:
        return math.sqrt(variance)
