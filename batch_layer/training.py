"""Point-in-time correct training sets, computed by Spark from the lake.

Each spine row ``(entity key, timestamp[, labels...])`` gets the feature vector the serving
layer returns at that timestamp: for every feature, the events of that entity with event
time in the feature's window ending at the timestamp (``[floor(ts - w, hop), ts)``), never
later ones. Spine rows meet their entity's events in a cogroup, and one sweep per entity
(:mod:`feature_core.sweep`) gives every row's partials from the shared algebra, finalized
as the API finalizes them: offline and online agree by construction and by test, and the
cost is linear in events plus rows, however skewed the keys.

A service may mix entities (user and item features, say): each group reads its own join
keys from the spine. Derived features (:mod:`feature_core.derived`) are computed from a
row's finalized aggregates, the spine's request context columns and the row's timestamp
as the query time, by the same :class:`~feature_core.derived.DerivedPlan` the serving
layer calls with the API's ``as_of``.
"""

from __future__ import annotations

import csv
import functools
import logging
import os
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema

from batch_layer.columns import filter_column
from batch_layer.feature_stats import record_training_stats, sampled_rows, sampled_table
from batch_layer.job import read_snapshot
from batch_layer.lake import open_table
from feature_core.definitions import Feature, FeatureGroup, FeatureRepo, FeatureService
from feature_core.derived import DerivedPlan, RequestField, ValueType
from feature_core.settings import Settings
from feature_core.sources import FIELD_TYPES, EventSource, FieldType, quoted
from feature_core.sweep import group_values
from online_store import open_store

log = logging.getLogger(__name__)

ROW_ID = "__row_id"
#: Metadata key marking a training set's feature columns: reference, type name, shape.
FEATURE_COLUMN = "lfp_feature"
EVENT_TIME = "__t"
QUERY_TIME = "__ts"


def _value_type(feature: Feature, group: FeatureGroup) -> T.DataType:
    """The Spark type of a feature's values, from its declared result type."""
    return _spark_type(*feature.value_type(group.source))


def _spark_type(name: str, shape: str) -> T.DataType:
    """The Spark type of values of a field type name and shape (an aggregate's result, a
    derived feature's :class:`~feature_core.derived.ValueType`)."""
    value = T.DataType.fromDDL(FIELD_TYPES[name].sql)
    if shape == "list":
        return T.ArrayType(value)
    if shape == "map":  # JSON objects: text keys
        return T.MapType(T.StringType(), value)
    return value


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


#: The spine's columns for the join keys: a mapping join key -> column, or one column per
#: join key in the service's join-key order (a one-entity service's historical form).
EntityColumns = Sequence[str] | Mapping[str, str]


def spine_key_columns(
    join_keys: Sequence[str], entity_columns: EntityColumns | None = None
) -> dict[str, str]:
    """Each join key's spine column: named as the key unless ``entity_columns`` says
    otherwise (a mapping join key -> column, keys it leaves out named as themselves; or a
    list with one column per join key, in order)."""
    if entity_columns is None:
        return {k: k for k in join_keys}
    if isinstance(entity_columns, Mapping):
        unknown = [k for k in entity_columns if k not in join_keys]
        if unknown:
            raise ValueError(
                f"spine columns given for {unknown}, which are not join keys of the service's "
                f"features: its join keys are {list(join_keys)}"
            )
        return {k: entity_columns.get(k, k) for k in join_keys}
    columns = [entity_columns] if isinstance(entity_columns, str) else list(entity_columns)
    if len(columns) != len(join_keys):
        raise ValueError(
            f"the service's features have join keys {list(join_keys)}: give one spine column "
            "for each, in that order (or a mapping join key -> column)"
        )
    return dict(zip(join_keys, columns, strict=True))


