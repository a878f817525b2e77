"""The PyFlink speed job: each source's Kafka topic -> 5-minute tiles per entity -> Redis.

Every record is parsed by its source's validator (a vectorized Python function, called
per batch of records), so the speed layer accepts exactly what lake ingest accepts.
Tiles are aggregated by generated Flink SQL (a continuous GROUP BY emitting updates
every ``speed_emit_latency_ms``) and upserted whole. State is checkpointed; a restart
restores the latest retained checkpoint (state and Kafka offsets together) instead of
starting empty with committed offsets.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import redis
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from pyflink.common import Configuration, Types
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import ChangelogMode, DataTypes, Schema, StreamTableEnvironment
from pyflink.table.udf import udf

from feature_core.definitions import FeatureRepo
from feature_core.keys import KeySpace
from feature_core.settings import Settings
from feature_core.sources import EventSource, InvalidRecord
from runtime import lag
from runtime.kafka import topic_id
from runtime.status import write_status
from speed_layer.functions import register_sql, udf_jar
from speed_layer.sink import StatsWriter, TileWriter
from speed_layer.sql import (
    SPEED_GROUP,
    parsed_columns,
    parsed_query,
    parsed_view,
    source_ddl,
    stats_query,
    tile_key_columns,
    tile_query,
)

log = logging.getLogger(__name__)

_SQL_TYPES = {
    "STRING": DataTypes.STRING(),
    "BIGINT": DataTypes.BIGINT(),
    "DOUBLE": DataTypes.DOUBLE(),
    "BOOLEAN": DataTypes.BOOLEAN(),
}


def parse_records(
    source: EventSource, raws: Iterable[bytes | None], now_ms: int, allowed_lateness_ms: int
) -> list[list[Any]]:
    """Raw Kafka values -> columns: the status (ok, late or invalid), then each field.

    It calls the source's validator, the one lake ingest calls, so both accept and reject
    the same records.
    """
    names = source.columns
    time_field = source.event_time
    statuses: list[str] = []
    columns: list[list[Any]] = [[] for _ in names]
    for raw in raws:
        try:
            record = source.parse(raw, now_ms)
        except InvalidRecord:
            statuses.append("invalid")
            for column in columns:
                column.append(None)
            continue
        late = record[time_field] < now_ms - allowed_lateness_ms
        statuses.append("late" if late else "ok")
        for column, name in zip(columns, names, strict=True):
            column.append(record[name])
    return [statuses, *columns]


def make_parser(source: EventSource, allowed_lateness_ms: int):
    """A vectorized function: a batch of raw values -> one row each (see parse_records).

    Flink hands Python a batch of records at a time (Arrow), not one row per call: the
    validator runs per record, the crossing between the JVM and Python per batch.
    """
    columns = parsed_columns(source)
    row_type = DataTypes.ROW([DataTypes.FIELD(name, _SQL_TYPES[t]) for name, t in columns])

    @udf(result_type=row_type, func_type="pandas")
    def parse(raws: pd.Series) -> pd.DataFrame:
        parsed = parse_records(source, raws, int(time.time() * 1000), allowed_lateness_ms)
        # Object columns: pandas would turn an integer column with nulls into floats.
        return pd.DataFrame(
            {
                name: pd.Series(values, dtype=object)
                for (name, _), values in zip(columns, parsed, strict=True)
            }
        )

    return parse


def latest_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The newest complete retained checkpoint (one with ``_metadata``), if any."""
    candidates = [p.parent for p in checkpoint_dir.glob("*/chk-*/_metadata")]
    if not candidates:
        return None
    return max(candidates, key=lambda p: (p.stat().st_mtime, int(p.name.split("-")[1])))


