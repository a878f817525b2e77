"""Point-in-time correct training sets, computed by Spark from the lake.

Each spine row ``(entity key, timestamp[, labels...])`` gets the feature vector the serving
layer returns at that timestamp: for every feature, the events of that entity with event
time in the feature's window ending at the timestamp (``[floor(ts - w, hop), ts)``), never
later ones. Spine rows meet their entity's events in a cogroup, and one sweep per entity
(:mod:`feature_core.sweep`) gives every row's partials from the shared algebra, finalized
as the API finalizes them: offline and online agree by construction and by test, and the
cost is linear in events plus rows, however skewed the keys.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema

from batch_layer.job import filter_column, read_snapshot
from batch_layer.lake import open_table
from feature_core.definitions import Feature, FeatureGroup, FeatureRepo, FeatureService
from feature_core.settings import Settings
from feature_core.sources import FIELD_TYPES, EventSource, quoted
from feature_core.sweep import group_values

ROW_ID = "__row_id"
EVENT_TIME = "__t"
QUERY_TIME = "__ts"


def _value_type(feature: Feature, group: FeatureGroup) -> T.DataType:
    """The Spark type of a feature's values, from its declared result type."""
    name, is_list = feature.value_type(group.source)
    value = T.DataType.fromDDL(FIELD_TYPES[name].sql)
    return T.ArrayType(value) if is_list else value


def _group_vectors(
    spine: DataFrame,
    events: DataFrame,
    group: FeatureGroup,
    wanted: list[str],
    entity_columns: Sequence[str],
    ts_column: str,
) -> DataFrame:
    """One row per spine row: ``__row_id`` and the group's wanted features.

    Spine rows and events meet per entity (a cogroup on the join keys), and each entity's
    rows are answered by one sweep over its events (:mod:`feature_core.sweep`): the work
    is linear in the entity's events plus its rows, so a hot key costs its own size, not
    its events times its rows."""
    by_name = {f.name: f for f in group.features}
    features = [by_name[name] for name in wanted]
    needed = sorted(
        {group.tile_columns[i].column for f in features for i in f.tile_indices} - {None}
    )
    keys = [f"__key{i}" for i in range(len(group.join_keys))]
    present = " AND ".join(f"{quoted(k)} IS NOT NULL" for k in group.join_keys)
    selected = (
        events.where(filter_column(group))
        .where(present)
        .where(F.col(group.event_time).isNotNull())
        .select(
            *(F.col(k).cast("string").alias(keys[i]) for i, k in enumerate(group.join_keys)),
            F.col(group.event_time).cast("long").alias(EVENT_TIME),
            *(F.col(c) for c in needed),
        )
    )
    rows = spine.select(
        ROW_ID,
        *(F.col(c).cast("string").alias(keys[i]) for i, c in enumerate(entity_columns)),
        F.col(ts_column).cast("long").alias(QUERY_TIME),
    )
    schema = T.StructType(
        [T.StructField(ROW_ID, T.LongType())]
        + [T.StructField(f.name, _value_type(f, group)) for f in features]
    )
    sweep = functools.partial(
        _sweep_entity, group=group, wanted=wanted, needed=needed, schema=to_arrow_schema(schema)
    )
    # Only the spine's entities' events go on to the sweep: a sample (lfp verify) costs
    # its entities' events, not the lake's.
    wanted_events = selected.join(rows.select(*keys).distinct(), keys, "left_semi")
    return wanted_events.groupBy(*keys).cogroup(rows.groupBy(*keys)).applyInArrow(sweep, schema)


def _sweep_entity(
    events: pa.Table,
    rows: pa.Table,
    group: FeatureGroup,
    wanted: list[str],
    needed: list[str],
    schema: pa.Schema,
) -> pa.Table:
    """One entity's spine rows answered from its events (one cogroup of the join)."""
    if rows.num_rows == 0:
        return schema.empty_table()
    times = events.column(EVENT_TIME).to_numpy(zero_copy_only=False)
    columns = {c: events.column(c).to_pylist() for c in needed}
    query_times = rows.column(QUERY_TIME).to_numpy()  # never null: see _epoch_ms
    values = group_values(group, wanted, times, columns, query_times)
    data = {ROW_ID: rows.column(ROW_ID)}
    for j, name in enumerate(wanted):
        data[name] = pa.array([row[j] for row in values], type=schema.field(name).type)
    return pa.table(data, schema=schema)


