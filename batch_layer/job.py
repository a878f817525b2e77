"""The batch job: pinned Delta snapshot -> per-entity IRs for event time < B -> Redis.

Compiled from the feature definitions: each window contributes one bucketing expression
(collapsed part or hop tile, see :mod:`feature_core.windows`) and each tile column one
primitive SQL aggregate. The new view is written under a fresh version and the serving
pointer flips only after every key is written; a crash leaves the old view serving.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

import orjson
import redis
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
)

from batch_layer.lake import open_table
from feature_core.aggregations import Primitive
from feature_core.definitions import FeatureGroup, FeatureRepo, TileColumn, batch_partials
from feature_core.keys import KeySpace
from feature_core.merge import BatchPointer
from feature_core.settings import Settings
from feature_core.windows import COLLAPSED, Window, align_cutoff, batch_layout

log = logging.getLogger(__name__)

#: Columns as stored in the data files (``event_date`` lives in partition paths only).
RAW_FILE_SCHEMA = StructType(
    [
        StructField("event_id", StringType()),
        StructField("user_id", StringType()),
        StructField("event_type", StringType()),
        StructField("event_time", LongType()),
        StructField("item_id", StringType()),
        StructField("category", StringType()),
        StructField("amount", DoubleType()),
        StructField("kafka_partition", IntegerType()),
        StructField("kafka_offset", LongType()),
    ]
)


@dataclass(frozen=True)
class BatchResult:
    version: int
    cutoff: int
    delta_version: int | None
    rows_read: int
    entities_written: int
    started_at: float
    finished_at: float
    switched: bool = True
    garbage_collected: int = 0

    def to_json(self) -> dict:
        return asdict(self)


def read_snapshot(
    spark: SparkSession, uri: str, version: int | None
) -> tuple[DataFrame, int | None]:
    """Raw events at a pinned Delta version (latest when ``version`` is None)."""
    table = open_table(uri, version)
    if table is None:
        return spark.createDataFrame([], RAW_FILE_SCHEMA), None
    files = table.file_uris()
    if not files:
        return spark.createDataFrame([], RAW_FILE_SCHEMA), table.version()
    return spark.read.schema(RAW_FILE_SCHEMA).parquet(*files), table.version()


def bucket_sql(window: Window, cutoff: int, horizon_ms: int, time_column: str) -> str:
    """SQL labelling an event with its batch bucket (see ``BatchLayout.bucket``)."""
    layout = batch_layout(window, cutoff, horizon_ms)
    beyond = f"WHEN {time_column} >= {cutoff} THEN NULL"
    if layout.tail_start is None:
        return f"CASE {beyond} ELSE '{COLLAPSED}' END"
    hop = window.hop_ms
    return (
        f"CASE {beyond} WHEN {time_column} < {layout.tail_start} THEN NULL "
        f"WHEN {time_column} >= {layout.collapsed_start} THEN '{COLLAPSED}' "
        f"ELSE CAST(({time_column} DIV {hop}) * {hop} AS STRING) END"
    )


def partial_sql(column: TileColumn, time_column: str) -> str:
    """Spark SQL computing one tile column's partial (raw form; see :func:`to_partial`)."""
    primitive, col = column.primitive, column.column
    if primitive.native:
        return primitive.sql(col)
    pair = f"CASE WHEN {col} IS NOT NULL THEN named_struct('t', {time_column}, 'v', {col}) END"
    if primitive.kind == "last":
        return f"MAX({pair})"  # struct order: time, then value (the algebra's tie rule)
    if primitive.kind == "last_k":
        return f"SLICE(SORT_ARRAY(COLLECT_LIST({pair}), false), 1, {primitive.param})"
    if primitive.kind == "hll":
        return f"COLLECT_SET(CAST({col} AS STRING))"
    raise ValueError(f"no Spark form for {primitive.kind}")


def to_partial(primitive: Primitive, raw: Any) -> Any:
    """Spark's raw aggregate -> the algebra's partial (reduced by the shared code)."""
    if primitive.kind == "last":
        return primitive.from_pairs([] if raw is None else [(raw["t"], raw["v"])])
    if primitive.kind == "last_k":
        return primitive.from_pairs((item["t"], item["v"]) for item in raw or [])
    if primitive.kind == "hll":
        return primitive.from_pairs((0, value) for value in raw or [])
    return primitive.normalize(raw)