def flink_configuration(
    settings: Settings, checkpoint_dir: Path, jars: list[Path]
) -> Configuration:
    config = Configuration()
    values = {
        "pipeline.jars": ";".join(jar.resolve().as_uri() for jar in jars),
        # Thread mode cannot import from a virtual environment (pemja embeds the base
        # interpreter); process mode runs workers with this interpreter.
        "python.execution-mode": "process",
        "python.executable": sys.executable,
        "python.client.executable": sys.executable,
        "parallelism.default": str(settings.speed_parallelism),
        # Processing-time mini-batches: emit tile updates every N ms without waiting for
        # an event-time watermark (which would hold back the freshest events).
        "table.exec.mini-batch.enabled": "true",
        "table.exec.mini-batch.allow-latency": f"{settings.speed_emit_latency_ms} ms",
        "table.exec.mini-batch.size": "5000",
        # Python functions get their records in bundles (Arrow batches for the parser);
        # a bundle closes after this long, so it bounds what waits for Python.
        "python.fn-execution.bundle.time": str(min(settings.speed_emit_latency_ms, 200)),
        "python.fn-execution.arrow.batch.size": "2000",
        # A tile stops receiving events once older than the allowed lateness.
        "table.exec.state.ttl": f"{settings.speed_allowed_lateness_s + 900} s",
        "state.backend.type": settings.speed_state_backend,
        "execution.checkpointing.incremental": "true",
        "execution.checkpointing.interval": f"{settings.speed_checkpoint_interval_s} s",
        "execution.checkpointing.dir": checkpoint_dir.resolve().as_uri(),
        "state.checkpoints.dir": checkpoint_dir.resolve().as_uri(),
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "execution.checkpointing.num-retained": "2",
        "rest.bind-port": "0",
    }
    for key, value in values.items():
        config.set_string(key, value)
    restore = latest_checkpoint(checkpoint_dir)
    if restore is not None:
        log.info("restoring speed job from %s", restore)
        config.set_string("execution.state-recovery.path", restore.resolve().as_uri())
        config.set_string("execution.savepoint.path", restore.resolve().as_uri())
    return config


def build(
    settings: Settings, repo: FeatureRepo, checkpoint_dir: Path
) -> StreamExecutionEnvironment:
    # On a local mini-cluster PyFlink defaults to "loopback": every Python operator runs in
    # this client process under one GIL. Separate worker processes use all cores.
    os.environ.setdefault("_python_worker_execution_mode", "process")
    jar = udf_jar(settings.data_dir / "jvm")
    env = StreamExecutionEnvironment.get_execution_environment(
        flink_configuration(settings, checkpoint_dir, [jar])
    )
    t_env = StreamTableEnvironment.create(env)
    for statement in register_sql():
        t_env.execute_sql(statement)
    lateness_ms = settings.speed_allowed_lateness_s * 1000
    # Only the sources some group reads: a source without groups is the lake's alone.
    for source in speed_sources(repo):
        t_env.execute_sql(source_ddl(settings, source))
        parser = f"parse_{source.name}"
        t_env.create_temporary_function(parser, make_parser(source, lateness_ms))
        # Through a DataStream and back: every query over the view then shares one Kafka
        # reader and one parser. Each query converted on its own (below) would otherwise
        # get its own copy of the source and of the Python parser, and read and parse
        # every record once per feature group.
        parsed = t_env.to_data_stream(t_env.sql_query(parsed_query(source, parser)))
        t_env.create_temporary_view(parsed_view(source), t_env.from_data_stream(parsed))
        stats = t_env.to_changelog_stream(t_env.sql_query(stats_query(source)))
        stats.map(
            StatsWriter(settings.redis_url, settings.key_prefix), output_type=Types.INT()
        ).name(f"stats:{source.name}")
    for group in repo.groups:
        table = t_env.sql_query(tile_query(group))
        # As upserts on (keys, tile): only each tile's new value crosses to Python.
        schema = (
            Schema.new_builder()
            .from_row_data_type(table.get_schema().to_row_data_type())
            .primary_key(*tile_key_columns(group))
            .build()
        )
        tiles = t_env.to_changelog_stream(table, schema, ChangelogMode.upsert())
        writer = TileWriter(
            settings.redis_url,
            settings.key_prefix,
            group.name,
            settings.speed_tile_ttl_s,
            group.primitives,
            len(group.join_keys),
        )
        # One writer per group: the group's watermark is the newest event time its writer
        # wrote, so a reader that sees the watermark past an event sees that event's tile
        # (parallel writers would each advance it past tiles the other still holds).
        tiles.map(writer, output_type=Types.INT()).name(f"tiles:{group.name}").set_parallelism(1)
    return env


def speed_sources(repo: FeatureRepo) -> list[EventSource]:
    """The sources the speed job reads: those of its groups, once each."""
    return list({g.source.name: g.source for g in repo.groups}.values())


