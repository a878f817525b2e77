"""The run history stays bounded (Redis and the lake) and a killed run does not read as
running forever; writer timeouts give one clear line."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import redis
from deltalake import DeltaTable

from batch_layer.history import RunHistory
from feature_core.credentials import redact_url
from feature_core.runs import RunRecord, RunStatus, abandoned_reason, settled, this_process
from feature_core.settings import Settings
from online_store import open_store
from online_store.timeouts import StoreTimeoutError, explain_timeouts


def _history(redis_process, tmp_path, keep: int, lease_s: float = 300.0) -> RunHistory:
    settings = Settings(_env_file=None, redis_url=f"redis://127.0.0.1:{redis_process.port}/0")
    return RunHistory(open_store(settings), keep, str(tmp_path / "runs"), lease_s)


def _finished(i: int) -> RunRecord:
    return RunRecord(
        run_id=f"run{i:03d}",
        trigger="schedule",
        status=RunStatus.SUCCEEDED,
        started_at=1_000_000.0 + i,
        finished_at=1_000_001.0 + i,
    )


def test_history_keeps_the_newest_runs_in_redis_and_compacts_the_lake(redis_process, tmp_path):
    history = _history(redis_process, tmp_path, keep=10)
    for i in range(40):
        running = _finished(i).model_copy(update={"status": RunStatus.RUNNING})
        history.save(running)
        history.save(_finished(i))  # two saves per run, as a real run makes at least
    newest = [f"run{i:03d}" for i in range(39, 29, -1)]
    assert [r.run_id for r in history.recent(100)] == newest
    assert [r.run_id for r in history.from_lake()] == newest
    assert {r.status for r in history.from_lake()} == {RunStatus.SUCCEEDED}
    table = DeltaTable(history.lake_uri)
    # Rewritten once more than keep // 10 files were appended: bounded files and rows.
    assert len(table.file_uris()) <= 2
    assert table.to_pyarrow_table().num_rows <= 10 + 1


def test_a_store_that_lost_the_history_gets_the_compacted_copy_back(redis_process, tmp_path):
    history = _history(redis_process, tmp_path, keep=5)
    for i in range(12):
        history.save(_finished(i))
    redis.Redis(host="127.0.0.1", port=redis_process.port).flushall()
    assert history.restore() == 5
    assert [r.run_id for r in history.recent(20)] == [f"run{i:03d}" for i in range(11, 6, -1)]


def test_a_running_record_whose_process_is_gone_reads_as_abandoned(redis_process, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    now = time.time()
    killed = RunRecord(
        trigger="schedule", owner=f"{socket.gethostname()}:{dead.pid}", renewed_at=now
    )
    # Another live process on this host (a `lfp batch run` next to the scheduler).
    alive = RunRecord(trigger="schedule", owner=f"{socket.gethostname()}:{os.getppid()}")
    alive.renewed_at = now
    assert "its process" in (abandoned_reason(killed, 300, now) or "")
    assert abandoned_reason(alive, 300, now) is None
    # Another host's run: only its lease tells (renewed every third of it).
    remote = RunRecord(trigger="schedule", owner="elsewhere:1", renewed_at=now - 301)
    assert "LFP_BATCH_RUN_LEASE_S" in (abandoned_reason(remote, 300, now) or "")
    assert abandoned_reason(remote.model_copy(update={"renewed_at": now - 10}), 300, now) is None
    done = _finished(1).model_copy(update={"owner": killed.owner})
    assert settled(done, 300) is done  # only running records are settled

    history = _history(redis_process, tmp_path, keep=10)
    for record in (killed, alive, done):
        history.save(record)
    shown = {r.run_id: r for r in history.recent(10)}
    assert shown[killed.run_id].status is RunStatus.ABANDONED
    assert "killed mid-run" in (shown[killed.run_id].error or "")
    assert shown[alive.run_id].status is RunStatus.RUNNING
    # A scheduler starting records it for good (Redis and the lake); the live one stays.
    assert [r.run_id for r in history.settle_abandoned()] == [killed.run_id]
    stored = {r.run_id: r for r in history.from_lake()}
    assert stored[killed.run_id].status is RunStatus.ABANDONED
    assert stored[killed.run_id].finished_at == killed.renewed_at
    assert stored[alive.run_id].status is RunStatus.RUNNING
    assert history.settle_abandoned() == []
    # On a scheduler's start, a run under its own host:pid is a killed predecessor's.
    mine = RunRecord(trigger="schedule", owner=this_process(), renewed_at=time.time())
    history.save(mine)
    assert [r.run_id for r in history.settle_abandoned()] == [mine.run_id]
    assert "restarted mid-run" in (history.recent(1)[0].error or "")


def test_a_save_while_redis_is_paused_is_kept_in_the_lake_and_stored_later(redis_process, tmp_path):
    settings = Settings(
        _env_file=None,
        redis_url=f"redis://127.0.0.1:{redis_process.port}/0",
        batch_redis_timeout_s=0.5,
    )
    history = RunHistory(open_store(settings), 10, str(tmp_path / "runs"))
    os.kill(redis_process.process.pid, signal.SIGSTOP)
    try:
        history.save(_finished(1))  # logged, not raised: the run goes on
    finally:
        os.kill(redis_process.process.pid, signal.SIGCONT)
    assert [r.run_id for r in history.from_lake()] == ["run001"]
    history.save(_finished(2))
    assert [r.run_id for r in history.recent(10)] == ["run002", "run001"]


def test_a_paused_redis_fails_a_writer_with_one_line_naming_the_setting(redis_process):
    url = f"redis://:hunter2@127.0.0.1:{redis_process.port}/0"
    settings = Settings(_env_file=None, redis_url=url, batch_redis_timeout_s=1)
    os.kill(redis_process.process.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with (
            pytest.raises(StoreTimeoutError) as caught,
            explain_timeouts(url, settings.batch_redis_timeout_s),
        ):
            open_store(settings).next_version()
        assert time.monotonic() - started < 30  # bounded: not a hang
    finally:
        os.kill(redis_process.process.pid, signal.SIGCONT)
    message = str(caught.value)
    assert "did not answer within 1 s (LFP_BATCH_REDIS_TIMEOUT_S)" in message
    assert "hunter2" not in message and redact_url(url) in message
    # An error that carries the line in its text (Spark's, from an executor) too.
    with pytest.raises(StoreTimeoutError) as again, explain_timeouts(url, 1):
        raise RuntimeError(f"Job aborted.\nTraceback ...\nStoreTimeoutError: {message}\n\tat x")
    assert str(again.value) == message


def test_every_writer_store_has_a_bounded_timeout_by_default(redis_process):
    settings = Settings(
        _env_file=None,
        redis_url=f"redis://127.0.0.1:{redis_process.port}/0",
        batch_redis_timeout_s=7,
    )
    kwargs = open_store(settings).client.connection_pool.connection_kwargs
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (7, 7)
    kwargs = open_store(settings, timeout_s=1).client.connection_pool.connection_kwargs
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (1, 1)


def test_stack_status_prints_the_batch_run_in_progress_and_its_age(tmp_path):
    from infra.cli.stack import current_batch_run
    from infra.stack import Paths

    settings = Settings(_env_file=None, data_dir=tmp_path)
    status = Paths(tmp_path).status_file("batch-scheduler")
    status.parent.mkdir(parents=True)
    assert current_batch_run(settings) is None  # no scheduler
    status.write_text(json.dumps({"heartbeat": time.time(), "current_run": None}))
    assert current_batch_run(settings) is None  # idle
    run = {"run_id": "abc", "trigger": "schedule", "started_at": 1.0, "age_s": 4321.5}
    status.write_text(json.dumps({"current_run": {**run, "attempts": 2, "error": "[x] slow"}}))
    line = current_batch_run(settings)
    assert line == "batch run abc (schedule) running for 4322 s, attempt 2; last error: [x] slow"


def test_the_api_shows_a_killed_run_as_abandoned(redis_process):
    from fastapi.testclient import TestClient

    from serving_layer.app import create_app

    settings = Settings(
        _env_file=None,
        redis_url=f"redis://127.0.0.1:{redis_process.port}/0",
        feature_repo="demo.feature_repo",
    )
    history = RunHistory(open_store(settings), 10)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    now = time.time()
    killed = RunRecord(trigger="schedule", owner=f"{socket.gethostname()}:{dead.pid}")
    going = RunRecord(trigger="manual", owner="elsewhere:1", renewed_at=now)
    for record in (killed, going):
        history.save(record)
    with TestClient(create_app(settings)) as client:
        runs = {r["run_id"]: r for r in client.get("/v1/batch/runs").json()}
    assert runs[killed.run_id]["status"] == "abandoned"
    assert "killed mid-run" in runs[killed.run_id]["error"]
    assert runs[going.run_id]["status"] == "running" and runs[going.run_id]["error"] is None
