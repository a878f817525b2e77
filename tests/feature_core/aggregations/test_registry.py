"""Every registered kind and primitive has every engine form, and each kind's algebra
agrees with its plain reference: the contract a new kind meets by adding its class and
its examples (catalog.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feature_core.aggregations import (
    KINDS,
    PRIMITIVES,
    ColumnEvents,
    FlinkColumns,
    FlinkForm,
    Primitive,
    Ranges,
    SparkColumns,
    identity,
    merge,
    merge_all,
)
from feature_core.merge import values_match
from feature_core.sweep import column_events
from tests.feature_core.aggregations.catalog import (
    EXAMPLES,
    PRIMITIVE_CASES,
    SOURCE,
    VALUES,
    close,
    field_of,
    kind_of,
)

JVM_SOURCES = Path(__file__).parents[3] / "speed_layer" / "jvm" / "src"
SINK_KINDS = {"native", "last_time", "last", "last_k", "hll", "json"}
IDS = [f"{a.function}({a.column or '*'})" for a in EXAMPLES]


def test_every_kind_and_primitive_has_an_example():
    assert {a.function for a in EXAMPLES} == set(KINDS)
    assert {p.kind for p, _ in PRIMITIVE_CASES} == set(PRIMITIVES)


@pytest.mark.parametrize("aggregation", EXAMPLES, ids=IDS)
def test_every_kind_has_every_form(aggregation):
    kind = kind_of(aggregation)
    assert kind.result.scalar in ("integer", "float", "column")
    assert kind.result.shape in ("scalar", "list", "map")
    assert kind.outputs and len(set(kind.outputs)) == len(kind.outputs)
    empty = identity(kind.primitives)
    for output in range(len(kind.outputs)):
        assert values_match(
            kind.finalize_output(empty, 0, output), kind.reference([], 0, output)
        ), "the empty value is the reference's over no events"
    field = SOURCE.by_name.get(aggregation.column or "")
    for primitive in kind.primitives:
        spark = primitive.spark_sql(SparkColumns("`v`" if field else None, "`t`", "`end`"))
        assert isinstance(spark, str) and spark
        flink = primitive.flink_form(
            FlinkColumns(
                "`v`" if field else None,
                field.kind.sql if field else None,
                field.kind.python if field else None,
                False,
                "`t`",
                "(`t` + 1)",
            )
        )
        assert isinstance(flink, FlinkForm) and flink.sink_kind in SINK_KINDS
        for java_class in primitive.jvm_functions.values():
            path = JVM_SOURCES / (java_class.replace(".", "/") + ".java")
            assert path.exists(), f"{primitive.kind}: no JVM twin {path}"
        # An engine's null (no events) reads back as the identity.
        for read in (primitive.from_spark, primitive.from_flink):
            assert primitive.merge(read(None), primitive.identity) == primitive.identity


def _events(field: str | None) -> st.SearchStrategy[list[tuple[int, object]]]:
    value = VALUES[field] if field else st.just(True)
    return st.lists(st.tuples(st.integers(0, 40), value), max_size=14)


def _fold(primitive: Primitive, events) -> object:
    return merge_all((primitive,), ((primitive.lift(v, t),) for t, v in events))[0]


@pytest.mark.parametrize(("primitive", "field"), PRIMITIVE_CASES, ids=str)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_every_primitive_is_a_commutative_monoid(primitive, field, data):
    a, b, c = (_fold(primitive, data.draw(_events(field))) for _ in range(3))
    assert close(
        primitive.merge(primitive.merge(a, b), c), primitive.merge(a, primitive.merge(b, c))
    )
    assert close(primitive.merge(a, b), primitive.merge(b, a))
    assert primitive.merge(primitive.identity, a) == a == primitive.merge(a, primitive.identity)
    assert close(primitive.merge_many([a, b, c]), primitive.merge(primitive.merge(a, b), c))


@pytest.mark.parametrize(("primitive", "field"), PRIMITIVE_CASES, ids=str)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_from_pairs_and_the_windowed_form_equal_folding_the_algebra(primitive, field, data):
    events = sorted(data.draw(_events(field)), key=lambda e: e[0])
    assert close(primitive.from_pairs(events), _fold(primitive, events))
    times = np.array([t for t, _ in events], dtype=np.int64)
    values = None if field is None else [v for _, v in events]
    column: ColumnEvents = column_events(times, values)
    ends = np.array(sorted(data.draw(st.lists(st.integers(0, 45), min_size=1, max_size=6))))
    width = data.draw(st.integers(1, 50))
    lo = np.searchsorted(times, ends - width, side="left")
    hi = np.searchsorted(times, ends, side="left")
    lo = np.maximum.accumulate(lo)
    got = primitive.windowed(column, Ranges(lo, hi))
    for partial, start, end in zip(got, lo.tolist(), hi.tolist(), strict=True):
        want = _fold(
            primitive,
            [(int(times[i]), column.values[i]) for i in range(start, end)],
        )
        assert close(partial, want), (start, end)


@pytest.mark.parametrize("aggregation", EXAMPLES, ids=IDS)
@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_every_kinds_algebra_equals_its_plain_reference(aggregation, data):
    kind = kind_of(aggregation)
    field = field_of(aggregation)
    events = data.draw(_events(field))
    t = data.draw(st.integers(41, 10_000))
    ir = identity(kind.primitives)
    present = []
    for time, value in events:
        ir = merge(kind.primitives, ir, tuple(p.lift(value, time) for p in kind.primitives))
        if value is not None:
            present.append((time, value))
    for output in range(len(kind.outputs)):
        got = kind.finalize_output(ir, t, output)
        want = kind.reference(present, t, output)
        assert values_match(got, want), (output, got, want)
