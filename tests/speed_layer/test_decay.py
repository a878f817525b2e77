"""The JVM twin of decayed_count and decayed_sum (lfp.speed.DecayedSum) keeps the algebra's
[anchor, value] partial: the same anchor, the same value to rounding, event by event,
merged, and through Flink itself."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feature_core.aggregations import FlinkColumns, Primitive
from feature_core.windows import DAY_MS, MINUTE_MS
from speed_layer.sink import to_partial
from tests.speed_layer.conftest import final_values, two_phase_tables
from tests.speed_layer.jvm_harness import JavaHarness

YEAR_MS = 365 * DAY_MS
#: Two implementations of pow (Java's, C's) may differ by an ulp in each term.
REL = 1e-12
#: 1e-9 of the decayed sum of |weights|: the bound the kinds promise, for Flink's own
#: order of adding (it merges local partials in an order of its own).
PROMISED = 1e-9


@pytest.fixture(scope="module")
def harness(jar: Path) -> Iterator[JavaHarness]:
    running = JavaHarness(jar, "lfp.speed.DecayedSum")
    yield running
    running.close()


def error_bound(primitive: Primitive, events, anchor: int, rel: float) -> float:
    """``rel`` of the decayed sum of |weights| at ``anchor``, plus what subnormal terms
    lose (2^-1074 of their weight each)."""
    weights = [
        (t, abs(w)) for t, w in ((t, primitive.weight(v)) for t, v in events) if w is not None
    ]
    scale = math.fsum(w * 2.0 ** ((t - anchor) / primitive.param) for t, w in weights)
    return rel * scale + math.fsum(w for _, w in weights) * 2.0**-1070 + 1e-300


def close_partials(primitive: Primitive, got, want, events, rel: float) -> bool:
    if got is None or want is None:
        return got is None and want is None
    return got[0] == want[0] and abs(got[1] - want[1]) <= error_bound(
        primitive, events, want[0], rel
    )


_TIMES = st.one_of(
    st.integers(0, 90 * YEAR_MS), st.integers(2_000_000_000_000, 2_000_000_000_000 + 5 * MINUTE_MS)
)
_WEIGHTS = st.one_of(st.floats(-1e15, 1e15), st.sampled_from([0.0, -0.0, 1e-300, 1e300]))


@settings(max_examples=300, deadline=None)
@given(
    half_life=st.one_of(st.integers(1_000, 10 * YEAR_MS), st.sampled_from([1_000, DAY_MS])),
    groups=st.lists(st.lists(st.tuples(_TIMES, _WEIGHTS), max_size=8), min_size=1, max_size=5),
)
def test_accumulate_and_merge_fold_as_the_algebra(harness, half_life, groups):
    """Each group accumulated event by event, then merged into the first, as Flink's
    two-phase aggregation does: the algebra's fold of the same events in the same order."""
    line = "|".join(
        [str(half_life), *(" ".join(f"{t} {float(w)!r}" for t, w in group) for group in groups)]
    )
    jvm = orjson.loads(harness.ask(line.encode()))
    primitive = Primitive("decayed_sum", half_life)
    folded = [primitive.identity for _ in groups]
    for i, group in enumerate(groups):
        for t, w in group:
            folded[i] = primitive.merge(folded[i], primitive.lift(w, t))
    want = primitive.identity
    for partial in folded:
        want = primitive.merge(want, partial)
    events = [event for group in groups for event in group]
    got = primitive.normalize(jvm)
    assert close_partials(primitive, got, want, events, REL), (got, want)
    assert got is None or isinstance(got[0], int)


@pytest.mark.integration
def test_decayed_sums_in_flink_equal_the_algebra(jar: Path):
    """Through Flink itself, two-phase (local then global, so merge runs too), over events
    spread over decades and within one tile, with half-lives from a second to years: the
    partial the sink writes (its JSON text, ``from_flink``) is the algebra's partial of
    the same events, to the kinds' 1e-9."""
    from pyflink.table import DataTypes

    t_env = two_phase_tables(jar)
    rng = random.Random(5)
    tile = 1_700_000_000_000
    rows = []
    for _ in range(900):
        group = f"g{rng.randrange(12)}"
        time = (
            rng.randrange(0, 90 * YEAR_MS)
            if group < "g4"
            else tile + rng.randrange(0, 40) * rng.choice([1, 7_000])  # ties at one ms
        )
        x = rng.choice([None, rng.uniform(-50, 50), 1e9 + rng.random(), rng.uniform(-1e15, 1e15)])
        rows.append((group, time, x))
    rows += [("g-null", tile, None)]
    table = t_env.from_elements(
        rows,
        DataTypes.ROW(
            [
                DataTypes.FIELD("k", DataTypes.STRING()),
                DataTypes.FIELD("t", DataTypes.BIGINT()),
                DataTypes.FIELD("x", DataTypes.DOUBLE()),
            ]
        ),
    )
    t_env.create_temporary_view("events", table)
    cases = [
        (Primitive(kind, half_life), column)
        for kind, column in (("decayed_sum", "x"), ("decayed_count", None), ("decayed_count", "x"))
        for half_life in (1_000, MINUTE_MS, DAY_MS, YEAR_MS)
    ]
    forms = [
        primitive.flink_form(
            FlinkColumns(
                value=f"`{column}`" if column else None,
                sql_type="DOUBLE" if column else None,
                python_type=float if column else None,
                is_event_time=False,
                time="`t`",
                tile_end=f"(`t` - MOD(`t`, {5 * MINUTE_MS}) + {5 * MINUTE_MS})",
            )
        )
        for primitive, column in cases
    ]
    assert {form.sink_kind for form in forms} == {"json"}
    columns = ", ".join(f"{form.sql} AS p{i}" for i, form in enumerate(forms))
    result = t_env.execute_sql(f"SELECT k, {columns} FROM events GROUP BY k")
    final = final_values(result)  # the last change per key is its final value
    assert set(final) == {r[0] for r in rows}
    for key, raws in final.items():
        mine = [r for r in rows if r[0] == key]
        for (primitive, column), raw in zip(cases, raws, strict=True):
            assert raw is None or isinstance(raw, str)
            got = to_partial(primitive, raw)
            pairs = [(t, x if column else True) for _, t, x in mine]
            want = primitive.from_pairs(pairs)
            assert close_partials(primitive, got, want, pairs, PROMISED), (key, primitive, got)
            if key == "g-null" and column:
                assert got is None
