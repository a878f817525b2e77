"""The JVM twin of top_k and bottom_k (lfp.speed.RankedValues) emits the algebra's partial:
the same values in the same order, every double read back as the very double it kept,
every string (control characters, quotes, backslashes, every plane) as the same string."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feature_core.aggregations import Primitive
from speed_layer.sink import to_partial
from tests.speed_layer.conftest import final_values, two_phase_tables
from tests.speed_layer.jvm_harness import JavaHarness

HOSTILE = [
    "",
    '"',
    "\\",
    '\\"',
    "\\u0041",
    "\x00",
    "\x1f",
    "\x7f",
    "\b\f\n\r\t",
    "\u2028\u2029",
    "\ud7ff",
    "\ue000",
    "\uffff",
    "\U00010000",
    "\U0001f600",
    "\U0010ffff",
    "</script>",
    "a\x00b",
]
TEXT = st.one_of(
    st.sampled_from(HOSTILE), st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)
)
VALUES = {
    "string": TEXT,
    "bigint": st.integers(-(2**63), 2**63 - 1),
    "double": st.floats(allow_nan=False, allow_infinity=False),
}


@pytest.fixture(scope="module")
def harness(jar: Path) -> Iterator[JavaHarness]:
    running = JavaHarness(jar, "lfp.speed.RankedValues")
    yield running
    running.close()


@settings(max_examples=400, deadline=None)
@given(
    data=st.data(),
    sql_type=st.sampled_from(sorted(VALUES)),
    name=st.sampled_from(["top_k", "bottom_k"]),
    k=st.integers(1, 6),
)
def test_the_jvm_keeps_and_writes_what_the_algebra_keeps(harness, data, sql_type, name, k):
    values = data.draw(st.lists(VALUES[sql_type], max_size=16))
    split = data.draw(st.integers(0, len(values)))  # two local accumulators, merged
    primitive = Primitive(name, k)
    request = [sql_type, k, primitive.largest, values, split]
    emitted = harness.ask(orjson.dumps(request))
    got = to_partial(primitive, emitted.decode())
    expected = primitive.from_pairs((0, v) for v in values)
    assert got == expected
    assert [type(v) for v in got] == [type(v) for v in expected]  # 1 == 1.0 in Python
    if sql_type == "double":  # exactly a kept double, bit for bit (-0.0 included)
        assert {v.hex() for v in got} <= {v.hex() for v in values}


def test_doubles_of_every_magnitude_read_back_as_themselves(harness):
    """Java's Double.toString against Python's float parsing, over random bit patterns."""
    rng = random.Random(11)
    doubles = [5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, 1e23, 2e-3, 0.1]
    while len(doubles) < 3000:
        value = float.fromhex(f"0x1.{rng.getrandbits(52):013x}p{rng.randrange(-1074, 1024)}")
        doubles.append(-value if rng.random() < 0.5 else value)
    for start in range(0, len(doubles), 500):
        chunk = doubles[start : start + 500]
        emitted = harness.ask(orjson.dumps(["double", len(chunk), True, chunk, 250]))
        assert {v.hex() for v in orjson.loads(emitted)} == {v.hex() for v in chunk}


@pytest.mark.integration
def test_ranked_values_in_flink_equal_the_algebra(jar: Path):
    """Through Flink itself, two-phase (local then global, so merge runs too, and a local
    accumulator without values meets one with them): each type's k largest and smallest
    values of random groups, read back as the tile sink writes them, equal the algebra's
    partials of the same events."""
    from pyflink.table import DataTypes

    t_env = two_phase_tables(jar)

    rng = random.Random(5)
    words = [*HOSTILE, "a", "b", "ab", "zz", "\u00e9"]

    def maybe(value: object) -> object:
        return None if rng.random() < 0.15 else value

    rows = [
        (
            f"g{rng.randrange(12)}",
            maybe(rng.choice(words)),
            maybe(rng.choice([rng.uniform(-1e6, 1e6), rng.random() * 1e-300, 0.0, -0.0, 1.5])),
            maybe(rng.choice([rng.randrange(-(2**63), 2**63), rng.randrange(-3, 4)])),
        )
        for _ in range(700)
    ]
    rows += [("g-null", None, None, None)]  # a group without values: the identity
    table = t_env.from_elements(
        rows,
        DataTypes.ROW(
            [
                DataTypes.FIELD("g", DataTypes.STRING()),
                DataTypes.FIELD("s", DataTypes.STRING()),
                DataTypes.FIELD("x", DataTypes.DOUBLE()),
                DataTypes.FIELD("n", DataTypes.BIGINT()),
            ]
        ),
    )
    t_env.create_temporary_view("events", table)
    # (primitive, row field, column): each type in both directions, k from 1 to 5.
    columns = [
        (Primitive("top_k", 3), 1, "s"),
        (Primitive("bottom_k", 4), 1, "s"),
        (Primitive("top_k", 5), 2, "x"),
        (Primitive("bottom_k", 2), 2, "x"),
        (Primitive("top_k", 1), 3, "n"),
        (Primitive("bottom_k", 3), 3, "n"),
    ]
    forms = []
    for primitive, _, column in columns:
        sql_type = {"s": "STRING", "x": "DOUBLE", "n": "BIGINT"}[column]
        form = primitive.flink_form(_flink_columns(column, sql_type))
        assert form.sink_kind == "json"
        forms.append(form.sql)
    query = f"SELECT g, {', '.join(forms)} FROM events GROUP BY g"
    plan = t_env.explain_sql(query)
    assert "LocalGroupAggregate" in plan and "GlobalGroupAggregate" in plan  # merge runs
    result = t_env.execute_sql(query)
    final = final_values(result)  # the last change per key is its final value

    assert set(final) == {r[0] for r in rows}
    for group, emitted in final.items():
        mine = [r for r in rows if r[0] == group]
        for (primitive, field, column), raw in zip(columns, emitted, strict=True):
            expected = primitive.from_pairs((0, r[field]) for r in mine if r[field] is not None)
            got = to_partial(primitive, raw)
            assert got == expected, (group, primitive, column)
            assert [type(v) for v in got] == [type(v) for v in expected]


def _flink_columns(column: str, sql_type: str):
    from feature_core.aggregations import FlinkColumns

    python = {"STRING": str, "DOUBLE": float, "BIGINT": int}[sql_type]
    return FlinkColumns(column, sql_type, python, False, "t", "(t + 1)")
