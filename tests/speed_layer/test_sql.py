"""Flink SQL generated from the definitions (checked as text; the stack runs it for real)."""

from demo.feature_repo import events, user_activity
from feature_core.settings import Settings
from speed_layer.sql import source_ddl, tile_query


def test_tile_query_aggregates_every_tile_column_in_order():
    sql = tile_query(user_activity)
    assert "CAST(COUNT(*) AS BIGINT) AS p0" in sql
    assert "CAST(SUM(`amount`) AS DOUBLE) AS p1" in sql
    assert (
        "GROUP BY COALESCE(CAST(`user_id` AS STRING), ''), COALESCE("
        "CASE WHEN TO_TIMESTAMP_LTZ(`event_time`, 3) > `_record_time` THEN `event_time`" in sql
    )
    assert "ELSE (`event_time` / 300000) * 300000 END" in sql
    assert "`_status` = 'ok'" in sql


def test_source_reads_raw_bytes_and_record_times_from_the_declared_topic():
    import dataclasses

    ddl = source_ddl(Settings(_env_file=None), dataclasses.replace(events, topic="clicks"))
    assert "'topic' = 'clicks'" in ddl and "'format' = 'raw'" in ddl
    assert "METADATA FROM 'timestamp'" in ddl
    assert "'properties.isolation.level' = 'read_uncommitted'" in ddl


def test_non_native_partials_are_collected_natively_not_in_python():
    from demo.feature_repo import user_browsing

    sql = tile_query(user_browsing)
    # last (k = 1) and last_k keep their k latest pairs in a JVM aggregate per value type.
    assert "lfp_latest_pairs_string(`event_time`, `item_id`, 1)" in sql
    assert "lfp_latest_pairs_string(`event_time`, `category`, 20)" in sql
    # hll keeps its sketch registers (hashing the value as a string), not distinct values.
    assert "lfp_sketch_registers(CAST(`item_id` AS STRING), 10)" in sql


def test_the_sink_reduces_collected_pairs_with_the_shared_algebra():
    from feature_core.aggregations import Primitive, merge_all
    from speed_layer.sink import to_partial

    pairs = [(3, "b"), (1, "a"), (3, "a")]
    last_k = Primitive("last_k", 2)
    assert to_partial(last_k, pairs) == [[3, "b"], [3, "a"]]
    expected = merge_all((Primitive.LAST,), [(Primitive.LAST.lift(v, t),) for t, v in pairs])[0]
    assert to_partial(Primitive.LAST, pairs) == expected == [3, "b"]
    assert to_partial(Primitive("hll", 10), None) is None


def test_last_event_time_is_a_native_max():
    from demo.feature_repo import user_browsing
    from feature_core.aggregations import Primitive
    from speed_layer.sink import to_partial

    assert "MAX(`event_time`) FILTER (WHERE `event_time` IS NOT NULL)" in tile_query(user_browsing)
    assert to_partial(Primitive.LAST, 42) == [42, 42]
    assert to_partial(Primitive.LAST, None) is None


def test_a_field_named_value_does_not_meet_the_raw_record_columns():
    from feature_core.definitions import Aggregation, Entity, FeatureGroup
    from feature_core.sources import EventSource, Field
    from speed_layer.sql import parsed_query

    source = EventSource(
        "readings",
        event_time="timestamp",
        fields=[
            Field("sensor", "string", required=True),
            Field("value", "float"),
            Field("timestamp", "timestamp", required=True),
        ],
    )
    sql = parsed_query(source, "parse_readings")
    assert "parse_readings(`_value`) AS parsed" in sql
    assert "T.parsed.`value` AS `value`, T.parsed.`timestamp` AS `timestamp`" in sql
    group = FeatureGroup(
        "g", Entity("sensor", "sensor"), source, [Aggregation("max", "value"), Aggregation("count")]
    )
    tiles = tile_query(group)
    assert "CAST(MAX(`value`) AS DOUBLE)" in tiles and "CAST(COUNT(*) AS BIGINT)" in tiles


def test_sources_with_declared_rules_are_parsed_in_the_jvm_and_others_in_python():
    from demo.feature_repo import events
    from feature_core.sources import EventSource, Field
    from speed_layer.sql import jvm_parsed_query, jvm_parsed_view, parsed_query, parser_spec

    jvm = parsed_query(events, "parse_events")
    # Only what the JVM parser leaves to Python reaches the Python parser.
    assert f"FROM {jvm_parsed_view(events)} WHERE `_status` = 'python'" in jvm
    assert f"FROM {jvm_parsed_view(events)} WHERE `_status` <> 'python'" in jvm
    assert "lfp_parse_record(R.`_value`, " in jvm_parsed_query(events, 1000)
    assert '"rules":[{"field":"amount","when":"event_type","values":["purchase"]' in parser_spec(
        events, 1000
    )

    def no_refunds(record):
        return "no refunds" if record["kind"] == "refund" else None

    custom = EventSource(
        "payments",
        fields=[Field("kind", "string"), Field("event_time", "timestamp", required=True)],
        rules=[no_refunds],
    )
    python_only = parsed_query(custom, "parse_payments")
    assert "jvm_parsed" not in python_only and "FROM raw_payments) AS T" in python_only
