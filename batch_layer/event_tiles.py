"""A group's hop tiles computed from raw events in Spark: the engine form of
:func:`feature_core.tiles.event_tiles`, in the row shape of the tile table
(:data:`batch_layer.tiles.TILE_DDL`).

One aggregation per hop series (``5m``, ``1h``, ``1d``), however many windows read it: a
window is assembled from stored tiles later (:func:`feature_core.tiles.assemble_doc`), so
the raw events are grouped once per tile width, not once per window. Each tile column's
partial comes from its primitive's Spark SQL (the same as the batch job's buckets, with the
tile's end as the decay anchor) and is turned into the canonical JSON the Python model and
the speed layer share by the primitive's ``from_spark``, in an Arrow map over the
aggregated rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import orjson
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from batch_layer.arrow_rows import batch_rows
from batch_layer.columns import BUCKET_END, filter_column, key_columns, partial_sql
from batch_layer.tiles import GROUP, SESSION_COLUMNS, TILE_DATE, TILE_DDL, TILE_SCHEMA
from feature_core.aggregations import Primitive
from feature_core.definitions import FeatureGroup
from feature_core.keys import entity_id
from feature_core.sources import event_date, quoted
from feature_core.tiles import hop_series, hop_widths


def raw_tiles(
    events: DataFrame,
    group: FeatureGroup,
    cutoff: int,
    floors: Mapping[str, int | None] | None = None,
    only: str | None = None,
) -> DataFrame:
    """Every hop series' tiles of ``events`` before ``cutoff`` that the group reads (its
    filters passed, every join key present), as Spark aggregates them: one row per
    (series, keys, tile start) with each tile column's raw partial in the struct
    ``partials`` (``p0``, ``p1``, ... for the primitives' ``from_spark``) and the event
    count. With ``floors`` (per series, :func:`feature_core.tiles.retention_floor`),
    tiles starting before their series' floor are not computed. With ``only``, that
    series alone (each series scans ``events`` again)."""
    time = quoted(group.event_time)
    keys = [f"__k{i}" for i in range(len(group.join_keys))]
    present = " AND ".join(f"{k} IS NOT NULL" for k in keys)
    selected = (
        events.where(f"{time} < {cutoff}")
        .where(filter_column(group))
        .selectExpr("*", *key_columns(group))
        .where(present)
    )
    partials = [
        F.expr(partial_sql(c, group.event_time)).alias(f"p{i}")
        for i, c in enumerate(group.tile_columns)
    ]
    frames = []
    for width in hop_widths(group):
        series = hop_series(width)
        if only is not None and series != only:
            continue
        tiled = selected.withColumn("__start", F.expr(f"({time} DIV {width}) * {width}"))
        floor = (floors or {}).get(series)
        if floor is not None:
            tiled = tiled.where(F.col("__start") >= floor)
        frames.append(
            tiled.withColumn(BUCKET_END, F.expr(f"__start + {width}"))
            .groupBy(*keys, "__start")
            .agg(F.struct(*partials).alias("partials"), F.count(F.lit(1)).alias("events"))
            .select(
                F.lit(series).alias("series"),
                F.array(*keys).alias("keys"),
                F.col("__start").alias("start"),
                "partials",
                "events",
            )
        )
    union = frames[0]
    for frame in frames[1:]:
        union = union.unionByName(frame)
    return union


def event_tiles(
    events: DataFrame, group: FeatureGroup, cutoff: int, only: str | None = None
) -> DataFrame:
    """:func:`raw_tiles` in the tile table's row shape: each tile's partials as the
    canonical JSON the Python model and the speed layer share.

    The union of the hop series' aggregations has every one's shuffle partitions (24 for
    three series), and each would be a Python task costing ~0.3 s however few its rows
    (an incremental run's new events: 4-5 s per group for 2,000 events). So the
    conversion runs in as many tasks as the session has cores (no shuffle: partitions
    merged as they are)."""
    convert = _canonical(group.name, group.primitives)
    tiles = raw_tiles(events, group, cutoff, only=only)
    cores = events.sparkSession.sparkContext.defaultParallelism
    return tiles.coalesce(cores).mapInArrow(convert, TILE_DDL)


def canonical_partials(primitives: Sequence[Primitive], raw: Mapping[str, Any]) -> list[Any]:
    """A :func:`raw_tiles` row's ``partials`` struct as canonical partials."""
    return [p.from_spark(raw[f"p{i}"]) for i, p in enumerate(primitives)]


def _canonical(group: str, primitives: Sequence[Primitive]):
    """The Arrow map turning Spark's raw aggregates into tile rows (executed on the
    executors: it closes over picklable values only)."""

    def convert(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            rows = batch_rows(batch)
            out: dict[str, list] = {name: [] for name in TILE_SCHEMA.names}
            for row in rows:
                raw = row["partials"]
                partials = canonical_partials(primitives, raw)
                out[GROUP].append(group)
                out[TILE_DATE].append(event_date(row["start"]))  # as sources date events
                out["series"].append(row["series"])
                out["entity"].append(entity_id(row["keys"]))
                out["keys"].append(row["keys"])
                out["start"].append(row["start"])
                out["partials"].append(orjson.dumps(partials).decode())
                out["events"].append(row["events"])
                for name in SESSION_COLUMNS:
                    out[name].append(None)
            yield pa.RecordBatch.from_pydict(out, schema=TILE_SCHEMA)

    return convert
