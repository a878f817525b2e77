"""The consistency verifier: its sample, then on the demo's data: clean, then a tampered
speed tile."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import orjson
import pytest
import redis

from batch_layer.lake import append_with_offsets
from batch_layer.verify import publish, sample_entities, verify
from demo.feature_repo import events as shop
from feature_core.definitions import FeatureRepo
from feature_core.settings import Settings
from feature_core.windows import SPEED_TILE_MS, floor_to
from online_store.keys import KeySpace
from tests.conftest import DEMO_SHOP_PREFIX, wait_for


def demo_entities(demo_result) -> dict[str, list[str]]:
    items = [i for i in demo_result["model"].candidates if i.startswith("demo_i")]
    return {"user": [f"{DEMO_SHOP_PREFIX}{i}" for i in range(8)], "item": items[:8]}


@pytest.mark.integration
def test_zero_mismatches_on_the_demo_and_a_metric(demo_result, stack, spark_factory) -> None:
    settings = stack.settings
    repo = FeatureRepo.from_module("demo.feature_repo")  # the stack serves more workloads
    entities = demo_entities(demo_result)
    report = verify(spark_factory(settings), settings, repo, entities=entities, settle_s=2)
    # Derived features of one entity type without request fields are checked too.
    derived = {
        name: {repo.group(g).entity.name for g in d.groups}.pop()
        for name, d in repo.derived.items()
        if not d.request_fields and len({repo.group(g).entity.name for g in d.groups}) == 1
    }
    assert "shopper:time_since_last_click" in derived and "ranking:item_ctr_7d" in derived
    per_entity = {
        key: sum(len(g.features) for g in repo.groups if g.entity.name == key)
        + sum(1 for entity in derived.values() if entity == key)
        for key in entities
    }
    assert report.values == sum(len(ids) * per_entity[k] for k, ids in entities.items())
    assert report.mismatches == 0, report.examples
    assert set(report.by_feature) == {
        f.qualified_name for g in repo.groups for f in g.features
    } | set(derived)
    assert "shopper:category_affinity_score" not in report.by_feature  # needs a request
    publish(settings, report)
    checked = f"lfp_consistency_values_checked {float(report.values)}"

    def with_report() -> str | None:
        # /metrics reads Redis at most once per LFP_API_OPS_INTERVAL_S: the next read has it.
        text = httpx.get(f"{settings.api_url}/metrics").text
        return text if checked in text else None

    metrics = wait_for(with_report, 10, "the report in /metrics", 0.2)
    assert 'lfp_consistency_mismatches{feature="user_activity:event_count_lifetime"} 0.0' in metrics


@pytest.mark.integration
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
    mismatch = 'lfp_consistency_mismatches{feature="user_activity:event_count_lifetime"} 1.0'
    # /metrics reads Redis at most once per LFP_API_OPS_INTERVAL_S: the next read has it.
    wait_for(
        lambda: mismatch in httpx.get(f"{settings.api_url}/metrics").text,
        10,
        "the mismatch in /metrics",
        0.2,
    )


def test_the_sample_comes_from_the_lake_is_seeded_and_reads_few_files(tmp_path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path, lake_uri=str(tmp_path / "lake"))
    repo = FeatureRepo.from_module("demo.feature_repo")
    user = next(g.entity for g in repo.groups if g.entity.join_keys == ("user_id",))
    assert sample_entities(settings, repo, user, 5, seed=1) == []  # no lake yet
    uri = settings.table_uri(shop.table_name)
    day = 86_400_000
    for n in range(40):  # 40 files, each with its own 50 users
        records = []
        for i in range(50):
            raw = {"event_id": f"e{n}-{i}", "user_id": f"u{n}-{i}", "event_type": "view"}
            records.append(
                (shop.parse(orjson.dumps({**raw, "event_time": 1_700_000_000_000 + n * day})), 0, i)
            )
        append_with_offsets(uri, shop, records, "id", {0: n})
    drawn = sample_entities(settings, repo, user, 5, seed=1)
    assert len(set(drawn)) == 5
    assert all(len(k) == 1 and k[0].startswith("u") for k in drawn)
    assert sample_entities(settings, repo, user, 5, seed=1) == drawn
    assert sample_entities(settings, repo, user, 5, seed=2) != drawn
    # Four candidates per entity wanted: 20 users, so one file of 50 is enough.
    assert len({k[0].split("-")[0] for k in drawn}) == 1
    everyone = sample_entities(settings, repo, user, 5000, seed=1)
    assert len(everyone) == 40 * 50 == len(set(everyone))


def test_a_published_report_is_the_last_one_and_joins_the_verify_journal(redis_process) -> None:
    from batch_layer.verify import ConsistencyReport
    from feature_core.journals import Journal
    from online_store import open_store

    settings = Settings(
        _env_file=None,
        redis_url=f"redis://127.0.0.1:{redis_process.port}/0",
        redis_password_file=os.devnull,
    )
    reports = [
        ConsistencyReport(
            checked_at=1_700_000_000.5 + n,
            delta_version=n,
            tolerance=1e-9,
            entities=4,
            values=40,
            mismatches=n,
            by_feature={"g:f": n},
            examples=[],
        )
        for n in range(2)
    ]
    for report in reports:
        publish(settings, report)
    store = open_store(settings)
    assert orjson.loads(store.client.get(KeySpace("lfp").consistency))["mismatches"] == 1
    journal = [orjson.loads(r) for r in store.journal(Journal.VERIFY)]
    assert [r["at_ms"] for r in journal] == [1_700_000_000_500, 1_700_000_001_500]
    assert journal[1] == {"at_ms": 1_700_000_001_500, **reports[1].model_dump(mode="json")}