class _Features:
    """What a service's training set computes: the aggregates (listed, and those its
    derived features read), and the derived features' plan."""

    def __init__(self, repo: FeatureRepo, service: FeatureService) -> None:
        self.listed = list(service.features)
        derived = repo.derived
        aggregates: dict[str, None] = {}
        inputs: dict[str, None] = {}  # aggregates the derived features read

        def need(reference: str, into: dict[str, None]) -> None:
            if reference in derived:
                for one in derived[reference].inputs:
                    need(one, inputs)
            else:
                into.setdefault(reference)
                aggregates.setdefault(reference)

        for reference in self.listed:
            need(reference, {})
        self.aggregates = list(aggregates)
        self.derived = [r for r in self.listed if r in derived]
        self.plan = DerivedPlan(derived, self.derived, list(inputs)) if self.derived else None
        self.inputs = list(inputs)
        self.request_fields: tuple[RequestField, ...] = (
            self.plan.request_fields if self.plan is not None else ()
        )
        self.value_types: dict[str, ValueType] = {r: derived[r].value_type for r in self.derived}
        self.groups = {
            name: repo.group(name)
            for name in dict.fromkeys(r.partition(":")[0] for r in self.aggregates)
        }
        self.join_keys = repo.join_keys_of(self.listed)

    def readers(self, field_name: str, repo: FeatureRepo) -> list[str]:
        """The listed derived features that read a request field (directly or not)."""
        return [
            r
            for r in self.derived
            if any(f.name == field_name for f in repo.derived[r].request_fields)
        ]


def column_name(reference: str) -> str:
    """A feature's training set column: ``group__feature`` (``view__feature``)."""
    return reference.replace(":", "__", 1)


def build_training_set(
    spark: SparkSession,
    settings: Settings,
    repo: FeatureRepo,
    service: FeatureService,
    spine: DataFrame,
    entity_columns: EntityColumns | None = None,
    timestamp_column: str = "timestamp",
    delta_versions: Mapping[str, int | None] | None = None,
    entities: Collection[Sequence[str]] | None = None,
) -> DataFrame:
    """Spine columns (labels included) + the service's features, in service order.

    The service's features may describe several entities (user and item features, say):
    their join keys are ``repo.join_keys_of(service.features)``, and each group reads its
    own from the spine. ``entity_columns``: the spine column of each join key, as a
    mapping join key -> column, or a list in the join keys' order (default: columns named
    as the join keys). Column names are ``group__feature`` (a derived feature's
    ``view__feature``); a service default replaces a missing (null) value.
    ``timestamp_column`` holds epoch milliseconds. Each group reads its source's lake
    table, pinned at ``delta_versions[table]`` when given.

    Derived features are computed by :class:`~feature_core.derived.DerivedPlan` from the
    row's finalized aggregates (those they read are computed even when the service does
    not list them, and left out of the output), the request fields they need (a spine
    column named as each, typed as the field is declared) and the row's timestamp as the
    query time: what the API serves at that ``as_of`` with that request context.

    ``entities`` (join key values as text, in the join keys' order) restricts the lake
    read to those entities, for a spine known to hold only them (a verification sample):
    the filter goes into the Parquet scan, and each source's remaining events are read
    once per entity type.
    """
    wanted = _Features(repo, service)
    join_keys = wanted.join_keys
    key_columns = spine_key_columns(join_keys, entity_columns)
    for column in (*key_columns.values(), timestamp_column):
        if column not in spine.columns:
            raise ValueError(f"spine has no column {column!r}; it has {spine.columns}")
    for field_ in wanted.request_fields:
        if field_.name not in spine.columns:
            readers = ", ".join(wanted.readers(field_.name, repo))
            raise ValueError(
                f"spine has no column {field_.name!r} for the request field {field_.name} "
                f"({field_.type}) that {readers} read; it has {spine.columns}"
            )
    kinds = repo.join_key_types
    column_types = {key_columns[k]: kinds[k] for k in join_keys}
    key_column_names = set(column_types)
    for field_ in wanted.request_fields:
        kind = FIELD_TYPES[field_.type]
        other = column_types.setdefault(field_.name, kind)
        if other is not kind:
            raise ValueError(
                f"spine column {field_.name!r} is a join key declared {other.name} and the "
                f"request field {field_.name}, declared {field_.type}"
            )
    snapshots: dict[Any, DataFrame] = {}
    for group in wanted.groups.values():
        snapshot = _snapshot_key(group, entities)
        if snapshot not in snapshots:
            source = group.source
            version = (delta_versions or {}).get(source.table_name)
            if entities is None:
                events = read_snapshot(spark, settings, source, version)[0]
            else:
                own = _group_entities(group, join_keys, entities)
                where = _key_values(source, group.join_keys, own)
                events = read_snapshot(spark, settings, source, version, where)[0]
                events = _only(events, group.join_keys, own).localCheckpoint(eager=True)
            snapshots[snapshot] = events
    # Materialized once: every group's vectors are joined back on this id, and a generated
    # id recomputed for each of them (after a lost partition, or a plan Spark evaluates
    # twice) could pair one row's labels with another row's features.
    spine = spine.withColumn(ROW_ID, F.monotonically_increasing_id()).localCheckpoint(eager=True)
    # Checked on the materialized rows, so the spine's file is read once.
    spine = typed_columns(spine, column_types, keys=key_column_names)
    spine = _epoch_ms(spine, timestamp_column)
    result = spine
    for name, group in wanted.groups.items():
        features = [r.partition(":")[2] for r in wanted.aggregates if r.partition(":")[0] == name]
        events = snapshots[_snapshot_key(group, entities)]
        columns = [key_columns[k] for k in group.join_keys]
        vectors = _group_vectors(spine, events, group, features, columns, timestamp_column)
        renamed = vectors.select(ROW_ID, *[F.col(f).alias(f"{name}__{f}") for f in features])
        result = result.join(renamed, ROW_ID, "left")
    if wanted.plan is not None:
        result = _with_derived(result, wanted, timestamp_column)
    ordered = []
    for reference in wanted.listed:
        column = F.col(column_name(reference))
        default = service.defaults.get(reference)
        if default is not None:
            column = F.coalesce(column, F.lit(default))
        type_name, shape = _reference_type(repo, wanted, reference)
        marked = {"reference": reference, "type": type_name, "shape": shape}
        ordered.append(column.alias(column_name(reference), metadata={FEATURE_COLUMN: marked}))
    originals = [c for c in spine.columns if c != ROW_ID]
    return result.orderBy(ROW_ID).select(*originals, *ordered)


