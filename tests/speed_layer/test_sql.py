"""Flink SQL generated from the definitions (checked as text; the stack runs it for real)."""

from demo.feature_repo import user_activity
from feature_core.settings import Settings
from speed_layer.sql import source_ddl, tile_query


def test_tile_query_aggregates_every_tile_column_in_order():
    sql = tile_query(user_activity)
    assert "CAST(COUNT(*) AS DOUBLE) AS p0" in sql
    assert "CAST(SUM(amount) AS DOUBLE) AS p1" in sql
    assert "GROUP BY CAST(user_id AS STRING), (event_time / 300000) * 300000" in sql
    assert "status = 'ok'" in sql


def test_source_reads_raw_bytes_from_the_configured_topic():
    ddl = source_ddl(Settings(_env_file=None, events_topic="clicks"))
    assert "'topic' = 'clicks'" in ddl and "'format' = 'raw'" in ddl
    assert "'properties.isolation.level' = 'read_uncommitted'" in ddl
