"""Lake ingest: exactly once across a crash, and malformed events go to the DLQ."""

from __future__ import annotations

import threading
import time
import uuid

import orjson
import pytest
from kafka import TopicPartition

from runtime.kafka import consumer as kafka_consumer
from tests.conftest import wait_for
from tests.integration.helpers import SHOP, get_features, lake_event_ids, make_event, produce

pytestmark = pytest.mark.integration


def test_a_crash_mid_stream_leaves_each_event_in_the_lake_exactly_once(stack):
    settings = stack.settings
    prefix = f"restart-{uuid.uuid4().hex[:8]}-"
    total, chunk = 3000, 100
    now = int(time.time() * 1000)
    events = [make_event(f"{prefix}{i % 20}", now - i) for i in range(total)]

    def paced_producer() -> None:
        for i in range(0, total, chunk):
            produce(settings, events[i : i + chunk])
            time.sleep(0.3)  # pacing so the crash lands mid-stream, not a correctness wait

    producer_thread = threading.Thread(target=paced_producer)
    producer_thread.start()
    wait_for(lambda: len(lake_event_ids(settings, prefix)) >= 300, 120, "first events in the lake")
    at_crash = len(lake_event_ids(settings, prefix))
    stack.kill("lake-ingest")
    assert at_crash < total, "the crash must happen mid-stream"
    producer_thread.join()
    wait_for(lambda: stack.service_healthy("lake-ingest"), 120, "lake ingest restarted")
    wait_for(
        lambda: len(set(lake_event_ids(settings, prefix))) == total, 180, "all events ingested"
    )

    ids = lake_event_ids(settings, prefix)
    assert len(ids) == len(set(ids)) == total


def _dlq_records(settings, marker: str) -> list[dict]:
    consumer = kafka_consumer(settings, enable_auto_commit=False)
    tp = TopicPartition(SHOP.dlq_topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    found = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        batch = consumer.poll(timeout_ms=500)
        if not batch:
            break
        for records in batch.values():
            for record in records:
                value = orjson.loads(record.value)
                if marker in (value.get("raw") or ""):
                    found.append(value)
    consumer.close()
    return found


def test_malformed_events_go_to_the_dlq_with_a_reason_and_pipelines_continue(stack):
    settings = stack.settings
    marker = f"dlq-{uuid.uuid4().hex[:8]}"
    good_user = f"{marker}-good"
    good = make_event(good_user, int(time.time() * 1000) - 1000)
    missing_user = {k: v for k, v in make_event("x", 1).items() if k != "user_id"}
    produce(
        settings,
        [
            f'{{"event_id": "{marker}-1", broken'.encode(),
            orjson.dumps({**missing_user, "event_id": f"{marker}-2"}),
            orjson.dumps({**make_event("x", 1), "user_id": 42, "event_id": f"{marker}-3"}),
            good,
        ],
    )
    records = wait_for(
        lambda: (r := _dlq_records(settings, marker)) and len(r) >= 3 and r, 120, "DLQ records"
    )
    reasons = {r["raw"].split(marker)[1][:2]: r["reason"] for r in records}
    assert reasons["-1"] == "not valid JSON"
    assert "user_id: required" in reasons["-2"]
    assert "user_id: should be a string" in reasons["-3"]
    assert all(r["topic"] == SHOP.topic_name and r["offset"] >= 0 for r in records)

    # Both pipelines kept going: the good event reached the lake and the speed layer.
    wait_for(
        lambda: lake_event_ids(settings, marker) == [good["event_id"]], 120, "good event in lake"
    )
    served = wait_for(
        lambda: (
            (r := get_features(settings, "user_activity", good_user))["features"][
                "event_count_lifetime"
            ]
            == 1
            and r
        ),
        120,
        "good event in the speed layer",
    )
    assert served["statuses"]["event_count_lifetime"] == "present"
