"""The scheduler's monitor on the live stack: its freshness samples, and the sampled
verification (API over HTTP against the reference evaluator over the lake, no Spark)
clean, then catching a wrong served value, then in the journal and /metrics."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from batch_layer.monitor import Monitor, draw_sample, sampled_verification
from feature_core.definitions import FeatureRepo
from feature_core.journals import Journal
from feature_core.windows import SPEED_TILE_MS, floor_to
from online_store import open_store
from online_store.keys import KeySpace
from tests.conftest import DEMO_SHOP_PREFIX, wait_for

pytestmark = pytest.mark.integration

DEMO = FeatureRepo.from_module("demo.feature_repo")


def test_the_scheduler_records_freshness_samples(demo_result, stack) -> None:
    settings = stack.settings
    store = open_store(settings)
    # The stack's scheduler samples every LFP_MONITOR_INTERVAL_S (15 s by default). The
    # demo's live events went through the speed layer: a sample taken since shows its
    # groups' watermarks (one of the last 20 s, or the next).
    since = int(time.time() * 1000) - 20_000

    def with_watermarks() -> dict | None:
        samples = [orjson.loads(r) for r in store.journal(Journal.FRESHNESS, since_ms=since)]
        # A test before this one may have emptied Redis: samples taken before the stack
        # served a view again show none.
        shown = (x for x in reversed(samples) if x["batch_view"] is not None)
        return next((x for x in shown if "user_activity" in x["speed_age_s"]), None)

    sample = wait_for(with_watermarks, 40, "a freshness sample with the speed watermarks")
    pointer = store.pointer()
    assert pointer is not None and sample["batch_view"] <= pointer.version
    if sample["batch_view"] == pointer.version:  # no run switched a view since
        assert sample["batch_age_s"] == pytest.approx((sample["at_ms"] - pointer.cutoff) / 1000)
    assert abs(sample["speed_age_s"]["user_activity"]) < 3600  # events dated about now
    assert {"lake-ingest", "speed-job"} <= {name.split("/")[0] for name in sample["lag"]}


def test_a_correct_stack_is_consistent_and_a_wrong_served_value_is_caught(
    demo_result, stack
) -> None:
    settings = stack.settings
    items = [i for i in demo_result["model"].candidates if i.startswith("demo_i")]
    sample = {
        "user": [(f"{DEMO_SHOP_PREFIX}{i}",) for i in range(8)],
        "item": [(i,) for i in items[:8]],
    }
    clean = sampled_verification(settings, DEMO, sample, settle_s=2, max_events=200_000)
    per_user = sum(len(g.features) for g in DEMO.groups if g.entity.name == "user")
    per_item = sum(len(g.features) for g in DEMO.groups if g.entity.name == "item")
    assert clean.entities == 16 and clean.skipped == 0
    assert clean.values == 8 * per_user + 8 * per_item
    assert clean.events >= 100  # the demo's history of these entities was read
    assert clean.mismatches == 0, clean.examples
    assert set(clean.delta_versions) == {"raw_events"}

    # Seven phantom events in one sampled user's current speed tile (restored after).
    user = sample["user"][3][0]
    client = redis.Redis.from_url(settings.redis_url)
    key = KeySpace(settings.key_prefix).speed_tiles("user_activity", user)
    tile = str(floor_to(int(time.time() * 1000), SPEED_TILE_MS))
    original = client.hget(key, tile)
    tampered = orjson.loads(original) if original else [0.0, None]
    tampered[0] = (tampered[0] or 0.0) + 7.0
    client.hset(key, tile, orjson.dumps(tampered))
    try:
        wrong = sampled_verification(settings, DEMO, sample, settle_s=1, max_events=200_000)
    finally:
        if original is None:
            client.hdel(key, tile)
        else:
            client.hset(key, tile, original)
    assert wrong.by_feature.get("user_activity:event_count_lifetime") == 1, wrong
    example = next(e for e in wrong.examples if e.feature == "user_activity:event_count_lifetime")
    assert example.entity_id == user and example.served == example.expected + 7
    # A budget of half the users' events leaves the busiest out and says so.
    users = {"user": sample["user"]}
    read = sampled_verification(settings, DEMO, users, 0, max_events=200_000).events
    few = sampled_verification(settings, DEMO, users, 0, max_events=read // 2)
    assert few.skipped >= 1 and few.entities == 8 - few.skipped and few.mismatches == 0


def test_the_scheduler_s_check_lands_in_the_journal_and_metrics(demo_result, stack) -> None:
    settings = stack.settings
    repo = FeatureRepo.from_module(settings.feature_repo)  # both workloads
    drawn = draw_sample(settings, repo, 5, seed=31)
    assert 1 <= len(drawn["user"]) <= 5 and all(len(k) == 1 for k in drawn["user"])
    store = open_store(settings)
    record = Monitor(settings, repo, store).verify_sample(seed=31)
    assert record is not None
    newest = orjson.loads(store.journal(Journal.SAMPLED_VERIFY, limit=1)[-1])
    assert newest == record.model_dump(mode="json")
    assert record.entities > 0 and record.values > record.entities
    assert sum(record.by_feature.values()) == record.mismatches

    def exported() -> dict[str, float] | None:
        text = httpx.get(f"{settings.api_url}/metrics", timeout=10).text
        values = {
            s.name: s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name.startswith("lfp_consistency_sample_")
        }
        checked = values.get("lfp_consistency_sample_timestamp_seconds")
        return values if checked == pytest.approx(record.at_ms / 1000) else None

    # /metrics reads Redis at most once per LFP_API_OPS_INTERVAL_S: the next read has it.
    values = wait_for(exported, 10, "the sampled check in /metrics", 0.2)
    assert values["lfp_consistency_sample_values_checked"] == record.values
    assert values["lfp_consistency_sample_mismatches"] == record.mismatches
