"""The aggregation algebra: mergeable intermediate representations (IRs).

An aggregation's IR is a tuple of *primitive partials*. Each primitive merges
associatively with an identity, so the batch layer, the speed layer and the reference
evaluator produce the same IR for the same events, and the serving layer merges IRs of
disjoint time ranges without subtracting anything.

=========  ===========================  ==========================================
primitive  partial (JSON)               merge
=========  ===========================  ==========================================
count      int                          sum
sum        number or null               sum (null is the identity)
min / max  number or null               min / max
last       [time, value] or null        the later one; ties: the larger value
last_k     [[time, value], ...]         the k latest, newest first, same tie rule
hll        sketch string or null        register-wise max (feature_core.sketches)
=========  ===========================  ==========================================

``count``, ``sum``, ``min`` and ``max`` are *native*: Spark SQL and Flink SQL compute
them directly. For the others each engine natively collects ``(time, value)`` pairs or
distinct values per tile, and :meth:`Primitive.from_pairs` reduces them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import chain
from typing import Any, ClassVar

from feature_core import sketches

Partial = Any
IR = tuple[Partial, ...]

NATIVE_KINDS = ("count", "sum", "min", "max")


@dataclass(frozen=True)
class Primitive:
    """A partial aggregate: ``kind`` plus a parameter (k for last_k, precision for hll)."""

    kind: str
    param: int | None = None

    COUNT: ClassVar[Primitive]
    SUM: ClassVar[Primitive]
    MIN: ClassVar[Primitive]
    MAX: ClassVar[Primitive]
    LAST: ClassVar[Primitive]

    @property
    def key(self) -> str:
        return self.kind if self.param is None else f"{self.kind}{self.param}"

    @property
    def native(self) -> bool:
        return self.kind in NATIVE_KINDS

    @property
    def identity(self) -> Partial:
        if self.kind == "count":
            return 0
        if self.kind == "last_k":
            return []
        return None

    def lift(self, value: Any, event_time: int) -> Partial:
        """The partial of one event's value (``None``: the column was null)."""
        if self.kind == "count":
            return 0 if value is None else 1
        if value is None:
            return self.identity
        if self.kind == "last":
            return [event_time, value]
        if self.kind == "last_k":
            return [[event_time, value]]
        if self.kind == "hll":
            return sketches.sketch_of([str(value)], self.param or sketches.DEFAULT_PRECISION)
        return value

    def merge(self, left: Partial, right: Partial) -> Partial:
        if self.kind == "count":
            return int(left or 0) + int(right or 0)
        if self.kind == "last_k":
            both = sorted([*(left or []), *(right or [])], reverse=True)
            return both[: self.param]
        if left is None:
            return right
        if right is None:
            return left
        if self.kind == "sum":
            return left + right
        if self.kind == "min":
            return min(left, right)
        if self.kind == "max":
            return max(left, right)
        if self.kind == "last":
            return max(left, right)
        if self.kind == "hll":
            return sketches.merge(left, right)
        raise ValueError(f"unknown primitive {self.kind!r}")

    @cached_property
    def merge_many(self) -> Callable[[Sequence[Partial]], Partial]:
        """All partials merged in one pass: equal to folding :meth:`merge`, but a sketch is
        decoded once per input and encoded once, not once per step. Specialized per kind
        once, as the serving merge calls it for every window of every entity."""
        kind, k = self.kind, self.param
        if kind == "count":
            return lambda partials: sum(map(int, filter(None, partials)))
        if kind == "last_k":
            return lambda partials: sorted(
                chain.from_iterable(filter(None, partials)), reverse=True
            )[:k]
        reduce: Callable[[list[Partial]], Partial]
        if kind == "sum":
            reduce = _sum_of
        elif kind in ("min", "max"):
            reduce = min if kind == "min" else max
        elif kind == "last":
            reduce = max  # by time, then value, as [time, value] lists compare
        elif kind == "hll":
            reduce = sketches.merge_many
        else:
            raise ValueError(f"unknown primitive {kind!r}")

        def merge_present(partials: Sequence[Partial]) -> Partial:
            present = [p for p in partials if p is not None]
            return reduce(present) if present else None

        return merge_present

    def from_pairs(self, pairs: Iterable[tuple[int, Any]]) -> Partial:
        """The partial of many ``(event_time, value)`` pairs.

        Engines collect pairs (or distinct values) natively per tile and call this once per
        emitted tile, so the per-event work stays in the engine and the reduction is this
        module's code everywhere.
        """
        if self.kind == "hll":
            values = [str(v) for _, v in pairs if v is not None]
            return sketches.sketch_of(values, self.param) if values else None
        partial = self.identity
        for event_time, value in pairs:
            partial = self.merge(partial, self.lift(value, int(event_time)))
        return partial

    def normalize(self, partial: Partial) -> Partial:
        """A partial read back from JSON or an engine, in canonical Python types."""
        if self.kind == "count":
            return int(partial or 0)
        if self.kind == "last_k":
            return [[int(t), v] for t, v in (partial or [])]
        if self.kind == "last" and partial is not None:
            return [int(partial[0]), partial[1]]
        return partial

    def sql(self, column_sql: str | None) -> str:
        """ANSI SQL of a native primitive, valid in Spark SQL and Flink SQL alike."""
        if not self.native:
            raise ValueError(f"{self.kind} has no native SQL form")
        if self.kind == "count":
            return f"COUNT({column_sql or '*'})"
        return f"{self.kind.upper()}({column_sql})"


