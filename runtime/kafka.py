"""Kafka topic administration and client factories (kafka-python)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from feature_core.credentials import redact
from feature_core.settings import Settings
from feature_core.sources import EventSource


class KafkaUnavailable(RuntimeError):
    """No broker answered; the message says where we looked and how to fix it."""


def _unavailable(settings: Settings, error: Exception) -> KafkaUnavailable:
    return KafkaUnavailable(
        f"no Kafka broker at {settings.kafka_bootstrap_servers} ({error.__class__.__name__}): "
        "start the stack with `make up` or set LFP_KAFKA_BOOTSTRAP_SERVERS"
    )


def _sasl_credentials(settings: Settings) -> tuple[str, str]:
    """The SASL user name and password; a clear error when a SASL protocol lacks them."""
    password = settings.kafka_sasl_password
    if not settings.kafka_sasl_username or password is None:
        raise RuntimeError(
            f"LFP_KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol} needs "
            "LFP_KAFKA_SASL_USERNAME and LFP_KAFKA_SASL_PASSWORD: set both"
        )
    return settings.kafka_sasl_username, password.get_secret_value()


def client_options(settings: Settings) -> dict[str, Any]:
    """What every kafka-python client (consumer, producer, admin) of the platform is
    built with: the brokers, and how to reach them (LFP_KAFKA_SECURITY_PROTOCOL, SASL
    and TLS settings). Holds the SASL password: never log it."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_check_hostname"] = settings.kafka_ssl_check_hostname
        if settings.kafka_ssl_cafile is not None:
            options["ssl_cafile"] = str(settings.kafka_ssl_cafile)
    if settings.kafka_security_protocol.startswith("SASL_"):
        user, password = _sasl_credentials(settings)
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = user
        options["sasl_plain_password"] = password
    return options


def consumer(settings: Settings, **overrides: Any) -> KafkaConsumer:
    """A consumer of the platform's brokers (:func:`client_options`); ``overrides``
    replace or add options."""
    return KafkaConsumer(**{**client_options(settings), **overrides})


def flink_properties(settings: Settings) -> dict[str, str]:
    """The same connection settings for the Flink Kafka connector, as its ``properties.*``
    options (Kafka's Java client names). Holds the SASL password in the JAAS config:
    print a DDL only through :func:`runtime.kafka.redact_flink`."""
    protocol = settings.kafka_security_protocol
    found = {"properties.security.protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        found["properties.ssl.endpoint.identification.algorithm"] = (
            "https" if settings.kafka_ssl_check_hostname else ""
        )
        if settings.kafka_ssl_cafile is not None:
            # Kafka's Java client reads a PEM truststore as is (no keytool step).
            found["properties.ssl.truststore.type"] = "PEM"
            found["properties.ssl.truststore.location"] = str(settings.kafka_ssl_cafile.resolve())
    if protocol.startswith("SASL_"):
        module = (
            "org.apache.kafka.common.security.plain.PlainLoginModule"
            if settings.kafka_sasl_mechanism == "PLAIN"
            else "org.apache.kafka.common.security.scram.ScramLoginModule"
        )
        user, secret = _sasl_credentials(settings)
        found["properties.sasl.mechanism"] = settings.kafka_sasl_mechanism
        found["properties.sasl.jaas.config"] = (
            f'{module} required username="{_jaas(user)}" password="{_jaas(secret)}";'
        )
    return found


def librdkafka_options(settings: Settings) -> dict[str, str]:
    """The same connection settings for a confluent-kafka (librdkafka) client (the
    benchmarks' load generator)."""
    protocol = settings.kafka_security_protocol
    found = {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "security.protocol": protocol,
    }
    if protocol in ("SSL", "SASL_SSL"):
        found["ssl.endpoint.identification.algorithm"] = (
            "https" if settings.kafka_ssl_check_hostname else "none"
        )
        if settings.kafka_ssl_cafile is not None:
            found["ssl.ca.location"] = str(settings.kafka_ssl_cafile)
    if protocol.startswith("SASL_"):
        user, password = _sasl_credentials(settings)
        found["sasl.mechanism"] = settings.kafka_sasl_mechanism
        found["sasl.username"] = user
        found["sasl.password"] = password
    return found


def _jaas(value: str) -> str:
    """A JAAS option value inside double quotes."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def redact_flink(text: str, settings: Settings) -> str:
    """``text`` (a DDL, an error) with the SASL password masked."""
    password = settings.kafka_sasl_password
    if password is None:
        return text
    return redact(text, password.get_secret_value(), _jaas(password.get_secret_value()))


def admin_client(settings: Settings, timeout_s: float | None = None) -> KafkaAdminClient:
    deadline = time.monotonic() + (timeout_s or settings.kafka_connect_timeout_s)
    while True:
        try:
            return KafkaAdminClient(**client_options(settings), request_timeout_ms=10_000)
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
        **client_options(settings),
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
