"""The JVM twin of first and first_k (lfp.speed.Earliest*, LatestPairs run oldest first)
agrees with the algebra through Flink itself, and the tile sink writes what it emits, oldest
first, as the algebra's partial."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feature_core.aggregations import FlinkColumns, Primitive
from feature_core.aggregations.pairs import FirstK
from speed_layer.sink import to_partial
from tests.speed_layer.conftest import final_values, two_phase_tables
from tests.speed_layer.jvm_harness import JavaHarness
from tests.speed_layer.test_functions import _collected_pairs

_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)
_SCALARS = {
    "text": _TEXT,
    "int": st.integers(-(2**63), 2**63 - 1),
    "float": st.floats(allow_nan=False, allow_infinity=False),
    "bool": st.booleans(),
}


@pytest.fixture(scope="module")
def sink(jar: Path) -> Iterator[JavaHarness]:
    running = JavaHarness(jar, "lfp.speed.TileSink")
    yield running
    running.close()


def flink_form(primitive: Primitive, sql_type: str):
    return primitive.flink_form(FlinkColumns("`v`", sql_type, None, False, "`t`", "(`t` + 1)"))


@settings(max_examples=300, deadline=None)
@given(k=st.integers(1, 5), data=st.data())
def test_the_sink_writes_the_emitted_oldest_pairs_as_the_algebras_partial(sink, k, data):
    """The sink's pair shapes ("last": the first pair, "last_k": the pairs in the order
    emitted) finish the ascending pairs the aggregate emits into first's partials."""
    strategy = _SCALARS[data.draw(st.sampled_from(list(_SCALARS)))]
    drawn = data.draw(st.lists(st.tuples(st.integers(0, 3), strategy), max_size=8))
    for primitive in (Primitive("first"), Primitive("first_k", k)):
        form = flink_form(primitive, "STRING")
        # What the aggregate emits: the k smallest pairs, smallest first (None for none).
        kept = sorted(drawn)[: form.param] or None
        request = [form.sink_kind, form.param, None if kept is None else [list(p) for p in kept]]
        written = orjson.loads(sink.ask(orjson.dumps(request)))
        assert written == to_partial(primitive, kept) == primitive.from_pairs(drawn)
        pairs = written if isinstance(primitive, FirstK) else [written] if written else []
        assert [type(v) for _, v in pairs] == [type(v) for _, v in sorted(drawn)[: len(pairs)]]


@pytest.mark.integration
def test_earliest_pairs_in_flink_equal_the_algebra(jar: Path):
    """Through Flink, two-phase (local then global, so merge runs too), over rows with few
    distinct times and values (ties at one millisecond, equal pairs): each value type's
    earliest pairs, finished by the sink's code, equal the algebra's first and first_k
    (and first of the event time, a native MIN); the latest pairs of the same rows still
    equal last_k's."""
    from pyflink.table import DataTypes

    t_env = two_phase_tables(jar)

    rng = random.Random(11)
    words = ["a", "b", "ab", "\uffff", "\U0001f600", "\u00e9", "", "zz"]
    floats = [0.5, -1.0, 2.25, 1e-300, 0.1, -7.75]

    def maybe(value: object) -> object:
        return None if rng.random() < 0.15 else value

    rows = [
        (
            f"g{rng.randrange(10)}",
            rng.randrange(1_000, 1_004),  # few times: ties order by value
            maybe(rng.choice(words)),
            maybe(rng.choice(floats)),
            maybe(rng.randrange(-3, 4)),
            maybe(rng.random() < 0.5),
        )
        for _ in range(700)
    ]
    rows += [("g-null", 5, None, None, None, None)]  # a tile of null values: null partials
    fields = {"v": "STRING", "x": "DOUBLE", "n": "BIGINT", "b": "BOOLEAN"}
    table = t_env.from_elements(
        rows,
        DataTypes.ROW(
            [
                DataTypes.FIELD("g", DataTypes.STRING()),
                DataTypes.FIELD("t", DataTypes.BIGINT()),
                DataTypes.FIELD("v", DataTypes.STRING()),
                DataTypes.FIELD("x", DataTypes.DOUBLE()),
                DataTypes.FIELD("n", DataTypes.BIGINT()),
                DataTypes.FIELD("b", DataTypes.BOOLEAN()),
            ]
        ),
    )
    t_env.create_temporary_view("events", table)
    first, first_3, last_3 = Primitive("first"), Primitive("first_k", 3), Primitive("last_k", 3)
    columns = [
        (position, field, primitive)
        for position, field in enumerate(fields, start=2)
        for primitive in (first, first_3, last_3)
    ]
    selected = [
        primitive.flink_form(FlinkColumns(field, fields[field], None, False, "t", "(t + 1)")).sql
        for _, field, primitive in columns
    ]
    # first of the event time itself: a native MIN, which the sink writes as (t, t).
    oldest_time = first.flink_form(FlinkColumns("t", "BIGINT", int, True, "t", "(t + 1)"))
    assert oldest_time.sink_kind == "last_time"
    selected.append(oldest_time.sql)
    result = t_env.execute_sql(f"SELECT g, {', '.join(selected)} FROM events GROUP BY g")
    final = final_values(result)  # the last change per key is its final value

    assert set(final) == {g for g, *_ in rows}
    for group, values in final.items():
        mine = [r for r in rows if r[0] == group]
        assert to_partial(first, values[-1]) == first.from_pairs((r[1], r[1]) for r in mine)
        for (position, field, primitive), raw in zip(columns, values[:-1], strict=True):
            pairs = _collected_pairs(raw)
            expected = primitive.from_pairs(
                (r[1], r[position]) for r in mine if r[position] is not None
            )
            assert to_partial(primitive, pairs) == expected, (group, field, primitive)
            if primitive is not last_3:  # first's pairs come in the partial's own order
                emitted = [list(p) for p in pairs or []]
                assert emitted == sorted(emitted)
