"""Late events on the live stack: events dated anywhere in the past 35 days, sent after a
batch view was built, are served exactly at once (correction tiles), and still after the
next batch run reads them (the view then holds them and their corrections retire)."""

from __future__ import annotations

import random
import time
import uuid

import httpx
import pytest
import redis

from feature_core.definitions import FeatureRepo
from feature_core.keys import entity_id
from feature_core.merge import values_match
from feature_core.reference import evaluate
from feature_core.windows import DAY_MS, align_cutoff
from fraud import feature_repo as fraud
from online_store.keys import KeySpace
from tests.conftest import wait_for
from tests.integration.helpers import lake_event_ids, produce
from tests.integration.test_all_features import make_events
from tests.integration.test_fraud import _login, _payment

pytestmark = pytest.mark.integration

REPO = FeatureRepo.from_module("tests.integration.both_workloads")


def now_ms() -> int:
    return int(time.time() * 1000)


def mismatches(settings, records: dict[str, list[dict]]) -> list[str]:
    """Every feature of every group, for every entity the records name (and one never
    seen), served in one request per entity type, against the reference at ``as_of``."""
    problems = []
    for join_keys in sorted({g.join_keys for g in REPO.groups}):
        groups = [g for g in REPO.groups if g.join_keys == join_keys]
        seen = {
            tuple(r[k] for k in join_keys)
            for g in groups
            for r in records.get(g.source.name, [])
            if all(r.get(k) is not None for k in join_keys)
        }
        if not seen:
            continue
        entities = [dict(zip(join_keys, key, strict=True)) for key in sorted(seen)]
        names = [f.qualified_name for g in groups for f in g.features]
        response = httpx.post(
            f"{settings.api_url}/v1/features",
            json={"features": names, "entities": entities},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        body = response.json()
        expected: dict[str, dict] = {}
        for g in groups:
            for key, values in evaluate(g, records.get(g.source.name, []), body["as_of"]).items():
                for name, value in values.items():
                    expected.setdefault(key, {})[f"{g.name}:{name}"] = value
        for entity, vector in zip(entities, body["vectors"], strict=True):
            key = entity_id([entity[k] for k in join_keys])
            for name, got, status in zip(names, vector["values"], vector["statuses"], strict=True):
                if name not in expected.get(key, {}):
                    continue  # no event of this entity in this group: its identity
                want = expected[key][name]
                if not values_match(got, want):
                    problems.append(f"{key} {name}: {got!r} ({status}) != {want!r}")
    return problems


def test_late_events_of_both_repos_are_served_exactly_before_and_after_a_batch_run(stack):
    settings = stack.settings
    rng = random.Random(3030)
    tag = f"late{uuid.uuid4().hex[:6]}"
    # The view every late event is late for: built before any of them was sent.
    assert stack.run_batch(align_cutoff(now_ms()))["switched"]

    now = now_ms()
    users = [f"{tag}-u{i}" for i in range(5)] + [f'{tag}-ü:"x{{y}}']
    items = [f"{tag}-i{i}" for i in range(6)]
    shop = make_events(rng, users, items, now - 35 * DAY_MS, now - 1000, 400)
    for event in shop[:20]:  # ties: several events of one user at one instant
        event["event_time"] = shop[0]["event_time"]
        event["user_id"] = users[0]
    payments = [
        _payment(rng, tag, rng.randrange(now - 35 * DAY_MS, now - 1000)) for _ in range(200)
    ]
    logins = [_login(rng, tag, rng.randrange(now - 35 * DAY_MS, now - 1000)) for _ in range(80)]
    produce(settings, shop)
    produce(settings, payments, fraud.transactions)
    produce(settings, logins, fraud.logins)
    records = {
        "events": shop,
        fraud.transactions.name: [fraud.transactions.check(p) for p in payments],
        fraud.logins.name: [fraud.logins.check(x) for x in logins],
    }
    wait_for(
        lambda: (
            len(lake_event_ids(settings, tag)) >= len(shop)
            and len(lake_event_ids(settings, tag, fraud.transactions, "transaction_id", "card_id"))
            >= len(payments)
        ),
        180,
        "the late events in the lake",
    )

    # Before any batch run read them: every value exact (most events are corrections).
    wait_for(lambda: not mismatches(settings, records), 120, "late events served exactly")
    assert mismatches(settings, records) == []
    client = redis.Redis.from_url(settings.redis_url)
    keys = KeySpace(settings.key_prefix)
    held = client.hkeys(keys.speed_tiles("user_activity", users[0]))
    assert any(f.startswith(b"[") for f in held), held  # some are correction tiles

    # A batch run reads them: still exact, and their correction tiles retire.
    run = stack.run_batch(align_cutoff(now_ms()))
    assert run["switched"]
    assert mismatches(settings, records) == []
    wait_for(
        lambda: (
            not any(
                f.startswith(b"[")
                for f in client.hkeys(keys.speed_tiles("user_activity", users[0]))
            )
        ),
        60,
        "the read corrections retired",
    )
    assert mismatches(settings, records) == []
    client.close()
