"""Consumer lag: how many records each consumer of the sources' topics is behind.

Lake ingest and the speed job each publish theirs to the online store (one field per
consumer and topic) every few seconds and to their status files; the API exports it in
``/metrics`` and reports it in ``/readyz``; ``lfp stack status`` shows it. Lag is the
log end offset less the consumer's next offset, summed over a topic's partitions.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import orjson
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

#: A published lag older than this is not reported (its consumer has stopped reporting).
STALE_AFTER_S = 60.0


@dataclass(frozen=True)
class TopicLag:
    consumer: str  # lake-ingest | speed-job
    topic: str
    behind: int  # records not yet consumed (committed, for the speed job)
    at_ms: int  # when it was measured


def behind(ends: Mapping[TopicPartition, int], positions: Mapping[TopicPartition, int]) -> dict:
    """Per topic: records between each partition's position and its log end (a partition
    with no position yet is behind by its whole log)."""
    lag: dict[str, int] = {}
    for tp, end in ends.items():
        lag[tp.topic] = lag.get(tp.topic, 0) + max(end - positions.get(tp, 0), 0)
    return lag


def topic_partitions(consumer: KafkaConsumer, topics: Iterable[str]) -> list[TopicPartition]:
    """Every partition of the topics the broker knows (none for a missing topic)."""
    return [
        TopicPartition(topic, p)
        for topic in topics
        for p in consumer.partitions_for_topic(topic) or ()
    ]


def log_ends(consumer: KafkaConsumer, partitions: Iterable[TopicPartition]) -> dict:
    """The log end offset of each partition."""
    return dict(consumer.end_offsets(list(partitions)))


def group_positions(admin: KafkaAdminClient, group: str) -> dict[TopicPartition, int]:
    """The offsets a consumer group committed (the next record it will read)."""
    committed = admin.list_group_offsets(group).get(group, {})
    return {tp: meta.offset for tp, meta in committed.items() if meta.offset >= 0}


def parse(raw: Mapping[bytes, bytes], now_ms: int | None = None) -> list[TopicLag]:
    """The published lags still fresh (``STALE_AFTER_S``), from the stored hash."""
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    found = []
    for field, value in raw.items():
        consumer, _, topic = field.decode().partition("|")
        data = orjson.loads(value)
        if now_ms - data["at_ms"] <= STALE_AFTER_S * 1000:
            found.append(TopicLag(consumer, topic, int(data["behind"]), int(data["at_ms"])))
    return sorted(found, key=lambda lag: (lag.consumer, lag.topic))
