"""`lfp batch history` and `lfp batch run`'s summary stay readable at 80 columns: run
records written to a real redis-server with the store's own API, read by the command."""

from __future__ import annotations

import io
import json
import os
import time

import pytest
from rich.console import Console

from feature_core.runs import RunRecord, RunStatus
from feature_core.settings import Settings
from infra.cli.batch import run_summary
from online_store import open_store
from tests.infra.cli.terminal import assert_readable, header_of, lfp, row_of

ERROR = (
    "Job aborted due to stage failure: Task 3 in stage 7.0 failed 4 times, most recent "
    "failure: java.lang.OutOfMemoryError: Java heap space at "
    "org.apache.spark.sql.execution.SparkPlan.executeQuery(SparkPlan.scala:218)"
)
TRIGGERS = ["startup", "schedule", "definitions-changed", "manual", "speed-gap", "view-missing"]
#: Run ids as RunRecord makes them (12 hex digits); the first two share 7.
IDS = [
    "3fa2b1c0d11e",
    "3fa2b1c1d11e",
    "2e0c9a7b5d3f",
    "3e0c9a7b5d3f",
    "4e0c9a7b5d3f",
    "5e0c9a7b5d3f",
]


#: What the succeeded runs did, by trigger: an incremental run, a mixed one with a group
#: reassembled and one rebuilt, a full one; the view-missing run's record is from before
#: run modes (none).
FIGURES = {
    "schedule": {
        "mode": "incremental",
        "group_modes": {"user_activity": "incremental", "item_popularity": "incremental"},
        "mode_reasons": {},
        "lake_files_read": 63,
        "lake_bytes_read": 48_123_456,
        "new_events": 10_000,
        "tiles_written": 5_120,
        "entities_changed": {"data": 1_200, "edge": 56},
        "keys_written": 12_000,
        "keys_deleted": 3,
    },
    "definitions-changed": {
        "mode": "mixed",
        "group_modes": {
            "user_activity": "incremental",
            "item_popularity": "reassemble",
            "user_purchases": "rebuild",
        },
        "mode_reasons": {
            "item_popularity": "feature definitions changed (same tiles)",
            "user_purchases": "tile columns changed",
        },
        "lake_files_read": 1_204,
        "lake_bytes_read": 1_234_567_890,
        "new_events": 2_000,
        "tiles_written": 246_912,
        "entities_changed": {"data": 2_400, "edge": 112},
        "keys_written": 24_000,
        "keys_deleted": 6,
    },
    "speed-gap": {
        "mode": "full",
        "group_modes": {"user_activity": "full", "item_popularity": "full"},
        "mode_reasons": {"user_activity": "--full", "item_popularity": "--full"},
        "lake_files_read": 3,
        "lake_bytes_read": 999,
    },
}
#: The history's mode column, by trigger (failed and running runs have none).
MODES = {"schedule": "incr", "definitions-changed": "mixed*", "speed-gap": "full"}


def _records(now: float) -> list[RunRecord]:
    """Six finished runs, one per trigger (two failed, one retried), and one running."""
    records = []
    for i, trigger in enumerate(TRIGGERS):
        failed = i in (0, 3)
        started = now - 3600 * (i + 1)
        records.append(
            RunRecord(
                **FIGURES.get(trigger, {}),
                run_id=IDS[i],
                trigger=trigger,
                status=RunStatus.FAILED if failed else RunStatus.SUCCEEDED,
                started_at=started,
                finished_at=started + 123.4 + 40 * i,
                cutoff=int((started - 600) * 1000),
                delta_versions={"raw_events": 12 + i, "card_transactions": 3},
                rows_read=None if failed else 1_234_567 * i,
                entities_written=None if failed else 12_345 * i,
                view_version=None if failed else 20 - i,
                switched=not failed,
                attempts=3 if i == 2 else 1,
                error=ERROR if failed else None,
            )
        )
    records.append(  # this process's: still running, not abandoned
        RunRecord(
            run_id="77aa88bb99cc",
            trigger="schedule",
            started_at=now - 30,
            owner=f"{os.uname().nodename}:{os.getpid()}",
            renewed_at=now,
        )
    )
    return records


