"""The aggregation algebra: mergeable intermediate representations (IRs).

An aggregation's IR is a tuple of *primitive partials*. Every primitive is something
both Spark SQL and Flink SQL compute natively (``COUNT``, ``SUM``, ``MIN``, ``MAX``)
and that merges associatively and commutatively with an identity. So the batch layer,
the speed layer and the reference evaluator produce the same IR for the same events,
and the serving layer merges IRs from disjoint time ranges without subtracting anything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

Partial = float | int | None
IR = tuple[Partial, ...]


class Primitive(StrEnum):
    """A partial aggregate with a native SQL form in every engine."""

    COUNT = "count"  # rows (column None) or non-null values
    SUM = "sum"
    MIN = "min"
    MAX = "max"

    @property
    def identity(self) -> Partial:
        return 0 if self is Primitive.COUNT else None

    def merge(self, left: Partial, right: Partial) -> Partial:
        if self is Primitive.COUNT:
            return int(left or 0) + int(right or 0)
        if left is None:
            return right
        if right is None:
            return left
        if self is Primitive.SUM:
            return left + right
        if self is Primitive.MIN:
            return min(left, right)
        return max(left, right)

    def lift(self, value: Any) -> Partial:
        """The partial of a single value (``None`` means the column was null)."""
        if self is Primitive.COUNT:
            return 0 if value is None else 1
        return value

    def sql(self, column_sql: str | None) -> str:
        """ANSI SQL for this partial, valid in Spark SQL and Flink SQL alike."""
        if self is Primitive.COUNT:
            return f"COUNT({column_sql or '*'})"
        return f"{self.value.upper()}({column_sql})"


@dataclass(frozen=True)
class AggregationKind:
    """How one user-facing aggregation is built from primitives and finalized."""

    name: str
    primitives: tuple[Primitive, ...]
    finalize: Callable[[IR], Any]
    needs_column: bool = True
    numeric: bool = True


def _sum_value(ir: IR) -> float:
    return float(ir[0]) if ir[0] is not None else 0.0


def _mean_value(ir: IR) -> float | None:
    total, count = ir
    return None if not count else float(total or 0.0) / int(count)


AGGREGATIONS: dict[str, AggregationKind] = {
    kind.name: kind
    for kind in (
        AggregationKind("count", (Primitive.COUNT,), lambda ir: int(ir[0] or 0), False, False),
        AggregationKind("sum", (Primitive.SUM,), _sum_value),
        AggregationKind("mean", (Primitive.SUM, Primitive.COUNT), _mean_value),
        AggregationKind("min", (Primitive.MIN,), lambda ir: ir[0]),
        AggregationKind("max", (Primitive.MAX,), lambda ir: ir[0]),
    )
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


def lift(primitives: Sequence[Primitive], value: Any) -> IR:
    return tuple(p.lift(value) for p in primitives)


def normalize(primitives: Sequence[Primitive], ir: Sequence[Any] | None) -> IR:
    """An IR read back from JSON or SQL: counts as ints, ``None`` for absent."""
    if ir is None:
        return identity(primitives)
    return tuple(
        (int(v or 0) if p is Primitive.COUNT else v) for p, v in zip(primitives, ir, strict=True)
    )