def build_training_set(
    spark: SparkSession,
    settings: Settings,
    repo: FeatureRepo,
    service: FeatureService,
    spine: DataFrame,
    entity_columns: Sequence[str] | None = None,
    timestamp_column: str = "timestamp",
    delta_versions: Mapping[str, int | None] | None = None,
    entities: Collection[Sequence[str]] | None = None,
) -> DataFrame:
    """Spine columns (labels included) + the service's features, in service order.

    ``entity_columns``: the spine's columns holding the entity's join keys, in the
    entity's order (default: columns named as the join keys). Column names are
    ``group__feature``; a service default replaces a missing (null) value.
    ``timestamp_column`` holds epoch milliseconds. Each group reads its source's lake
    table, pinned at ``delta_versions[table]`` when given.

    ``entities`` (join key values as text, in the entity's order) restricts the lake read
    to those entities, for a spine known to hold only them (a verification sample): the
    filter goes into the Parquet scan, and each source's remaining events are read once.
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
            if entities is None:
                events = read_snapshot(spark, settings, source, version)[0]
            else:
                where = _key_values(source, join_keys, entities)
                events = read_snapshot(spark, settings, source, version, where)[0]
                events = _only(events, join_keys, entities).localCheckpoint(eager=True)
            snapshots[source.name] = events
    # Materialized once: every group's vectors are joined back on this id, and a generated
    # id recomputed for each of them (after a lost partition, or a plan Spark evaluates
    # twice) could pair one row's labels with another row's features.
    spine = spine.withColumn(ROW_ID, F.monotonically_increasing_id()).localCheckpoint(eager=True)
    # Checked on the materialized rows, so the spine's file is read once.
    spine = _epoch_ms(spine, timestamp_column)
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


def _key_values(
    source: EventSource, join_keys: Sequence[str], entities: Collection[Sequence[str]]
) -> dict[str, list[Any]] | None:
    """Each key column's wanted values as the lake stores them, for skipping data files
    by their statistics (None when a value cannot be one of the column's, e.g. text for
    an integer key: then no file is skipped, and the rows are filtered anyway)."""
    values = {}
    for i, key in enumerate(join_keys):
        texts = pa.array(sorted({entity[i] for entity in entities}))
        try:
            values[key] = texts.cast(source.lake_schema.field(key).type).to_pylist()
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
    return values


def _only(
    events: DataFrame, join_keys: Sequence[str], entities: Collection[Sequence[str]]
) -> DataFrame:
    """The events of the given entities. Each key column is compared as it is stored
    (text keys need no cast), so Parquet can skip row groups that lack the values; a
    composite key's columns are filtered one by one, and the cogroup pairs them exactly."""
    types = dict(events.dtypes)
    for i, key in enumerate(join_keys):
        column = F.col(key) if types[key] == "string" else F.col(key).cast("string")
        events = events.where(column.isin(sorted({entity[i] for entity in entities})))
    return events


def _epoch_ms(spine: DataFrame, column: str) -> DataFrame:
    """The spine with ``column`` as epoch milliseconds: integers as they are, Spark
    timestamps converted; anything else, or a missing time, is an error (a cast would
    turn it into a row that sees no events: silent zeros)."""
    kind = spine.schema[column].dataType
    if isinstance(kind, T.TimestampType | T.TimestampNTZType):
        spine = spine.withColumn(column, F.unix_millis(F.col(column)))
    elif not isinstance(kind, T.LongType | T.IntegerType | T.ShortType):
        raise ValueError(
            f"spine column {column!r} holds {kind.simpleString()}: give epoch milliseconds "
            "(integers) or timestamps"
        )
    missing = spine.where(F.col(column).isNull()).count()
    if missing:
        raise ValueError(f"{missing} spine rows have no {column!r}: every row needs a time")
    return spine


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
