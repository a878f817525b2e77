"""top_k and bottom_k: the k largest or smallest values, duplicates kept (as Chronon's TopK).

A partial is the list of the k largest (smallest) values seen, largest (smallest) first:
merging two is keeping the k largest of both, so a partial never holds more than k values
whatever the number of events. Values order as Python compares them: numbers by value,
strings by code point. Spark sorts strings by their UTF-8 bytes, which is the same order;
the JVM twin ``lfp.speed.RankedValues`` (one class per value type) compares strings by
code point too, not by Java's UTF-16 units.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import chain
from typing import Any, ClassVar

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

#: Flink SQL type -> the Java class keeping the k largest or smallest values of that type.
RANKED_VALUES = {
    "STRING": "lfp.speed.RankedStrings",
    "BIGINT": "lfp.speed.RankedLongs",
    "DOUBLE": "lfp.speed.RankedDoubles",
}


def ranked_values_function(sql_type: str) -> str:
    """The SQL name of the ranked-values aggregate for values of ``sql_type``."""
    return f"lfp_ranked_values_{sql_type.lower()}"


@dataclass(frozen=True)
class _Ranked(Primitive):
    """The k largest (``largest``) or smallest values, in that order; ``param`` is k."""

    largest: ClassVar[bool]
    jvm_functions = {ranked_values_function(t): c for t, c in RANKED_VALUES.items()}
    flink_emits_json = True

    @property
    def k(self) -> int:
        return int(self.param or 1)

    @property
    def identity(self) -> Partial:
        return []

    def lift(self, value: Any, event_time: int) -> Partial:
        return [] if value is None else [value]

    def merge(self, left: Partial, right: Partial) -> Partial:
        # Both are sorted: Timsort merges the two runs in linear time.
        return sorted([*(left or ()), *(right or ())], reverse=self.largest)[: self.k]

    @cached_property
    def merge_many(self) -> Callable[[Sequence[Partial]], Partial]:
        k, largest = self.k, self.largest

        def k_best(partials: Sequence[Partial]) -> Partial:
            return sorted(chain.from_iterable(filter(None, partials)), reverse=largest)[:k]

        return k_best

    def normalize(self, partial: Partial) -> Partial:
        return list(partial or ())

    def spark_sql(self, columns: SparkColumns) -> str:
        # COLLECT_LIST skips nulls; SORT_ARRAY orders strings by UTF-8 bytes (code points).
        ascending = "false" if self.largest else "true"
        return f"SLICE(SORT_ARRAY(COLLECT_LIST({columns.value}), {ascending}), 1, {self.k})"

    def flink_form(self, columns: FlinkColumns) -> FlinkForm:
        function = ranked_values_function(columns.sql_type or "")
        largest = "TRUE" if self.largest else "FALSE"
        return json_form(f"{function}({columns.value}, {self.k}, {largest})")


@primitive
@dataclass(frozen=True)
class TopK(_Ranked):
    """The k largest values, largest first."""

    kind_name = "top_k"
    largest = True


@primitive
@dataclass(frozen=True)
class BottomK(_Ranked):
    """The k smallest values, smallest first."""

    kind_name = "bottom_k"
    largest = False


@dataclass(frozen=True)
class _RankedKind(AggregationKind):
    column_types = (*NUMERIC, "string")
    largest: ClassVar[bool]

    def check(self) -> None:
        k = self.options.k
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(
                f"{self.name} needs an integer k >= 1, got k={k!r} "
                f"(e.g. Aggregation({self.name!r}, 'price', k=5))"
            )

    @property
    def primitives(self) -> tuple[Primitive, ...]:
        return (Primitive(self.name, self.options.k),)

    @property
    def result(self) -> Result:
        return Result("column", "list")

    def finalize_output(self, ir: IR, t: int, output: int) -> Any:
        return list(ir[0] or ())

    def reference(self, events: Sequence[tuple[int, Any]], t: int, output: int) -> Any:
        return sorted((v for _, v in events), reverse=self.largest)[: self.options.k]


@kind
@dataclass(frozen=True)
class TopKKind(_RankedKind):
    """The k largest values, largest first (duplicates kept: top 2 of 5, 5, 3 is 5, 5)."""

    name = "top_k"
    largest = True


@kind
@dataclass(frozen=True)
class BottomKKind(_RankedKind):
    """The k smallest values, smallest first (duplicates kept)."""

    name = "bottom_k"
    largest = False