def _reference_type(repo: FeatureRepo, wanted: _Features, reference: str) -> tuple[str, str]:
    """A listed feature's declared value type: field type name and shape."""
    if reference in wanted.value_types:
        value_type = wanted.value_types[reference]
        return value_type.name, value_type.shape
    group_name, _, name = reference.partition(":")
    group = repo.group(group_name)
    feature = next(f for f in group.features if f.name == name)
    return feature.value_type(group.source)


def feature_columns(frame: DataFrame) -> dict[str, tuple[str, str, str]]:
    """A training set's feature columns, as :func:`build_training_set` marks them:
    column -> (feature reference, declared type name, shape)."""
    found = {}
    for field_ in frame.schema.fields:
        marked = field_.metadata.get(FEATURE_COLUMN)
        if marked:
            found[field_.name] = (marked["reference"], marked["type"], marked["shape"])
    return found


def _snapshot_key(group: FeatureGroup, entities: Collection[Sequence[str]] | None) -> Any:
    """Which events frame a group reads: its source's, filtered to the wanted entities of
    the group's entity type when ``entities`` are given."""
    return group.source.name if entities is None else (group.source.name, group.join_keys)


def _group_entities(
    group: FeatureGroup, join_keys: Sequence[str], entities: Collection[Sequence[str]]
) -> set[tuple[str, ...]]:
    """The wanted entities of the group's entity type: each entity's values of the group's
    join keys (``entities`` hold the values of all ``join_keys``, in order)."""
    positions = [list(join_keys).index(k) for k in group.join_keys]
    return {tuple(entity[i] for i in positions) for entity in entities}


def _with_derived(result: DataFrame, wanted: _Features, timestamp_column: str) -> DataFrame:
    """``result`` (spine, request field and aggregate columns) with a column per listed
    derived feature, computed row by row by the service's :class:`DerivedPlan`."""
    assert wanted.plan is not None
    added = T.StructType(
        [
            T.StructField(column_name(r), _spark_type(t.name, t.shape))
            for r, t in wanted.value_types.items()
        ]
    )
    inputs = [
        *(column_name(r) for r in wanted.inputs),
        *(f.name for f in wanted.request_fields),
        timestamp_column,
    ]
    derive = functools.partial(
        _derive_batches,
        plan=wanted.plan,
        inputs=inputs,
        positions=[wanted.plan.positions[r] for r in wanted.derived],
        added=to_arrow_schema(added),
    )
    return result.mapInArrow(derive, T.StructType([*result.schema.fields, *added.fields]))


