"""Lake ingest: Kafka ``events`` -> Delta raw events, exactly once; rejects -> DLQ.

Partitions are assigned manually (no consumer group) and the next offset of each
partition is stored in the same Delta commit as the events read up to it; on start the
ingest seeks to those offsets. Rejected records go to the dead-letter topic, flushed
before the Delta commit that moves past them, so nothing is ever lost.
"""

from __future__ import annotations

import base64
import json
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from tenacity import retry, stop_after_delay, wait_exponential

from batch_layer.lake import append_with_offsets, committed_offsets
from feature_core.events import Event, InvalidEvent, parse_event
from feature_core.settings import Settings
from infra.kafka_admin import KafkaUnavailable, producer, topic_id
from infra.status import write_status

log = logging.getLogger(__name__)


@dataclass
class IngestStats:
    events_written: int = 0
    rejected: int = 0
    commits: int = 0
    next_offsets: dict[int, int] = field(default_factory=dict)
    last_commit_at: float | None = None


def dead_letter(raw: bytes | None, reason: str, topic: str, partition: int, offset: int) -> bytes:
    """The DLQ record: the reason, where the record came from, and the record itself."""
    record: dict[str, Any] = {
        "reason": reason,
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "rejected_at": int(time.time() * 1000),
    }
    if raw is None:
        record["raw"] = None
    else:
        try:
            record["raw"] = raw.decode("utf-8")
        except UnicodeDecodeError:
            record["raw_base64"] = base64.b64encode(raw).decode("ascii")
    return json.dumps(record).encode()


class LakeIngest:
    def __init__(self, settings: Settings, status_path: Path | None = None) -> None:
        self.settings = settings
        self.topic = settings.events_topic
        self.status_path = status_path
        self.stats = IngestStats()
        self._stop = threading.Event()
        self.topic_id = ""

    def stop(self) -> None:
        self._stop.set()

    @retry(stop=stop_after_delay(60), wait=wait_exponential(max=5), reraise=True)
    def _partitions(self, consumer: KafkaConsumer) -> list[int]:
        partitions = consumer.partitions_for_topic(self.topic)
        if not partitions:
            raise KafkaUnavailable(
                f"topic {self.topic!r} not found on {self.settings.kafka_bootstrap_servers}: "
                "create it with `lfp topics create`"
            )
        return sorted(partitions)

    def run(self, until: Callable[[], bool] | None = None) -> IngestStats:
        """Ingest until stopped (SIGTERM/SIGINT, :meth:`stop`, or ``until()`` true)."""
        consumer = KafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.settings.ingest_max_records,
        )
        dlq = producer(self.settings)
        try:
            partitions = self._partitions(consumer)
            self.topic_id = topic_id(self.settings, self.topic)
            assignment = [TopicPartition(self.topic, p) for p in partitions]
            consumer.assign(assignment)
            offsets = committed_offsets(
                self.settings.raw_events_uri, self.topic, self.topic_id, partitions
            )
            for tp in assignment:
                if tp.partition in offsets:
                    consumer.seek(tp, offsets[tp.partition])
                else:
                    consumer.seek_to_beginning(tp)
            self.stats.next_offsets = dict(offsets)
            log.info(
                "lake ingest assigned %s (topic id %s), resuming at %s",
                partitions,
                self.topic_id,
                offsets or "start",
            )
            self._write_status()
            while not self._stop.is_set() and not (until and until()):
                self._one_batch(consumer, dlq)
        finally:
            consumer.close()
            dlq.close()
        return self.stats

    def _one_batch(self, consumer: KafkaConsumer, dlq: Any) -> None:
        deadline = time.monotonic() + self.settings.ingest_poll_ms / 1000
        valid: list[tuple[Event, int, int]] = []
        next_offsets: dict[int, int] = {}
        rejected = 0
        budget = self.settings.ingest_max_records
        while budget > 0 and not self._stop.is_set():
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                break
            polled = consumer.poll(timeout_ms=remaining_ms, max_records=budget)
            now_ms = int(time.time() * 1000)
            for tp, records in polled.items():
                for record in records:
                    budget -= 1
                    next_offsets[tp.partition] = record.offset + 1
                    try:
                        valid.append(
                            (parse_event(record.value, now_ms), tp.partition, record.offset)
                        )
                    except InvalidEvent as error:
                        rejected += 1
                        dlq.send(
                            self.settings.dlq_topic,
                            key=record.key,
                            value=dead_letter(
                                record.value, str(error), tp.topic, tp.partition, record.offset
                            ),
                            headers=[("reason", str(error).encode())],
                        )
        if not next_offsets:
            self._write_status()
            return
        if rejected:
            dlq.flush()
        append_with_offsets(
            self.settings.raw_events_uri, valid, self.topic, self.topic_id, next_offsets
        )
        self.stats.events_written += len(valid)
        self.stats.rejected += rejected
        self.stats.commits += 1
        self.stats.next_offsets.update(next_offsets)
        self.stats.last_commit_at = time.time()
        self._write_status()

    def _write_status(self) -> None:
        write_status(
            self.status_path,
            events_written=self.stats.events_written,
            rejected=self.stats.rejected,
            commits=self.stats.commits,
            next_offsets=self.stats.next_offsets,
            last_commit_at=self.stats.last_commit_at,
        )


def run_forever(settings: Settings, status_path: Path | None = None) -> None:
    ingest = LakeIngest(settings, status_path)
    signal.signal(signal.SIGTERM, lambda *_: ingest.stop())
    signal.signal(signal.SIGINT, lambda *_: ingest.stop())
    ingest.run()
