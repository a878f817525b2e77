"""Lake ingest: each source's Kafka topic -> its Delta table, exactly once; rejects ->
the source's dead-letter topic.

Partitions are assigned manually (no consumer group) and the next offset of each
partition is stored in the same Delta commit as the events read up to it; on start the
ingest seeks to those offsets. Rejected records go to the dead-letter topic as bounded
envelopes (runtime/dead_letters.py); before the Delta commit that moves past them each is
acknowledged by the broker or spilled (fsync'd) to a local file, so nothing is ever lost.
A batch is bounded by count (LFP_INGEST_MAX_RECORDS) and bytes (LFP_INGEST_MAX_BYTES).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from tenacity import retry, stop_after_delay, wait_exponential

from batch_layer.corrections import CorrectionWriter
from batch_layer.lake import append_with_offsets, committed_offsets, schema_problems
from feature_core.definitions import FeatureGroup
from feature_core.settings import Settings
from feature_core.sources import EventSource, InvalidRecord, Record
from online_store import STORE_ERRORS, open_store
from runtime import lag
from runtime.dead_letters import DeadLetters, Place, Settled, place, read_letters, read_spilled
from runtime.health import HealthReporter
from runtime.kafka import KafkaUnavailable, TopicInstances, producer, topic_id
from runtime.kafka import consumer as kafka_consumer
from runtime.status import write_status

log = logging.getLogger(__name__)


@dataclass
class IngestStats:
    events_written: int = 0
    rejected: int = 0
    commits: int = 0
    # The next offset of each partition as committed to the lake (what lag counts from).
    next_offsets: dict[TopicPartition, int] = field(default_factory=dict)
    lag: dict[str, int] = field(default_factory=dict)  # topic -> records not in the lake
    last_commit_at: float | None = None


class LakeIngest:
    """Every declared source's topic -> that source's lake table, in one consumer.

    Each poll's records are split by topic; each source with records gets one Delta
    commit holding its records and its partitions' next offsets.
    """

    def __init__(
        self,
        settings: Settings,
        sources: Sequence[EventSource],
        status_path: Path | None = None,
        groups: Sequence[FeatureGroup] = (),
    ) -> None:
        """``groups``: the feature groups served online, whose correction tiles of late
        events each commit writes (:mod:`batch_layer.corrections`)."""
        if not sources:
            raise ValueError("lake ingest needs at least one source")
        self.settings = settings
        self.sources = {source.topic_name: source for source in sources}
        self.status_path = status_path
        self.stats = IngestStats()
        self._stop = threading.Event()
        self.topic_ids: dict[str, str] = {}
        self.dlq_ids: dict[str, str] = {}  # dead-letter topic -> its instance id
        self.instances: TopicInstances | None = None
        self.assignment: list[TopicPartition] = []
        self._lag_reported = 0.0
        self._store = open_store(settings, timeout_s=1)
        self.corrections = CorrectionWriter(settings, groups, self._store)
        self._store_identity: str | None = None
        #: Options of the dead-letter producer (tests make it refuse, to exercise the spill).
        self.dead_letter_producer_options: dict[str, Any] = {}

    def stop(self) -> None:
        self._stop.set()

    @retry(stop=stop_after_delay(60), wait=wait_exponential(max=5), reraise=True)
    def _partitions(self, consumer: KafkaConsumer, topic: str) -> list[int]:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise KafkaUnavailable(
                f"topic {topic!r} not found on {self.settings.kafka_bootstrap_servers}: "
                "create it with `lfp topics create`"
            )
        return sorted(partitions)

    def _check_schemas(self) -> None:
        problems = [
            problem
            for source in self.sources.values()
            for problem in schema_problems(self.settings.table_uri(source.table_name), source)
        ]
        if problems:
            raise SchemaMismatch("; ".join(problems))

    def run(self, until: Callable[[], bool] | None = None) -> IngestStats:
        """Ingest until stopped (SIGTERM/SIGINT, :meth:`stop`, or ``until()`` true)."""
        # Its start counts in the restarts /readyz sees, wherever this process runs.
        self._health = HealthReporter(
            self._store, "lake-ingest", self.settings.consumer_lag_window_s, STORE_ERRORS
        )
        self._health.started()
        self._check_schemas()
        consumer = kafka_consumer(
            self.settings,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.settings.ingest_max_records,
            fetch_max_bytes=self.settings.ingest_max_bytes,
            max_partition_fetch_bytes=min(self.settings.ingest_max_bytes, 1024 * 1024),
        )
        dlq = DeadLetters(
            # A send waits for the topic's metadata at most the dead letters' timeout
            # (kafka-python's default is 60 s per send).
            producer(
                self.settings,
                max_block_ms=int(self.settings.dead_letter_timeout_s * 1000),
                **self.dead_letter_producer_options,
            ),
            self.settings.data_dir,
            self.settings.dead_letter_max_bytes,
            self.settings.dead_letter_timeout_s,
        )
        try:
            # Filled as the partitions are found and their lake offsets read.
            self.assignment = assignment = []
            self.stats.next_offsets = resume = {}
            for topic, source in self.sources.items():
                partitions = self._partitions(consumer, topic)
                self.topic_ids[topic] = topic_id(self.settings, topic)
                offsets = committed_offsets(
                    self.settings.table_uri(source.table_name),
                    topic,
                    self.topic_ids[topic],
                    partitions,
                )
                for partition in partitions:
                    tp = TopicPartition(topic, partition)
                    assignment.append(tp)
                    if partition in offsets:
                        resume[tp] = offsets[partition]
                log.info(
                    "lake ingest: %s partitions %s (topic id %s) -> %s, resuming at %s",
                    topic,
                    partitions,
                    self.topic_ids[topic],
                    source.table_name,
                    offsets or "start",
                )
            dlq.already = self._dead_lettered(consumer, resume)
            consumer.assign(assignment)
            for tp in assignment:
                if tp in resume:
                    consumer.seek(tp, resume[tp])
                else:
                    consumer.seek_to_beginning(tp)
            self._write_status()
            self._report_lag(consumer, every_s=0)  # records waiting since the last process
            self.instances = TopicInstances(self.settings, self.topic_ids)
            self._catch_up_corrections()
            while not self._stop.is_set() and not (until and until()):
                self._one_batch(consumer, dlq)
                self._report_lag(consumer)
                # Offsets past a recreated topic's end would skip its first records.
                self.instances.check()
            self._health.stopped()  # on purpose: not a consumer that stopped consuming
        finally:
            consumer.close()
            dlq.close()
            self._store.close()
            if self.instances is not None:
                self.instances.close()
        return self.stats

    def _report_lag(self, consumer: KafkaConsumer, every_s: float = 2.0) -> None:
        """Records in the topics not yet in the lake, per topic: to the status file and
        online store, with the health record (last commit, lag samples). Best effort: a
        broker or store hiccup only delays the next report."""
        if time.monotonic() - self._lag_reported < every_s:
            return
        self._lag_reported = time.monotonic()
        try:
            ends = lag.log_ends(consumer, self.assignment)
            self.stats.lag = lag.behind(ends, self.stats.next_offsets)
            self._store.publish_lag("lake-ingest", self.stats.lag)
        except (KafkaError, *STORE_ERRORS) as error:
            log.debug("lag report skipped: %r", error)
        self._health.report(self.stats.lag, self.stats.last_commit_at)
        self.corrections.retire()
        identity = self._store.server_identity()
        if identity is not None and identity != self._store_identity:
            # A restarted Redis may have lost the last writes: check the written marks.
            self._catch_up_corrections()
            self._store_identity = identity

    def _catch_up_corrections(self) -> None:
        for source in self.sources.values():
            self.corrections.catch_up(source)

    def _one_batch(self, consumer: KafkaConsumer, dlq: DeadLetters) -> None:
        deadline = time.monotonic() + self.settings.ingest_poll_ms / 1000
        valid: dict[str, list[tuple[Record, int, int]]] = defaultdict(list)
        next_offsets: dict[str, dict[int, int]] = defaultdict(dict)
        rejected = 0
        budget = self.settings.ingest_max_records
        max_bytes, taken_bytes, full = self.settings.ingest_max_bytes, 0, False
        while budget > 0 and not full and not self._stop.is_set():
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                break
            polled = consumer.poll(timeout_ms=remaining_ms, max_records=budget)
            now_ms = int(time.time() * 1000)
            for tp, records in polled.items():
                source = self.sources[tp.topic]
                for record in records:
                    size = len(record.value or b"") + len(record.key or b"")
                    if full or (taken_bytes and taken_bytes + size > max_bytes):
                        full = True  # this record and the rest are the next batch's: read again
                        consumer.seek(tp, record.offset)
                        break
                    taken_bytes += size
                    budget -= 1
                    next_offsets[tp.topic][tp.partition] = record.offset + 1
                    try:
                        valid[tp.topic].append(
                            (source.parse(record.value, now_ms), tp.partition, record.offset)
                        )
                    except InvalidRecord as error:
                        rejected += 1
                        dlq.reject(
                            source.dlq_topic,
                            record.value,
                            str(error),
                            tp.topic,
                            tp.partition,
                            record.offset,
                            record.key,
                            self.topic_ids[tp.topic],
                        )
        if not next_offsets:
            self._write_status()
            return
        # Nothing is committed past a reject whose dead letter is neither acknowledged by
        # the broker nor spilled to disk (settle raises if the spill file cannot be written).
        settled = dlq.settle()
        # Records of a topic recreated since the start would be committed under the old
        # instance's id, and read again from the new one's start after the restart.
        assert self.instances is not None
        self.instances.check(now=True)
        for topic, offsets in next_offsets.items():
            source = self.sources[topic]
            version = append_with_offsets(
                self.settings.table_uri(source.table_name),
                source,
                valid[topic],
                self.topic_ids[topic],
                offsets,
                self._dead_letter_offsets(source, settled),
            )
            self.corrections.after_commit(source, version, (r for r, _, _ in valid[topic]))
            self.stats.events_written += len(valid[topic])
            self.stats.commits += 1
            self.stats.next_offsets.update(
                {TopicPartition(topic, p): o for p, o in offsets.items()}
            )
        self.stats.rejected += rejected
        self.stats.last_commit_at = time.time()
        self._write_status()

    def _dead_lettered(
        self, consumer: KafkaConsumer, resume: dict[TopicPartition, int]
    ) -> set[Place]:
        """The records at or past the resume points that an earlier process already
        dead-lettered (acknowledged or spilled, then stopped before its Delta commit):
        read from each dead-letter topic since the last commit, and from the spill files."""
        done: set[Place] = set()
        for source in self.sources.values():
            dlq_topic = source.dlq_topic
            try:
                self.dlq_ids[dlq_topic] = topic_id(self.settings, dlq_topic)
            except KafkaUnavailable:
                continue  # no dead-letter topic yet: nothing was sent to it
            partitions = consumer.partitions_for_topic(dlq_topic) or set()
            start = committed_offsets(
                self.settings.table_uri(source.table_name),
                dlq_topic,
                self.dlq_ids[dlq_topic],
                partitions,
            )
            for letter in read_letters(consumer, dlq_topic, start):
                if (where := place(letter, self.topic_ids)) is not None:
                    done.add(where)
            for letter in read_spilled(self.settings.data_dir, dlq_topic):
                if (where := place(letter, self.topic_ids)) is not None:
                    done.add(where)
        return {
            (topic, partition, offset)
            for topic, partition, offset in done
            if offset >= resume.get(TopicPartition(topic, partition), 0)
        }

    def _dead_letter_offsets(
        self, source: EventSource, settled: Settled
    ) -> tuple[str, str, dict[int, int]] | None:
        """The source's dead-letter topic's offsets after this batch's dead letters, to
        commit with its records (see :meth:`_dead_lettered`)."""
        offsets = settled.next_offsets.get(source.dlq_topic)
        dlq_id = self.dlq_ids.get(source.dlq_topic)
        return (source.dlq_topic, dlq_id, offsets) if offsets and dlq_id else None

    def _write_status(self) -> None:
        write_status(
            self.status_path,
            events_written=self.stats.events_written,
            rejected=self.stats.rejected,
            commits=self.stats.commits,
            next_offsets={_label(tp): o for tp, o in self.stats.next_offsets.items()},
            last_commit_at=self.stats.last_commit_at,
            lag=self.stats.lag,
            late_events=asdict(self.corrections.stats),
        )


class SchemaMismatch(RuntimeError):
    """A source's declared fields break its existing lake table (see schema_problems)."""


def _label(tp: TopicPartition) -> str:
    return f"{tp.topic}:{tp.partition}"


def run_forever(
    settings: Settings,
    sources: Sequence[EventSource],
    status_path: Path | None = None,
    groups: Sequence[FeatureGroup] = (),
) -> None:
    ingest = LakeIngest(settings, sources, status_path, groups)
    signal.signal(signal.SIGTERM, lambda *_: ingest.stop())
    signal.signal(signal.SIGINT, lambda *_: ingest.stop())
    ingest.run()
