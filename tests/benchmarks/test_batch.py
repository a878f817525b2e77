"""bench-batch: its lake copies and appends (fast), and the whole bench at toy size (Spark)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from deltalake import DeltaTable

from batch_layer.lake import INGEST_COMMIT, ingest_commits_after
from benchmarks.batch import (
    CELL_APPENDED,
    CELL_FULL,
    CELL_NO_NEW,
    CELLS,
    Appender,
    JobTime,
    LakeSpec,
    busy_seconds,
    by_action,
    cached_lake,
    check_disk,
    working_copy,
)
from feature_core.windows import DAY_MS, MINUTE_MS

ROOT = Path(__file__).resolve().parents[2]
SPEC = LakeSpec(events=3_000, users=500, zipf=1.2, days=5)


def test_a_lake_is_generated_once_and_kept_under_its_parameters(tmp_path: Path) -> None:
    first = cached_lake(tmp_path, SPEC, tmp_path)
    assert DeltaTable(str(first.path)).to_pyarrow_table().num_rows == 3_000
    again = cached_lake(tmp_path, SPEC, tmp_path)
    assert again == first  # read from the cache: same lake, same "now"
    other = cached_lake(tmp_path, LakeSpec(2_000, 500, 1.2, 5), tmp_path)
    assert other.path != first.path


def test_a_disk_too_full_is_refused_with_the_space_needed(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"needs about 1000000\.0 GB free under"):
        check_disk([tmp_path], 10**15, "generating the lake")


def test_appends_go_to_a_copy_in_ingest_sized_commits(tmp_path: Path) -> None:
    lake = cached_lake(tmp_path / "cache", SPEC, tmp_path)
    cached_version = DeltaTable(str(lake.path)).version()
    uri = str(working_copy(lake.path, tmp_path / "work"))
    base = DeltaTable(uri).version()
    appender = Appender(uri, SPEC, max_records=400, next_id=SPEC.events)
    previous, cutoff = lake.now_ms, lake.now_ms + 15 * MINUTE_MS
    appender.append(1_000, lake.now_ms - SPEC.days * DAY_MS, previous, cutoff)

    assert DeltaTable(str(lake.path)).version() == cached_version  # the cache is untouched
    assert appender.commits == 3  # 400 + 400 + 200
    assert ingest_commits_after(uri, base) == [base + 1, base + 2, base + 3]
    history = DeltaTable(uri).history(3)
    assert all(INGEST_COMMIT in entry for entry in history)
    table = DeltaTable(uri).to_pyarrow_table()
    added = table.filter(np.array(table.column("kafka_offset").to_pylist()) >= 0)
    times = np.array(added.column("event_time").to_pylist())
    assert len(times) == 1_000
    assert ((times >= previous) & (times < cutoff)).sum() == 980  # 98% in the last interval
    assert (times < previous).sum() == 20  # 2% late, into older dates
    ids = added.column("event_id").to_pylist()
    assert len(set(ids)) == 1_000 and "e3000" in ids  # ids continue after the lake's
    # One file per date partition in each commit, as lake ingest writes them.
    for version in range(base + 1, base + 4):
        new = _files(uri, version) - _files(uri, version - 1)
        dates = [Path(path).parent.name for path in new]
        assert len(dates) == len(set(dates)) >= 1


def _files(uri: str, version: int) -> set[str]:
    return set(DeltaTable(uri, version=version).file_uris())


def _job(site: str, start: float, seconds: float) -> JobTime:
    return JobTime(site, start, seconds, 1, 2, 1.0, 0.5, 10, 20)


def test_stage_jobs_count_toward_the_action_that_follows_them() -> None:
    aqe = "$anonfun$withThreadLocalCaptured$2 at CompletableFuture.java:1768"
    jobs = [
        _job("count at NativeMethodAccessorImpl.java:0", 0.0, 2.0),
        _job(aqe, 3.0, 1.0),
        _job(aqe, 3.5, 1.0),
        _job("foreachPartition at /work/main/batch_layer/job.py:334", 5.0, 4.0),
    ]
    actions = by_action(jobs)
    assert [(site, len(members)) for site, members in actions] == [
        ("count at NativeMethodAccessorImpl.java:0", 1),
        ("foreachPartition at batch_layer/job.py:334", 3),
    ]
    assert busy_seconds(jobs) == pytest.approx(2.0 + 1.5 + 4.0)


@pytest.mark.spark
def test_the_bench_at_toy_size_prints_every_cell(tmp_path: Path) -> None:
    out = tmp_path / "cells.json"
    run = subprocess.run(
        [
            *(sys.executable, "-m", "benchmarks.batch", "--events", "20000", "--rounds", "1"),
            *("--cache-dir", str(tmp_path / "cache"), "--json", str(out)),
            "--no-tiles",  # window by window: every run reads all history
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=840,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    printed = run.stdout
    for name in CELLS:
        assert f"20,000  {name}" in printed
    assert "full run / DuckDB:" in printed
    for name in (CELL_FULL, CELL_NO_NEW, CELL_APPENDED):
        assert f"where the run '{name}' on 20,000 events spends" in printed
    # Jobs by the run's step (each group, the run-wide steps) and the action.
    assert "lfp batch" not in printed  # the step prefix is not repeated
    assert "(rebuild): foreachPartition" in printed  # a group's window-by-window write
    assert "load average" in printed

    cells = {c["name"]: c for c in json.loads(out.read_text())}
    assert set(cells) == set(CELLS)
    full, duck, unchanged, appended = (cells[name]["rounds"][0] for name in CELLS)
    assert full["rows_read"] == duck["rows_read"] == unchanged["rows_read"] == 20_000
    assert appended["rows_read"] == 20_200  # 1% appended, every event before the cutoff
    # DuckDB computed the same groups' tiles: one row per entity of each group.
    assert duck["entities_written"] == full["entities_written"] > 1_000
    assert unchanged["entities_written"] > 1_000
    assert appended["entities_written"] >= unchanged["entities_written"]
    for run_round in (full, unchanged, appended):
        assert run_round["used_memory"] > 0 and run_round["keys"] > 0
        assert 50 < run_round["memory_per_key"] < 20_000
        assert run_round["seconds"] > duck["seconds"] > 0
    assert appended["lake_files"] > full["lake_files"]
    assert appended["lake_bytes"] > full["lake_bytes"]
