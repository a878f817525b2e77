"""The Spark compilation of the batch layout and of group filters agrees with the shared
Python definition (documents and tiles: test_assembly.py, test_event_tiles.py)."""

import random

import pytest

from batch_layer.job import bucket_sql
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


def test_filter_values_with_backslashes_and_quotes_match_as_in_python(spark_factory):
    from batch_layer.event_tiles import event_tiles
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
    (tile,) = event_tiles(frame, group, cutoff).where("series = '1d'").collect()
    kept = [r for r in rows if group.accepts(dict(zip(["owner", "path", "t"], r, strict=False)))]
    assert len(kept) == 3 and tile["events"] == len(kept) and tile["partials"] == "[3]"
