"""Every feature group, every aggregation, many windows: served == reference, exactly."""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

import httpx
import pytest

from batch_layer.training import column_name
from feature_core.definitions import FeatureRepo
from feature_core.merge import values_match
from feature_core.reference import evaluate
from feature_core.windows import DAY_MS, MINUTE_MS, align_cutoff
from tests.conftest import wait_for
from tests.integration.helpers import entities_for, get_features, produce, wait_in_lake

pytestmark = pytest.mark.integration

REPO = FeatureRepo.from_module("demo.feature_repo")
CATEGORIES = ["books", "toys", "garden"]


def now_ms() -> int:
    return int(time.time() * 1000)


def make_events(rng: random.Random, users, items, start: int, end: int, n: int) -> list[dict]:
    events = []
    for _ in range(n):
        kind = rng.choice(["view", "view", "click", "add_to_cart", "purchase"])
        event: dict[str, Any] = {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128))),
            "user_id": rng.choice(users),
            "event_type": kind,
            "event_time": rng.randrange(start, end),
            "item_id": rng.choice([*items, None]),
            "category": rng.choice(CATEGORIES),
        }
        if kind == "purchase":
            event["amount"] = round(rng.uniform(1, 300), 2)
        if kind == "add_to_cart":  # the shop's rule: an add-to-cart has the item's price
            event["price"] = round(rng.uniform(1, 300), 2)
        events.append(event)
    return events


def mismatches(settings, entities: dict[str, list[str]], events: list[dict]) -> list[str]:
    problems = []
    for group in REPO.groups:
        for entity in entities[group.entity.join_key]:  # one-key entities: the id is the key
            served = get_features(settings, group.name, entity)
            key = group.entity.join_key
            own = [e for e in events if e.get(key) == entity]
            expected = evaluate(group, own, served["as_of"]).get(entity)
            for feature in group.features:
                got = served["features"][feature.name]
                want = expected[feature.name] if expected else got
                if not values_match(got, want):
                    problems.append(f"{group.name}/{entity}.{feature.name}: {got!r} != {want!r}")
    return problems


@pytest.mark.parametrize("incremental", [False, True], ids=["window-by-window", "tiles"])
def test_every_group_matches_the_reference_across_batch_runs(stack, incremental: bool):
    """Both batch engines: window by window (every run from all history), and with tiles
    (the first run rebuilds them, the second advances each group from them)."""
    settings = stack.settings
    rng = random.Random(1122)
    prefix, entities = entities_for("all", users=6, items=8)
    users, items = entities["user_id"], entities["item_id"]

    first_cutoff = align_cutoff(now_ms()) - 10 * MINUTE_MS
    history = make_events(rng, users, items, first_cutoff - 100 * DAY_MS, first_cutoff, 500)
    history += make_events(rng, users, items, first_cutoff - 2 * DAY_MS, first_cutoff, 300)
    recent = make_events(rng, users, items, first_cutoff, now_ms() - 1000, 200)
    events = history + recent
    produce(settings, events)
    wait_in_lake(settings, prefix, len(events))
    # With tiles, a rebuild asked for: the stack's tiles may be ahead of this cutoff
    # (earlier tests' runs), and a run behind them goes window by window.
    first = stack.run_batch(first_cutoff, incremental, "full" if incremental else None)
    assert first["switched"]

    # Query time 1: right after the batch run, speed tiles cover [cutoff, now).
    wait_for(lambda: not mismatches(settings, entities, events), 180, "served == reference (1)")
    assert mismatches(settings, entities, events) == []

    # Query time 2: more events through the speed layer only.
    more = make_events(rng, users, items, now_ms() - 2000, now_ms() - 100, 80)
    produce(settings, more)
    events += more
    wait_for(lambda: not mismatches(settings, entities, events), 180, "served == reference (2)")

    # Query time 3: a new batch run lands with a later cutoff; values stay exact.
    wait_in_lake(settings, prefix, len(events))
    second = stack.run_batch(align_cutoff(now_ms()), incremental)
    assert second["switched"] and second["cutoff"] > first_cutoff
    shop = [g.name for g in REPO.groups]
    want = "incremental" if incremental else "rebuild"
    assert {g: second["group_modes"][g] for g in shop} == dict.fromkeys(shop, want)
    served = get_features(settings, "user_purchases", users[0])
    assert served["batch_cutoff"] == second["cutoff"]
    assert mismatches(settings, entities, events) == []


def test_training_set_at_t_equals_what_the_api_served_at_t(stack):
    settings = stack.settings
    rng = random.Random(2211)
    prefix, entities = entities_for("pit", users=4, items=4)
    users, items = entities["user_id"], entities["item_id"]
    cutoff = align_cutoff(now_ms()) - 10 * MINUTE_MS
    events = make_events(rng, users, items, cutoff - 40 * DAY_MS, cutoff, 300)
    events += make_events(rng, users, items, cutoff, now_ms() - 1000, 100)
    produce(settings, events)
    wait_in_lake(settings, prefix, len(events))
    stack.run_batch(cutoff)
    wait_for(lambda: not mismatches(settings, entities, events), 180, "views caught up")

    served = {}  # (user, as_of) -> {group__feature: value}
    for user in users:
        for group in ("user_activity", "user_purchases", "user_browsing", "user_views"):
            response = get_features(settings, group, user)
            values = {f"{group}__{k}": v for k, v in response["features"].items()}
            served.setdefault((user, response["as_of"]), {}).update(values)
    rows = stack.training_set("user_features", sorted(served))
    assert len(rows) == len(served)
    checked = 0
    for row in rows:
        for column, value in served[(row["user_id"], row["timestamp"])].items():
            got = row[column]
            got = list(got) if isinstance(got, (list, tuple)) else got
            assert values_match(got, value), (
                f"{row['user_id']}@{row['timestamp']} {column}: {got!r} != {value!r}"
            )
            checked += 1
    assert checked == sum(len(v) for v in served.values()) > 0

    # A service over users and items with derived features: what the API served for each
    # (user, item) pair with its request context at as_of is the training row of that
    # pair, time and context (the spine's candidate_category column).
    pairs = [(user, item) for user in [*users, f"{prefix}-nobody"] for item in items[:2]]
    context = [{"candidate_category": rng.choice(CATEGORIES)} for _ in pairs]
    response = httpx.post(
        f"{settings.api_url}/v1/features",
        json={
            "feature_service": "recommender",
            "entities": [{"user_id": user, "item_id": item} for user, item in pairs],
            "context": context,
        },
        headers=settings.api_headers,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    as_of, names = body["as_of"], [column_name(n) for n in body["feature_names"]]
    assert "ranking__item_ctr_1d" in names
    spine = [
        (user, item, as_of, c["candidate_category"])
        for (user, item), c in zip(pairs, context, strict=True)
    ]
    columns = ["user_id", "item_id", "timestamp", "candidate_category"]
    rows = stack.training_set("recommender", spine, columns)
    assert [(r["user_id"], r["item_id"]) for r in rows] == pairs
    for row, vector in zip(rows, body["vectors"], strict=True):
        for name, value in zip(names, vector["values"], strict=True):
            got = row[name]
            assert values_match(got, value), f"{row['user_id']}/{row['item_id']} {name}: {got!r}"
    assert any(v is not None for vector in body["vectors"] for v in vector["values"])
