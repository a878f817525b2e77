"""/readyz judges the consumers' health records (a private redis-server, so the shared
stack's records are never touched): a crash loop recorded by the consumer's own
reporter makes it 503 naming the consumer and why; a consumer stopped on purpose does not."""

from __future__ import annotations

import os
import time

import orjson
import pytest
from fastapi.testclient import TestClient

from feature_core.merge import BatchPointer
from feature_core.settings import Settings
from feature_core.windows import DAY_MS, align_cutoff
from online_store import STORE_ERRORS, open_store
from online_store.keys import KeySpace
from runtime.health import HealthReporter
from serving_layer.app import create_app
from tests.conftest import wait_for

pytestmark = pytest.mark.integration


def test_a_crash_looping_consumer_is_named_by_readyz(redis_process):
    settings = Settings(
        _env_file=None,
        redis_url=f"redis://127.0.0.1:{redis_process.port}/0",
        redis_password_file=os.devnull,  # the test's own Redis has none
        feature_repo="demo.feature_repo",
        consumer_max_restarts_per_min=2,
    )
    store = open_store(settings)
    pointer = BatchPointer(1, align_cutoff(int(time.time() * 1000)), DAY_MS).to_json()
    store.client.set(KeySpace(settings.key_prefix).batch_pointer, orjson.dumps(pointer))
    for _ in range(4):  # four processes, each failing right after its start
        HealthReporter(store, "lake-ingest", 60, STORE_ERRORS).started()
    speed = HealthReporter(store, "speed-job", 60, STORE_ERRORS)
    speed.started()
    speed.report({"events": 0}, time.time())
    with TestClient(create_app(settings)) as client:
        looping = client.get("/readyz")
        assert looping.status_code == 503, looping.text
        problems = looping.json()["problems"]
        assert [p for p in problems if "lake-ingest" in p] == [
            "lake-ingest is crash-looping: it restarted 3 times in the last minute "
            "(LFP_CONSUMER_MAX_RESTARTS_PER_MIN 2); see its log"
        ]
        assert not [p for p in problems if "speed-job" in p]
        HealthReporter(store, "lake-ingest", 60, STORE_ERRORS).stopped()

        def ingest_problems() -> list[str]:
            return [p for p in client.get("/readyz").json()["problems"] if "lake-ingest" in p]

        # Past the ops endpoints' shared interval (LFP_API_OPS_INTERVAL_S): read again.
        wait_for(lambda: not ingest_problems(), 10, "a consumer stopped on purpose not named")
    store.close()
