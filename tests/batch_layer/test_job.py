"""The Spark compilation of the batch layout agrees with the shared Python definition."""

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
