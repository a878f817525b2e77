"""A Redis that stops answering mid-run (SIGSTOP) fails the batch run with one clear line
within its timeout, the scheduler records the failure and retries, the heartbeat shows
the run's age, and the retry succeeds once Redis answers again (SIGCONT)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest
import redis

from batch_layer.lake import append_backfill
from batch_layer.progress import ProgressSnapshot
from batch_layer.scheduler import BatchScheduler
from demo.feature_repo import events
from feature_core.definitions import FeatureRepo
from feature_core.runs import RunRecord, RunStatus
from feature_core.settings import Settings
from online_store.keys import KeySpace
from tests.conftest import wait_for

pytestmark = pytest.mark.spark

TIMEOUT_S = 2


def test_a_paused_redis_fails_the_run_clearly_and_the_scheduler_retries(
    spark_factory, redis_process, tmp_path
) -> None:
    settings = Settings(
        _env_file=None,
        redis_url=f"redis://127.0.0.1:{redis_process.port}/0",
        data_dir=tmp_path,
        feature_repo="demo.feature_repo",
        batch_redis_timeout_s=TIMEOUT_S,
        batch_retries=3,
        batch_retry_backoff_s=3,
    )
    now = int(time.time() * 1000)
    lines = [
        {
            "event_id": f"e{i}",
            "user_id": f"u{i % 3}",
            "event_type": "view",
            "event_time": now - 3_600_000 + i * 1000,
            "item_id": f"i{i % 4}",
            "category": "books",
        }
        for i in range(12)
    ]
    records = [events.parse(json.dumps(line), now) for line in lines]
    assert append_backfill(settings.table_uri(events.table_name), events, records) == 12

    pid = redis_process.process.pid
    paused = threading.Event()

    def pause_once_spark_runs(record: RunRecord, snapshot: ProgressSnapshot) -> None:
        # The run's first Spark job: its version is taken, its views are not written yet.
        if snapshot.stages and not paused.is_set():
            os.kill(pid, signal.SIGSTOP)
            paused.set()

    repo = FeatureRepo.from_module("demo.feature_repo")
    batch = BatchScheduler(spark_factory(settings), settings, repo, pause_once_spark_runs)
    ended: list[RunRecord | None] = []
    runner = threading.Thread(target=lambda: ended.append(batch.run_once("manual", now)))
    try:
        runner.start()
        wait_for(paused.is_set, 240, "the run's first Spark job")
        paused_at = time.monotonic()
        # The failed attempt is recorded (in the lake: Redis is the one not answering).
        failed = wait_for(
            lambda: [r for r in batch.history.from_lake() if r.error], 120, "a failed attempt"
        )[0]
        waited = time.monotonic() - paused_at
        current = batch.current_run()
        assert current is not None and current["run_id"] == failed.run_id
        assert current["age_s"] > 0 and current["started_at"] == failed.started_at
        # A second trigger while it runs is skipped, not queued behind a hung run forever.
        assert batch.run_once("schedule") is None
    finally:
        os.kill(pid, signal.SIGCONT)
    runner.join(300)
    assert not runner.is_alive()

    assert failed.status is RunStatus.RUNNING and failed.attempts == 1
    assert f"did not answer within {TIMEOUT_S} s (LFP_BATCH_REDIS_TIMEOUT_S)" in failed.error
    assert failed.error.startswith("StoreTimeoutError: Redis at redis://127.0.0.1:")
    assert waited < 90, f"the failure took {waited:.0f} s to be recorded"
    record = ended[0]
    assert record is not None and record.status is RunStatus.SUCCEEDED, record
    assert record.attempts >= 2 and record.error is None and record.switched
    assert batch.current_run() is None and not batch._running.locked()
    pointer = redis.Redis(port=redis_process.port).get(KeySpace(settings.key_prefix).batch_pointer)
    assert pointer is not None and json.loads(pointer)["version"] == record.view_version
    # The failed attempt is in the history the retry left in Redis: the run, succeeded.
    assert [(r.run_id, r.status) for r in batch.history.recent(5)] == [
        (record.run_id, RunStatus.SUCCEEDED)
    ]
