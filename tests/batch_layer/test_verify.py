"""The consistency verifier on the demo's data: clean, then a tampered speed tile."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import orjson
import pytest
import redis

from batch_layer.verify import publish, verify
from feature_core.definitions import FeatureRepo
from feature_core.keys import KeySpace
from feature_core.windows import SPEED_TILE_MS, floor_to
from tests.conftest import DEMO_SHOP_PREFIX

pytestmark = pytest.mark.integration


def demo_entities(demo_result) -> dict[str, list[str]]:
    items = [i for i in demo_result["model"].candidates if i.startswith("demo_i")]
    return {"user": [f"{DEMO_SHOP_PREFIX}{i}" for i in range(8)], "item": items[:8]}


def test_zero_mismatches_on_the_demo_and_a_metric(demo_result, stack, spark_factory) -> None:
    settings = stack.settings
    repo = FeatureRepo.from_module("demo.feature_repo")  # the stack serves more workloads
    entities = demo_entities(demo_result)
    report = verify(spark_factory(settings), settings, repo, entities=entities, settle_s=2)
    per_entity = {
        key: sum(len(g.features) for g in repo.groups if g.entity.name == key) for key in entities
    }
    assert report.values == sum(len(ids) * per_entity[k] for k, ids in entities.items())
    assert report.mismatches == 0, report.examples
    assert set(report.by_feature) == {f.qualified_name for g in repo.groups for f in g.features}
    publish(settings, report)
    metrics = httpx.get(f"{settings.api_url}/metrics").text
    assert f"lfp_consistency_values_checked {float(report.values)}" in metrics
    assert 'lfp_consistency_mismatches{feature="user_activity:event_count_lifetime"} 0.0' in metrics


def test_a_tampered_speed_tile_is_caught_and_fails_the_cli(demo_result, stack) -> None:
    settings = stack.settings
    user = demo_result["user"]
    keys = KeySpace(settings.key_prefix)
    client = redis.Redis.from_url(settings.redis_url)
    key = keys.speed_tiles("user_activity", user)
    # Seven phantom events in the current (served) tile: add them to the tile's count, or
    # write the tile if no event produced it; the original is restored afterwards.
    tile = str(floor_to(int(time.time() * 1000), SPEED_TILE_MS))
    original = client.hget(key, tile)
    tampered = orjson.loads(original) if original else [0.0, None]
    tampered[0] = (tampered[0] or 0.0) + 7.0
    client.hset(key, tile, orjson.dumps(tampered))
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "infra",
                "verify",
                "--entity",
                f"user_id={user}",
                "--entity",
                "item_id=demo_i0",
                "--settle",
                "1",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "COLUMNS": "200"},
        )
    finally:
        if original is None:
            client.hdel(key, tile)
        else:
            client.hset(key, tile, original)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "INCONSISTENT" in result.stdout
    assert f"user_activity:event_count_lifetime {user}" in result.stdout
    metrics = httpx.get(f"{settings.api_url}/metrics").text
    assert 'lfp_consistency_mismatches{feature="user_activity:event_count_lifetime"} 1.0' in metrics
