"""The speed job's JVM aggregates agree with the shared algebra they stand in for."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pyflink
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feature_core import sketches
from feature_core.aggregations import Primitive
from speed_layer.functions import udf_jar
from speed_layer.sink import to_partial
from tests.speed_layer.conftest import final_values, two_phase_tables

# Lines of text (the harness reads one value per line), from every plane of Unicode:
# strings order by code point in Python, by UTF-16 unit in Java's compareTo.
_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r"), max_size=200
)


def test_the_jar_is_built_once_per_source_version(jar: Path):
    assert jar.exists() and udf_jar(jar.parent) == jar
    assert jar.stat().st_size > 0


def test_sketch_registers_hash_values_as_the_algebra_does(jar: Path):
    flink_lib = Path(pyflink.__file__).parent / "lib"
    classpath = f"{jar}:{flink_lib / 'flink-table-common.jar'}:{flink_lib / 'flink-core.jar'}"

    @settings(max_examples=25, deadline=None)
    @given(st.lists(_TEXT, min_size=1, max_size=60), st.sampled_from([4, 10, 14]))
    def check(values: list[str], precision: int) -> None:
        run = subprocess.run(
            ["java", "-cp", classpath, "lfp.speed.SketchRegisters", str(precision)],
            input="\n".join(values) + "\n",
            capture_output=True,
            text=True,
            encoding="utf-8",
            check=True,
        )
        jvm = [tuple(map(int, line.split())) for line in run.stdout.splitlines()]
        python = [next(iter(sketches.registers_of([v], precision).items())) for v in values]
        assert jvm == python

    check()


@pytest.mark.integration
def test_jvm_aggregates_in_flink_equal_the_algebra(jar: Path):
    """Through Flink itself, two-phase (local then global, so merge runs too): the k
    latest pairs and the sketch registers of random tiles, finished by the Redis writer's
    code, equal the algebra's partials of the same events."""
    from pyflink.table import DataTypes

    t_env = two_phase_tables(jar)

    rng = random.Random(7)
    words = ["a", "b", "ab", "\uffff", "\U0001f600", "\u00e9", "", "zz"]
    rows = [
        (
            f"g{rng.randrange(12)}",
            rng.randrange(1_000, 1_010),  # few times: ties order by value
            rng.choice(words),
            rng.random(),
            rng.randrange(-3, 4),
            rng.random() < 0.5,
        )
        for _ in range(600)
    ]
    rows += [("g-null", 5, None, None, None, None)]  # a tile of null values: null partials
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
    result = t_env.execute_sql(
        "SELECT g, lfp_latest_pairs_string(t, v, 1), lfp_latest_pairs_string(t, v, 4), "
        "lfp_latest_pairs_double(t, x, 3), lfp_latest_pairs_bigint(t, n, 2), "
        "lfp_latest_pairs_boolean(t, b, 2), lfp_sketch_registers(v, 6) FROM events GROUP BY g"
    )
    final = final_values(result)  # the last change per key is its final value
    final = {
        group: (*(_collected_pairs(pairs) for pairs in values[:5]), values[5])
        for group, values in final.items()
    }

    last, last_4, last_3, last_2, hll = (
        Primitive.LAST,
        Primitive("last_k", 4),
        Primitive("last_k", 3),
        Primitive("last_k", 2),
        Primitive("hll", 6),
    )
    assert set(final) == {g for g, *_ in rows}
    for group, (jvm_last, jvm_last_4, jvm_last_3, ints, bools, registers) in final.items():
        mine = [r for r in rows if r[0] == group]
        strings = [(r[1], r[2]) for r in mine if r[2] is not None]
        floats = [(r[1], r[3]) for r in mine if r[3] is not None]
        assert to_partial(last_2, ints) == last_2.from_pairs(
            (r[1], r[4]) for r in mine if r[4] is not None
        )
        assert to_partial(last_2, bools) == last_2.from_pairs(
            (r[1], r[5]) for r in mine if r[5] is not None
        )
        assert to_partial(last, jvm_last) == last.from_pairs(strings)
        assert to_partial(last_4, jvm_last_4) == last_4.from_pairs(strings)
        assert to_partial(last_3, jvm_last_3) == last_3.from_pairs(floats)
        assert to_partial(hll, registers) == hll.from_pairs(strings)


