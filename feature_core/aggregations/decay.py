"""decayed_count and decayed_sum: every event weighted by 2^(-(t - event_time) / half_life)
at query time t.

The partial is ``[anchor, value]``: ``value`` is the sum of ``w * 2^((event_time - anchor)
/ h)`` (``w`` = 1 for decayed_count, the column's value for decayed_sum) with ``anchor``
the newest event time in it, or null (the identity). Merging rebases the older partial to
the newer anchor, so every exponent the algebra forms is at most 0 and nothing overflows
however far apart (decades) the events are; an old term only underflows when it is below
2^-1022 of its own value at the newer anchor, which no later query time can raise again.
The served value at t is ``value * 2^((anchor - t) / h)``.

Each power of two is applied by :func:`scaled`, which never overflows or underflows on
the way (2^x alone leaves the double range long before the product does), so a term is
off by two roundings (a subnormal one by 2^-1074), whatever its exponent.

Engines: Spark sums each bucket's terms anchored at the bucket's end (exponents at most 0
there too) and :meth:`DecayedSum.from_spark` rebases the sum to the bucket's newest
event, the algebra's anchor. Flink runs the JVM twin ``lfp.speed.DecayedSum``, which keeps
the algebra's ``[anchor, value]`` as events arrive and emits its JSON text.

Half-lives are at least :data:`MIN_HALF_LIFE_MS` (1 s): the serving merge reads every
speed tile that starts before the query time, so an event up to one tile (5 minutes)
after it can be in a value, weighted 2^(5 min / h) > 1. At 1 s that is 2^300, far inside
the double range (2^1024; the bound is h > 294 ms), and 1 s is the shortest duration the
definitions can spell anyway.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
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
    merging_present,
    primitive,
)

#: The shortest half-life (see the module docstring).
MIN_HALF_LIFE_MS = 1_000
#: The JVM twin, one function for both kinds (decayed_count sums weights of 1).
DECAYED_SUM = "lfp_decayed_sum"


def scaled(value: float, exponent: float) -> float:
    """``value * 2**exponent`` with two roundings and no overflow or underflow on the way:
    the exponent's fraction scales the value's mantissa (``frexp``, in [0.5, 1)), the
    whole part and the value's own binary exponent shift the result exactly (``ldexp``,
    which rounds only a subnormal result). 2^exponent alone, or the value times
    2^fraction, leaves the double range long before the product does. Mirrored by
    ``DecayedSum.scaled`` (Java)."""
    if value == 0.0 or exponent == 0.0 or not math.isfinite(value):
        return value
    whole = math.floor(exponent)
    mantissa, binary = math.frexp(value)
    try:
        return math.ldexp(mantissa * 2.0 ** (exponent - whole), binary + whole)
    except OverflowError:
        return math.copysign(math.inf, value)


@primitive
@dataclass(frozen=True)
class DecayedSum(Primitive):
    """``[anchor, value]``: the column's values decayed to the newest event time, or null.
    ``param`` is the half-life in milliseconds."""

    kind_name = "decayed_sum"
    jvm_functions = {DECAYED_SUM: "lfp.speed.DecayedSum"}
    flink_emits_json = True

    def weight(self, value: Any) -> float | None:
        """An event's weight at its own time (``None``: the column was null)."""
        return None if value is None else float(value)

    def weight_sql(self, value: str | None) -> str:
        """SQL of an event's weight (null where the column is)."""
        return f"CAST({value} AS DOUBLE)"

    def lift(self, value: Any, event_time: int) -> Partial:
        weight = self.weight(value)
        return None if weight is None else [event_time, weight]

    def combine(self, left: Partial, right: Partial) -> Partial:
        """Rebased to the later anchor; the same operations in either order, so merge is
        exactly commutative (associative to rounding)."""
        (a1, v1), (a2, v2) = left, right
        if a1 == a2:
            return [a1, v1 + v2]
        (old_anchor, old), (anchor, new) = sorted((left, right), key=lambda p: p[0])
        return [anchor, new + scaled(old, (old_anchor - anchor) / self.param)]

    def _rebased_sum(self, partials: Sequence[Partial]) -> Partial:
        """Present partials rebased to the newest anchor and summed exactly rounded."""
        if len(partials) == 1:
            return partials[0]
        half_life = self.param
        anchor = max(a for a, _ in partials)
        terms = [scaled(v, (a - anchor) / half_life) for a, v in partials]
        try:
            return [anchor, math.fsum(terms)]
        except (OverflowError, ValueError):  # past the double range: inf (or nan), as sum()
            return [anchor, sum(terms)]

    @cached_property
    def merge_many(self) -> Callable[[Sequence[Partial]], Partial]:
        return merging_present(self._rebased_sum)

    def from_pairs(self, pairs: Iterable[tuple[int, Any]]) -> Partial:
        lifted = [self.lift(value, int(time)) for time, value in pairs]
        present = [p for p in lifted if p is not None]
        return self._rebased_sum(present) if present else None

    def normalize(self, partial: Partial) -> Partial:
        """A sum past the double range is written as null by JSON (orjson, the JVM twin):
        it reads back as nan, served as null."""
        if partial is None:
            return None
        anchor, value = partial
        return [int(anchor), math.nan if value is None else float(value)]

    def spark_sql(self, columns: SparkColumns) -> str:
        """Terms anchored at the bucket's end (exponents <= 0), with that end and the
        newest weighted event time, for :meth:`from_spark` to rebase the sum to."""
        weight = self.weight_sql(columns.value)
        end, time = columns.bucket_end, columns.time
        return (
            f"named_struct('end', MAX({end}), "
            f"'newest', MAX(CASE WHEN {weight} IS NOT NULL THEN {time} END), "
            f"'total', SUM({weight} * POW(2, ({time} - {end}) / {self.param})))"
        )

    def from_spark(self, raw: Any) -> Partial:
        """The bucket's sum rebased from its end to its newest event, up by at most the
        bucket's length. A term below 2^-1022 at the bucket's end underflowed there; it
        is as small at every query time after the bucket (all of them for batch views)."""
        if raw is None or raw["total"] is None:
            return None
        end, newest = int(raw["end"]), int(raw["newest"])
        return [newest, scaled(float(raw["total"]), (end - newest) / self.param)]

    def flink_form(self, columns: FlinkColumns) -> FlinkForm:
        weight = self.weight_sql(columns.value)
        return json_form(f"{DECAYED_SUM}({columns.time}, {weight}, CAST({self.param} AS BIGINT))")


