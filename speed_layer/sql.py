"""Flink SQL compiled from the sources and feature definitions (pure strings, testable
without Flink)."""

from __future__ import annotations

import orjson

from feature_core.aggregations import FlinkColumns, FlinkForm
from feature_core.definitions import FeatureGroup, TileColumn
from feature_core.settings import Settings
from feature_core.sources import MAX_FUTURE_SKEW_MS, EventSource, RequiredWhen, quoted
from feature_core.windows import SPEED_TILE_MS
from runtime.kafka import flink_properties
from speed_layer.functions import PARSE_RECORD

#: Columns the speed job adds to a source's fields (a declared field name starts with a
#: letter, so these never collide with one, even a field called ``value``).
STATUS = "_status"  # ok | late | invalid (and python: for the Python validator to decide)
#: The JVM parser's status for a record it leaves to the Python validator.
TO_PYTHON = "python"
RECORD_TIME = "_record_time"  # the Kafka record's timestamp, TIMESTAMP_LTZ(3)
RAW_VALUE = "_value"  # the Kafka record's value, as bytes
#: The consumer group the job commits its offsets to (at checkpoints): its lag is read there.
SPEED_GROUP = "lfp-speed"


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def raw_table(source: EventSource) -> str:
    return f"raw_{source.name}"


def parsed_view(source: EventSource) -> str:
    return f"parsed_{source.name}"


def parsed_columns(source: EventSource) -> tuple[tuple[str, str], ...]:
    """What the parsing UDTF emits, in order: the status, then every declared field."""
    return ((STATUS, "STRING"), *source.flink_columns())


def source_ddl(settings: Settings, source: EventSource, group_id: str = SPEED_GROUP) -> str:
    """Kafka source reading one source's raw bytes and each record's timestamp; parsing
    happens in the shared Python validator. With SASL it holds the password: print it
    only through :func:`runtime.kafka.redact_flink`."""
    options = {
        "connector": "kafka",
        "topic": source.topic_name,
        "properties.bootstrap.servers": settings.kafka_bootstrap_servers,
        "properties.group.id": group_id,
        # Security protocol, SASL and TLS as every other client (runtime.kafka).
        **flink_properties(settings),
        # Tansu reports the last stable offset short of the log end; uncommitted reads
        # are what a plain producer writes anyway (no transactions on this topic).
        "properties.isolation.level": "read_uncommitted",
        "scan.startup.mode": "earliest-offset",
        "format": "raw",
    }
    with_clause = ",\n  ".join(f"{_quote(k)} = {_quote(v)}" for k, v in options.items())
    return (
        f"CREATE TABLE {raw_table(source)} (\n"
        f"  {quoted(RAW_VALUE)} BYTES,\n"
        f"  {quoted(RECORD_TIME)} TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL\n"
        f") WITH (\n  {with_clause}\n)"
    )


def jvm_parsed_view(source: EventSource) -> str:
    return f"jvm_parsed_{source.name}"


def parser_spec(source: EventSource, allowed_lateness_ms: int) -> str:
    """A source's declaration as the JVM parser (``lfp.speed.ParseRecord``) reads it."""
    fields = [
        {
            "name": f.name,
            "type": f.type,
            "required": f.required,
            "values": None if f.values is None else list(f.values),
            "min": f.min,
            "max": f.max,
            "min_length": f.min_length,
            "max_length": f.max_length,
        }
        for f in source.fields
    ]
    rules = [
        {"field": r.field, "when": r.when, "values": list(r.values), "only": r.only}
        for r in source.rules
        if isinstance(r, RequiredWhen)
    ]
    spec = {
        "fields": fields,
        "rules": rules,
        "event_time": source.event_time,
        "lateness_ms": allowed_lateness_ms,
        "future_skew_ms": MAX_FUTURE_SKEW_MS,
    }
    return orjson.dumps(spec).decode()


def jvm_parsed_query(source: EventSource, allowed_lateness_ms: int) -> str:
    """Every record of a source through the JVM parser: its status and fields, its raw
    value and its timestamp (for a source whose rules are all declared)."""
    spec = _quote(parser_spec(source, allowed_lateness_ms))
    return (
        f"SELECT P.*, R.{quoted(RAW_VALUE)}, R.{quoted(RECORD_TIME)}\n"
        f"FROM {raw_table(source)} AS R, "
        f"LATERAL TABLE({PARSE_RECORD}(R.{quoted(RAW_VALUE)}, {spec})) AS P"
    )