def _derive_batches(
    batches: Iterator[pa.RecordBatch],
    plan: DerivedPlan,
    inputs: list[str],
    positions: list[int],
    added: pa.Schema,
) -> Iterator[pa.RecordBatch]:
    """The rows with their derived values appended: for each row, the plan's row (the
    aggregates it reads, the request fields, the query time) computed, undefined values
    as null."""
    served = DerivedPlan.served
    for batch in batches:
        columns = [_python_values(batch.column(name)) for name in inputs]
        values: list[list[Any]] = [[] for _ in positions]
        for row in zip(*columns, strict=True):
            computed = plan.compute(list(row))
            for out, position in zip(values, positions, strict=True):
                out.append(served(computed[position]))
        arrays = [pa.array(v, type=f.type) for v, f in zip(values, added, strict=True)]
        yield pa.RecordBatch.from_arrays(
            [*batch.columns, *arrays], names=[*batch.schema.names, *added.names]
        )


def _python_values(column: pa.Array) -> list[Any]:
    """A column's values as the serving layer has them: maps as dicts."""
    if pa.types.is_map(column.type):
        return [None if v is None else dict(v) for v in column.to_pylist()]
    return column.to_pylist()


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


#: Text a 64-bit integer may be written as (ASCII digits; the cast catches overflow), as
#: the serving endpoints accept an integer key (feature_core.keys).
_INTEGER_TEXT = r"^[+-]?[0-9]{1,19}$"
_INTEGRAL = (T.LongType, T.IntegerType, T.ShortType, T.ByteType)
_TRUE, _FALSE = ["true", "1", "yes"], ["false", "0", "no"]
_WHAT = {
    "integer": "64-bit integers",
    "timestamp": "epoch milliseconds or ISO-8601 times",
    "float": "numbers",
    "boolean": "true or false",
    "string": "text",
}


def _typed(column: str, dtype: T.DataType, kind: FieldType) -> tuple[Column, Column | None]:
    """``column`` as ``kind``'s Spark type, and (when values can fail) a condition true
    for the rows whose value is not one (never a cast's silent null, nor ANSI's
    exception)."""
    value = F.col(column)
    if kind.name == "string":
        return (value if isinstance(dtype, T.StringType) else value.cast("string")), None
    if not isinstance(dtype, T.StringType):
        if kind.name in ("integer", "timestamp") and isinstance(dtype, _INTEGRAL):
            return value.cast("long"), None
        if kind.name == "timestamp" and isinstance(dtype, T.TimestampType | T.TimestampNTZType):
            return F.unix_millis(value), None
        if kind.name == "float" and isinstance(dtype, T.NumericType):
            return value.cast("double"), None
        if kind.name == "boolean" and isinstance(dtype, T.BooleanType):
            return value, None
        raise ValueError(
            f"spine column {column!r} holds {dtype.simpleString()}, but it is declared {kind.name}"
        )
    text = F.trim(value) if kind.name in ("float", "boolean") else value
    if kind.name == "integer":
        typed = F.when(text.rlike(_INTEGER_TEXT), text.try_cast("long"))
    elif kind.name == "timestamp":  # epoch milliseconds, or ISO-8601 text
        typed = F.when(text.rlike(_INTEGER_TEXT), text.try_cast("long")).otherwise(
            F.unix_millis(F.try_to_timestamp(text))
        )
    elif kind.name == "float":
        typed = text.try_cast("double")
    else:
        lowered = F.lower(text)
        typed = F.when(lowered.isin(_TRUE), True).when(lowered.isin(_FALSE), False)
    return typed, value.isNotNull() & typed.isNull()