@primitive
@dataclass(frozen=True)
class DecayedCount(DecayedSum):
    """``[anchor, value]`` of events weighing 1 each (with a column: its non-null values)."""

    kind_name = "decayed_count"

    def weight(self, value: Any) -> float | None:
        return None if value is None else 1.0

    def weight_sql(self, value: str | None) -> str:
        if value is None:
            return "CAST(1 AS DOUBLE)"
        return f"CASE WHEN {value} IS NOT NULL THEN CAST(1 AS DOUBLE) END"


@dataclass(frozen=True)
class DecayedKind(AggregationKind):
    """Shared by both kinds: the half-life check, finalize and the reference."""

    time_dependent = True

    def check(self) -> None:
        half_life = self.options.half_life_ms
        if half_life is None or isinstance(half_life, bool) or half_life <= 0:
            raise ValueError(f"{self.name}: half_life must be a positive duration such as '1d'")
        if half_life < MIN_HALF_LIFE_MS:
            raise ValueError(
                f"{self.name}: half_life must be at least 1s (got {half_life} ms): an event "
                "up to one 5-minute speed tile after the query time weighs 2^(5 min / half_life)"
            )

    @property
    def half_life_ms(self) -> int:
        return int(self.options.half_life_ms or 0)

    @property
    def result(self) -> Result:
        return Result("float")

    def finalize_output(self, ir: IR, t: int, output: int) -> Any:
        """The value at ``t``; before the anchor (an event ahead of the query time in
        the open speed tile) it is weighted up, still without overflow on the way."""
        if ir[0] is None:
            return 0.0
        anchor, value = ir[0]
        return scaled(float(value), (anchor - t) / self.half_life_ms)

    def weight(self, value: Any) -> float:
        return float(value)

    def reference(self, events: Sequence[tuple[int, Any]], t: int, output: int) -> Any:
        """Each event's weight at ``t`` directly, summed exactly rounded."""
        half_life = self.half_life_ms
        return math.fsum(self.weight(v) * 2.0 ** ((time - t) / half_life) for time, v in events)


@kind
@dataclass(frozen=True)
class DecayedCountKind(DecayedKind):
    """The number of events (with a column: of its non-null values), each counting
    2^(-age / half_life); 0.0 over no events."""

    name = "decayed_count"
    needs_column = False

    @property
    def primitives(self) -> tuple[Primitive, ...]:
        return (DecayedCount("decayed_count", self.half_life_ms),)

    def weight(self, value: Any) -> float:
        return 1.0


@kind
@dataclass(frozen=True)
class DecayedSumKind(DecayedKind):
    """The sum of the values, each weighted 2^(-age / half_life); 0.0 over no events."""

    name = "decayed_sum"
    column_types = NUMERIC

    @property
    def primitives(self) -> tuple[Primitive, ...]:
        return (DecayedSum("decayed_sum", self.half_life_ms),)
