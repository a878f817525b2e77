"""The API against a Redis it can lose: a private redis-server this module stops,
pauses and restarts, so the shared stack's views are never touched."""

from __future__ import annotations

import os
import time

import orjson
import pytest
import redis
from fastapi.testclient import TestClient

from feature_core.definitions import FeatureRepo
from feature_core.local_views import batch_doc
from feature_core.merge import BatchPointer
from feature_core.settings import Settings
from feature_core.windows import DAY_MS, HOUR_MS, align_cutoff
from online_store.keys import KeySpace
from online_store.redis_standalone.store import RedisStore
from serving_layer.app import create_app
from tests.conftest import wait_for

pytestmark = pytest.mark.integration

GROUP = FeatureRepo.from_module("demo.feature_repo").group("user_activity")
KEYS = KeySpace("lfp")


def _settings(port: int) -> Settings:
    return Settings(
        _env_file=None,
        redis_url=f"redis://127.0.0.1:{port}/0",
        feature_repo="demo.feature_repo",
        redis_timeout_s=0.5,
        redis_password_file=os.devnull,  # the test's own Redis has none
    )


def _write_version(client: redis.Redis, version: int, user: str, count: int, cutoff: int) -> None:
    events = [
        {"user_id": user, "event_type": "view", "event_time": cutoff - 2 * HOUR_MS - i}
        for i in range(count)
    ]
    doc = batch_doc(GROUP, events, cutoff, DAY_MS)
    # As the batch job writes it while the version before serves (that one's document
    # is kept for readers until the switch).
    store = RedisStore(client, KEYS.prefix, "")
    assert store.write_views(version, version - 1, GROUP.name, [(user, orjson.dumps(doc))])


def _switch(client: redis.Redis, version: int, cutoff: int) -> None:
    client.set(KEYS.batch_pointer, orjson.dumps(BatchPointer(version, cutoff, DAY_MS).to_json()))


def _lifetime_count(client: TestClient, user: str) -> int:
    response = client.get(f"/v1/features/{GROUP.name}/{user}")
    assert response.status_code == 200, response.text
    return response.json()["features"]["event_count_lifetime"]


def test_redis_stopped_mid_test_gives_a_fast_503_and_recovers_without_restart(redis_process):
    direct = redis.Redis(host="127.0.0.1", port=redis_process.port)
    cutoff = align_cutoff(int(time.time() * 1000))
    _write_version(direct, 1, "u1", 3, cutoff)
    _switch(direct, 1, cutoff)
    with TestClient(create_app(_settings(redis_process.port))) as client:
        assert _lifetime_count(client, "u1") == 3

        redis_process.stop()
        started = time.monotonic()
        down = client.get(f"/v1/features/{GROUP.name}/u1")
        elapsed = time.monotonic() - started
        assert down.status_code == 503
        assert "Redis" in down.json()["detail"] and "make status" in down.json()["detail"]
        assert elapsed < 5, f"503 took {elapsed:.1f}s with a 0.5s Redis timeout"
        vector = client.post(
            "/v1/features", json={"feature_service": "ranking_features", "entities": ["u1"]}
        )
        assert vector.status_code == 503
        feast = client.post(
            "/get-online-features",
            json={"feature_service": "ranking_features", "entities": {"user_id": ["u1"]}},
        )
        assert feast.status_code == 503
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert "Redis unreachable" in ready.json()["problems"][0]
        assert client.get("/healthz").status_code == 200  # alive, just not ready
        metrics = client.get("/metrics").text
        errors = next(
            float(line.split()[-1])
            for line in metrics.splitlines()
            if line.startswith("lfp_api_redis_errors_total ")
        )
        assert errors >= 4

        redis_process.start()  # same port, empty: the views are gone, the API is not
        _write_version(direct, 1, "u1", 5, cutoff)
        _switch(direct, 1, cutoff)
        wait_for(
            lambda: client.get(f"/v1/features/{GROUP.name}/u1").status_code == 200,
            20,
            "the API to serve again after Redis came back",
        )
        assert _lifetime_count(client, "u1") == 5