def group_irs(events: DataFrame, group: FeatureGroup, cutoff: int, horizon_ms: int) -> DataFrame:
    """One row per entity: ``entity``, ``buckets`` = [(window, bucket, partials)]."""
    time_column = group.source.event_time_column
    selected = events.where(f"{time_column} < {cutoff}").where(group.filter_sql())
    partial_columns = [
        F.expr(partial_sql(c, time_column)).alias(f"p{i}") for i, c in enumerate(group.tile_columns)
    ]
    per_window = []
    for window in group.windows:
        bucketed = selected.selectExpr(
            "*",
            f"CAST({group.entity.join_key} AS STRING) AS __entity",
            f"{bucket_sql(window, cutoff, horizon_ms, time_column)} AS __bucket",
        ).where("__bucket IS NOT NULL AND __entity IS NOT NULL")
        aggregated = bucketed.groupBy("__entity", "__bucket").agg(
            F.struct(*partial_columns).alias("partials")
        )
        per_window.append(
            aggregated.select(
                F.col("__entity").alias("entity"),
                F.lit(window.name).alias("window"),
                F.col("__bucket").alias("bucket"),
                "partials",
            )
        )
    union = per_window[0]
    for frame in per_window[1:]:
        union = union.unionByName(frame)
    return union.groupBy("entity").agg(
        F.collect_list(F.struct("window", "bucket", "partials")).alias("buckets")
    )


def _write_partition(
    rows, redis_url: str, keys: KeySpace, version: int, group: str, primitives, columns, counter
):
    client = redis.Redis.from_url(redis_url)
    pipe = client.pipeline(transaction=False)
    pending = 0
    for row in rows:
        doc: dict[str, dict[str, list]] = {}
        for item in row["buckets"]:
            partials = [
                to_partial(p, raw) for p, raw in zip(primitives, item["partials"], strict=True)
            ]
            window = item["window"]
            doc.setdefault(window, {})[item["bucket"]] = batch_partials(partials, columns[window])
        pipe.set(keys.batch_view(version, group, row["entity"]), orjson.dumps(doc))
        pending += 1
        if pending >= 1000:
            pipe.execute()
            counter.add(pending)
            pending = 0
    if pending:
        pipe.execute()
        counter.add(pending)
    client.close()


def run_batch(
    spark: SparkSession,
    settings: Settings,
    repo: FeatureRepo,
    cutoff_ms: int | None = None,
    delta_version: int | None = None,
) -> BatchResult:
    """Recompute every feature group up to ``cutoff_ms`` and switch serving to it."""
    started = time.time()
    cutoff = align_cutoff(cutoff_ms if cutoff_ms is not None else int(started * 1000))
    horizon = settings.batch_horizon_s * 1000
    keys = KeySpace(settings.key_prefix)
    client = redis.Redis.from_url(settings.redis_url)
    version = int(client.incr(keys.batch_seq))
    events, pinned = read_snapshot(spark, settings.raw_events_uri, delta_version)
    events = events.where(f"event_time < {cutoff}").cache()
    rows_read = events.count()
    written = spark.sparkContext.accumulator(0)
    for group in repo.groups:
        irs = group_irs(events, group, cutoff, horizon)
        irs.foreachPartition(
            functools.partial(
                _write_partition,
                redis_url=settings.redis_url,
                keys=keys,
                version=version,
                group=group.name,
                primitives=group.primitives,
                columns=group.batch_columns,
                counter=written,
            )
        )
    events.unpersist()
    pointer = BatchPointer(version, cutoff, horizon, pinned, int(time.time() * 1000))
    switched = bool(
        client.eval(
            _SWITCH_IF_NEWER, 1, keys.batch_pointer, orjson.dumps(pointer.to_json()), version
        )
    )
    removed = 0
    if switched:
        log.info("batch view v%s serving (cutoff %s, delta v%s)", version, cutoff, pinned)
        removed = collect_garbage(
            client, keys, keep_from=version - settings.batch_keep_versions + 1
        )
    else:
        log.warning("batch view v%s superseded by a newer run; not switching", version)
    client.close()
    return BatchResult(
        version, cutoff, pinned, rows_read, written.value, started, time.time(), switched, removed
    )


#: Flip the pointer only forward: a slow older run never replaces a newer view.
_SWITCH_IF_NEWER = """
local current = redis.call('GET', KEYS[1])
if current and cjson.decode(current)['version'] >= tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""


def collect_garbage(client: redis.Redis, keys: KeySpace, keep_from: int) -> int:
    """Delete batch view keys of versions older than ``keep_from`` (incl. failed runs)."""
    removed = 0
    batch: list[bytes] = []
    prefix = keys.batch_view_root
    for key in client.scan_iter(match=f"{prefix}*", count=1000):
        version_text = key.decode()[len(prefix) :].split(":", 1)[0]
        if version_text.isdigit() and int(version_text) < keep_from:
            batch.append(key)
            if len(batch) >= 1000:
                removed += client.unlink(*batch)
                batch.clear()
    if batch:
        removed += client.unlink(*batch)
    return removed
