"""Whole-history batch views computed window by window, without tiles: one Spark
aggregation per window over the snapshot, each entity's document converted in Python.

This is what a run does with ``LFP_BATCH_INCREMENTAL=false``, and for a group whose source
is under ``LFP_BATCH_TILES_MIN_EVENTS``: it keeps no tiles, so every
run costs all history, though one such run costs less than a rebuild of the tiles
(:mod:`batch_layer.assembly`), which converts every tile in Python.
"""

from __future__ import annotations

import orjson
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from batch_layer.columns import BUCKET_END, filter_column, key_columns, partial_sql
from batch_layer.feature_stats import EntitySampler
from batch_layer.task_store import write_task_views
from feature_core.definitions import FeatureGroup, batch_partials
from feature_core.keys import entity_id
from feature_core.settings import Settings
from feature_core.sources import quoted
from feature_core.windows import COLLAPSED, Window, batch_layout


def session_start_column(window: Window) -> str:
    """The column holding each event's entity's current session start (at the cutoff)."""
    return f"__session_{window.gap_ms}"


def bucket_sql(window: Window, cutoff: int, horizon_ms: int, time_column: str) -> str:
    """SQL labelling an event with its batch bucket (see ``BatchLayout.bucket``); a
    session window keeps only the entity's last session, collapsed."""
    time_column = quoted(time_column)
    layout = batch_layout(window, cutoff, horizon_ms)
    beyond = f"WHEN {time_column} >= {cutoff} THEN NULL"
    if window.is_session:
        start = session_start_column(window)
        return f"CASE {beyond} WHEN {time_column} >= {start} THEN '{COLLAPSED}' END"
    if layout.tail_start is None:
        return f"CASE {beyond} ELSE '{COLLAPSED}' END"
    hop = window.hop_ms
    return (
        f"CASE {beyond} WHEN {time_column} < {layout.tail_start} THEN NULL "
        f"WHEN {time_column} >= {layout.collapsed_start} THEN '{COLLAPSED}' "
        f"ELSE CAST(({time_column} DIV {hop}) * {hop} AS STRING) END"
    )


def with_session_starts(events: DataFrame, group: FeatureGroup) -> DataFrame:
    """``events`` with, per session window, the first event time of each entity's last
    session: the latest event that follows a gap of at least the window's gap."""
    time = quoted(group.event_time)
    entity = ", ".join(quoted(k) for k in group.join_keys)
    for window in group.windows:
        if not window.is_session:
            continue
        previous = f"LAG({time}) OVER (PARTITION BY {entity} ORDER BY {time})"
        gap = f"{time} - {previous} >= {window.gap_ms}"
        opens = f"CASE WHEN {previous} IS NULL OR {gap} THEN {time} END"
        events = events.withColumn("__opens", F.expr(opens)).withColumn(
            session_start_column(window),
            F.expr(f"MAX(__opens) OVER (PARTITION BY {entity})"),
        )
    return events.drop("__opens") if "__opens" in events.columns else events


def bucket_end_sql(window: Window, cutoff: int, horizon_ms: int, time_column: str) -> str:
    """SQL of the end of an event's batch bucket: the cutoff for the collapsed part, the
    tile's end for a tail tile (decayed partials are rebased to it)."""
    layout = batch_layout(window, cutoff, horizon_ms)
    if window.is_session or layout.collapsed_start is None:
        return str(cutoff)
    time_column, hop = quoted(time_column), window.hop_ms
    return (
        f"CASE WHEN {time_column} >= {layout.collapsed_start} THEN {cutoff} "
        f"ELSE ({time_column} DIV {hop}) * {hop} + {hop} END"
    )


def group_irs(events: DataFrame, group: FeatureGroup, cutoff: int, horizon_ms: int) -> DataFrame:
    """One row per entity: its keys ``__k0..``, ``buckets`` = [(window, bucket, partials)]."""
    time_column = group.event_time
    keys = [f"__k{i}" for i in range(len(group.join_keys))]
    selected = with_session_starts(
        events.where(f"{quoted(time_column)} < {cutoff}").where(filter_column(group)), group
    )
    partial_columns = [
        F.expr(partial_sql(c, time_column)).alias(f"p{i}") for i, c in enumerate(group.tile_columns)
    ]
    present = " AND ".join(f"{k} IS NOT NULL" for k in keys)
    per_window = []
    for window in group.windows:
        bucketed = selected.selectExpr(
            "*",
            *key_columns(group),
            f"{bucket_sql(window, cutoff, horizon_ms, time_column)} AS __bucket",
            f"{bucket_end_sql(window, cutoff, horizon_ms, time_column)} AS {BUCKET_END}",
        ).where(f"__bucket IS NOT NULL AND {present}")
        aggregated = bucketed.groupBy(*keys, "__bucket").agg(
            F.struct(*partial_columns).alias("partials")
        )
        per_window.append(
            aggregated.select(
                *keys,
                F.lit(window.name).alias("window"),
                F.col("__bucket").alias("bucket"),
                "partials",
            )
        )
    union = per_window[0]
    for frame in per_window[1:]:
        union = union.unionByName(frame)
    return union.groupBy(*keys).agg(
        F.collect_list(F.struct("window", "bucket", "partials")).alias("buckets")
    )


def view_doc(buckets, primitives, columns) -> dict[str, dict[str, list]]:
    """An entity's batch view (window -> bucket -> partials) from its row of
    :func:`group_irs` (``buckets``), as the batch job writes it."""
    doc: dict[str, dict[str, list]] = {}
    for item in buckets:
        partials = [p.from_spark(raw) for p, raw in zip(primitives, item["partials"], strict=True)]
        window = item["window"]
        doc.setdefault(window, {})[item["bucket"]] = batch_partials(partials, columns[window])
    return doc


def write_partition(
    rows,
    settings: Settings,
    version: int,
    serving: int,
    group: str,
    join_keys: int,
    primitives,
    columns,
    counters,
    sampler: EntitySampler | None = None,
) -> None:
    """Write a task's rows of :func:`group_irs` as one group's documents."""
    taken = sampler.task() if sampler is not None else None

    def views():
        for row in rows:
            doc = view_doc(row["buckets"], primitives, columns)
            entity = entity_id([row[f"__k{i}"] for i in range(join_keys)])
            if taken is not None:
                taken.offer(entity, doc)
            yield entity, orjson.dumps(doc)

    write_task_views(settings, version, serving, group, views(), counters)
    if taken is not None:
        taken.publish()