def typed_columns(
    spine: DataFrame,
    kinds: Mapping[str, FieldType],
    keys: bool | Collection[str] = False,
    required: Collection[str] = (),
) -> DataFrame:
    """The spine with each column of ``kinds`` in its declared type, checked in one pass:
    a value that is not one (``"abc"`` for an integer, 20 digits for 64 bits) is a
    ValueError naming the column, how many rows and an example. ``keys``: these are join
    keys (True: all of them; else the columns that are), the others request fields (the
    message says which). A row without a value in a ``required`` column is an error too
    (a spine file's row without its entity would silently get no data)."""
    typed: dict[str, Column] = {}
    checks: list[tuple[str, str, Column]] = []
    for column, kind in kinds.items():
        value, bad = _typed(column, spine.schema[column].dataType, kind)
        typed[column] = value
        if keys is True or (keys is not False and column in keys):
            what = f"{_WHAT[kind.name]} (the join key is declared {kind.name})"
        elif keys is not False:
            what = f"{_WHAT[kind.name]} (the request field is declared {kind.name})"
        else:
            what = _WHAT[kind.name]
        if bad is not None:
            checks.append((column, f"are not {what}", bad))
    for column in required:
        checks.append((column, "have no value (every row needs one)", F.col(column).isNull()))
    if checks:
        found = spine.agg(
            *(
                aggregate
                for i, (column, _, bad) in enumerate(checks)
                for aggregate in (
                    F.count(F.when(bad, 1)).alias(f"n{i}"),
                    F.first(F.when(bad, F.col(column)), ignorenulls=True).alias(f"e{i}"),
                )
            )
        ).first()
        for i, (column, problem, _) in enumerate(checks):
            if found and found[f"n{i}"]:
                example = found[f"e{i}"]
                shown = f", e.g. {example!r}" if example is not None else ""
                raise ValueError(f"spine column {column!r}: {found[f'n{i}']} rows {problem}{shown}")
    return spine.withColumns(typed) if typed else spine


def read_spine(
    spark: SparkSession,
    path: Path,
    repo: FeatureRepo,
    service: FeatureService,
    entity_columns: EntityColumns | None = None,
    timestamp_column: str = "timestamp",
    column_types: Mapping[str, str] | None = None,
) -> DataFrame:
    """A spine file, typed as declared, never guessed: join key columns as read (text in
    a CSV: build_training_set types them as their keys are declared, so ``"007"`` stays
    ``"007"`` for a string key and is 7 for an integer one), the timestamp as epoch ms
    (integers, or ISO-8601 text), ``column_types`` (column -> field type) as given, every
    other CSV column as text (request fields too: build_training_set types them as
    declared). A CSV is read with all columns as strings first, so nothing is inferred; a
    value that does not fit is one error naming the column (:func:`typed_columns`)."""
    if path.suffix.lower() == ".csv":
        names = csv_header(path)
        schema = T.StructType([T.StructField(name, T.StringType()) for name in names])
        frame = spark.read.options(header=True, enforceSchema=True).schema(schema).csv(str(path))
    else:
        frame = spark.read.parquet(str(path))
    columns = list(spine_key_columns(repo.join_keys_of(service.features), entity_columns).values())
    declared: dict[str, FieldType] = {}
    for column, kind in (column_types or {}).items():
        if kind not in FIELD_TYPES:
            raise ValueError(f"column type {kind!r} of {column!r}: use {', '.join(FIELD_TYPES)}")
        declared[column] = FIELD_TYPES[kind]
    declared[timestamp_column] = FIELD_TYPES["timestamp"]
    for column in (*columns, *declared):
        if column not in frame.columns:
            raise ValueError(f"spine has no column {column!r}; it has {frame.columns}")
    # The join keys are typed and checked by build_training_set (for any spine frame).
    return typed_columns(frame, declared, required=columns)


def csv_header(path: Path) -> list[str]:
    """A CSV file's column names (its first record), checked: present and distinct."""
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as file:
        names = next(csv.reader(file), [])
    if not names or not all(names):
        raise ValueError(f"{path}: the first line must name every column (a CSV header)")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{path}: columns named twice in the header: {duplicates}")
    return names


