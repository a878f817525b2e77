"""The thin path through every real layer: served values equal the reference evaluator."""

from __future__ import annotations

import random
import time
import uuid

import pytest

from feature_core.definitions import FeatureRepo
from feature_core.reference import evaluate
from feature_core.windows import HOUR_MS, MINUTE_MS, align_cutoff
from tests.conftest import wait_for
from tests.integration.helpers import (
    get_features,
    make_event,
    produce,
    wait_in_lake,
)

pytestmark = pytest.mark.integration

GROUP = FeatureRepo.from_module("demo.feature_repo").group("user_activity")


def now_ms() -> int:
    return int(time.time() * 1000)


def random_events(rng: random.Random, users: list[str], start: int, end: int, n: int) -> list[dict]:
    events = []
    for _ in range(n):
        if rng.random() < 0.3:
            kind, amount = "purchase", round(rng.uniform(1, 100), 2)
        else:
            kind, amount = rng.choice(["view", "click", "add_to_cart"]), None
        events.append(make_event(rng.choice(users), rng.randrange(start, end), kind, amount))
    return events


def mismatches(settings, users: list[str], events: list[dict]) -> list[str]:
    """Every (user, feature) whose served value differs from the reference at as_of."""
    problems = []
    for user in users:
        served = get_features(settings, GROUP.name, user)
        own = [e for e in events if e["user_id"] == user]
        expected = evaluate(GROUP, own, served["as_of"]).get(user)
        for name, want in expected.items():
            got = served["features"][name]
            if abs(got - want) > 1e-9 * max(1.0, abs(want)):
                problems.append(f"{user}.{name}: served {got}, reference {want}")
    return problems


def test_served_values_equal_the_reference_before_and_after_more_events(stack):
    settings = stack.settings
    rng = random.Random(20261122)
    prefix = f"e2e-{uuid.uuid4().hex[:8]}-"
    users = [f"{prefix}{i}" for i in range(8)]
    start = now_ms()
    cutoff = align_cutoff(start) - 5 * MINUTE_MS
    before = random_events(rng, users, cutoff - 3 * HOUR_MS, cutoff, 300)
    after = random_events(rng, users, cutoff, start - 1000, 120)
    events = before + after
    produce(settings, events)
    wait_in_lake(settings, prefix, len(events))

    result = stack.run_batch(cutoff)
    assert result["cutoff"] == cutoff and result["switched"]
    assert result["rows_read"] >= len(before)

    last_after = max(e["event_time"] for e in after)
    wait_for(
        lambda: (
            (get_features(settings, GROUP.name, users[0])["speed_watermark"] or 0) >= last_after
        ),
        120,
        "speed layer watermark",
    )
    wait_for(lambda: not mismatches(settings, users, events), 120, "served == reference")
    assert mismatches(settings, users, events) == []
    first = {u: get_features(settings, GROUP.name, u) for u in users}
    assert all(r["batch_cutoff"] == cutoff for r in first.values())
    assert any(r["features"]["event_count_1h"] for r in first.values())

    # More events, no batch run: values move through the speed layer alone.
    moved_users = users[:3]
    more = [make_event(u, now_ms() - 500, "purchase", 10.0) for u in moved_users for _ in range(2)]
    produce(settings, more)
    events += more
    wait_for(lambda: not mismatches(settings, users, events), 120, "speed-only update")
    for user in moved_users:
        now = get_features(settings, GROUP.name, user)
        assert now["batch_version"] == first[user]["batch_version"]
        assert (
            now["features"]["event_count_lifetime"]
            == first[user]["features"]["event_count_lifetime"] + 2
        )
        assert now["features"]["purchase_amount_sum_lifetime"] == pytest.approx(
            first[user]["features"]["purchase_amount_sum_lifetime"] + 20.0, rel=1e-9
        )


def test_unknown_group_is_a_404_that_names_the_known_groups(stack):
    import httpx

    response = httpx.get(f"{stack.settings.api_url}/v1/features/no_such_group/u1", timeout=10)
    assert response.status_code == 404
    assert "unknown feature group 'no_such_group'" in response.json()["detail"]
    assert "user_activity" in response.json()["detail"]


def test_an_unknown_entity_gets_defaults_with_no_data_status(stack):
    served = get_features(stack.settings, GROUP.name, f"nobody-{uuid.uuid4().hex}")
    assert served["features"]["event_count_1h"] == 0
    assert served["features"]["purchase_amount_sum_lifetime"] == 0.0
    assert set(served["statuses"].values()) == {"no_data"}


def test_speed_job_crash_restores_its_checkpoint_and_stays_exact(stack):
    settings = stack.settings
    prefix = f"speedcrash-{uuid.uuid4().hex[:8]}-"
    users = [f"{prefix}{i}" for i in range(4)]
    rng = random.Random(7)
    # Events after the serving cutoff: this test is about the speed layer's state (late
    # ones go to lake ingest's correction tiles, tests/integration/test_late_events.py).
    cutoff = get_features(settings, GROUP.name, users[0])["batch_cutoff"] or 0
    start = max(cutoff, now_ms() - 10 * MINUTE_MS)
    events = random_events(rng, users, start, max(now_ms() - 100, start + 1), 60)
    produce(settings, events)
    wait_for(lambda: not mismatches(settings, users, events), 120, "speed layer before the crash")

    status_file = settings.data_dir / "run" / "speed-job.status.json"
    if stack.kind == "embedded":  # let a checkpoint complete after these events
        checkpoints = settings.data_dir / "flink-checkpoints"
        before = {p for p in checkpoints.glob("*/*/chk-*/_metadata")}
        wait_for(lambda: set(checkpoints.glob("*/*/chk-*/_metadata")) - before, 60, "a checkpoint")
    stack.kill("speed-job")
    wait_for(lambda: not stack.service_healthy("speed-job"), 60, "the crash to be noticed")
    wait_for(lambda: stack.service_healthy("speed-job"), 240, "speed job restarted")
    if stack.kind == "embedded":
        import json

        assert json.loads(status_file.read_text())["restored_from"], "restart must restore state"
        # The killed JVM's extracted planner jar went with its temp dir; only the new one is left.
        assert len(list((settings.data_dir / "flink-tmp").glob("flink-table-planner_*.jar"))) == 1

    more = [make_event(u, now_ms() - 500, "purchase", 3.0) for u in users]
    produce(settings, more)
    events += more
    wait_for(lambda: not mismatches(settings, users, events), 180, "exact values after restart")