def test_a_paused_redis_gives_503_within_the_timeout(redis_process):
    direct = redis.Redis(host="127.0.0.1", port=redis_process.port)
    cutoff = align_cutoff(int(time.time() * 1000))
    _write_version(direct, 1, "u1", 2, cutoff)
    _switch(direct, 1, cutoff)  # a view is serving: 200 before the pause
    with TestClient(create_app(_settings(redis_process.port))) as client:
        assert client.get(f"/v1/features/{GROUP.name}/u1").status_code == 200
        direct.execute_command("CLIENT", "PAUSE", 3000, "ALL")
        started = time.monotonic()
        slow = client.get(f"/v1/features/{GROUP.name}/u1")
        elapsed = time.monotonic() - started
        assert slow.status_code == 503 and "Timeout" in slow.json()["detail"]
        assert elapsed < 2.5, f"503 took {elapsed:.1f}s with a 0.5s Redis timeout"
        direct.execute_command("CLIENT", "UNPAUSE")
        wait_for(
            lambda: client.get(f"/v1/features/{GROUP.name}/u1").status_code == 200,
            20,
            "the API to serve again after the pause",
        )


def test_a_batch_view_being_written_is_not_read_until_the_pointer_switches(redis_process):
    direct = redis.Redis(host="127.0.0.1", port=redis_process.port)
    cutoff = align_cutoff(int(time.time() * 1000))
    _write_version(direct, 1, "u1", 2, cutoff)
    _switch(direct, 1, cutoff)
    with TestClient(create_app(_settings(redis_process.port))) as client:
        _write_version(direct, 2, "u1", 7, cutoff)  # half-written v2: pointer still at v1
        assert _lifetime_count(client, "u1") == 2
        _switch(direct, 2, cutoff)
        assert _lifetime_count(client, "u1") == 7


def test_tiles_being_written_again_give_503_until_the_speed_job_has_caught_up(redis_process):
    """The speed job marks its tiles incomplete while it writes them again after Redis lost
    them: every feature endpoint and /readyz say so instead of serving values missing
    events; the values come back once it has caught up."""
    direct = redis.Redis(host="127.0.0.1", port=redis_process.port)
    direct.flushall()
    cutoff = align_cutoff(int(time.time() * 1000))
    _write_version(direct, 1, "u1", 3, cutoff)
    _switch(direct, 1, cutoff)

    def epoch(complete: bool) -> None:
        direct.set(KEYS.speed_epoch, orjson.dumps({"redis_run_id": "x", "complete": complete}))

    feast_body = {
        "features": [f"{GROUP.name}:event_count_lifetime"],
        "entities": {"user_id": ["u1"]},
    }
    v1_body = {"features": [f"{GROUP.name}:event_count_lifetime"], "entities": ["u1"]}
    with TestClient(create_app(_settings(redis_process.port))) as client:
        epoch(False)
        for response in (
            client.get(f"/v1/features/{GROUP.name}/u1"),
            client.post("/v1/features", json=v1_body),
            client.post("/get-online-features", json=feast_body),
        ):
            assert response.status_code == 503, response.text
            assert "writing its tiles again" in response.json()["detail"]
        ready = client.get("/readyz")
        assert ready.status_code == 503 and any(
            "tiles again" in p for p in ready.json()["problems"]
        )
        epoch(True)
        assert _lifetime_count(client, "u1") == 3
        assert client.post("/v1/features", json=v1_body).status_code == 200


def test_a_batch_view_published_after_redis_lost_the_speed_tiles_waits_for_them(redis_process):
    """Redis flushed under a running API, then a batch view published before the speed
    job has set its epoch again (it restarts to write its tiles again): 503, not the
    batch view with empty tiles (every event after the cutoff missing)."""
    direct = redis.Redis(host="127.0.0.1", port=redis_process.port)
    cutoff = align_cutoff(int(time.time() * 1000))
    _write_version(direct, 1, "u1", 3, cutoff)
    _switch(direct, 1, cutoff)
    direct.set(KEYS.speed_epoch, orjson.dumps({"redis_run_id": "x", "complete": True}))
    with TestClient(create_app(_settings(redis_process.port))) as client:
        assert _lifetime_count(client, "u1") == 3
        direct.flushall()
        _write_version(direct, 1, "u1", 3, cutoff)
        _switch(direct, 1, cutoff)
        response = client.get(f"/v1/features/{GROUP.name}/u1")
        assert response.status_code == 503, response.text
        detail = response.json()["detail"]
        assert "writing its tiles again" in detail and "`lfp stack status`" in detail
        direct.set(KEYS.speed_epoch, orjson.dumps({"redis_run_id": "y", "complete": True}))
        assert _lifetime_count(client, "u1") == 3
