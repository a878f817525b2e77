"""Run records: what a run did reads back unchanged, and records written before runs had
modes (in Redis and in the lake's ``_lfp_batch_runs``) still parse."""

from __future__ import annotations

import dataclasses

import orjson
import pytest
from pydantic import ValidationError

from batch_layer.job import BatchResult
from batch_layer.scheduler import RUN_FIGURES
from feature_core.runs import RunRecord, RunStatus

#: A record as the release before run modes saved it (every key it had, none since).
OLD_RECORD = {
    "run_id": "31a7825d03df",
    "trigger": "manual",
    "status": "succeeded",
    "started_at": 1795424580.5,
    "finished_at": 1795424613.7,
    "cutoff": 1795424400000,
    "delta_version": 39,
    "delta_versions": {"raw_events": 39},
    "rows_read": 30000,
    "entities_written": 1191,
    "view_version": 3,
    "switched": True,
    "garbage_collected": 0,
    "attempts": 1,
    "stages": 32,
    "tasks": 98,
    "error": None,
    "owner": "host:123",
    "renewed_at": 1795424600.0,
}


def test_a_record_from_before_run_modes_parses_with_its_figures_unknown():
    record = RunRecord.model_validate_json(orjson.dumps(OLD_RECORD))
    assert record.status is RunStatus.SUCCEEDED and record.rows_read == 30000
    assert record.mode is None and record.group_modes is None and record.mode_reasons is None
    for name in RUN_FIGURES:
        assert getattr(record, name) is None, name


def test_a_record_with_a_runs_mode_and_figures_reads_back_unchanged():
    record = RunRecord(
        trigger="schedule",
        mode="mixed",
        group_modes={"user_activity": "incremental", "user_purchases": "rebuild"},
        mode_reasons={"user_purchases": "tile columns changed"},
        lake_files_read=63,
        lake_bytes_read=48_123_456,
        new_events=10_000,
        tiles_written=5_120,
        entities_changed={"data": 1_200, "edge": 56},
        keys_written=1_256,
        keys_deleted=3,
    )
    again = RunRecord.model_validate_json(record.model_dump_json())
    assert again == record
    assert again.group_modes == {"user_activity": "incremental", "user_purchases": "rebuild"}
    assert again.entities_changed == {"data": 1_200, "edge": 56}


def test_an_unknown_field_is_still_refused():
    with pytest.raises(ValidationError, match="tiles_writen"):
        RunRecord.model_validate({**OLD_RECORD, "tiles_writen": 3})


def test_every_figure_the_scheduler_copies_is_a_field_of_the_result_and_the_record():
    result_fields = {f.name for f in dataclasses.fields(BatchResult)}
    assert set(RUN_FIGURES) <= result_fields
    assert set(RUN_FIGURES) <= set(RunRecord.model_fields)
    # A full result with nothing else known says so: mode full, every figure unknown.
    result = BatchResult(3, 1795424400000, {}, 0, 0, 0.0, 1.0)
    assert result.mode == "full" and result.group_modes == {} and result.lake_bytes_read is None
