"""Spark's hop tiles equal the Python model's (feature_core.tiles.event_tiles) for every
aggregation kind."""

import random

import orjson
import pytest

from batch_layer.event_tiles import event_tiles
from feature_core import tiles
from feature_core.aggregations import normalize
from feature_core.settings import Settings
from feature_core.sources import event_date
from feature_core.windows import DAY_MS

pytestmark = pytest.mark.spark


def test_spark_tiles_equal_the_model_for_every_kind(spark_factory) -> None:
    """Every kind of the catalog, with windows that keep every hop series (5m, 1h, 1d):
    each (series, entity, start) Spark writes is one the model computes from the same
    events, with the same partials and event count; events at or after the cutoff, and
    those without a key, are in no tile."""
    from tests.feature_core.aggregations import catalog
    from tests.feature_core.aggregations.catalog import close

    group = catalog.group(["5m", "1h", "7d", "30d", "lifetime", "session:30m"])
    spark = spark_factory(Settings(_env_file=None))
    rng = random.Random(11)
    cutoff = 19_000 * DAY_MS
    rows = []
    for i in range(400):
        ago = rng.choice([rng.randrange(-DAY_MS, 20 * DAY_MS), rng.randrange(0, 7200_000)])
        time = cutoff - ago
        rows.append(
            (
                rng.choice(["hot"] * 5 + ["u1", "u2", "u3", None]),
                time - time % rng.choice([1, 60_000]),  # ties at one millisecond
                rng.choice([None, rng.uniform(-50, 50), 1e9 + rng.random()]),
                rng.choice([None, rng.randrange(-5, 6)]),
                rng.choice([None, *catalog.LABELS, "\U0001f600"]),
                rng.choice([None, True, False]),
                rng.choice([None, "red", "green", "blue"]),
                0,
                i,
            )
        )
    frame = spark.createDataFrame(rows, catalog.SOURCE.spark_ddl())
    got = {
        (r["series"], r["entity"], r["start"]): r
        for r in event_tiles(frame, group, cutoff).collect()
    }
    names = [*catalog.SOURCE.columns, "kafka_partition", "kafka_offset"]
    events = [dict(zip(names, raw, strict=True)) for raw in rows]
    want = tiles.event_tiles(group, [e for e in events if e["t"] < cutoff])
    expected = {
        (series, entity, start): partials
        for entity, by_series in want.items()
        for series, by_start in by_series.items()
        for start, partials in by_start.items()
    }
    assert {s for s, _, _ in expected} == {"5m", "1h", "1d"}
    assert set(got) == set(expected)
    for key, partials in expected.items():
        row = got[key]
        assert row["group"] == group.name and row["tile_date"] == event_date(key[2])
        assert row["keys"] == [key[1]]
        have = normalize(group.primitives, orjson.loads(row["partials"]))
        for column, a, b in zip(group.tile_columns, have, partials, strict=True):
            assert close(a, b), (key, column.key, a, b)
        in_tile = [
            e
            for e in events
            if e["k"] == key[1] and key[2] <= e["t"] < min(cutoff, key[2] + _width(key[0]))
        ]
        assert row["events"] == len(in_tile), key


def _width(series: str) -> int:
    return {"5m": 300_000, "1h": 3_600_000, "1d": DAY_MS}[series]
