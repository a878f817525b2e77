"""Flink SQL compiled from the feature definitions (pure strings, testable without Flink)."""

from __future__ import annotations

from feature_core.definitions import FeatureGroup, TileColumn
from feature_core.settings import Settings
from feature_core.windows import SPEED_TILE_MS

#: Columns the parsing UDTF emits, in order, with their Flink SQL types.
PARSED_COLUMNS: tuple[tuple[str, str], ...] = (
    ("status", "STRING"),  # ok | late | invalid
    ("event_id", "STRING"),
    ("user_id", "STRING"),
    ("event_type", "STRING"),
    ("event_time", "BIGINT"),
    ("item_id", "STRING"),
    ("category", "STRING"),
    ("amount", "DOUBLE"),
)


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def source_ddl(settings: Settings, table: str = "raw_events") -> str:
    """Kafka source reading raw bytes; parsing happens in the shared Python validator."""
    options = {
        "connector": "kafka",
        "topic": settings.events_topic,
        "properties.bootstrap.servers": settings.kafka_bootstrap_servers,
        "properties.group.id": "lfp-speed",
        # Tansu reports the last stable offset short of the log end; uncommitted reads
        # are what a plain producer writes anyway (no transactions on this topic).
        "properties.isolation.level": "read_uncommitted",
        "scan.startup.mode": "earliest-offset",
        "format": "raw",
    }
    with_clause = ",\n  ".join(f"{_quote(k)} = {_quote(v)}" for k, v in options.items())
    return f"CREATE TABLE {table} (`value` BYTES) WITH (\n  {with_clause}\n)"


def partial_sql(column: TileColumn, time_column: str) -> str:
    """Flink SQL for one tile column: native aggregate, or natively collected pairs/values.

    Non-native partials (last, last_k, hll) are collected per tile with ``ARRAY_AGG`` and
    reduced once per emitted update by the shared algebra (``Primitive.from_pairs``) in the
    Redis writer, so no Python runs per event.
    """
    primitive, col = column.primitive, column.column
    if primitive.native:
        return f"CAST({primitive.sql(col)} AS DOUBLE)"
    if primitive.kind == "last" and col == time_column:
        # The latest event time is its own value: a native MAX, no pairs to collect.
        return f"MAX({time_column}) FILTER (WHERE {col} IS NOT NULL)"
    if primitive.kind in ("last", "last_k"):
        return f"ARRAY_AGG(ROW({time_column}, {col})) FILTER (WHERE {col} IS NOT NULL)"
    if primitive.kind == "hll":
        return f"ARRAY_AGG(DISTINCT CAST({col} AS STRING)) FILTER (WHERE {col} IS NOT NULL)"
    raise ValueError(f"no Flink form for {primitive.kind}")


def tile_query(group: FeatureGroup, parsed: str = "parsed") -> str:
    """Per (entity, 5-minute tile): one raw partial per tile column, and the latest event."""
    key = f"CAST({group.entity.join_key} AS STRING)"
    time_column = group.source.event_time_column
    tile = f"({time_column} / {SPEED_TILE_MS}) * {SPEED_TILE_MS}"
    partials = ",\n  ".join(
        f"{partial_sql(c, time_column)} AS p{i}" for i, c in enumerate(group.tile_columns)
    )
    return (
        f"SELECT {key} AS entity, {tile} AS tile,\n  {partials},\n"
        f"  MAX({time_column}) AS max_event_time\n"
        f"FROM {parsed}\n"
        f"WHERE status = 'ok' AND {group.entity.join_key} IS NOT NULL AND {group.filter_sql()}\n"
        f"GROUP BY {key}, {tile}"
    )


def stats_query(parsed: str = "parsed") -> str:
    return (
        f"SELECT status, COUNT(*) AS events, MAX(event_time) AS max_event_time "
        f"FROM {parsed} GROUP BY status"
    )