@pytest.fixture
def runs(redis_process, tmp_path, monkeypatch) -> list[RunRecord]:
    url = f"redis://127.0.0.1:{redis_process.port}/0"
    monkeypatch.setenv("LFP_REDIS_URL", url)
    monkeypatch.setenv("LFP_DATA_DIR", str(tmp_path))  # its lake holds no run table
    records = _records(time.time())
    store = open_store(Settings(_env_file=None, redis_url=url))
    store.save_runs(((r.run_id, r.model_dump_json(), r.started_at) for r in records), 50)
    store.close()
    return records


def test_history_at_80_columns_shows_every_run_whole_with_its_key_columns(runs):
    result = lfp("batch", "history")
    assert result.exit_code == 0, result.output
    out = result.output
    assert_readable(out)
    header = header_of(out)
    for key in ("run", "trigger", "status", "took", "view"):
        assert key in header, out
    shown = {}
    for run in runs:
        short = next(w for w in out.split() if len(w) >= 7 and run.run_id.startswith(w))
        assert run.run_id not in out  # shortened...
        shown[run.run_id] = short
        row = row_of(out, short).split()
        assert run.trigger in row and run.status.value in row, row
        if run.duration_s is not None:
            assert f"{run.duration_s:,.0f}" in row, row
        assert (f"v{run.view_version}" if run.view_version else "-") == row[-1], row
        assert (MODES[run.trigger] if run.mode else "-") == row[-2], row  # kept at 80
    assert len(set(shown.values())) == len(runs)  # ...to prefixes that stay unique
    assert shown["3fa2b1c0d11e"] == "3fa2b1c0"  # two ids share 7 characters: one more
    # The columns left out are named, with the option that shows them; the errors of
    # failed runs follow the table, wrapped at the width.
    flat = " ".join(out.split())
    assert "--wide adds" in flat and "error" in flat.split("--wide adds")[1]
    for run in runs:
        if run.error:
            # Clipped after its last whole word of 200 characters, the rest counted.
            clipped = f"{ERROR[:137]} (+75 characters: --wide)"
            assert f"{shown[run.run_id]} failed: {clipped}" in flat and ERROR[137] == " "


def test_history_at_60_columns_still_fits_and_keeps_the_key_columns(runs):
    result = lfp("batch", "history", columns=60)
    assert result.exit_code == 0, result.output
    assert_readable(result.output, 60)
    assert {"run", "trigger", "status", "took", "view"} <= set(header_of(result.output))


def test_history_wide_shows_full_ids_and_every_column(runs):
    result = lfp("batch", "history", "--wide")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "…" not in out and "--wide adds" not in out
    header = " ".join(header_of(out))
    for column in ("run", "trigger", "status", "started", "took", "cutoff", "lake versions"):
        assert column in header, out
    for column in ("events", "entities", "tries", "view", "error"):
        assert column in header, out
    for run in runs:
        row = row_of(out, run.run_id).split()  # the full id
        if run.rows_read:
            assert f"{run.rows_read:,}" in row and f"{run.entities_written:,}" in row
    assert "3" in row_of(out, runs[2].run_id).split()  # its tries
    assert "raw_events:v14" in out and "card_transactions:v3" in out
    for column in ("mode", "read", "tiles", "keys", "group modes", "changed"):
        assert column in header, out
    incremental = row_of(out, runs[1].run_id)
    assert "48 MB/63" in incremental and "1,200 data, 56 edge" in incremental
    assert {"incr", "5,120", "12,000/3", "incremental:"} <= set(incremental.split())
    mixed = row_of(out, runs[2].run_id)
    assert "1.2 GB/1,204" in mixed and "2,400 data, 112 edge" in mixed
    assert {"mixed*", "246,912", "24,000/6"} <= set(mixed.split())
    full = row_of(out, runs[4].run_id)
    assert "999 B/3" in full and "full (--full):" in full  # unknown figures: "-"
    # A record from before run modes: mode, read, tiles, keys, group modes, changed.
    assert row_of(out, runs[5].run_id).split().count("-") == 6