def job_fingerprint(repo: FeatureRepo, topic_instances: dict[str, str]) -> str:
    """Names the job's checkpoints. Checkpoints hold Kafka offsets and the state of these
    exact queries: a recreated topic, or a changed definition (a feature or a field
    added), starts from empty state and the topics' earliest offsets, which recomputes
    every tile whole, instead of restoring state that no longer fits."""
    sources = speed_sources(repo)
    parts = [
        *(f"{topic}={instance}" for topic, instance in sorted(topic_instances.items())),
        *(parsed_query(s, f"parse_{s.name}") for s in sources),
        *(repr(s.fields) for s in sources),
        *(tile_query(g) for g in repo.groups),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def jvm_temp_dir(settings: Settings) -> Path | None:
    """Give the mini-cluster's JVM a temp dir of its own, ``<data_dir>/flink-tmp``, emptied
    at each start (call before the JVM starts). Flink's table planner extracts a 43 MB jar
    into the temp dir at every start; a JVM killed before its shutdown hooks ran leaves it
    behind, so the system temp dir filled up by one jar per restart. PyFlink splits
    JVM_ARGS on whitespace: a path with a space keeps the system temp dir (logged)."""
    temp = (settings.data_dir / "flink-tmp").resolve()
    if any(c.isspace() for c in str(temp)):
        log.warning("data dir %s has a space: the Flink JVM keeps the system temp dir", temp)
        return None
    shutil.rmtree(temp, ignore_errors=True)
    temp.mkdir(parents=True)
    os.environ["JVM_ARGS"] = f"{os.environ.get('JVM_ARGS', '')} -Djava.io.tmpdir={temp}".strip()
    return temp


def run(settings: Settings, repo: FeatureRepo, status_path: Path | None = None) -> None:
    """Submit the job to a local mini-cluster and supervise it until SIGTERM."""
    jvm_temp_dir(settings)

    instances = {s.topic_name: topic_id(settings, s.topic_name) for s in speed_sources(repo)}
    checkpoint_dir = settings.data_dir / "flink-checkpoints" / job_fingerprint(repo, instances)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    restored = latest_checkpoint(checkpoint_dir)
    if restored is None:
        # The job counts its records per status from zero: drop the counts of an earlier
        # job that Redis (persistent) still holds, or they would read as this job's.
        redis.Redis.from_url(settings.redis_url).delete(KeySpace(settings.key_prefix).speed_stats)
    env = build(settings, repo, checkpoint_dir)
    client = env.execute_async("lfp-speed")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    state = "STARTING"
    watch = LagWatch(settings, [s.topic_name for s in speed_sources(repo)])
    try:
        while not stop.wait(2):
            state = str(client.get_job_status().result())
            write_status(
                status_path,
                job_state=state,
                restored_from=str(restored) if restored else None,
                lag=watch.report(),
            )
            if state in ("FAILED", "CANCELED", "FINISHED"):
                log.error("speed job ended: %s", state)
                sys.exit(1)
        client.cancel().result()
    finally:
        watch.close()


class LagWatch:
    """The speed job's lag per topic: the log end less the offsets the job committed to
    its consumer group. Flink's Kafka source commits them at each checkpoint, so this
    reads up to one checkpoint interval of records high. Best effort: a broker or Redis
    hiccup only keeps the last figure."""

    def __init__(self, settings: Settings, topics: list[str], every_s: float = 4.0) -> None:
        self.settings = settings
        self.topics = topics
        self.every_s = every_s
        self.last: dict[str, int] = {}
        self._at = 0.0
        self._clients: tuple[KafkaAdminClient, KafkaConsumer, redis.Redis] | None = None

    def report(self) -> dict[str, int]:
        if time.monotonic() - self._at < self.every_s:
            return self.last
        self._at = time.monotonic()
        try:
            if self._clients is None:
                servers = self.settings.kafka_bootstrap_servers
                self._clients = (
                    KafkaAdminClient(bootstrap_servers=servers),
                    KafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False),
                    redis.Redis.from_url(
                        self.settings.redis_url, socket_timeout=1, socket_connect_timeout=1
                    ),
                )
            admin, consumer, client = self._clients
            partitions = [
                TopicPartition(topic, p)
                for topic in self.topics
                for p in consumer.partitions_for_topic(topic) or ()
            ]
            positions = lag.group_positions(admin, SPEED_GROUP)
            self.last = lag.behind(lag.log_ends(consumer, partitions), positions)
            lag.publish(client, self.settings.key_prefix, "speed-job", self.last)
        except Exception as error:  # best effort: never let reporting stop the job
            log.warning("lag report skipped: %r", error)
        return self.last

    def close(self) -> None:
        if self._clients is not None:
            for one in self._clients:
                one.close()
