"""The embedded broker killed (``kill -9``): it comes back empty (memory storage) and
recreates its topics; lake ingest and the speed job notice the new topic instances and
read them from their start, so every event sent after the crash reaches the lake and the
API. On a stack of its own: the session's stack keeps its topics."""

from __future__ import annotations

import os
import signal
import time
import uuid

import httpx
import pytest

from infra.stack import service_state
from runtime.kafka import KafkaUnavailable, topic_id
from tests.conftest import embedded_stack, wait_for
from tests.integration.helpers import SHOP, lake_event_ids, make_event, produce

pytestmark = pytest.mark.integration


def test_events_after_a_broker_crash_all_reach_the_lake_and_the_api(tmp_path) -> None:
    with embedded_stack(tmp_path, "demo.feature_repo") as settings:
        prefix = f"brokerkill-{uuid.uuid4().hex[:8]}-"
        now = int(time.time() * 1000)
        before = [make_event(f"{prefix}old", now - 1000 - i, "view") for i in range(20)]
        produce(settings, before)
        wait_for(lambda: len(lake_event_ids(settings, prefix)) >= 20, 120, "events in the lake")

        broker = service_state(settings, "broker")["pid"]
        os.killpg(broker, signal.SIGKILL)
        wait_for(
            lambda: (
                service_state(settings, "broker").get("pid") not in (None, broker)
                and service_state(settings, "broker").get("state") == "healthy"
            ),
            60,
            "the broker restarted",
        )
        new_user = f"{prefix}new"
        after = [make_event(new_user, now + i, "view") for i in range(30)]
        wait_for(lambda: _topic_exists(settings), 60, "the restarted broker's topic")
        produce(settings, after)
        wait_for(lambda: len(lake_event_ids(settings, prefix)) >= 50, 180, "post-crash events")
        ids = lake_event_ids(settings, prefix)
        assert sorted(ids) == sorted(e["event_id"] for e in before + after)  # each once
        for name in ("lake-ingest", "speed-job"):  # each noticed the new topic instance
            wait_for(
                lambda n=name: service_state(settings, n)["restarts"] >= 1, 60, f"{name} restart"
            )

        def served() -> bool:
            url = f"{settings.api_url}/v1/features/user_activity/{new_user}"
            response = httpx.get(url, timeout=10)
            return response.status_code == 200 and (
                response.json()["features"]["event_count_lifetime"] == 30
            )

        wait_for(served, 240, "the speed layer serving the post-crash events")


def _topic_exists(settings) -> bool:
    try:
        return bool(topic_id(settings, SHOP.topic_name))
    except KafkaUnavailable:
        return False
