"""Kafka topic administration and client factories (kafka-python)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from feature_core.settings import Settings
from feature_core.sources import EventSource


class KafkaUnavailable(RuntimeError):
    """No broker answered; the message says where we looked and how to fix it."""


def _unavailable(settings: Settings, error: Exception) -> KafkaUnavailable:
    return KafkaUnavailable(
        f"no Kafka broker at {settings.kafka_bootstrap_servers} ({error.__class__.__name__}): "
        "start the stack with `make up` or set LFP_KAFKA_BOOTSTRAP_SERVERS"
    )


def admin_client(settings: Settings, timeout_s: float | None = None) -> KafkaAdminClient:
    deadline = time.monotonic() + (timeout_s or settings.kafka_connect_timeout_s)
    while True:
        try:
            return KafkaAdminClient(
                bootstrap_servers=settings.kafka_bootstrap_servers, request_timeout_ms=10_000
            )
        except (KafkaError, OSError) as error:
            if time.monotonic() > deadline:
                raise _unavailable(settings, error) from None
            time.sleep(0.5)


def ensure_topics(
    settings: Settings, sources: Sequence[EventSource], timeout_s: float | None = None
) -> list[str]:
    """Create each source's topic and dead-letter topic if missing (idempotent); returns
    every topic name wanted."""
    admin = admin_client(settings, timeout_s)
    try:
        existing = set(admin.list_topics())
        wanted = []
        for source in sources:
            wanted.append(NewTopic(source.topic_name, settings.events_partitions, 1))
            wanted.append(NewTopic(source.dlq_topic, 1, 1))
        missing = [t for t in wanted if t.name not in existing]
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(missing)
    finally:
        admin.close()
    return [t.name for t in wanted]


def producer(settings: Settings, **overrides: object) -> KafkaProducer:
    """A producer to the platform's brokers; ``overrides`` replace any default option."""
    options: dict[str, object] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "linger_ms": 5,
        "acks": "all",
        "bootstrap_timeout_ms": int(settings.kafka_connect_timeout_s * 1000),
        **overrides,
    }
    try:
        return KafkaProducer(**options)
    except (KafkaError, OSError) as error:
        raise _unavailable(settings, error) from None


def topic_id(settings: Settings, topic: str) -> str:
    """Kafka's id of the topic *instance* (changes if the topic is deleted and recreated).

    Resume points (lake offsets in Delta, Flink checkpoints) are keyed by it, so offsets
    from an earlier instance (for example a restarted memory-only broker) are never reused.
    """
    admin = admin_client(settings)
    try:
        described = admin.describe_topics([topic])
    finally:
        admin.close()
    if not described or described[0].get("error_code"):
        raise KafkaUnavailable(
            f"topic {topic!r} not found on {settings.kafka_bootstrap_servers}: "
            "create it with `lfp topics create`"
        )
    return _instance_id(described[0])


def _instance_id(described: Mapping[str, Any]) -> str:
    """The topic id of one DescribeTopics entry ("no-id" from a broker that has none)."""
    return str(described.get("topic_id") or "no-id")


class TopicRecreated(KafkaUnavailable):
    """A topic was deleted and created again under a reader: its offsets name records of
    the old instance (a memory-only broker that restarted recreates its topics empty)."""


class TopicInstances:
    """Watches the instance ids of the topics a reader started on (``{topic: id}``), at
    most every ``every_s``; best effort: an unreachable broker is checked again later."""

    def __init__(
        self,
        settings: Settings,
        ids: Mapping[str, str],
        every_s: float = 5.0,
        confirm_s: float = 10.0,
    ) -> None:
        self.settings = settings
        self.ids = dict(ids)
        self.every_s = every_s
        self.confirm_s = confirm_s
        self._checked = time.monotonic()
        self._admin: KafkaAdminClient | None = None

    def check(self, now: bool = False) -> None:
        """:class:`TopicRecreated` naming the topics whose instance changed, if any.

        ``now``: whenever it was last checked, and for sure: a broker that does not answer
        (it may be restarting) is asked again for up to ``confirm_s``, then
        :class:`KafkaUnavailable`, rather than letting the reader go on unchecked."""
        if not now and time.monotonic() - self._checked < self.every_s:
            return
        self._checked = time.monotonic()
        described = self._describe()
        deadline = time.monotonic() + self.confirm_s
        while described is None and now and time.monotonic() < deadline:
            time.sleep(0.5)
            described = self._describe()
        if described is None:
            if now:
                raise KafkaUnavailable(
                    f"cannot confirm the topics {sorted(self.ids)} on "
                    f"{self.settings.kafka_bootstrap_servers}: is the broker running?"
                )
            return
        recreated = [
            d["name"]
            for d in described
            if not d.get("error_code") and _instance_id(d) != self.ids.get(d["name"])
        ]
        if recreated:
            raise TopicRecreated(
                f"topics {recreated} were created again since this reader started (the broker "
                "lost its data; the embedded broker keeps events in memory only): restarting "
                "to read the new instances from their start. Events the old ones held that "
                "had not been read are lost"
            )

    def _describe(self) -> list[dict] | None:
        try:
            if self._admin is None:
                self._admin = admin_client(self.settings, timeout_s=2)
            return self._admin.describe_topics(list(self.ids))
        except (KafkaError, OSError):
            self.close()  # a fresh connection next time
            return None

    def close(self) -> None:
        if self._admin is not None:
            with contextlib.suppress(Exception):
                self._admin.close()
            self._admin = None
