"""The JVM twin of the moments partial (lfp.speed.Moments): the very floats the algebra
computes for the same values in the same order, and, through Flink's two-phase
aggregation, variances within 1e-9 of the two-pass reference, large offsets included."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feature_core.aggregations import FlinkColumns, Options, aggregation_kind
from feature_core.aggregations.moments import MOMENTS
from tests.feature_core.aggregations.test_moments import _fold, _values, within
from tests.speed_layer.conftest import final_values, two_phase_tables
from tests.speed_layer.jvm_harness import JavaHarness

KINDS = [
    aggregation_kind(name, Options(population=population))
    for name in ("variance", "stddev")
    for population in (False, True)
]


@pytest.fixture(scope="module")
def moments_main(jar: Path) -> Iterator[JavaHarness]:
    running = JavaHarness(jar, "lfp.speed.Moments")
    yield running
    running.close()


def test_accumulate_and_merge_give_the_algebras_floats(moments_main: JavaHarness):
    """Bit for bit: each group folded value by value, the groups merged in order, as
    Python folds and merges them (the tile's JSON text parses to the same list)."""

    @settings(max_examples=300, deadline=None)
    @given(st.lists(_values(max_size=30), min_size=1, max_size=4))
    def check(groups: list[list[float | int]]) -> None:
        groups = [[float(v) for v in group] for group in groups]
        line = " | ".join(" ".join(map(repr, group)) for group in groups)
        answer = moments_main.ask(line.encode())
        want = MOMENTS.identity
        for group in groups:
            want = MOMENTS.merge(want, _fold(group))
        assert MOMENTS.from_flink(None if answer == b"null" else answer.decode()) == want
        if want is not None:
            assert orjson.loads(answer) == want  # ints as ints, floats as floats

    check()


@pytest.mark.integration
def test_moments_through_flink_are_within_1e_9_of_the_reference(jar: Path):
    """Flink SQL, two-phase (local then global, so merge runs too), over random groups of
    offset values (1e9 + noise in [-1, 1], timestamps in ms), ordinary floats and
    integers, in the form the speed job uses (``Moments.flink_form``)."""
    from pyflink.table import DataTypes

    t_env = two_phase_tables(jar)

    rng = random.Random(17)
    families = {
        "offset": (lambda: 1e9 + rng.uniform(-1, 1), lambda: rng.randrange(-5, 6)),
        "timestamps": (
            lambda: 1.7e12 + rng.uniform(-1e3, 1e3),
            lambda: 1_700_000_000_000 + rng.randrange(10**6),
        ),
        "ordinary": (lambda: rng.uniform(-1e6, 1e6), lambda: rng.randrange(-(10**12), 10**12)),
    }
    rows = []
    for g in range(30):
        family = list(families)[g % len(families)]
        draw_x, draw_n = families[family]
        for _ in range(rng.randrange(1, 60)):
            x = None if rng.random() < 0.1 else draw_x()
            n = None if rng.random() < 0.1 else draw_n()
            rows.append((f"{family}{g}", x, n))
    rows.append(("nulls", None, None))  # a tile of null values: a null partial
    table = t_env.from_elements(
        rows,
        DataTypes.ROW(
            [
                DataTypes.FIELD("g", DataTypes.STRING()),
                DataTypes.FIELD("x", DataTypes.DOUBLE()),
                DataTypes.FIELD("n", DataTypes.BIGINT()),
            ]
        ),
    )
    t_env.create_temporary_view("events", table)
    forms = [
        MOMENTS.flink_form(FlinkColumns(f"`{name}`", sql, python, False, "0", "1"))
        for name, sql, python in (("x", "DOUBLE", float), ("n", "BIGINT", int))
    ]
    assert all(form.sink_kind == "json" for form in forms)
    result = t_env.execute_sql(f"SELECT g, {forms[0].sql}, {forms[1].sql} FROM events GROUP BY g")
    final = final_values(result)  # the last change per key is its final value
    assert set(final) == {r[0] for r in rows}
    for group, raws in final.items():
        for column, raw in zip((1, 2), raws, strict=True):
            values = [r[column] for r in rows if r[0] == group and r[column] is not None]
            partial = MOMENTS.from_flink(raw)
            assert (partial[0] if partial else 0) == len(values), (group, column)
            events = [(0, v) for v in values]
            for kind in KINDS:
                got, want = kind.finalize((partial,)), kind.reference(events, 0, 0)
                assert within(got, want), (group, column, kind.name, got, want)
