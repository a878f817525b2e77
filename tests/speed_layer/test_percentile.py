"""The JVM twin of approx_percentile's sketch (lfp.speed.PercentileSketch) builds and
merges byte-identical sketches to feature_core/ddsketch.py: alone through its main(), and
through Flink SQL's two-phase aggregation."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feature_core import ddsketch
from feature_core.aggregations import FlinkColumns, Primitive
from feature_core.aggregations.percentile import PERCENTILE_SKETCH
from speed_layer.sink import to_partial
from tests.speed_layer.conftest import final_values, two_phase_tables
from tests.speed_layer.jvm_harness import JavaHarness


def bits_of(value: float) -> int:
    return ddsketch._BITS.unpack(ddsketch._DOUBLE.pack(value))[0]


def double_of(bits: int) -> float:
    return ddsketch._DOUBLE.unpack(ddsketch._BITS.pack(bits))[0]


@pytest.fixture(scope="module")
def harness(jar: Path) -> Iterator[JavaHarness]:
    running = JavaHarness(jar, "lfp.speed.PercentileSketch")
    yield running
    running.close()


def _boundary(m: int) -> st.SearchStrategy[float]:
    """The first mantissa of a bucket (f = ceil(j*2^52/m)) or the one before it, of any
    exponent and sign: where a log()-based key could land in the neighbouring bucket."""

    def build(j: int, e: int, before: bool, negative: bool) -> float:
        f = -(-(j << 52) // m) - (1 if before and j else 0)
        return double_of(((e + 1023) << 52) | f | ((1 << 63) if negative else 0))

    return st.builds(
        build, st.integers(0, m - 1), st.integers(-1022, 1023), st.booleans(), st.booleans()
    )


def _values(m: int) -> st.SearchStrategy[float]:
    return st.one_of(
        st.floats(),  # NaN and infinities too: both sides skip them
        _boundary(m),
        st.floats(-1e-300, 1e-300),
        st.builds(double_of, st.integers(0, 2**52 - 1) | st.integers(2**63, 2**63 + 2**52 - 1)),
        st.sampled_from([0.0, -0.0, 1.0, -1.0, 1.7976931348623157e308, -5e-324]),
    )


@settings(max_examples=400, deadline=None)
@given(data=st.data(), m=st.sampled_from([1, 5, 50, 62, 500]))
def test_the_jvm_builds_and_merges_the_same_bytes(harness: JavaHarness, data, m: int):
    """Values split over up to four accumulators that the JVM merges: its emitted JSON is
    the algebra's sketch of all of them (or null for none)."""
    parts = data.draw(st.lists(st.lists(_values(m), max_size=40), min_size=1, max_size=4))
    line = " | ".join(" ".join(format(bits_of(v), "x") for v in part) for part in parts)
    emitted = harness.ask(f"{m} {line}".encode())
    values = [v for part in parts for v in part]
    assert orjson.loads(emitted) == ddsketch.sketch_of(values, m)
    primitive = Primitive("ddsketch", m)
    raw = None if emitted == b"null" else emitted.decode()
    assert to_partial(primitive, raw) == primitive.from_pairs((0, v) for v in values)


def test_the_flink_form_calls_the_jvm_twin():
    columns = FlinkColumns("`x`", "DOUBLE", float, False, "`t`", "(`t` + 1)")
    form = Primitive("ddsketch", 50).flink_form(columns)
    assert form.sink_kind == "json"
    assert form.sql == f"{PERCENTILE_SKETCH}(CAST(`x` AS DOUBLE), 50)"


@pytest.mark.integration
def test_the_sketch_in_flink_equals_the_algebra(jar: Path):
    """Through Flink, two-phase (local then global, so merge runs too): each group's
    sketch of doubles and of integers cast as the speed job casts them equals the
    algebra's sketch of the same values, byte for byte."""
    from pyflink.table import DataTypes

    t_env = two_phase_tables(jar)

    rng = random.Random(11)
    specials = [0.0, -0.0, 5e-324, 1e300, -1e-300, 1.0, 1.02, -1.5]

    def value() -> float:
        pick = rng.random()
        if pick < 0.2:
            return rng.choice(specials)
        if pick < 0.6:
            return rng.lognormvariate(0, 4) * rng.choice([-1, 1])
        return double_of(rng.getrandbits(64)) if rng.random() < 0.5 else rng.uniform(-10, 10)

    rows = []
    for _ in range(800):
        x = value()
        rows.append(
            (
                f"g{rng.randrange(10)}",
                x if math.isfinite(x) else None,
                rng.randrange(-(2**62), 2**62),
            )
        )
    rows += [("g-null", None, None)]  # a group of null values: a null partial
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
    result = t_env.execute_sql(
        f"SELECT g, {PERCENTILE_SKETCH}(CAST(x AS DOUBLE), 50), "
        f"{PERCENTILE_SKETCH}(CAST(n AS DOUBLE), 5) FROM events GROUP BY g"
    )
    final = final_values(result)  # the last change per key is its final value
    fine, coarse = Primitive("ddsketch", 50), Primitive("ddsketch", 5)
    assert set(final) == {g for g, *_ in rows}
    for group, (doubles, integers) in final.items():
        mine = [r for r in rows if r[0] == group]
        assert to_partial(fine, doubles) == fine.from_pairs(
            (0, r[1]) for r in mine if r[1] is not None
        )
        assert to_partial(coarse, integers) == coarse.from_pairs(
            (0, r[2]) for r in mine if r[2] is not None
        )
    assert final["g-null"] == (None, None)