def test_history_as_json_is_every_record_unchanged(runs):
    result = lfp("batch", "history", "--json", "--limit", "50", columns=300)
    assert result.exit_code == 0, result.output
    decoder, text, lines = json.JSONDecoder(), result.output.strip(), []
    while text:  # one indented JSON document per run
        record, end = decoder.raw_decode(text)
        lines.append(record)
        text = text[end:].strip()
    assert {line["run_id"] for line in lines} == {run.run_id for run in runs}
    assert next(x for x in lines if x["run_id"] == runs[0].run_id)["error"] == ERROR


def test_a_run_summary_fits_80_columns_with_its_error_whole():
    record = _records(time.time())[3]
    console = Console(file=io.StringIO(), width=80, color_system=None)
    run_summary(console, record)
    out = console.file.getvalue()
    assert_readable(out)
    assert f"batch run {record.run_id}" in out
    flat = " ".join(out.split())
    assert "status failed" in flat and "trigger manual" in flat and "duration 243 s" in flat
    assert "".join(f"error {ERROR}".split()) in "".join(out.split())  # all of it, in order


def test_a_run_summary_prints_its_mode_and_what_it_read_and_wrote_one_per_line():
    records = _records(time.time())
    console = Console(file=io.StringIO(), width=80, color_system=None)
    run_summary(console, records[2])  # mixed, a group rebuilt
    out = console.file.getvalue()
    assert_readable(out)
    flat = " ".join(out.split())
    for line in (
        "mode mixed",
        "group modes reassemble (feature definitions changed (same tiles)): "
        "item_popularity; incremental: user_activity; rebuild (tile columns changed): "
        "user_purchases",
        "lake data read 1.2 GB in 1,204 files",
        "new events 2,000",
        "tiles written 246,912",
        "entities changed 2,400 data, 112 edge",
        "keys written / deleted 24,000 / 6",
    ):
        assert line in flat, out
    console = Console(file=io.StringIO(), width=80, color_system=None)
    run_summary(console, records[5])  # from before run modes: each figure "-"
    lines = [" ".join(line.split()) for line in console.file.getvalue().splitlines()]
    for name in (
        "mode",
        "group modes",
        "lake data read",
        "new events",
        "tiles written",
        "entities changed",
        "keys written / deleted",
    ):
        assert f"{name} -" in lines, lines


def test_batch_run_takes_full_or_reassemble_never_both():
    result = lfp("batch", "run", "--help")
    assert result.exit_code == 0 and "--full" in result.output and "--reassemble" in result.output
    both = lfp("batch", "run", "--full", "--reassemble")
    assert both.exit_code == 2, both.output  # refused before Spark or Redis start
    assert "pick one" in " ".join(both.output.split())


def test_history_mode_of_a_reassembling_run():
    """Every group reassembled: ``reasm`` (no wider than ``mixed*``, the 80-column
    history's mode column), starred when a group was rebuilt in the same run."""
    from infra.cli.batch import run_mode

    figures = {"run_id": IDS[0], "trigger": "view-missing", "started_at": time.time()}
    groups = {"user_activity": "reassemble", "item_popularity": "reassemble"}
    record = RunRecord(**figures, mode="reassemble", group_modes=groups)
    assert run_mode(record) == "reasm"
    groups = {"user_activity": "reassemble", "item_popularity": "rebuild"}
    assert run_mode(RunRecord(**figures, mode="mixed", group_modes=groups)) == "mixed*"
