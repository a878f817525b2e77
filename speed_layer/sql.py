"""Flink SQL compiled from the feature definitions (pure strings, testable without Flink)."""

from __future__ import annotations

from feature_core.definitions import FeatureGroup
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


def all_native(group: FeatureGroup) -> bool:
    """True if Flink SQL computes every tile column natively (else a Python UDAF does)."""
    return all(c.primitive.native for c in group.tile_columns)


def udaf_columns(group: FeatureGroup) -> list[str]:
    """Event columns the group's Python aggregate takes after the event time, in order."""
    return sorted({c.column for c in group.tile_columns if c.column})


def udaf_name(group: FeatureGroup) -> str:
    return f"lfp_tile_{group.name}"


def tile_query(group: FeatureGroup, parsed: str = "parsed") -> str:
    """Per (entity, 5-minute tile): the group's primitive partials and its latest event.

    Native groups yield one column per partial; others one JSON column (``partials``)
    from the group's Python aggregate (:mod:`speed_layer.udaf`).
    """
    key = f"CAST({group.entity.join_key} AS STRING)"
    time_column = group.source.event_time_column
    tile = f"({time_column} / {SPEED_TILE_MS}) * {SPEED_TILE_MS}"
    if all_native(group):
        partials = ",\n  ".join(
            f"CAST({c.sql()} AS DOUBLE) AS p{i}" for i, c in enumerate(group.tile_columns)
        )
    else:
        args = ", ".join([time_column, *udaf_columns(group)])
        partials = f"{udaf_name(group)}({args}) AS partials"
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
