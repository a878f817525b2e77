"""The Spark compilation of the batch layout agrees with the shared Python definition."""

import random

import pytest

from batch_layer.job import bucket_sql
from feature_core.definitions import batch_partials
from feature_core.settings import Settings
from feature_core.windows import DAY_MS, FINEST_HOP_MS, Window, batch_layout

pytestmark = pytest.mark.spark


@pytest.mark.parametrize("text", ["5m", "1h", "1d", "7d", "30d", "90d", "lifetime"])
def test_spark_buckets_equal_the_python_layout(spark_factory, text):
    spark = spark_factory(Settings(_env_file=None))
    window = Window.parse(text)
    cutoff = 20_000 * DAY_MS // 7 // FINEST_HOP_MS * FINEST_HOP_MS
    rng = random.Random(text)
    times = [cutoff - rng.randrange(0, 120 * DAY_MS) for _ in range(300)] + [cutoff, cutoff - 1]
    frame = spark.createDataFrame([(t,) for t in times], "event_time BIGINT")
    rows = frame.selectExpr(
        "event_time", f"{bucket_sql(window, cutoff, DAY_MS, 'event_time')} AS b"
    )
    layout = batch_layout(window, cutoff, DAY_MS)
    for row in rows.collect():
        expected = layout.bucket(row["event_time"], window.hop_ms)
        assert row["b"] == (None if expected is None else str(expected)), row["event_time"]


def test_spark_views_equal_the_local_views_for_every_kind_and_window(spark_factory):
    """Every kind of the catalog over sliding, lifetime and session windows: the batch
    job's partials per (entity, window, bucket) are the ones the shared Python contract
    (feature_core.local_views) computes from the same events, skewed keys and ties at
    one millisecond included."""
    from batch_layer.job import group_irs, to_partial
    from feature_core import local_views
    from tests.feature_core.aggregations import catalog
    from tests.feature_core.aggregations.catalog import close

    windows = ["1h", "1d", "7d", "30d", "lifetime", "session:30m", "session:1d"]
    group = catalog.group(windows)
    spark = spark_factory(Settings(_env_file=None))
    rng = random.Random(3)
    cutoff = 19_000 * DAY_MS
    rows = []
    for i in range(500):
        time = cutoff - rng.choice([rng.randrange(0, 40 * DAY_MS), rng.randrange(0, 3 * 3600_000)])
        rows.append(
            (
                rng.choice(["hot"] * 5 + ["u1", "u2", "u3"]),
                time - time % rng.choice([1, 60_000]),  # many ties at one millisecond
                rng.choice([None, rng.uniform(-50, 50), 1e9 + rng.random()]),
                rng.choice([None, rng.randrange(-5, 6)]),
                rng.choice([None, *catalog.LABELS, "\U0001f600", "\uffff"]),
                rng.choice([None, True, False]),
                rng.choice([None, "red", "green", "blue"]),
                0,
                i,
            )
        )
    frame = spark.createDataFrame(rows, catalog.SOURCE.spark_ddl())
    got: dict[str, dict[str, dict[str, list]]] = {}
    for row in group_irs(frame, group, cutoff, DAY_MS).collect():
        for item in row["buckets"]:
            partials = [
                to_partial(p, r) for p, r in zip(group.primitives, item["partials"], strict=True)
            ]
            doc = got.setdefault(row["__k0"], {}).setdefault(item["window"], {})
            doc[item["bucket"]] = batch_partials(partials, group.batch_columns[item["window"]])
    names = [*catalog.SOURCE.columns, "kafka_partition", "kafka_offset"]
    events = [dict(zip(names, raw, strict=True)) for raw in rows]
    for entity in {e["k"] for e in events}:
        want = local_views.batch_doc(group, [e for e in events if e["k"] == entity], cutoff, DAY_MS)
        assert set(got[entity]) == set(want), entity
        for window, buckets in want.items():
            assert set(got[entity][window]) == set(buckets), (entity, window)
            for bucket, partials in buckets.items():
                have = got[entity][window][bucket]
                for column, a, b in zip(group.tile_columns, have, partials, strict=True):
                    assert close(a, b), (entity, window, bucket, column.key, a, b)


def test_filter_values_with_backslashes_and_quotes_match_as_in_python(spark_factory):
    from batch_layer.job import group_irs
    from feature_core.definitions import Aggregation, Entity, FeatureGroup
    from feature_core.sources import EventSource, Field

    source = EventSource(
        "files",
        event_time="t",
        fields=[
            Field("owner", "string", required=True),
            Field("path", "string", required=True),
            Field("t", "timestamp", required=True),
        ],
    )
    odd = ["C:\\tmp", "it's", "x\\"]
    group = FeatureGroup(
        "g", Entity("owner", "owner"), source, [Aggregation("count")], filter={"path": odd}
    )
    cutoff = 19_000 * DAY_MS
    rows = [("o", p, cutoff - 1000 - i, 0, i) for i, p in enumerate([*odd, "C:\tmp", "x"])]
    frame = spark_factory(Settings(_env_file=None)).createDataFrame(rows, source.spark_ddl())
    (row,) = group_irs(frame, group, cutoff, DAY_MS).collect()
    (bucket,) = row["buckets"]
    kept = [r for r in rows if group.accepts(dict(zip(["owner", "path", "t"], r, strict=False)))]
    assert len(kept) == 3 and bucket["partials"][0] == len(kept)
