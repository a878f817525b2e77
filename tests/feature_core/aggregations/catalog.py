"""Every aggregation kind, declared on one source, with the values each may see.

The registry test fails when a kind in ``feature_core.aggregations.KINDS`` (or a
primitive in ``PRIMITIVES``) has no example here, and every engine test (the sweep, the
serving merge, Spark, Flink) runs every example: a new kind adds its examples here.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st

from feature_core.aggregations import AggregationKind, Primitive
from feature_core.definitions import Aggregation, Entity, FeatureGroup
from feature_core.sources import EventSource, Field

LABELS = ["a", "b", "c", "item_1", "é", ""]

SOURCE = EventSource(
    "things",
    topic="things",
    event_time="t",
    fields=[
        Field("k", "string", required=True),
        Field("t", "timestamp", required=True),
        Field("x", "float"),
        Field("n", "integer"),
        Field("s", "string"),
        Field("b", "boolean"),
        Field("c", "string", values=["red", "green", "blue"]),
    ],
)

#: Each field's values (``None``: null), for property tests.
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "x": st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False)),
    "n": st.one_of(st.none(), st.integers(-50, 50)),
    "s": st.one_of(st.none(), st.sampled_from(LABELS)),
    "b": st.one_of(st.none(), st.booleans()),
    "c": st.one_of(st.none(), st.sampled_from(["red", "green", "blue"])),
}

#: One aggregation per kind and option that changes its partial (windows are set by
#: each test). Names are unique so they can share one group.
EXAMPLES: list[Aggregation] = [
    Aggregation("count", name="rows"),
    Aggregation("count", "s", name="s_present"),
    Aggregation("sum", "x"),
    Aggregation("sum", "n"),
    Aggregation("mean", "x"),
    Aggregation("min", "n"),
    Aggregation("max", "x"),
    Aggregation("last", "s"),
    Aggregation("last", "b"),
    Aggregation("last_k", "n", k=3),
    Aggregation("first", "s"),
    Aggregation("first", "b"),
    Aggregation("first_k", "n", k=3),
    Aggregation("approx_count_distinct", "s", precision=4),
    Aggregation("variance", "x"),
    Aggregation("stddev", "n", population=True),
    Aggregation("approx_percentile", "x", percentiles=[0.5, 0.95]),
    Aggregation("approx_percentile", "n", percentiles=[0.9]),
    Aggregation("decayed_count", half_life="1h"),
    Aggregation("decayed_sum", "x", half_life="1d"),
    Aggregation("top_k", "x", k=3),
    Aggregation("bottom_k", "s", k=2),
    Aggregation("top_k", "n", k=2),
    Aggregation("count_by", "c"),
    Aggregation("count_by", "s", max_keys=2),
    Aggregation("count_by", "n", max_keys=3),
    Aggregation("count_by", "b", max_keys=2),
]


def group(windows: list[str], examples: list[Aggregation] | None = None) -> FeatureGroup:
    """A group of ``examples`` (default: all) over ``windows``."""
    return FeatureGroup(
        "g",
        Entity("thing", "k"),
        SOURCE,
        aggregations=[
            Aggregation(**{**vars(a), "windows": tuple(windows)}) for a in (examples or EXAMPLES)
        ],
    )


def kind_of(aggregation: Aggregation) -> AggregationKind:
    return aggregation.kind_for(SOURCE)


def field_of(aggregation: Aggregation) -> str | None:
    """The source field an example reads (``None``: every event counts)."""
    return aggregation.column if kind_of(aggregation).needs_column else None


def primitive_cases() -> list[tuple[Primitive, str | None]]:
    """Each primitive of the examples with the field it reads, once."""
    cases = {(p, field_of(a)): None for a in EXAMPLES for p in kind_of(a).primitives}
    return list(cases)


PRIMITIVE_CASES = primitive_cases()


def close(a: Any, b: Any) -> bool:
    """Equal, floats to 1e-9 relative (engines add in different orders)."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b):
        return all(close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys():
        return all(close(a[k], b[k]) for k in a)
    return a == b