def _location(target: str) -> tuple[str, tuple[str, ...]]:
    """A path or URI as (scheme and host, path segments), local paths made absolute with
    symbolic links resolved, for telling whether one location holds another."""
    parts = urlsplit(target)
    if len(parts.scheme) > 1 and parts.scheme != "file":
        return f"{parts.scheme}://{parts.netloc}", tuple(p for p in parts.path.split("/") if p)
    local = parts.path if parts.scheme == "file" else target
    return "file", Path(os.path.expanduser(local)).resolve().parts


def output_conflict(output: str, spine: str, lake_root: str, data_dir: str) -> str | None:
    """Why a training set must not be written to ``output`` (None: it may): the write
    replaces what is there, so it must not be, hold, or sit inside the lake (a table's
    history would be gone), nor be or hold the spine or the data directory."""
    out = _location(output)

    def within(inner: tuple[str, tuple[str, ...]], outer: tuple[str, tuple[str, ...]]) -> bool:
        return inner[0] == outer[0] and inner[1][: len(outer[1])] == outer[1]

    lake = _location(lake_root)
    if within(out, lake):
        return f"{output} is inside the lake ({lake_root}): writing there would replace lake data"
    for name, target in (("the lake", lake_root), ("the spine", spine), ("the data dir", data_dir)):
        if within(_location(target), out):
            return f"{output} is or holds {name} ({target}): writing there would replace it"
    return None


def lake_versions(
    settings: Settings,
    repo: FeatureRepo,
    service: FeatureService,
    pins: Mapping[str, int] | None = None,
) -> dict[str, int | None]:
    """Each lake table the service's groups read, at its pinned version or the latest
    now (None: no table yet). Passed back as ``delta_versions``, it makes a build read
    exactly these, so its summary can name them."""
    tables = {
        repo.group(g).source.table_name
        for reference in service.features
        for g in repo.feature_groups(reference)  # a derived feature's inputs'
    }
    versions: dict[str, int | None] = {}
    for table_name in sorted(tables):
        if pins and table_name in pins:
            versions[table_name] = pins[table_name]
            continue
        table = open_table(settings.table_uri(table_name))
        versions[table_name] = table.version() if table is not None else None
    return versions


def write_training_set(
    frame: DataFrame,
    path: str,
    output_format: str = "parquet",
    settings: Settings | None = None,
    service: str | None = None,
) -> int:
    """Parquet through Spark, or a Delta table through delta-rs; the rows written.

    With ``settings``, the statistics of the feature columns (those
    :func:`build_training_set` marks) over a sample of the rows written are recorded in
    the online store's Journal.TRAINING_STATS: the baseline batch runs measure drift
    against (see :mod:`batch_layer.feature_stats`). Their failure is logged, never the
    build's."""
    if output_format == "parquet":
        frame.write.mode("overwrite").parquet(path)
        written = frame.sparkSession.read.parquet(path)
        rows = written.count()
        if settings is not None and settings.feature_stats_sample:
            _record_stats(settings, frame, path, rows, service, written=written)
        return rows
    if output_format == "delta":
        from deltalake import write_deltalake

        table = frame.toArrow()
        write_deltalake(path, table, mode="overwrite")
        if settings is not None and settings.feature_stats_sample:
            _record_stats(settings, frame, path, table.num_rows, service, table=table)
        return table.num_rows
    raise ValueError(f"unknown output format {output_format!r}: use parquet or delta")


def _record_stats(
    settings: Settings,
    frame: DataFrame,
    path: str,
    rows: int,
    service: str | None,
    written: DataFrame | None = None,
    table: pa.Table | None = None,
) -> None:
    """Record the statistics of a training set written at ``path`` (read back from
    ``written``, or the Arrow ``table`` written) in Journal.TRAINING_STATS."""
    columns = feature_columns(frame)
    if not columns:
        return
    sample = settings.feature_stats_sample
    try:
        if table is not None:
            data = sampled_table(table, list(columns), sample)
        else:
            assert written is not None
            data = sampled_rows(written, list(columns), sample, rows)
        store = open_store(settings)
        try:
            record_training_stats(store, data, columns, path, rows, service)
        finally:
            store.close()
    except Exception:
        log.exception("statistics of the training set %s not recorded; it is written", path)
