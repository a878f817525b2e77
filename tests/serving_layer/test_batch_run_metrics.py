"""Batch run history in /metrics: the last finished run's figures and the records kept by
status, read from a private redis-server the run history writes to (as the scheduler does)."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from batch_layer.history import RunHistory
from feature_core.runs import RunRecord, RunStatus
from feature_core.settings import Settings
from online_store import open_store
from serving_layer.app import create_app
from serving_layer.metrics import ServingMetrics
from tests.conftest import wait_for
from tests.serving_layer.conftest import private_redis_settings

LAST_RUN = (
    "lfp_batch_last_run_duration_seconds",
    "lfp_batch_last_run_finished_timestamp_seconds",
    "lfp_batch_last_run_succeeded",
    "lfp_batch_last_run_events_read",
    "lfp_batch_last_run_entities_written",
)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value, parsed by prometheus_client's own parser."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def family_names(text: str) -> set[str]:
    return {family.name for family in text_string_to_metric_families(text)}


def run(status: RunStatus, started_at: float, duration_s: float | None, **fields) -> RunRecord:
    finished_at = None if duration_s is None else started_at + duration_s
    return RunRecord(
        trigger="schedule",
        status=status,
        started_at=started_at,
        finished_at=finished_at,
        renewed_at=started_at,
        **fields,
    )


def test_the_last_finished_run_is_the_newest_to_end_and_statuses_are_counted():
    metrics = ServingMetrics()
    before = samples(generate_latest(metrics.registry).decode())
    # Listed before any run (so a dashboard finds them), but no value nobody produced.
    assert set(LAST_RUN) <= family_names(generate_latest(metrics.registry).decode())
    assert not [key for key in before if key[0].startswith("lfp_batch_")]

    now = time.time()
    long_failed = run(RunStatus.FAILED, now - 600, 550.0, rows_read=7, error="boom")
    short_ok = run(RunStatus.SUCCEEDED, now - 100, 40.0, rows_read=1200, entities_written=30)
    running = run(RunStatus.RUNNING, now - 10, None)
    # Newest first by start, as the store returns them; the failed run ended last.
    metrics.observe_runs([running, short_ok, long_failed])
    values = samples(generate_latest(metrics.registry).decode())
    assert values[("lfp_batch_last_run_duration_seconds", ())] == pytest.approx(550.0)
    assert values[("lfp_batch_last_run_finished_timestamp_seconds", ())] == pytest.approx(now - 50)
    assert values[("lfp_batch_last_run_succeeded", ())] == 0
    assert values[("lfp_batch_last_run_events_read", ())] == 7
    # Not recorded by the failed run: no sample rather than a made-up 0.
    assert ("lfp_batch_last_run_entities_written", ()) not in values
    recorded = {
        dict(labels)["status"]: value
        for (name, labels), value in values.items()
        if name == "lfp_batch_runs_recorded"
    }
    assert recorded == {"running": 1, "succeeded": 1, "failed": 1, "abandoned": 0}

    # A later read without the failed run (trimmed from the history): the success is last.
    metrics.observe_runs([short_ok])
    values = samples(generate_latest(metrics.registry).decode())
    assert values[("lfp_batch_last_run_succeeded", ())] == 1
    assert values[("lfp_batch_last_run_duration_seconds", ())] == pytest.approx(40.0)
    assert values[("lfp_batch_last_run_entities_written", ())] == 30
    assert values[("lfp_batch_runs_recorded", (("status", "failed"),))] == 0

    # An empty history takes the last run away again.
    metrics.observe_runs([])
    values = samples(generate_latest(metrics.registry).decode())
    assert not [k for k in values if k[0].startswith("lfp_batch_last_run")]


@pytest.fixture
def settings(redis_process) -> Settings:
    return private_redis_settings(
        redis_process.port, api_ops_interval_s=0.2, batch_run_lease_s=60.0
    )


def test_metrics_export_the_run_history_the_scheduler_records(settings):
    history = RunHistory(open_store(settings), keep=settings.batch_run_history)
    now = time.time()
    with TestClient(create_app(settings)) as api:
        text = api.get("/metrics").text
        assert set(LAST_RUN) | {"lfp_batch_runs_recorded"} <= family_names(text)
        # No run recorded yet: zero records of each status, and no last run.
        assert not [k for k in samples(text) if k[0].startswith("lfp_batch_last_run")]
        recorded = {k: v for k, v in samples(text).items() if k[0] == "lfp_batch_runs_recorded"}
        assert len(recorded) == len(RunStatus) and set(recorded.values()) == {0}

        done = run(
            RunStatus.SUCCEEDED, now - 300, 12.5, rows_read=4321, entities_written=87, cutoff=1
        )
        history.save(done)
        # Its scheduler was killed: not renewed for longer than the lease.
        history.save(run(RunStatus.RUNNING, now - 200, None))
        history.save(run(RunStatus.RUNNING, now - 5, None))

        def exported() -> dict | None:
            values = samples(api.get("/metrics").text)
            found = ("lfp_batch_last_run_duration_seconds", ()) in values
            return values if found else None

        values = wait_for(exported, 10, "the batch run metrics in /metrics", 0.1)
        assert values[("lfp_batch_last_run_duration_seconds", ())] == pytest.approx(12.5)
        assert values[("lfp_batch_last_run_finished_timestamp_seconds", ())] == pytest.approx(
            now - 287.5
        )
        assert values[("lfp_batch_last_run_succeeded", ())] == 1
        assert values[("lfp_batch_last_run_events_read", ())] == 4321
        assert values[("lfp_batch_last_run_entities_written", ())] == 87
        by_status = {
            dict(labels)["status"]: v
            for (name, labels), v in values.items()
            if name == "lfp_batch_runs_recorded"
        }
        assert by_status == {"succeeded": 1, "running": 1, "abandoned": 1, "failed": 0}

        # A newer run fails: the next refresh (LFP_API_OPS_INTERVAL_S) reports it.
        history.save(run(RunStatus.FAILED, now - 60, 30.0, rows_read=10, error="lake gone"))

        def failed_last() -> dict | None:
            values = samples(api.get("/metrics").text)
            return values if values[("lfp_batch_last_run_succeeded", ())] == 0 else None

        values = wait_for(failed_last, 10, "the failed run as the last one", 0.1)
        assert values[("lfp_batch_last_run_duration_seconds", ())] == pytest.approx(30.0)
        assert values[("lfp_batch_last_run_events_read", ())] == 10
        assert ("lfp_batch_last_run_entities_written", ()) not in values
        assert values[("lfp_batch_runs_recorded", (("status", "failed"),))] == 1