def _sum_of(present: list[Partial]) -> Partial:
    return sum(present[1:], present[0])  # start from the first: int stays int


Primitive.COUNT = Primitive("count")
Primitive.SUM = Primitive("sum")
Primitive.MIN = Primitive("min")
Primitive.MAX = Primitive("max")
Primitive.LAST = Primitive("last")


@dataclass(frozen=True)
class AggregationKind:
    """How one user-facing aggregation is built from primitives and finalized."""

    name: str
    primitives: tuple[Primitive, ...]
    finalize: Callable[[IR], Any]
    needs_column: bool = True
    column_types: tuple[type, ...] | None = None  # None: any column
    value_type: str = "any"  # JSON type of the finalized value, shown in the API schema
    # The finalized value's field type: "integer", "float", or "column" (the aggregated
    # column's own type); ``returns_list``: a list of them (typed exports such as Feast's).
    result: str = "column"
    returns_list: bool = False


def _sum_value(ir: IR) -> float:
    return float(ir[0]) if ir[0] is not None else 0.0


def _mean_value(ir: IR) -> float | None:
    total, count = ir
    return None if not count else float(total or 0.0) / int(count)


NUMERIC = (int, float)


def aggregation_kind(name: str, param: int | None = None) -> AggregationKind:
    """The kind for an aggregation name (``param``: k for last_k, precision for hll)."""
    if name == "count":
        return AggregationKind(
            "count",
            (Primitive.COUNT,),
            lambda ir: int(ir[0] or 0),
            False,
            value_type="integer",
            result="integer",
        )
    if name == "sum":
        return AggregationKind(
            "sum",
            (Primitive.SUM,),
            _sum_value,
            column_types=NUMERIC,
            value_type="number",
            result="float",
        )
    if name == "mean":
        return AggregationKind(
            "mean",
            (Primitive.SUM, Primitive("count")),
            _mean_value,
            column_types=NUMERIC,
            value_type="number",
            result="float",
        )
    if name in ("min", "max"):
        return AggregationKind(
            name, (Primitive(name),), lambda ir: ir[0], column_types=NUMERIC, value_type="number"
        )
    if name == "last":
        return AggregationKind("last", (Primitive.LAST,), lambda ir: ir[0][1] if ir[0] else None)
    if name == "last_k":
        if not param or param < 1:
            raise ValueError("last_k needs k >= 1 (e.g. Aggregation('last_k', 'merchant_id', k=5))")
        return AggregationKind(
            "last_k",
            (Primitive("last_k", param),),
            lambda ir: [v for _, v in ir[0]],
            value_type="array",
            returns_list=True,
        )
    if name == "approx_count_distinct":
        precision = param or sketches.DEFAULT_PRECISION
        if not 4 <= precision <= 16:
            raise ValueError("approx_count_distinct precision must be within 4..16")
        return AggregationKind(
            "approx_count_distinct",
            (Primitive("hll", precision),),
            lambda ir: sketches.estimate(ir[0]),
            column_types=(str,),
            value_type="integer",
            result="integer",
        )
    raise KeyError(name)


AGGREGATION_NAMES = (
    "count",
    "sum",
    "mean",
    "min",
    "max",
    "last",
    "last_k",
    "approx_count_distinct",
)
AGGREGATIONS: dict[str, AggregationKind] = {
    name: aggregation_kind(name, 1 if name == "last_k" else None) for name in AGGREGATION_NAMES
}


def identity(primitives: Sequence[Primitive]) -> IR:
    return tuple(p.identity for p in primitives)


def merge(primitives: Sequence[Primitive], left: IR, right: IR) -> IR:
    return tuple(p.merge(a, b) for p, a, b in zip(primitives, left, right, strict=True))


def merge_all(primitives: Sequence[Primitive], irs: Iterable[IR]) -> IR:
    result = identity(primitives)
    for ir in irs:
        result = merge(primitives, result, ir)
    return result


def lift(primitives: Sequence[Primitive], value: Any, event_time: int) -> IR:
    return tuple(p.lift(value, event_time) for p in primitives)


def normalize(primitives: Sequence[Primitive], ir: Sequence[Any] | None) -> IR:
    """An IR read back from JSON or an engine: canonical types, identity for absent."""
    if ir is None:
        return identity(primitives)
    return tuple(p.normalize(v) for p, v in zip(primitives, ir, strict=True))
