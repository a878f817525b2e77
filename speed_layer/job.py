"""The PyFlink speed job: each source's Kafka topic -> 5-minute tiles per entity -> Redis.

Every record is parsed as its source's validator decides, so the speed layer accepts
exactly what lake ingest accepts: in the JVM (``lfp.speed.ParseRecord``) for a source
whose rules are declared, except the rare records that parser leaves to the Python
validator (a vectorized Python function, called per batch of records), which parses
every record of any other source.
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
from kafka import KafkaAdminClient, KafkaConsumer
from pyflink.common import Configuration, Types
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.datastream.connectors.base import Sink
from pyflink.java_gateway import get_gateway
from pyflink.table import ChangelogMode, DataTypes, Schema, StreamTableEnvironment
from pyflink.table.udf import udf
from pyflink.util.java_utils import add_jars_to_context_class_loader

from feature_core.definitions import FeatureGroup, FeatureRepo
from feature_core.settings import Settings
from feature_core.sources import EventSource, InvalidRecord
from feature_core.windows import SPEED_TILE_MS, floor_to
from online_store import STORE_ERRORS, open_store
from online_store.base import OnlineStore
from runtime import lag
from runtime.health import HealthReporter
from runtime.kafka import TopicInstances, TopicRecreated, client_options, topic_id
from runtime.kafka import consumer as kafka_consumer
from runtime.status import write_status
from speed_layer.functions import register_sql, udf_jar
from speed_layer.loopback import loopback_jar, use_loopback_lib_dir
from speed_layer.remote import (
    FlinkRest,
    job_family,
    job_name,
    python_operators_jar,
    remote_environment,
    shipped_python,
)
from speed_layer.sink import StatsWriter
from speed_layer.sql import (
    SPEED_GROUP,
    jvm_parsed_query,
    jvm_parsed_view,
    parsed_columns,
    parsed_query,
    parsed_view,
    source_ddl,
    stats_query,
    tile_form,
    tile_key_columns,
    tile_query,
)

log = logging.getLogger(__name__)

#: The exit status of a job that cancelled itself after a Redis restart (the supervisor,
#: or Compose's restart policy, starts it again from empty state).
REDIS_LOSS_EXIT = 75
#: Where the local mini-cluster listens: this machine only.
LOOPBACK = "127.0.0.1"

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
        except InvalidRecord:  # skipped: lake ingest puts it in the dead-letter topic
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
    """The newest complete retained checkpoint or savepoint (one with ``_metadata``)."""
    candidates = [p.parent for p in checkpoint_dir.glob("*/chk-*/_metadata")]
    candidates += [p.parent for p in savepoint_dir(checkpoint_dir).glob("*/_metadata")]
    if not candidates:
        return None
    return max(candidates, key=lambda p: p.joinpath("_metadata").stat().st_mtime)


def savepoint_dir(checkpoint_dir: Path) -> Path:
    """Where a job stopped on a cluster leaves its savepoints (beside its checkpoints)."""
    return checkpoint_dir / "savepoints"


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
    }
    if settings.speed_target != "remote":
        # The mini-cluster's REST API accepts job submissions (code execution) without
        # authentication, and its blob server serves the job's jars: on loopback only
        # (Flink binds both to every interface unless told), the REST API on a random port.
        values |= {
            "rest.bind-port": "0",
            "rest.bind-address": LOOPBACK,
            "rest.address": LOOPBACK,
            "jobmanager.bind-host": LOOPBACK,
            "taskmanager.bind-host": LOOPBACK,
            "taskmanager.host": LOOPBACK,
        }
    else:
        # Submitted over the session cluster's REST endpoint, with the code the workers
        # import; checkpoints must be on storage every TaskManager sees.
        host, port = settings.speed_flink_address.rsplit(":", 1)
        values |= {
            "execution.target": "remote",
            "rest.address": host,
            "rest.port": port,
            "python.files": str(shipped_python(settings).resolve()),
            "python.executable": settings.speed_flink_python or sys.executable,
            "pipeline.name": job_name(settings, checkpoint_dir.name),
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
    settings: Settings, repo: FeatureRepo, checkpoint_dir: Path, group_id: str = SPEED_GROUP
) -> StreamExecutionEnvironment:
    """The speed job's pipeline. ``group_id`` names its Kafka consumer group; a second
    instance (the speed benchmark's) takes its own so the lag reported stays this one's."""
    # On a local mini-cluster PyFlink defaults to "loopback": every Python operator runs in
    # this client process under one GIL. Separate worker processes use all cores.
    os.environ.setdefault("_python_worker_execution_mode", "process")
    jar = udf_jar(settings.data_dir / "jvm")
    if settings.speed_target == "remote":
        # The loopback patch before flink-python: the TaskManagers load both child-first,
        # in this order (speed_layer/loopback.py).
        jars = [jar, loopback_jar(settings.data_dir / "jvm"), python_operators_jar()]
        env = remote_environment(
            settings, flink_configuration(settings, checkpoint_dir, jars), jars
        )
    else:
        config = flink_configuration(settings, checkpoint_dir, [jar])
        env = StreamExecutionEnvironment.get_execution_environment(config)
    # The client builds the tile sinks from the jar's classes too, not only the cluster.
    add_jars_to_context_class_loader([jar.resolve().as_uri()])
    t_env = StreamTableEnvironment.create(env)
    for statement in register_sql():
        t_env.execute_sql(statement)
    lateness_ms = settings.speed_allowed_lateness_s * 1000
    # Only the sources some group reads: a source without groups is the lake's alone.
    for source in speed_sources(repo):
        t_env.execute_sql(source_ddl(settings, source, group_id))
        parser = f"parse_{source.name}"
        t_env.create_temporary_function(parser, make_parser(source, lateness_ms))
        if source.declared_rules:
            # Materialized (as below) so that the JVM parser runs once per record, not
            # once for the records it decides and again for those it leaves to Python.
            jvm_parsed = t_env.to_data_stream(
                t_env.sql_query(jvm_parsed_query(source, lateness_ms))
            )
            t_env.create_temporary_view(jvm_parsed_view(source), t_env.from_data_stream(jvm_parsed))
        # Through a DataStream and back: every query over the view then shares one Kafka
        # reader and one parser. Each query converted on its own (below) would otherwise
        # get its own copy of the source and of the Python parser, and read and parse
        # every record once per feature group.
        parsed = t_env.to_data_stream(t_env.sql_query(parsed_query(source, parser)))
        t_env.create_temporary_view(parsed_view(source), t_env.from_data_stream(parsed))
        stats = t_env.to_changelog_stream(t_env.sql_query(stats_query(source)))
        stats.map(StatsWriter(settings), output_type=Types.INT()).name(f"stats:{source.name}")
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
        # One writer per group: the group's watermark is the newest event time its writer
        # wrote, so a reader that sees the watermark past an event sees that event's tile
        # (parallel writers would each advance it past tiles the other still holds).
        tiles.sink_to(tile_sink(settings, group)).name(f"tiles:{group.name}").set_parallelism(1)
    return env


def tile_sink(settings: Settings, group: FeatureGroup, flush_ms: int = 100) -> Sink:
    """The group's JVM Redis writer (``lfp.speed.TileSink``): no Python on the tiles' way
    to Redis."""
    gateway = get_gateway()
    forms = [tile_form(c, group.event_time, group.source) for c in group.tile_columns]
    kinds = gateway.new_array(gateway.jvm.java.lang.String, len(forms))
    params = gateway.new_array(gateway.jvm.int, len(forms))
    for i, form in enumerate(forms):
        kinds[i] = form.sink_kind
        params[i] = form.param
    store = open_store(settings)
    target = store.tile_target()
    keys = store.keys
    store.close()
    before, after = keys.speed_tiles_affixes(group.name)
    return Sink(
        gateway.jvm.lfp.speed.TileSink(
            target.url,
            target.cluster,
            before,
            after,
            keys.speed_watermark,
            group.name,
            settings.speed_tile_ttl_s,
            len(group.join_keys),
            kinds,
            params,
            flush_ms,
        )
    )


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


class RedisLoss:
    """Tells whether Redis may have lost tiles the job wrote: its data is gone (the epoch
    key the job set at start is missing), or it restarted (its run id changed) without
    keeping every write it acknowledged.

    A restarted Redis that fsyncs its append-only file every second may miss the last
    second's tile writes (``appendfsync always``, the stack's setting, misses none; one
    that lost its data misses them all), and restored job state re-emits only the tiles
    that change after. So the job's checkpoints are only good for the Redis instance they
    were written to: the id seen is kept beside them (``redis-run-id``). The epoch key also
    says whether the tiles are complete (the API answers 503 while they are not)."""

    def __init__(self, settings: Settings, checkpoint_dir: Path, wait_s: float = 60.0) -> None:
        self.store = open_store(settings, timeout_s=2)
        self.seen_file = checkpoint_dir / "redis-run-id"
        self.complete = True
        self.topics: dict[str, str] = {}  # topic -> the instance the tiles come from
        self.gap_before: int | None = None  # see start_over
        deadline = time.monotonic() + wait_s
        self.current = self.run_id()
        while self.current is None and time.monotonic() < deadline:
            time.sleep(1)
            self.current = self.run_id()
        if self.current is None:
            log.warning("Redis (LFP_REDIS_URL) does not answer; the sink will retry")

    def run_id(self) -> str | None:
        return self.store.server_identity()

    def start(self, topics: dict[str, str], now_ms: int, empty_state: bool) -> None:
        """The job starts over ``topics`` (topic -> instance). From empty state, if the
        tiles in Redis came from other instances of them (the broker lost its topics and
        made them again), the new ones lack every event the old held: the tiles before
        the end of the current tile may miss events the lake has, until a batch view with
        a cutoff at or after it serves (the API answers 503 meanwhile; the scheduler runs
        one as soon as its cutoff can pass it). A gap not yet closed is kept."""
        self.topics = dict(topics)
        try:
            before = self.store.speed_epoch() or {}
            pointer = self.store.pointer()
        except STORE_ERRORS:
            return
        gap = before.get("gap_before")
        covered = pointer.cutoff if pointer is not None else None
        if gap is not None and (covered is None or covered < gap):
            self.gap_before = int(gap)
        old = before.get("topics") or {}
        if empty_state and any(old.get(t, i) != i for t, i in topics.items()):
            log.warning(
                "topics %s are new instances: speed tiles may miss events the lake holds "
                "until a batch run covers them",
                sorted(t for t in topics if old.get(t, topics[t]) != topics[t]),
            )
            self.open_gap(now_ms)

    def open_gap(self, now_ms: int) -> None:
        """Mark the tiles before the end of the current tile as possibly missing events
        (see :meth:`start`); the epoch says so at once if Redis answers."""
        end = floor_to(now_ms, SPEED_TILE_MS) + SPEED_TILE_MS
        self.gap_before = max(self.gap_before or 0, end)
        self.remember()

    def since_checkpoints(self) -> bool:
        """At start: the checkpoints were written to another Redis instance, or to one
        that has lost its data since (a restart that kept every acknowledged write, as
        with ``appendfsync always``, lost nothing)."""
        if self.current is None or not self.seen_file.exists():
            return False
        try:
            epoch_kept = self.store.speed_epoch_kept()
            if not epoch_kept:
                return True
            if self.seen_file.read_text().strip() == self.current:
                return False
            return not self.store.keeps_acknowledged_writes()
        except STORE_ERRORS:
            return False

    def remember(self, complete: bool | None = None) -> None:
        """Record the Redis instance written to, and whether its tiles are complete."""
        if complete is not None:
            self.complete = complete
        if self.current is None:
            return
        self.seen_file.write_text(self.current)
        epoch = {
            "redis_run_id": self.current,
            "complete": self.complete,
            "topics": self.topics,
            "gap_before": self.gap_before,
        }
        try:
            self.store.set_speed_epoch(epoch)
        except STORE_ERRORS:
            self.current = None  # set again once Redis answers

    def lost_writes(self) -> bool:
        """While running: Redis answers with another run id, or without the epoch key. If
        so, the epoch says at once that the tiles are not complete."""
        now = self.run_id()
        if now is None:
            return False  # down: the sink retries, nothing is lost yet
        if self.current is None:
            self.current = now
            self.remember()
            return False
        try:
            if self.store.speed_epoch_kept():
                if now == self.current:
                    return False
                if self.store.keeps_acknowledged_writes():
                    # Restarted with every write it acknowledged; the sink sends again the
                    # ones it was not acknowledged: nothing to write again.
                    log.info("Redis restarted with every acknowledged write: tiles kept")
                    self.current = now
                    self.remember()
                    return False
        except STORE_ERRORS:
            return False
        # Said at once, before the job restarts (tens of seconds): a batch view published
        # meanwhile must not serve with tiles Redis no longer has.
        self.current = now
        self.remember(complete=False)
        return True


class Replay:
    """A job started from empty state writes every tile again from the topics' start. Its
    tiles are complete once it has parsed as many records as the topics held when it
    started (its per-status counts), or once its counts stood still for ``idle_s`` (read
    to the end: compacted topics and transaction markers leave gaps in the offsets)."""

    def __init__(self, store: OnlineStore, records: int, idle_s: float = 10.0):
        self.store = store
        self.records = records
        self.idle_s = idle_s
        self._seen, self._since = -1, time.monotonic()
        self._reached = False

    def done(self) -> bool:
        """Called every few seconds: true from the second call that finds the records
        read, so the tiles of the last ones (emitted every ``speed_emit_latency_ms``)
        have been written too."""
        try:
            counts = self.store.speed_stats()
        except STORE_ERRORS:
            return False
        parsed = sum(counts.values())
        if parsed != self._seen:
            self._seen, self._since = parsed, time.monotonic()
        reached = parsed >= self.records or time.monotonic() - self._since > self.idle_s
        done, self._reached = reached and self._reached, reached
        return done


def records_in_topics(settings: Settings, topics: list[str]) -> int:
    """How many records the topics hold now (log end less log start, per partition)."""
    consumer = kafka_consumer(settings)
    try:
        partitions = lag.topic_partitions(consumer, topics)
        starts = consumer.beginning_offsets(partitions)
        return sum(end - starts[tp] for tp, end in lag.log_ends(consumer, partitions).items())
    finally:
        consumer.close()


def drop_checkpoints(checkpoint_dir: Path) -> None:
    """Forget the job's state: the next start reads the topics from their earliest offsets
    and writes every tile again."""
    for path in checkpoint_dir.iterdir():
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)


def run(settings: Settings, repo: FeatureRepo, status_path: Path | None = None) -> None:
    """Submit the job to a local mini-cluster (or the session cluster, remote target) and
    supervise it until SIGTERM. On a cluster, SIGTERM stops the job with a savepoint, and
    a start first stops a job of the same name left running (by a supervisor killed
    before it could): the new job resumes from that savepoint.

    A Redis restart (seen at start or while running) makes the job start over from the
    topics' earliest offsets, so every tile a restarted Redis may have lost is written
    again: while running, the job cancels itself and exits for its supervisor to restart
    it."""
    jvm_temp_dir(settings)
    # Before the gateway JVM starts: its Python workers' gRPC servers stay on loopback.
    use_loopback_lib_dir(settings.data_dir / "jvm")

    instances = {s.topic_name: topic_id(settings, s.topic_name) for s in speed_sources(repo)}
    checkpoint_dir = settings.data_dir / "flink-checkpoints" / job_fingerprint(repo, instances)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    remote = FlinkRest(settings.speed_flink_address) if settings.speed_target == "remote" else None
    if remote is not None:
        remote.stop_leftovers(
            job_family(settings),
            job_name(settings, checkpoint_dir.name),
            savepoint_dir(checkpoint_dir),
        )
    redis_loss = RedisLoss(settings, checkpoint_dir)
    # Its start counts in the restarts /readyz sees, wherever this process runs.
    health = HealthReporter(
        redis_loss.store, "speed-job", settings.consumer_lag_window_s, STORE_ERRORS
    )
    health.started()
    if latest_checkpoint(checkpoint_dir) is not None and redis_loss.since_checkpoints():
        log.warning(
            "Redis restarted since the last checkpoint and may miss tiles: "
            "recomputing every tile from the topics' earliest offsets"
        )
        drop_checkpoints(checkpoint_dir)
    restored = latest_checkpoint(checkpoint_dir)
    topics = list(instances)
    replay: Replay | None = None
    redis_loss.start(instances, int(time.time() * 1000), empty_state=restored is None)
    if restored is None:
        # The job counts its records per status from zero: drop the counts of an earlier
        # job that Redis (persistent) still holds, or they would read as this job's.
        redis_loss.store.clear_speed_stats()
        replay = Replay(redis_loss.store, records_in_topics(settings, topics))
        if replay.records:
            log.info("writing every tile again from %d records", replay.records)
    redis_loss.remember(complete=replay is None or not replay.records)
    env = build(settings, repo, checkpoint_dir)
    client = env.execute_async(job_name(settings, checkpoint_dir.name))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    state = "STARTING"
    watch = LagWatch(settings, topics, health=health)
    # Checked on every loop: until it notices, a job over recreated topics reads their
    # records at its old offsets into tiles served as complete.
    topic_instances = TopicInstances(settings, instances, every_s=0)
    try:
        while not stop.wait(2):
            state = str(client.get_job_status().result())
            write_status(
                status_path,
                job_state=state,
                restored_from=str(restored) if restored else None,
                tiles_complete=redis_loss.complete,
                lag=watch.report(),
            )
            if state in ("FAILED", "CANCELED", "FINISHED"):
                log.error("speed job ended: %s", state)
                sys.exit(1)
            if not redis_loss.complete and replay is not None and replay.done():
                log.info("every tile written again: the API serves them")
                redis_loss.remember(complete=True)
            try:
                topic_instances.check()
            except TopicRecreated as error:
                # A new fingerprint at the restart: empty state, the new topics' start.
                # Until then this job may have read the new topics' records at its old
                # offsets into its tiles: they are not complete from now on.
                log.error("%s", error)
                redis_loss.open_gap(int(time.time() * 1000))
                client.cancel().result()
                sys.exit(1)
            if redis_loss.lost_writes():
                log.warning(
                    "Redis restarted or lost its data and may miss tiles: cancelling the "
                    "job to write every tile again from the topics' earliest offsets"
                )
                client.cancel().result()
                drop_checkpoints(checkpoint_dir)
                sys.exit(REDIS_LOSS_EXIT)
        health.stopped()  # on purpose: not a consumer that stopped consuming
        if remote is None:
            client.cancel().result()
        else:
            job_id = str(client.get_job_id())
            saved = remote.stop_with_savepoint(job_id, savepoint_dir(checkpoint_dir))
            log.info("speed job stopped with a savepoint at %s", saved)
    finally:
        if remote is not None:
            remote.close()
        watch.close()
        topic_instances.close()


class LagWatch:
    """The speed job's lag per topic: the log end less the offsets the job committed to
    its consumer group. Flink's Kafka source commits them at each checkpoint, so this
    reads up to one checkpoint interval of records high. Best effort: a broker or Redis
    hiccup only keeps the last figure. With ``health``, each report also goes to the
    job's health record, with the last time the committed offsets moved (a commit)."""

    def __init__(
        self,
        settings: Settings,
        topics: list[str],
        every_s: float = 4.0,
        health: HealthReporter | None = None,
    ) -> None:
        self.settings = settings
        self.topics = topics
        self.every_s = every_s
        self.health = health
        self.last: dict[str, int] = {}
        self.committed_at: float | None = None  # by this process; None: not seen yet
        self._positions: dict | None = None
        self._at = 0.0
        self._clients: tuple[KafkaAdminClient, KafkaConsumer, OnlineStore] | None = None

    def report(self) -> dict[str, int]:
        if time.monotonic() - self._at < self.every_s:
            return self.last
        self._at = time.monotonic()
        try:
            if self._clients is None:
                self._clients = (
                    KafkaAdminClient(**client_options(self.settings)),
                    kafka_consumer(self.settings, enable_auto_commit=False),
                    open_store(self.settings, timeout_s=1),
                )
            admin, consumer, store = self._clients
            partitions = lag.topic_partitions(consumer, self.topics)
            positions = lag.group_positions(admin, SPEED_GROUP)
            if self._positions is not None and positions != self._positions:
                self.committed_at = time.time()
            self._positions = positions
            self.last = lag.behind(lag.log_ends(consumer, partitions), positions)
            store.publish_lag("speed-job", self.last)
        except Exception as error:  # best effort: never let reporting stop the job
            log.warning("lag report skipped: %r", error)
        if self.health is not None:
            self.health.report(self.last, self.committed_at)
        return self.last

    def close(self) -> None:
        if self._clients is not None:
            for one in self._clients:
                one.close()
