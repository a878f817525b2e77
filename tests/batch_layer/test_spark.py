"""The batch layer's Spark session settings, as a run's shapes of query see them."""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa
import pytest
from pyspark.sql import functions as F

from feature_core.settings import Settings

pytestmark = pytest.mark.spark


def test_a_small_persisted_result_reaches_python_in_one_task(spark_factory) -> None:
    """A run persists its documents and tiles and hands them to Python writers: for a
    few rows, one task, not one per shuffle partition (8), each ~0.2 s and a connection."""
    spark = spark_factory(Settings(_env_file=None))
    rows = spark.range(3000).selectExpr("CAST(id % 100 AS STRING) AS k", "id AS v")
    tiles = rows.groupBy("k").agg(F.sum("v").alias("s")).repartition("k").sortWithinPartitions("k")

    def same(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        yield from batches

    out = tiles.mapInArrow(same, tiles.schema).persist()
    try:
        tasks = spark.sparkContext.accumulator(0)
        rows_seen = spark.sparkContext.accumulator(0)

        def write(partition: Iterator[object]) -> None:
            tasks.add(1)
            rows_seen.add(sum(1 for _ in partition))

        out.select("k").foreachPartition(write)
        assert rows_seen.value == 100
        assert tasks.value == 1
    finally:
        out.unpersist()
