"""The batch scheduler on the live stack: a cron run switching views under load, a failed
run leaving the previous view, one run at a time, and the run history (CLI and API)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import orjson
import pytest
import redis
from deltalake import DeltaTable
from typer.testing import CliRunner

from batch_layer.history import RunHistory
from batch_layer.lake import append_with_offsets
from batch_layer.scheduler import BatchScheduler
from feature_core.definitions import Aggregation, Entity, FeatureGroup, FeatureRepo
from feature_core.merge import values_match
from feature_core.runs import RunStatus
from feature_core.sources import EventSource, Field
from feature_core.windows import HOUR_MS, align_cutoff
from infra.cli import app
from online_store import open_store
from online_store.keys import KeySpace, doc_version
from tests.batch_layer.helpers import lake_settings
from tests.conftest import DEMO_SHOP_PREFIX, wait_for
from tests.integration.helpers import wait_in_lake

pytestmark = pytest.mark.integration

#: Features that cannot change while no new event arrives, whatever the clock does.
STABLE = [
    "user_activity:event_count_lifetime",
    "user_activity:purchase_amount_sum_lifetime",
    "user_browsing:last_item_lifetime",
    "user_browsing:last_event_time_lifetime",
    "user_purchases:largest_order_lifetime",
]


def pointer(settings) -> dict | None:
    raw = redis.Redis.from_url(settings.redis_url).get(KeySpace(settings.key_prefix).batch_pointer)
    return orjson.loads(raw) if raw else None


def test_scheduled_run_switches_views_while_requests_are_served(
    demo_result, stack, spark_factory
) -> None:
    settings = stack.settings
    config = demo_result["config"]
    live = int(config.live_rate * config.live_seconds)
    # Every demo event is in the lake, so the new view covers what the speed view did.
    wait_in_lake(settings, DEMO_SHOP_PREFIX, config.history_events + live + 2 * config.burst_views)
    users = [f"{DEMO_SHOP_PREFIX}{i}" for i in range(10)]
    body = {"features": STABLE, "entities": users}
    url = f"{settings.api_url}/v1/features"
    baseline = httpx.post(url, json=body, timeout=10).json()
    old_version = baseline["batch"]["version"]

    seen: list[tuple[int, int | None, list]] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                response = client.post(url, json=body)
                payload = response.json() if response.status_code == 200 else {}
                version = (payload.get("batch") or {}).get("version")
                seen.append((response.status_code, version, payload.get("vectors")))

    every_minute = settings.model_copy(update={"batch_schedule": "* * * * *"})
    repo = FeatureRepo.from_module(settings.feature_repo)
    batch = BatchScheduler(spark_factory(settings), every_minute, repo)
    worker = threading.Thread(target=hammer)
    worker.start()
    cron = batch.start_background()
    try:
        wait_for(lambda: batch.last is not None, 240, "a scheduled batch run")
        new_version = batch.last.view_version
        wait_for(lambda: any(v == new_version for _, v, _ in seen), 30, "a request on the new view")
    finally:
        cron.shutdown(wait=True)
        stop.set()
        worker.join()

    assert batch.last.trigger == "schedule" and batch.last.status == RunStatus.SUCCEEDED
    assert batch.last.switched and new_version > old_version
    assert {code for code, _, _ in seen} == {200}, "a request failed during the switch"
    versions = [v for _, v, _ in seen]
    assert set(versions) <= {old_version, new_version} and versions == sorted(versions)
    assert versions.count(old_version) and versions.count(new_version)
    # Old view + speed and new view + speed give the same values (floats to rounding):
    # nothing was dropped or counted twice, and no response mixed the two views.
    for _, version, vectors in seen:
        for got, want in zip(vectors, baseline["vectors"], strict=True):
            assert got["entity_id"] == want["entity_id"] and got["statuses"] == want["statuses"]
            assert values_match(got["values"], want["values"]), (version, got, want)


def test_a_failed_run_is_retried_recorded_and_leaves_the_previous_view(
    stack, spark_factory, tmp_path: Path
) -> None:
    log = tmp_path / "lake" / "raw_events" / "_delta_log"
    log.mkdir(parents=True)
    (log / "00000000000000000000.json").write_text("this is not a Delta log\n")
    broken = stack.settings.model_copy(
        update={
            "lake_uri": str(tmp_path / "lake"),
            "batch_retries": 2,
            "batch_retry_backoff_s": 0.05,
        }
    )
    wait_for(lambda: pointer(stack.settings), 240, "a batch view serving (the startup run)")
    before = pointer(stack.settings)
    repo = FeatureRepo.from_module(stack.settings.feature_repo)
    record = BatchScheduler(spark_factory(broken), broken, repo).run_once("manual")
    assert record is not None and record.status == RunStatus.FAILED
    assert record.attempts == 3 and record.error and record.finished_at
    assert pointer(stack.settings) == before
    stored = {r.run_id: r for r in RunHistory(open_store(stack.settings)).recent(50)}
    assert stored[record.run_id].status == RunStatus.FAILED
    assert stored[record.run_id].error == record.error


def test_one_run_at_a_time(stack, spark_factory) -> None:
    repo = FeatureRepo.from_module(stack.settings.feature_repo)
    batch = BatchScheduler(spark_factory(stack.settings), stack.settings, repo)
    with batch._running:  # a run in progress
        assert batch.run_once("schedule") is None


def test_run_history_from_the_cli_and_the_api(demo_result, stack) -> None:
    """The demo's batch run (over its history) and the stack's startup run are listed."""
    runs = httpx.get(f"{stack.settings.api_url}/v1/batch/runs", params={"limit": 50}).json()
    assert runs, "no runs recorded"
    assert [r["started_at"] for r in runs] == sorted((r["started_at"] for r in runs), reverse=True)
    done = [r for r in runs if r["status"] == "succeeded"]
    assert done, runs
    for run in done:
        assert run["cutoff"] and run["finished_at"] >= run["started_at"], run
        assert run["rows_read"] is not None and run["entities_written"] is not None, run
        assert run["view_version"] and run["switched"] is not None, run
        # Every table a run read is named with its version; the stack's startup run, over
        # an empty lake, read none.
        versions = run["delta_versions"] or {}
        assert any(v is not None for v in versions.values()) or run["rows_read"] == 0, run
    # (Version 0 is a version: the demo's history can be the table's first commit.)
    read = [r for r in done if (r["delta_versions"] or {}).get("raw_events") is not None]
    assert any(r["rows_read"] for r in read), runs
    assert (
        httpx.get(f"{stack.settings.api_url}/v1/batch/runs", params={"limit": 0}).status_code == 422
    )
    result = CliRunner().invoke(app, ["batch", "history", "--json", "--limit", "50"])
    assert result.exit_code == 0, result.output
    assert all(r["run_id"] in result.output for r in runs)


def test_a_deleted_pointer_is_noticed_and_recomputed_at_once(demo_result, stack) -> None:
    """The stack's scheduler service (cron: once a year in tests) sees the pointer gone
    within its watch interval and runs at once; meanwhile features are 503, never zeros."""
    import time

    settings = stack.settings
    client = redis.Redis.from_url(settings.redis_url)
    keys = KeySpace(settings.key_prefix)
    history = RunHistory(open_store(settings))

    def version() -> int:
        pointer = client.get(keys.batch_pointer)
        return orjson.loads(pointer)["version"] if pointer else 0

    before = version()
    assert before, "no view serving before the test"
    deleted_at = time.time()
    client.delete(keys.batch_pointer)
    body = {"feature_service": "ranking_features", "entities": [demo_result["user"]]}
    gap = httpx.post(f"{settings.api_url}/v1/features", json=body, timeout=10)
    assert gap.status_code == 503 and "no batch view is serving" in gap.json()["detail"]

    def recomputed() -> object:
        runs = [r for r in history.recent(10) if r.started_at >= deleted_at]
        done = [r for r in runs if r.status is RunStatus.SUCCEEDED and r.switched]
        return done[0] if done and client.exists(keys.batch_pointer) else None

    record = wait_for(recomputed, 300, "a run after the pointer was deleted")
    assert record.trigger == "view-missing"
    assert record.started_at - deleted_at < settings.batch_watch_s + 5
    assert version() > before
    served = httpx.post(f"{settings.api_url}/v1/features", json=body, timeout=10)
    assert served.status_code == 200 and served.json()["batch"]["version"] > before


def test_a_view_of_other_definitions_is_not_served_and_is_recomputed(demo_result, stack) -> None:
    """A pointer whose view was computed from another definition of a group (the repo
    changed, or another repo's batch job shares the prefix): that group answers 503, the
    others still serve, /readyz says why, and the scheduler recomputes at once."""
    settings = stack.settings
    client = redis.Redis.from_url(settings.redis_url)
    keys = KeySpace(settings.key_prefix)
    history = RunHistory(open_store(settings))
    user, api = demo_result["user"], settings.api_url
    pointer = orjson.loads(client.get(keys.batch_pointer))
    before = pointer["version"]
    assert pointer["view_fingerprints"]["user_activity"]
    pointer["view_fingerprints"]["user_activity"] = "0" * 12
    tampered_at = time.time()
    client.set(keys.batch_pointer, orjson.dumps(pointer))
    stale = httpx.get(f"{api}/v1/features/user_activity/{user}", timeout=10)
    assert stale.status_code == 503
    assert "other definitions of user_activity" in stale.json()["detail"]
    body = {"feature_service": "ranking_features", "entities": [user]}
    assert httpx.post(f"{api}/v1/features", json=body, timeout=10).status_code == 503
    other = httpx.get(f"{api}/v1/features/user_browsing/{user}", timeout=10)
    assert other.status_code == 200 and other.json()["batch_version"] == before
    # /readyz reads Redis at most once per LFP_API_OPS_INTERVAL_S: the next read has it.
    wait_for(
        lambda: any(
            "user_activity" in p for p in httpx.get(f"{api}/readyz", timeout=10).json()["problems"]
        ),
        10,
        "/readyz to name the stale group",
        0.2,
    )

    def recomputed() -> object:
        runs = [r for r in history.recent(10) if r.started_at >= tampered_at]
        done = [r for r in runs if r.status is RunStatus.SUCCEEDED and r.switched]
        return done[0] if done else None

    record = wait_for(recomputed, 300, "a run after the pointer named other definitions")
    assert record.trigger == "definitions-changed"
    assert record.started_at - tampered_at < settings.batch_watch_s + 5
    served = httpx.post(f"{api}/v1/features", json=body, timeout=10)
    assert served.status_code == 200 and served.json()["batch"]["version"] > before


def test_run_history_survives_losing_redis(demo_result, stack) -> None:
    """Every save also goes to the lake: with Redis's history gone, the CLI (and then the
    API) show the same runs again."""
    settings = stack.settings
    url = f"{settings.api_url}/v1/batch/runs"
    before = httpx.get(url, params={"limit": 50}, timeout=10).json()
    assert before
    client = redis.Redis.from_url(settings.redis_url)
    keys = KeySpace(settings.key_prefix)
    client.delete(keys.batch_runs, keys.batch_runs_index)
    assert httpx.get(url, params={"limit": 50}, timeout=10).json() == []
    result = CliRunner().invoke(app, ["batch", "history", "--json", "--limit", "50"])
    assert result.exit_code == 0, result.output
    restored_ids = re.findall(r'"run_id": "([^"]+)"', result.output)
    # the failed-run test saved its run into a lake of its own: every other run is back.
    own_lake = [r for r in before if r["status"] != "failed"]
    assert own_lake and set(restored_ids) >= {r["run_id"] for r in own_lake}
    assert restored_ids == [r["run_id"] for r in before if r["run_id"] in restored_ids]
    after = httpx.get(url, params={"limit": 50}, timeout=10).json()
    assert after == [r for r in before if r["run_id"] in restored_ids]


def test_a_run_killed_while_writing_its_view_leaves_the_old_view_and_the_next_run_completes(
    demo_result, stack
) -> None:
    """``kill -9`` of a batch run (the CLI's, ``--full``: the same job as the scheduler's,
    writing every entity) once keys of its new view version are in Redis: the pointer, and
    so every answer, stays on the old view; the next run recomputes every group (it cannot
    trust what the killed run left) and switches to a newer version."""
    settings = stack.settings
    client = redis.Redis.from_url(settings.redis_url)
    keys = KeySpace(settings.key_prefix)
    body = {"feature_service": "ranking_features", "entities": [demo_result["user"]]}
    served_before = httpx.post(f"{settings.api_url}/v1/features", json=body, timeout=10).json()
    before = pointer(settings)
    assert before is not None

    # Groups are written in turn: once the first user group's view of the demo user is in,
    # the run is writing (the groups after it still to come).
    repo = FeatureRepo.from_module(settings.feature_repo)
    first = next(g for g in repo.groups if g.join_keys == ("user_id",))

    def writing() -> int | None:
        """The version a run is writing, once some of its keys are in Redis."""
        seq = int(client.get(keys.batch_seq) or 0)
        if seq > before["version"]:
            doc = client.get(keys.batch_doc(first.name, demo_result["user"]))
            return seq if doc is not None and doc_version(doc) == seq else None
        time.sleep(0.005)
        return None

    killed_version = None
    for _ in range(3):  # a run may write its (small) view between two looks: try again
        run = subprocess.Popen(
            [sys.executable, "-m", "infra", "batch", "run", "--full"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        while run.poll() is None and killed_version is None:
            killed_version = writing()
        if killed_version is not None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
            break
        run.wait()
    assert killed_version is not None, "no run was caught writing its view in 3 tries"
    assert pointer(settings) == before  # never switched to the half-written view
    served = httpx.post(f"{settings.api_url}/v1/features", json=body, timeout=10).json()
    assert served["batch"]["version"] == served_before["batch"]["version"] == before["version"]
    result = stack.run_batch(int(time.time() * 1000))
    assert result["switched"] and result["version"] > killed_version
    # Nothing is advanced from what the killed run left: every group is rebuilt (no
    # tiles kept) or reassembled from its tiles (a run after the serving view did not
    # finish), each with its reason.
    assert result["mode"] != "incremental"
    assert set(result["mode_reasons"]) == {g.name for g in repo.groups}, result["mode_reasons"]
    assert pointer(settings)["version"] == result["version"]


READINGS = EventSource(
    "readings",
    event_time="t",
    fields=[
        Field("user", "string", required=True),
        Field("t", "timestamp", required=True),
        Field("amount", "float"),
    ],
)
READINGS_GROUP = FeatureGroup(
    "g", Entity("user", "user"), READINGS, [Aggregation("sum", "amount", windows=["1d"])]
)


def test_a_run_records_its_mode_and_the_lake_files_it_read(
    spark_factory, redis_process, tmp_path
) -> None:
    """Without the stack, incremental runs on: two lake commits, then a run asked for
    --full and a default one. The first rebuilds from every event (and says why), counting
    the snapshot's files and bytes (the files on disk); the second runs from the tiles the
    first stored, and reads and writes nothing (nothing arrived, the cutoff did not move).
    Then, with incremental runs off or a lake under LFP_BATCH_TILES_MIN_EVENTS, a run
    recomputes everything and says why."""
    settings = lake_settings(redis_process, tmp_path, batch_incremental=True)
    cutoff = align_cutoff(int(time.time() * 1000) - 2 * HOUR_MS)
    uri = settings.table_uri(READINGS.table_name)
    for commit in range(2):
        events = [
            {"user": f"u{i % 7}", "t": cutoff - 1 - i * 60_000, "amount": float(i)}
            for i in range(commit * 20, commit * 20 + 20)
        ]
        rows = [(READINGS.parse(orjson.dumps(e)), 0, commit * 20 + i) for i, e in enumerate(events)]
        append_with_offsets(uri, READINGS, rows, "t", {0: commit * 20 + 20})
    files = DeltaTable(uri).file_uris()
    on_disk = sum(Path(f).stat().st_size for f in files)
    repo = FeatureRepo([READINGS_GROUP], [])
    batch = BatchScheduler(spark_factory(settings), settings, repo)

    with pytest.raises(ValueError, match="unknown batch run mode 'incremental'"):
        batch.run_once("manual", cutoff, mode="incremental")  # not one a caller asks for
    asked = batch.run_once("manual", cutoff, mode="full")
    default = batch.run_once("schedule", cutoff)
    assert asked is not None and default is not None
    stored = {r.run_id: r for r in RunHistory(open_store(settings)).recent(10)}
    for record in (asked, stored[asked.run_id]):
        # Rebuilt from every event of the lake, as asked.
        assert record.status == RunStatus.SUCCEEDED, record.error
        assert record.mode == "full" and record.group_modes == {"g": "rebuild"}
        assert record.mode_reasons == {"g": "--full"}
        assert record.rows_read == 40 and record.entities_written == 7
        assert record.lake_files_read == len(files) == 2
        assert record.lake_bytes_read == on_disk > 0
        assert record.tiles_written and record.keys_written == 7 and record.keys_deleted == 0
    for record in (default, stored[default.run_id]):
        # From the tiles the first run stored: nothing new in the lake, the same cutoff.
        assert record.status == RunStatus.SUCCEEDED, record.error
        assert record.mode == "incremental" and record.group_modes == {"g": "incremental"}
        assert record.mode_reasons == {}
        assert record.rows_read == 0 and record.entities_written == 0
        assert record.lake_files_read == 0 and record.lake_bytes_read == 0
        assert record.tiles_written == 0 and record.keys_written == 0
    for record in (asked, default):
        # What this job cannot tell yet is not recorded.
        for unknown in ("new_events", "entities_changed"):
            assert getattr(record, unknown) is None, unknown
    off = lake_settings(redis_process, tmp_path, batch_incremental=False)
    plain = BatchScheduler(spark_factory(off), off, repo).run_once("schedule", cutoff)
    assert plain is not None and plain.status == RunStatus.SUCCEEDED, plain
    assert plain.mode == "full" and plain.group_modes == {"g": "rebuild"}
    assert plain.mode_reasons == {"g": "LFP_BATCH_INCREMENTAL=false"}
    assert plain.rows_read == 40 and plain.entities_written == 7 and plain.tiles_written is None
    # A lake under LFP_BATCH_TILES_MIN_EVENTS (its log counts 40 events) goes window by
    # window and keeps the tiles; at the threshold, runs go on from them.
    table = READINGS.table_name
    small = lake_settings(redis_process, tmp_path, batch_tiles_min_events=41)
    under = BatchScheduler(spark_factory(small), small, repo).run_once("schedule", cutoff)
    assert under is not None and under.status == RunStatus.SUCCEEDED, under
    assert under.mode == "full" and under.tiles_written is None and under.rows_read == 40
    assert under.mode_reasons == {
        "g": f"{table} holds 40 events, under LFP_BATCH_TILES_MIN_EVENTS=41 (window by window, "
        "the tiles kept)"
    }
    at = lake_settings(redis_process, tmp_path, batch_tiles_min_events=40)
    again = BatchScheduler(spark_factory(at), at, repo).run_once("schedule", cutoff)
    assert again is not None and again.group_modes == {"g": "reassemble"}, again
    assert again.rows_read == 0 and again.entities_written == 7
