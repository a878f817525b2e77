"""The embedded broker killed (``kill -9``): it comes back empty (memory storage) and
recreates its topics; lake ingest and the speed job notice the new topic instances and
read them from their start, so every event sent after the crash reaches the lake and the
API. The speed job's new tiles lack the events the lost topics held: the API serves the
values of windows reaching into them as stale_batch_view (never present while they may
miss events) until the scheduler's batch run covers them from the lake. Before that, on
the same stack, the speed job's state is reset (its checkpoints gone): it writes every
tile again from the topics, and the API answers 503 meanwhile, never a tile it has not
finished. On a stack of its own: the session's stack keeps its topics and state."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
import uuid
from contextlib import ExitStack

import httpx
import pytest

from infra.stack import service_state
from runtime.kafka import KafkaUnavailable, topic_id
from tests.conftest import embedded_stack, wait_for
from tests.integration.helpers import SHOP, lake_event_ids, make_event, produce

pytestmark = pytest.mark.integration


def test_events_after_a_broker_crash_all_reach_the_lake_and_the_api(tmp_path) -> None:
    # No settle and a view check every second: the scheduler's run closing the gap starts
    # as soon as its tile ends (every event before it is in the lake by then). No feature
    # statistics: its runs' Spark time is the views' alone (this test reads no statistics).
    fast_runs = {"LFP_BATCH_SETTLE_S": "0", "LFP_BATCH_WATCH_S": "1"}
    fast_runs["LFP_FEATURE_STATS_SAMPLE"] = "0"
    with (
        embedded_stack(tmp_path, "demo.feature_repo", **fast_runs) as settings,
        ExitStack() as frozen,
    ):
        prefix = f"brokerkill-{uuid.uuid4().hex[:8]}-"
        now = int(time.time() * 1000)
        before = [make_event(f"{prefix}old", now - 1000 - i, "view") for i in range(20)]
        produce(settings, before)
        wait_for(lambda: len(lake_event_ids(settings, prefix)) >= 20, 120, "events in the lake")

        _reset_speed_state(settings, f"{prefix}old", 20)

        restarts = {n: service_state(settings, n)["restarts"] for n in ("lake-ingest", "speed-job")}
        # The scheduler frozen until the gap's values were seen stale: else its run closing
        # the gap (at the tile's end) may land while the speed job still writes its tiles
        # again, and the stale answers are never there to see.
        scheduler = service_state(settings, "batch-scheduler")["pid"]
        os.killpg(scheduler, signal.SIGSTOP)
        frozen.callback(os.killpg, scheduler, signal.SIGCONT)
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
        # The old user's events after the crash land in the tile its first ones are in:
        # the new speed job's tile holds only these 5.
        after = [make_event(new_user, now + i, "view") for i in range(30)]
        after += [make_event(f"{prefix}old", now + i, "view") for i in range(5)]
        wait_for(lambda: _topic_exists(settings), 60, "the restarted broker's topic")
        produce(settings, after)
        wait_for(lambda: len(lake_event_ids(settings, prefix)) >= 55, 180, "post-crash events")
        ids = lake_event_ids(settings, prefix)
        assert sorted(ids) == sorted(e["event_id"] for e in before + after)  # each once
        for name in ("lake-ingest", "speed-job"):  # each noticed the new topic instance
            wait_for(
                lambda n=name: service_state(settings, n)["restarts"] > restarts[n],
                60,
                f"{name} restart",
            )

        answers: list[tuple[int, str]] = []
        expected = {f"{prefix}old": 25, new_user: 30}

        def served() -> bool:
            """Both users present and exact (most of the old one's events are in the lake
            only); before the batch run closing the gap, stale_batch_view or 503 while the
            tiles are written again, never a present value missing events."""
            exact = True
            for user, count in expected.items():
                url = f"{settings.api_url}/v1/features/user_activity/{user}"
                response = httpx.get(url, timeout=10)
                answers.append((response.status_code, response.text))
                if response.status_code != 200:
                    exact = False
                    continue
                body = response.json()
                status = body["statuses"]["event_count_lifetime"]
                got = body["features"]["event_count_lifetime"]
                if status != "present":
                    assert status == "stale_batch_view", body
                    exact = False
                    continue
                assert got == count, (user, got, count)  # every event is in the lake
            return exact

        def stale_served() -> bool:
            served()
            return any(code == 200 and "stale_batch_view" in text for code, text in answers)

        wait_for(stale_served, 300, "the values reaching into the gap served as stale")
        frozen.close()  # the scheduler goes on: its run closes the gap
        wait_for(served, 600, "the old and new events served after the batch run")
        stale = [text for code, text in answers if code == 200 and "stale_batch_view" in text]
        refused = [text for code, text in answers if code != 200]
        assert all(code in (200, 503) for code, _ in answers), answers[:3]
        assert all("writing its tiles again" in text for text in refused), refused[:3]
        assert stale, answers[:3]  # the gap was open: its values said so


def _reset_speed_state(settings, user: str, count: int) -> None:
    """Freeze the speed job, delete its checkpoints, kill it: its supervisor starts it
    from empty state. Every answer meanwhile is the exact count or a 503 saying the
    tiles are being written again."""
    url = f"{settings.api_url}/v1/features/user_activity/{user}"

    def served() -> bool:  # (a 503 until the stack's first batch run has a view)
        response = httpx.get(url, timeout=10)
        return response.status_code == 200 and (
            response.json()["features"]["event_count_lifetime"] == count
        )

    wait_for(served, 180, "the user served before the reset")
    job = service_state(settings, "speed-job")["pid"]
    os.killpg(job, signal.SIGSTOP)  # no checkpoint completes from here on
    shutil.rmtree(settings.data_dir / "flink-checkpoints")
    os.killpg(job, signal.SIGKILL)
    answers: list[tuple[int, str]] = []

    def exact_again() -> bool:
        response = httpx.get(url, timeout=10)
        answers.append((response.status_code, response.text))
        if response.status_code != 200:
            return False
        got = response.json()["features"]["event_count_lifetime"]
        assert got == count, (got, count, answers[-3:])  # never a part of the tile
        restarted = service_state(settings, "speed-job")
        return restarted.get("pid") != job and restarted.get("state") == "healthy"

    wait_for(exact_again, 240, "the tiles written again after the reset")
    refused = [text for code, text in answers if code != 200]
    assert all("writing its tiles again" in text for text in refused), refused[:3]
    status = json.loads((settings.data_dir / "run" / "speed-job.status.json").read_text())
    assert status["restored_from"] is None  # it did start from empty state


def _topic_exists(settings) -> bool:
    try:
        return bool(topic_id(settings, SHOP.topic_name))
    except KafkaUnavailable:
        return False
