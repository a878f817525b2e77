"""Point-in-time correct training sets, computed by Spark from the lake.

Each spine row ``(entity key, timestamp[, labels...])`` gets the feature vector the serving
layer returns at that timestamp: for every feature, the events of that entity with event
time in the feature's window ending at the timestamp (``[floor(ts - w, hop), ts)``), never
later ones. The partials come from the same SQL the batch job uses, the values from the
same finalize the API uses, so offline and online agree by construction and by test.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from batch_layer.job import filter_column, partial_of, read_snapshot, to_partial
from batch_layer.lake import open_table
from feature_core.aggregations import AggregationKind, Primitive
from feature_core.definitions import FeatureGroup, FeatureRepo, FeatureService, TileColumn
from feature_core.settings import Settings
from feature_core.sources import quoted
from feature_core.windows import Window

ROW_ID = "__row_id"
_SPARK_TYPES: dict[str, T.DataType] = {
    "count": T.LongType(),
    "sum": T.DoubleType(),
    "mean": T.DoubleType(),
    "approx_count_distinct": T.LongType(),
}


def window_start_sql(window: Window, ts_column: str) -> str | None:
    """SQL of ``Window.start(ts)`` (None for lifetime); timestamps must exceed the window."""
    if window.length_ms is None:
        return None
    return f"(({ts_column} - {window.length_ms}) DIV {window.hop_ms}) * {window.hop_ms}"


def _in_window_sql(column: TileColumn, window: Window, ts: str, time_column: str) -> str:
    """The tile column's partial restricted to one window: other events are nulls."""
    start = window_start_sql(window, ts)
    time = quoted(time_column)
    condition = f"{time} < {ts}" + (f" AND {time} >= {start}" if start else "")
    value = quoted(column.column) if column.column else "1"
    return partial_of(column.primitive, f"(CASE WHEN {condition} THEN {value} END)", time)


def _value_type(kind: AggregationKind, feature_column: str | None, events: DataFrame) -> T.DataType:
    if kind.name in _SPARK_TYPES:
        return _SPARK_TYPES[kind.name]
    column_type = events.schema[feature_column].dataType if feature_column else T.StringType()
    return T.ArrayType(column_type) if kind.name == "last_k" else column_type


def _group_vectors(
    spine: DataFrame,
    events: DataFrame,
    group: FeatureGroup,
    wanted: list[str],
    entity_columns: Sequence[str],
    ts_column: str,
) -> DataFrame:
    """One row per spine row: ``__row_id`` and the group's wanted features."""
    features = [f for f in group.features if f.name in wanted]
    time_column = group.event_time
    present = " AND ".join(f"{quoted(k)} IS NOT NULL" for k in group.join_keys)
    selected = events.where(filter_column(group)).where(present)
    ends = spine.select(
        ROW_ID,
        *(F.col(c).cast("string").alias(f"__key{i}") for i, c in enumerate(entity_columns)),
        F.col(ts_column).alias("__ts"),
    )
    bounded = [not f.window.is_lifetime for f in features]
    condition = F.col(time_column) < F.col("__ts")
    for i, key in enumerate(group.join_keys):
        condition &= F.col(f"__key{i}") == F.col(key).cast("string")
    if all(bounded):
        longest = max(features, key=lambda f: f.window.length_ms or 0).window
        condition &= F.expr(f"{quoted(time_column)} >= {window_start_sql(longest, '__ts')}")
    joined = ends.join(selected, condition, "left")
    aggregates = []
    plan: list[tuple[Any, list[Primitive]]] = []
    for feature in features:
        primitives = []
        for index in feature.tile_indices:
            column = group.tile_columns[index]
            sql = _in_window_sql(column, feature.window, "__ts", time_column)
            aggregates.append(F.expr(sql).alias(f"a{len(aggregates)}"))
            primitives.append(column.primitive)
        plan.append((feature, primitives))
    raw = joined.groupBy(ROW_ID).agg(*aggregates)
    schema = T.StructType(
        [T.StructField(ROW_ID, T.LongType())]
        + [T.StructField(f.name, _value_type(f.aggregation, f.column, events)) for f, _ in plan]
    )
    finalize = functools.partial(_finalize_row, plan=[(f.aggregation, p) for f, p in plan])
    return raw.rdd.map(finalize).toDF(schema)