def _collected_pairs(pairs: list | None) -> list[tuple] | None:
    """Pairs as the speed job's writer gets them. Table.collect() hands a nested row over
    as a Row around one list of its fields (the job's DataStream path does not)."""
    if pairs is None:
        return None
    fields = [list(pair) for pair in pairs]
    return [tuple(f[0]) if len(f) == 1 and isinstance(f[0], list) else tuple(f) for f in fields]


@pytest.mark.integration
def test_every_catalog_primitive_through_flink_equals_the_algebra(jar: Path):
    """Every primitive of the aggregation catalog, in its Flink form (native SQL or JVM
    twin), two-phase so merge runs, over random tiles with ties at one millisecond, large
    offsets and hostile strings: the partial the sink writes (``from_flink``) equals the
    algebra's partial of the same events."""
    from pyflink.table import DataTypes

    from feature_core.aggregations import FlinkColumns
    from tests.feature_core.aggregations import catalog
    from tests.feature_core.aggregations.catalog import PRIMITIVE_CASES, close

    t_env = two_phase_tables(jar)
    rng = random.Random(11)
    tile_end = 1_700_000_300_000
    texts = [*catalog.LABELS, "\U0001f600", "\uffff", 'q"\\\x01']
    rows = [
        (
            f"g{rng.randrange(10)}",
            tile_end - rng.randrange(1, 40) * rng.choice([1, 7_000]),  # ties at one ms
            rng.choice([None, rng.uniform(-50, 50), 1e9 + rng.random()]),
            rng.choice([None, rng.randrange(-5, 6)]),
            rng.choice([None, *texts]),
            rng.choice([None, True, False]),
            rng.choice([None, "red", "green", "blue"]),
        )
        for _ in range(700)
    ]
    rows += [("g-null", tile_end - 5, None, None, None, None, None)]
    fields = [("k", DataTypes.STRING()), ("t", DataTypes.BIGINT())]
    fields += [
        (
            name,
            {"x": DataTypes.DOUBLE(), "n": DataTypes.BIGINT(), "b": DataTypes.BOOLEAN()}.get(
                name, DataTypes.STRING()
            ),
        )
        for name in ("x", "n", "s", "b", "c")
    ]
    table = t_env.from_elements(
        rows, DataTypes.ROW([DataTypes.FIELD(name, kind) for name, kind in fields])
    )
    t_env.create_temporary_view("events", table)
    forms = []
    for primitive, field in PRIMITIVE_CASES:
        declared = catalog.SOURCE.by_name.get(field or "")
        forms.append(
            primitive.flink_form(
                FlinkColumns(
                    value=f"`{field}`" if field else None,
                    sql_type=declared.kind.sql if declared else None,
                    python_type=declared.kind.python if declared else None,
                    is_event_time=False,
                    time="`t`",
                    tile_end=str(tile_end),
                )
            )
        )
    columns = ", ".join(f"{form.sql} AS p{i}" for i, form in enumerate(forms))
    result = t_env.execute_sql(f"SELECT k, {columns} FROM events GROUP BY k")
    final = final_values(result)  # the last change per key is its final value
    assert set(final) == {r[0] for r in rows}
    names = ["k", "t", "x", "n", "s", "b", "c"]
    for key, raws in final.items():
        mine = [dict(zip(names, r, strict=True)) for r in rows if r[0] == key]
        for (primitive, field), form, raw in zip(PRIMITIVE_CASES, forms, raws, strict=True):
            if form.sink_kind in ("last", "last_k"):
                raw = _collected_pairs(raw)
            got = primitive.from_flink(raw)
            pairs = [(e["t"], e[field] if field else True) for e in mine]
            want = primitive.from_pairs(pairs)
            if primitive.native and got is None:
                got = primitive.merge(got, primitive.identity)
            assert close(got, want), (key, primitive, got, want)
