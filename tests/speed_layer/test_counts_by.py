"""The JVM twin of count_by (lfp.speed.CountsByValue) emits the JSON text of the
algebra's partial for the same events: directly (hostile strings, truncation, merges of
accumulators that saw events of their own) and through Flink SQL, two-phase."""

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

# Quotes, backslashes, control characters, every plane of Unicode (Java's compareTo orders
# UTF-16 units, Python code points; no lone surrogates: they are not JSON text).
_HOSTILE = st.sampled_from(
    ["", '"', "\\", '\\"', "\x00", "\x1f", "\x7f", "\n", "\u2028", "\uffff", "\U0001f600", "é"]
)
_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=5) | _HOSTILE
_VALUES = {
    "string": _TEXT,
    "bigint": st.integers(-(2**63), 2**63 - 1) | st.integers(-12, 12),
    "boolean": st.booleans(),
}


@pytest.fixture(scope="module")
def harness(jar: Path) -> Iterator[JavaHarness]:
    running = JavaHarness(jar, "lfp.speed.CountsByValue")
    yield running
    running.close()


@settings(max_examples=400, deadline=None)
@given(data=st.data(), sql_type=st.sampled_from(list(_VALUES)), max_keys=st.integers(0, 5))
def test_accumulated_and_merged_counts_equal_the_algebra(harness, data, sql_type, max_keys):
    value = st.one_of(st.none(), _VALUES[sql_type])
    parts = data.draw(st.lists(st.lists(value, max_size=12), max_size=5))
    emitted = harness.ask(orjson.dumps([sql_type, max_keys, parts]))
    primitive = Primitive("count_by", max_keys or None)
    want = primitive.from_pairs((0, v) for part in parts for v in part)
    assert to_partial(primitive, emitted) == want
    # Byte for byte what Python's JSON would hold (the tile sink stores the text as is).
    assert orjson.loads(emitted) == want


@pytest.mark.integration
def test_counts_in_flink_equal_the_algebra(jar: Path):
    """Through Flink itself, two-phase (local then global, so merge runs too) with
    mini-batches: each group's final emitted JSON, finished by the Redis writer's code,
    equals the algebra's partial of the group's events, for every SQL type, truncated and
    not."""
    from pyflink.table import DataTypes

    t_env = two_phase_tables(jar)

    rng = random.Random(11)
    words = ["a", "b", "ab", "", '"q"', "back\\slash", "\x01", "\uffff", "\U0001f600", "é", "zz"]
    rows = [
        (
            f"g{rng.randrange(12)}",
            rng.choice([*words, None]),
            rng.choice([*range(-3, 12), 2**62, None]),
            rng.choice([True, False, None]),
        )
        for _ in range(800)
    ]
    rows += [("g-null", None, None, None)]  # a group of null values: null partials
    table = t_env.from_elements(
        rows,
        DataTypes.ROW(
            [
                DataTypes.FIELD("g", DataTypes.STRING()),
                DataTypes.FIELD("s", DataTypes.STRING()),
                DataTypes.FIELD("n", DataTypes.BIGINT()),
                DataTypes.FIELD("b", DataTypes.BOOLEAN()),
            ]
        ),
    )
    t_env.create_temporary_view("events", table)
    columns = {"s": 1, "n": 2, "b": 3}
    calls = [("s", 0), ("s", 3), ("n", 0), ("n", 2), ("b", 0), ("b", 1)]
    sql_types = {"s": "string", "n": "bigint", "b": "boolean"}
    selected = ", ".join(f"lfp_count_by_{sql_types[c]}({c}, {m})" for c, m in calls)
    result = t_env.execute_sql(f"SELECT g, {selected} FROM events GROUP BY g")
    final = final_values(result)  # the last change per key is its final value

    assert set(final) == {r[0] for r in rows}
    for group, emitted in final.items():
        mine = [r for r in rows if r[0] == group]
        for (column, max_keys), raw in zip(calls, emitted, strict=True):
            primitive = Primitive("count_by", max_keys or None)
            want = primitive.from_pairs((0, r[columns[column]]) for r in mine)
            assert to_partial(primitive, raw) == want, (group, column, max_keys)
            # The text the sink stores, in order (no values: null, the identity).
            assert (None if raw is None else orjson.loads(raw)) == want