def _finalize_row(row: Any, plan: list[tuple[AggregationKind, list[Primitive]]]) -> tuple:
    values: list[Any] = [row[ROW_ID]]
    position = 1
    for kind, primitives in plan:
        ir = tuple(to_partial(p, row[position + i]) for i, p in enumerate(primitives))
        position += len(primitives)
        values.append(kind.finalize(ir))
    return tuple(values)


def build_training_set(
    spark: SparkSession,
    settings: Settings,
    repo: FeatureRepo,
    service: FeatureService,
    spine: DataFrame,
    entity_columns: Sequence[str] | None = None,
    timestamp_column: str = "timestamp",
    delta_versions: Mapping[str, int | None] | None = None,
) -> DataFrame:
    """Spine columns (labels included) + the service's features, in service order.

    ``entity_columns``: the spine's columns holding the entity's join keys, in the
    entity's order (default: columns named as the join keys). Column names are
    ``group__feature``; a service default replaces a missing (null) value.
    ``timestamp_column`` holds epoch milliseconds. Each group reads its source's lake
    table, pinned at ``delta_versions[table]`` when given.
    """
    refs = service.references()
    groups = {name: repo.group(name) for name, _ in refs}
    join_keys = next(iter(groups.values())).join_keys
    entity_columns = list(entity_columns or join_keys)
    if len(entity_columns) != len(join_keys):
        raise ValueError(
            f"the entity has join keys {list(join_keys)}: give one spine column for each"
        )
    for column in (*entity_columns, timestamp_column):
        if column not in spine.columns:
            raise ValueError(f"spine has no column {column!r}; it has {spine.columns}")
    snapshots: dict[str, DataFrame] = {}
    for group in groups.values():
        source = group.source
        if source.name not in snapshots:
            version = (delta_versions or {}).get(source.table_name)
            snapshots[source.name] = read_snapshot(spark, settings, source, version)[0]
    # Materialized once: every group's vectors are joined back on this id, and a generated
    # id recomputed for each of them (after a lost partition, or a plan Spark evaluates
    # twice) could pair one row's labels with another row's features.
    spine = spine.withColumn(ROW_ID, F.monotonically_increasing_id()).localCheckpoint(eager=True)
    result = spine
    for name, group in groups.items():
        wanted = [feature for g, feature in refs if g == name]
        events = snapshots[group.source.name]
        vectors = _group_vectors(spine, events, group, wanted, entity_columns, timestamp_column)
        renamed = vectors.select(ROW_ID, *[F.col(f).alias(f"{name}__{f}") for f in wanted])
        result = result.join(renamed, ROW_ID, "left")
    ordered = []
    for group_name, feature in refs:
        column = F.col(f"{group_name}__{feature}")
        default = service.defaults.get(f"{group_name}:{feature}")
        if default is not None:
            column = F.coalesce(column, F.lit(default))
        ordered.append(column.alias(f"{group_name}__{feature}"))
    originals = [c for c in spine.columns if c != ROW_ID]
    return result.orderBy(ROW_ID).select(*originals, *ordered)


def lake_versions(
    settings: Settings,
    repo: FeatureRepo,
    service: FeatureService,
    pins: Mapping[str, int] | None = None,
) -> dict[str, int | None]:
    """Each lake table the service's groups read, at its pinned version or the latest
    now (None: no table yet). Passed back as ``delta_versions``, it makes a build read
    exactly these, so its summary can name them."""
    tables = {repo.group(g).source.table_name for g, _ in service.references()}
    versions: dict[str, int | None] = {}
    for table_name in sorted(tables):
        if pins and table_name in pins:
            versions[table_name] = pins[table_name]
            continue
        table = open_table(settings.table_uri(table_name))
        versions[table_name] = table.version() if table is not None else None
    return versions


def write_training_set(frame: DataFrame, path: str, output_format: str = "parquet") -> int:
    """Parquet through Spark, or a Delta table through delta-rs; the rows written."""
    if output_format == "parquet":
        frame.write.mode("overwrite").parquet(path)
        return frame.sparkSession.read.parquet(path).count()
    if output_format == "delta":
        from deltalake import write_deltalake

        table = frame.toArrow()
        write_deltalake(path, table, mode="overwrite")
        return table.num_rows
    raise ValueError(f"unknown output format {output_format!r}: use parquet or delta")