def parsed_query(source: EventSource, parser: str) -> str:
    """Every record of a source with its status and fields, and the record's timestamp.

    A source whose rules are all declared is parsed in the JVM (:func:`jvm_parsed_query`,
    a view by then), and only the records the JVM parser leaves to Python go through the
    Python ``parser``; any other source goes through ``parser`` whole."""
    columns = [quoted(name) for name, _ in parsed_columns(source)]
    record_time = quoted(RECORD_TIME)
    from_python = ", ".join(f"T.parsed.{c} AS {c}" for c in columns)
    inputs = raw_table(source)
    jvm = ""
    if source.declared_rules:
        inputs = f"{jvm_parsed_view(source)} WHERE {quoted(STATUS)} = {_quote(TO_PYTHON)}"
        jvm = (
            f"SELECT {', '.join(columns)}, {record_time} FROM {jvm_parsed_view(source)} "
            f"WHERE {quoted(STATUS)} <> {_quote(TO_PYTHON)}\nUNION ALL\n"
        )
    return (
        f"{jvm}SELECT {from_python}, T.{record_time}\n"
        f"FROM (SELECT {parser}({quoted(RAW_VALUE)}) AS parsed, {record_time} "
        f"FROM {inputs}) AS T"
    )


def tile_form(column: TileColumn, time_column: str, source: EventSource) -> FlinkForm:
    """One tile column's Flink form, from its primitive (native partials keep their
    column's type; the others are JVM aggregates, :mod:`speed_layer.functions`, whose
    emitted value the sink finishes once per update, so no Python runs per event)."""
    name = column.column
    field = source.by_name.get(name or "")
    time = quoted(time_column)
    columns = FlinkColumns(
        value=quoted(name) if name else None,
        sql_type=field.kind.sql if field else None,
        python_type=field.kind.python if field else None,
        is_event_time=name == time_column,
        time=time,
        tile_end=f"({tile_sql(time_column)} + {SPEED_TILE_MS})",
    )
    return column.primitive.flink_form(columns)


def partial_sql(column: TileColumn, time_column: str, source: EventSource) -> str:
    """Flink SQL for one tile column (see :func:`tile_form`)."""
    return tile_form(column, time_column, source).sql


def tile_sql(time_column: str) -> str:
    """The speed tile of an event (see :func:`feature_core.windows.speed_tile_start`): its
    5-minute tile, or its exact time when it is dated after its Kafka record's
    timestamp, so that a query never counts it before its time."""
    time = quoted(time_column)
    # Compared as millisecond instants: Flink casts no TIMESTAMP_LTZ to a number, and a
    # record time cut to whole seconds would key most fresh events by their exact time.
    return (
        f"CASE WHEN TO_TIMESTAMP_LTZ({time}, 3) > {quoted(RECORD_TIME)} THEN {time} "
        f"ELSE ({time} / {SPEED_TILE_MS}) * {SPEED_TILE_MS} END"
    )


def tile_key_columns(group: FeatureGroup) -> list[str]:
    """The columns a tile row is keyed by: the join keys (``k0``...) and ``tile``."""
    return [*(f"k{i}" for i in range(len(group.join_keys))), "tile"]


def tile_query(group: FeatureGroup) -> str:
    """Per (entity, tile): its join keys, one raw partial per tile column, and the latest
    event time. The keys are declared NOT NULL (the WHERE clause already drops null ones,
    so COALESCE never applies): they are the rows' primary key, which lets the job take
    them as upserts, without the retraction Flink otherwise sends before each update."""
    keys = [f"COALESCE(CAST({quoted(k)} AS STRING), '')" for k in group.join_keys]
    key_columns = ", ".join(f"{key} AS k{i}" for i, key in enumerate(keys))
    time_column = group.event_time
    tile = f"COALESCE({tile_sql(time_column)}, 0)"
    partials = ",\n  ".join(
        f"{partial_sql(c, time_column, group.source)} AS p{i}"
        for i, c in enumerate(group.tile_columns)
    )
    present = " AND ".join(f"{quoted(k)} IS NOT NULL" for k in group.join_keys)
    return (
        f"SELECT {key_columns}, {tile} AS tile,\n  {partials},\n"
        f"  MAX({quoted(time_column)}) AS max_event_time\n"
        f"FROM {parsed_view(group.source)}\n"
        f"WHERE {quoted(STATUS)} = 'ok' AND {present} AND {group.filter_sql()}\n"
        f"GROUP BY {', '.join(keys)}, {tile}"
    )


def stats_query(source: EventSource) -> str:
    """Per status: how many of a source's records the speed job saw."""
    return (
        f"SELECT {_quote(source.name)} AS source, {quoted(STATUS)} AS status, "
        f"COUNT(*) AS events, MAX({quoted(source.event_time)}) AS max_event_time "
        f"FROM {parsed_view(source)} GROUP BY {quoted(STATUS)}"
    )
