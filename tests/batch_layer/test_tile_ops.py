"""Operations on the tile table: compaction keeps every row and every group's recorded state
(a run commits on top of it, one that read before it cannot bring old files back), the full
vacuum deletes a failed run's files but never those of a run in progress, the lake job
reports the tile table with the source tables, and retention drops only dates whose every
series expired. Tile tables are built with the commit path itself (files staged as a run
stages them, committed by ``commit_tiles``)."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError

from batch_layer.lake import append_with_offsets, optimize_lake
from batch_layer.tile_ops import (
    RUN_FILES_FOLDED,
    _rewrite,
    expired_dates,
    expired_series,
    fold_run_files,
    optimize_tiles,
    partition_series,
    recorded_floors,
    retention_drops,
    runs_in_progress,
    table_size,
    vacuum_retention_hours,
)
from batch_layer.tiles import (
    DATA_SCHEMA,
    TILE_DDL,
    TILE_SCHEMA,
    TILES_TABLE,
    VIEW_APP,
    GroupCommit,
    GroupState,
    LakeState,
    TileTableState,
    commit_tiles,
    last_commit,
    read_state,
    read_tiles,
    read_tiles_arrow,
    spec_tag,
    staged_files,
    tile_files,
    write_staged,
)
from demo.feature_repo import events as shop
from feature_core.definitions import FeatureRepo
from feature_core.runs import RunRecord, RunStatus
from feature_core.settings import Settings
from feature_core.tiles import retention_floor, tile_series, tile_spec_fingerprint
from online_store import open_store

DAY = 86_400_000
D0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z
GROUPS = {"clicks": ["raw_events"], "orders": ["raw_events"]}
HOUR_S = 3600


def _date(start: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(start // 1000))


def _tile(entity: str, start: int, series: str = "1d") -> dict:
    return {
        "series": series,
        "entity": entity,
        "keys": [entity],
        "start": start,
        "partials": json.dumps([start % 97, entity]),
        "events": start % 5 + 1,
        "first_ms": None,
        "last_ms": None,
        "frag_start_ms": None,
        "has_gap": None,
        "prev_last_ms": None,
    }


def _stage(uri: str, files: dict[tuple[str, str], list[list[dict]]], run: str) -> str:
    """Files as a run stages them: ``runs/<run>-<nonce>/group=…/tile_date=…/part-….parquet``
    (several for one partition: a run that staged it in parts)."""
    staged = f"runs/{run}-{uuid.uuid4().hex[:12]}"
    for (group, date), parts in files.items():
        directory = Path(uri) / staged / f"group={group}" / f"tile_date={date}"
        directory.mkdir(parents=True)
        for i, rows in enumerate(parts):
            table = pa.Table.from_pylist(rows, DATA_SCHEMA)
            pq.write_table(table, directory / f"part-{i:05d}.parquet", compression="zstd")
    return staged


def _state(view: int, lake_version: int) -> GroupState:
    return GroupState(
        lakes={"raw_events": LakeState(version=lake_version, table_tag=7)},
        cutoff_ms=D0 + 10 * DAY,
        view_version=view,
        spec_tag=spec_tag("spec"),
    )


def _commit(uri: str, read: TileTableState, staged: str | None, run: str, view: int, **groups):
    commits = {
        group: GroupCommit(state=_state(view, view), spec="spec", mode="incremental", **extra)
        for group, extra in groups.items()
    }
    return commit_tiles(
        uri, read, staged, commits, run_id=run, view_version=view, pointer=f'{{"v": {view}}}'
    )


def _rows(table: pa.Table) -> Counter:
    return Counter(json.dumps(row, sort_keys=True) for row in table.to_pylist())


def _log(uri: str, version: int) -> list[dict]:
    text = (Path(uri) / "_delta_log" / f"{version:020d}.json").read_text()
    return [json.loads(line) for line in text.splitlines()]


def _last_updated(actions: list[dict]) -> dict:
    """The ``lastUpdated`` a txn action may carry (its time), to compare the rest."""
    txn = next(a["txn"] for a in actions if "txn" in a)
    return {"lastUpdated": txn["lastUpdated"]} if "lastUpdated" in txn else {}


def crowded_tile_table(uri: str) -> TileTableState:
    """Two groups; clicks' first date staged in three parts, its second in one."""
    first = D0, D0 + DAY
    files = {
        ("clicks", _date(first[0])): [
            [_tile("u1", first[0]), _tile("u1", first[0], "1h")],
            [_tile("u2", first[0])],
            [_tile("u3", first[0] + 3_600_000, "1h")],
        ],
        ("clicks", _date(first[1])): [[_tile("u1", first[1])]],
        ("orders", _date(first[0])): [[_tile("o1", first[0])], [_tile("o2", first[0])]],
    }
    read = read_state(uri, GROUPS)
    _commit(uri, read, _stage(uri, files, "run-1"), "run-1", 1, clicks={}, orders={})
    return read_state(uri, GROUPS)


def test_compaction_keeps_every_row_and_the_recorded_state(tmp_path):
    uri = str(tmp_path / TILES_TABLE)
    before = crowded_tile_table(uri)
    rows = _rows(read_tiles_arrow(uri))
    assert table_size(uri) is not None and table_size(uri)[0] == 6  # type: ignore[index]

    result = optimize_tiles(uri, retention_hours=168, runs_started=[])
    assert result is not None
    assert (result.partitions, result.files_before, result.files_after) == (2, 6, 3)
    assert result.notes == () and result.columns == ()
    assert (result.files_after, result.bytes_after) == table_size(uri)
    assert _rows(read_tiles_arrow(uri)) == rows
    assert _rows(DeltaTable(uri).to_pyarrow_table().drop(["group", "tile_date"])) == _rows(
        read_tiles_arrow(uri).drop(["group", "tile_date"])
    )
    files = Counter((f.group, f.tile_date) for f in tile_files(uri))
    assert set(files.values()) == {1}
    # One rewrite, rows only rearranged (no data change), the view's app transaction
    # recorded again at its value: the groups' state is as it was.
    after = read_state(uri, GROUPS)
    assert after.version == before.version + 1  # type: ignore[operator]
    assert after.model_copy(update={"version": before.version}) == before
    actions = _log(uri, 1)
    assert [a["txn"] for a in actions if "txn" in a] == [
        {"appId": VIEW_APP, "version": before.view_version, **_last_updated(actions)}
    ]
    changes = [a.get("add", a.get("remove")) for a in actions if "add" in a or "remove" in a]
    assert len(changes) == 2 + 5 and not any(c["dataChange"] for c in changes)
    record = last_commit(uri)
    assert record is not None and (record.run, record.version) == ("run-1", 0)
    # Nothing left to compact: a second pass rewrites nothing.
    again = optimize_tiles(uri, retention_hours=168, runs_started=[])
    assert again is not None and (again.partitions, again.files_after) == (0, 3)
    assert DeltaTable(uri).version() == after.version

    # The next run commits on top of the compacted version: its file goes beside the
    # compacted one.
    compacted = read_tiles_arrow(uri, groups=["clicks"], partitions=[("clicks", _date(D0))])
    added = [_tile("u9", D0)]
    staged = _stage(uri, {("clicks", _date(D0)): [added]}, "run-2")
    done = _commit(uri, after, staged, "run-2", 2, clicks={})
    assert (done.files_added, done.files_removed) == (1, 0)
    state = read_state(uri, GROUPS)
    assert state.groups["clicks"] == _state(2, 2) and state.groups["orders"] == _state(1, 1)
    kept = read_tiles_arrow(uri, groups=["clicks"], partitions=[("clicks", _date(D0))])
    new = pa.Table.from_pylist(added, DATA_SCHEMA)
    assert _rows(kept.drop(["group", "tile_date"])) == _rows(
        compacted.drop(["group", "tile_date"])
    ) + _rows(new)


def test_a_run_that_read_before_the_compaction_cannot_bring_old_files_back(tmp_path):
    uri = str(tmp_path / TILES_TABLE)
    read = crowded_tile_table(uri)
    optimize_tiles(uri, retention_hours=168, runs_started=[])
    compacted = read_state(uri, GROUPS)
    rows = _rows(read_tiles_arrow(uri))
    staged = _stage(uri, {("clicks", _date(D0)): [[_tile("u9", D0)]]}, "late")
    with pytest.raises(CommitFailedError):  # it would remove files the compaction removed
        _commit(uri, read, staged, "late", 2, clicks={})
    assert read_state(uri, GROUPS) == compacted
    assert _rows(read_tiles_arrow(uri)) == rows
    # A compaction that read the table before a run's commit fails the same way.
    day = _date(D0 + DAY)
    other = _stage(uri, {("orders", day): [[_tile("o3", D0 + DAY)]] * 2}, "run-3")
    _commit(uri, compacted, other, "run-3", 3, orders={})
    stale = DeltaTable(uri)
    _commit(uri, read_state(uri, GROUPS), None, "run-4", 4, orders={"drop_dates": (day,)})
    dropped = read_state(uri, GROUPS)
    with pytest.raises(CommitFailedError):
        _rewrite(uri, stale, {("orders", day): frozenset()})
    assert read_state(uri, GROUPS) == dropped
    assert not tile_files(uri, partitions=[("orders", day)])


def _age(paths, hours: float) -> None:
    then = time.time() - hours * HOUR_S
    for path in paths:
        os.utime(path, (then, then))


def _parquet(directory: Path) -> set[str]:
    return {str(p) for p in directory.rglob("*.parquet")}


def test_runs_files_are_folded_and_compaction_keeps_each_tiles_newest_row(tmp_path):
    """Incremental runs add a file per partition they touch, each a newer row of a tile;
    a partition holding RUN_FILES_FOLDED is folded to its largest file and one more,
    and the optimize schedule's compaction to one: the newest rows read the same."""
    uri = str(tmp_path / TILES_TABLE)
    day = _date(D0)
    base = [_tile(f"u{i}", D0) for i in range(20)]
    read = read_state(uri, GROUPS)
    staged = _stage(uri, {("clicks", day): [base], ("orders", day): [base]}, "run-1")
    _commit(uri, read, staged, "run-1", 1, clicks={}, orders={})
    for run in range(2, RUN_FILES_FOLDED + 1):
        newer = {**_tile("u1", D0), "events": run, "partials": json.dumps([run])}
        files = {("clicks", day): [[newer]]}
        if run < RUN_FILES_FOLDED:  # orders stays one file short of a fold
            files[("orders", day)] = [[newer]]
        staged = _stage(uri, files, f"run-{run}")
        _commit(uri, read_state(uri, GROUPS), staged, f"run-{run}", run, clicks={}, orders={})
    counts = Counter((f.group, f.tile_date) for f in tile_files(uri))
    assert counts == {("clicks", day): RUN_FILES_FOLDED, ("orders", day): RUN_FILES_FOLDED - 1}
    newest = _rows(read_tiles_arrow(uri))
    u1 = [r for r in read_tiles_arrow(uri, groups=["clicks"]).to_pylist() if r["entity"] == "u1"]
    assert [r["events"] for r in u1] == [RUN_FILES_FOLDED]
    state = read_state(uri, GROUPS)
    largest = max(tile_files(uri, groups=["clicks"]), key=lambda f: f.size)

    folded = fold_run_files(uri)
    assert folded is not None and folded.partitions == 1
    clicks = tile_files(uri, groups=["clicks"])
    assert len(clicks) == 2 and largest.path in {f.path for f in clicks}
    assert len(tile_files(uri, groups=["orders"])) == RUN_FILES_FOLDED - 1
    assert _rows(read_tiles_arrow(uri)) == newest
    assert read_state(uri, GROUPS).groups == state.groups
    fold = next(f for f in clicks if f.path != largest.path)
    assert pq.read_table(fold.uri).column("events").to_pylist() == [RUN_FILES_FOLDED]
    assert fold_run_files(uri) is None

    optimize_tiles(uri, retention_hours=168, runs_started=[])
    assert Counter((f.group, f.tile_date) for f in tile_files(uri)) == {
        ("clicks", day): 1,
        ("orders", day): 1,
    }
    assert _rows(read_tiles_arrow(uri)) == newest
    raw = DeltaTable(uri).to_pyarrow_table()
    assert raw.num_rows == 2 * len(base)  # superseded rows gone


def test_full_vacuum_deletes_a_failed_runs_files_but_not_a_running_runs(tmp_path):
    uri = str(tmp_path / TILES_TABLE)
    read = crowded_tile_table(uri)
    failed = _stage(uri, {("clicks", _date(D0)): [[_tile("u7", D0)]]}, "failed")
    _age([*_parquet(Path(uri) / failed), Path(uri) / failed], hours=3)
    running = _stage(uri, {("clicks", _date(D0 + 2 * DAY)): [[_tile("u8", D0 + 2 * DAY)]]}, "r")
    _age(_parquet(Path(uri) / running), hours=3)  # staged 3 h ago by a run begun 4.5 h ago

    # The run history unreadable: only files a commit removed go.
    result = optimize_tiles(uri, retention_hours=1, runs_started=None, compact=False)
    assert result is not None and result.vacuumed == 0
    assert result.notes and "run history unreadable" in result.notes[0]
    assert _parquet(Path(uri) / failed) and _parquet(Path(uri) / running)

    # A run in progress for 4.5 h: files are kept for 6 h, every staged file stays.
    begun = time.time() - 4.5 * HOUR_S
    assert vacuum_retention_hours(1, [begun, time.time()]) == 6
    assert vacuum_retention_hours(168, [begun]) == 168
    assert vacuum_retention_hours(1, []) == 1
    result = optimize_tiles(uri, retention_hours=1, runs_started=[begun], compact=False)
    assert result is not None and result.vacuumed == 0
    assert result.notes == ("a run in progress: files kept for 6 h, not 1 h",)
    assert _parquet(Path(uri) / failed) and _parquet(Path(uri) / running)
    # ... and its commit finds them.
    done = _commit(uri, read, running, "r", 2, clicks={})
    assert done.files_added == 1 and done.files_removed == 0
    committed = {f.uri for f in tile_files(uri)}

    # No run in progress: the failed run's files past retention go, nothing the table holds.
    fresh = _stage(uri, {("clicks", _date(D0)): [[_tile("u6", D0)]]}, "just-now")
    result = optimize_tiles(uri, retention_hours=1, runs_started=[], compact=False)
    assert result is not None and result.vacuumed == 1 and result.notes == ()
    assert not (Path(uri) / failed).exists()  # its emptied directories too
    assert _parquet(Path(uri) / fresh)  # younger than the retention
    assert {f.uri for f in tile_files(uri)} == committed
    assert all(Path(u).exists() for u in committed)


def test_files_a_compaction_replaced_are_deleted_after_the_retention(tmp_path):
    uri = str(tmp_path / TILES_TABLE)
    crowded_tile_table(uri)
    replaced = {f.uri for f in tile_files(uri)}
    kept = optimize_tiles(uri, retention_hours=1, runs_started=[])
    assert kept is not None and kept.vacuumed == 0  # a reader at version 0 still needs them
    assert all(Path(u).exists() for u in replaced)
    # Time travel to version 0 still reads them.
    assert read_tiles_arrow(uri, 0).num_rows == read_tiles_arrow(uri).num_rows
    gone = optimize_tiles(uri, retention_hours=0, runs_started=[])
    assert gone is not None and gone.vacuumed == 5  # the 5 files of the 2 crowded dates
    assert sum(Path(u).exists() for u in replaced) == 1  # clicks' second date: one file
    assert all(Path(f.uri).exists() for f in tile_files(uri))


def test_no_tile_table_nothing_to_do(tmp_path):
    assert optimize_tiles(str(tmp_path / TILES_TABLE), 1, []) is None
    assert table_size(str(tmp_path / TILES_TABLE)) is None


# The lake job -----------------------------------------------------------------------------


def shop_lake(settings: Settings) -> list[str]:
    """Two ingest commits to one date of the shop's events table."""
    uri = settings.table_uri(shop.table_name)
    for first in (0, 10):
        records = [(_shop_event(first + i), 0, first + i) for i in range(10)]
        append_with_offsets(uri, shop, records, "topic-id", {0: first + 10})
    return [uri]


def _shop_event(i: int):
    raw = {"event_id": f"e{i}", "user_id": f"u{i % 7}", "event_type": "view", "event_time": D0 + i}
    return shop.parse(json.dumps(raw))


def test_the_lake_job_optimizes_the_tile_table_after_the_source_tables(tmp_path):
    settings = Settings(_env_file=None, data_dir=tmp_path, lake_uri=str(tmp_path / "lake"))
    repo = FeatureRepo.from_module("demo.feature_repo")
    sources = shop_lake(settings)
    tiles = settings.table_uri(TILES_TABLE)
    assert [r.table for r in optimize_lake(settings, repo, runs_in_progress=list)] == sources
    crowded_tile_table(tiles)

    done = optimize_lake(settings, repo, runs_in_progress=list)
    assert [r.table for r in done] == [*sources, tiles]
    result = done[-1]
    assert (result.partitions, result.files_after) == (2, 3)
    assert (result.files_after, result.bytes_after) == table_size(tiles)
    for source in done[:-1]:
        assert (source.files_after, source.bytes_after) == table_size(source.table)

    only = optimize_lake(settings, repo, [TILES_TABLE], runs_in_progress=lambda: None)
    assert [r.table for r in only] == [tiles]
    assert only[0].notes and "unreadable" in only[0].notes[0]
    # Left uncompacted while a run goes: vacuumed only.
    extra = _stage(tiles, {("orders", _date(D0 + DAY)): [[_tile("o4", D0 + DAY)]] * 2}, "r5")
    _commit(tiles, read_state(tiles, GROUPS), extra, "r5", 5, orders={})
    (held,) = optimize_lake(
        settings, repo, [TILES_TABLE], compact_tiles=False, runs_in_progress=list
    )
    assert (held.partitions, held.files_after) == (0, 5)
    with pytest.raises(ValueError, match=TILES_TABLE):
        optimize_lake(settings, repo, ["nope"])


def test_runs_in_progress_are_read_from_the_run_history(redis_process, tmp_path):
    url = f"redis://127.0.0.1:{redis_process.port}/0"
    settings = Settings(_env_file=None, redis_url=url, data_dir=tmp_path)
    now = time.time()
    going = RunRecord(
        run_id="aaaaaaaaaaaa",
        trigger="schedule",
        started_at=now - 600,
        owner=f"{os.uname().nodename}:{os.getpid()}",
        renewed_at=now,
    )
    done = RunRecord(
        run_id="bbbbbbbbbbbb",
        trigger="schedule",
        started_at=now - 7200,
        finished_at=now - 7000,
        status=RunStatus.SUCCEEDED,
    )
    killed = RunRecord(  # never renewed since: abandoned
        run_id="cccccccccccc", trigger="manual", started_at=now - 9000, renewed_at=now - 8000
    )
    store = open_store(settings)
    store.save_runs(
        ((r.run_id, r.model_dump_json(), r.started_at) for r in (going, done, killed)), 50
    )
    store.close()
    assert runs_in_progress(settings) == [going.started_at]
    redis_process.stop()
    assert runs_in_progress(settings) is None


# Retention drops ---------------------------------------------------------------------------


def test_a_date_is_dropped_only_when_every_series_in_it_expired():
    day = [_date(D0 + i * DAY) for i in range(4)]
    floors = {
        "clicks": {"1d": D0 + 3 * DAY, "1h": D0 + 2 * DAY, "5m": D0 + DAY},
        "lifetime": {"1d": None, "1h": D0 + 3 * DAY},
    }
    partitions = {
        ("clicks", day[0]): {"1d", "1h", "5m"},  # all expired
        ("clicks", day[1]): {"1d", "1h", "5m"},  # 5m kept from day 1
        ("clicks", day[2]): {"1d"},  # 1d kept from day 3: still expired
        ("clicks", day[3]): {"1d"},  # kept
        ("lifetime", day[0]): {"1d", "1h"},  # 1d kept forever
        ("lifetime", day[1]): {"1h"},
        ("other", day[0]): {"1d"},  # no floors: kept
        ("clicks", "not-a-date"): {"1d"},
        ("clicks", _date(D0 - DAY)): None,  # series unknown: kept
        ("clicks", _date(D0 - 2 * DAY)): {"1d", "s30m"},  # a series without a floor
    }
    assert expired_dates(partitions, floors) == {
        "clicks": (day[0], day[2]),
        "lifetime": (day[1],),
    }
    assert expired_dates(partitions, floors, written=[("clicks", day[0])]) == {
        "clicks": (day[2],),
        "lifetime": (day[1],),
    }


def test_retention_drops_read_the_series_of_each_partition_from_the_log(tmp_path):
    uri = str(tmp_path / TILES_TABLE)
    assert retention_drops(uri, read_state(uri, GROUPS), {"clicks": {"1d": D0}}) == {}
    files = {
        ("clicks", _date(D0)): [[_tile("u1", D0, "1h"), _tile("u1", D0, "5m")]],
        ("clicks", _date(D0 + DAY)): [[_tile("u1", D0 + DAY, "1h")], [_tile("u2", D0 + DAY)]],
        ("clicks", _date(D0 + 2 * DAY)): [[_tile("u1", D0 + 2 * DAY, "1h")]],
        ("orders", _date(D0)): [[_tile("o1", D0, "2h")]],  # a series orders does not have
    }
    read = read_state(uri, GROUPS)
    _commit(uri, read, _stage(uri, files, "run-1"), "run-1", 1, clicks={}, orders={})
    read = read_state(uri, GROUPS)
    series = {"clicks": ["1d", "1h", "5m"], "orders": ["1d", "1h"]}
    assert partition_series(uri, read.version, series) == {
        ("clicks", _date(D0)): frozenset({"1h", "5m"}),
        ("clicks", _date(D0 + DAY)): frozenset({"1d", "1h"}),
        ("clicks", _date(D0 + 2 * DAY)): frozenset({"1h"}),
        ("orders", _date(D0)): None,
    }
    floors = {
        "clicks": {"1d": D0 + DAY, "1h": D0 + 3 * DAY, "5m": D0 + DAY},
        "orders": {"1d": D0 + 9 * DAY, "1h": D0 + 9 * DAY},
    }
    drops = retention_drops(uri, read, floors, written=[("clicks", _date(D0 + 2 * DAY))])
    assert drops == {"clicks": (_date(D0),)}
    # The run's commit drops them; the rest stays.
    _commit(uri, read, None, "run-2", 2, clicks={"drop_dates": drops["clicks"]})
    left = {(f.group, f.tile_date) for f in tile_files(uri)}
    assert left == set(files) - {("clicks", _date(D0))}


def test_retention_drops_follow_the_groups_retention_floors(tmp_path):
    """With ``feature_core.tiles.retention_floor``: a group without lifetime or session
    windows drops the dates before the floor of its longest-kept series; a session group
    keeps every date (its session-day rows are kept for good)."""
    repo = FeatureRepo.from_module("demo.feature_repo")
    cutoff = D0 + 29 * DAY + 5 * 3_600_000
    hops = next(g for g in repo.groups if None not in retention_floor(g, cutoff).values())
    sessions = next(g for g in repo.groups if any(w.is_session for w in g.windows))
    uri = str(tmp_path / TILES_TABLE)
    dates = range(30)
    files = {
        (g.name, _date(D0 + i * DAY)): [[_tile("u", D0 + i * DAY, s) for s in tile_series(g)]]
        for g in (hops, sessions)
        for i in dates
    }
    groups = {g.name: ["raw_events"] for g in (hops, sessions)}
    read = read_state(uri, groups)
    _commit(uri, read, _stage(uri, files, "run-1"), "run-1", 1, **{g: {} for g in groups})
    floors = {g.name: retention_floor(g, cutoff) for g in (hops, sessions)}
    drops = retention_drops(uri, read_state(uri, groups), floors)
    kept_from = min(floors[hops.name].values())  # type: ignore[type-var]
    expected = tuple(_date(D0 + i * DAY) for i in dates if D0 + (i + 1) * DAY <= kept_from)
    assert expected and len(expected) < len(dates)
    assert drops == {hops.name: expected}


def test_optimize_drops_the_rows_of_expired_series_from_dates_it_must_keep(tmp_path):
    """A lifetime window keeps ``1d`` tiles for good, so no date of its group is ever
    dropped whole; its ``5m`` and ``1h`` rows past their floors go in the optimize's
    rewrite, which leaves the recorded state as it was."""
    uri = str(tmp_path / TILES_TABLE)
    days = [D0 + i * DAY for i in range(6)]
    files = {
        ("clicks", _date(day)): [[_tile(e, day + h, s) for e in ("u1", "u2") for s, h in SERIES]]
        for day in days
    }
    files[("orders", _date(days[0]))] = [[_tile("o1", days[0], "1h")]]
    read = read_state(uri, GROUPS)
    _commit(uri, read, _stage(uri, files, "run-1"), "run-1", 1, clicks={}, orders={})
    before = read_state(uri, GROUPS)
    floors = {
        "clicks": {"1d": None, "1h": days[3], "5m": days[5]},
        "orders": {"1d": days[1], "1h": days[1]},
    }
    assert expired_series({("clicks", _date(days[2])): {"1d", "1h", "5m"}}, floors) == {
        ("clicks", _date(days[2])): frozenset({"1h", "5m"})
    }
    rows = read_tiles_arrow(uri).to_pylist()

    result = optimize_tiles(uri, retention_hours=168, runs_started=[], floors=floors)
    assert result is not None and result.partitions == 5 + 1
    expected = [
        r
        for r in rows
        if (f := floors[r["group"]][r["series"]]) is None or r["start"] >= f - f % DAY
    ]
    dropped = len(rows) - len(expected)
    assert dropped == 2 * (3 + 5) + 1  # 1h of 3 days and 5m of 5, for 2 entities; orders'
    assert result.notes == (f"{dropped:,} tiles past their series' retention dropped",)
    assert sorted(read_tiles_arrow(uri).to_pylist(), key=_sort_key) == sorted(
        expected, key=_sort_key
    )
    assert not tile_files(uri, groups=["orders"])  # every row expired: the date went
    after = read_state(uri, GROUPS)
    assert after.model_copy(update={"version": before.version}) == before
    actions = _log(uri, after.version)  # type: ignore[arg-type]
    changes = [a.get("add", a.get("remove")) for a in actions if "add" in a or "remove" in a]
    assert changes and all(c["dataChange"] for c in changes)  # rows went: a data change
    # Nothing left to drop.
    again = optimize_tiles(uri, retention_hours=168, runs_started=[], floors=floors)
    assert again is not None and again.partitions == 0 and again.notes == ()


SERIES = (("1d", 0), ("1h", 3_600_000), ("5m", 300_000))


def _sort_key(row: dict) -> tuple:
    return row["group"], row["tile_date"], row["series"], row["entity"], row["start"]


def test_recorded_floors_are_those_of_each_groups_recorded_cutoff_under_its_spec(tmp_path):
    repo = FeatureRepo.from_module("demo.feature_repo")
    current, stale, absent = repo.groups[:3]
    uri = str(tmp_path / TILES_TABLE)
    cutoff = D0 + 40 * DAY + 7 * 3_600_000
    commits = {}
    for group, spec in ((current, tile_spec_fingerprint(current)), (stale, "older-spec")):
        state = GroupState(
            lakes={group.source.table_name: LakeState(version=3, table_tag=7)},
            cutoff_ms=cutoff,
            view_version=1,
            spec_tag=spec_tag(spec),
        )
        commits[group.name] = GroupCommit(state=state, spec=spec, mode="full")
    empty = TileTableState(version=None, table_id=None, view_version=None, groups={})
    commit_tiles(uri, empty, None, commits, run_id="r", view_version=1, pointer="{}")
    assert recorded_floors(uri, [current, stale, absent]) == {
        current.name: retention_floor(current, cutoff)
    }


@pytest.mark.spark
def test_spark_staged_tiles_compact_and_read_back_in_spark(spark_factory, tmp_path):
    spark = spark_factory(Settings(_env_file=None))
    uri = str(tmp_path / TILES_TABLE)
    rows = [("clicks", _date(D0), *_tile(f"u{i}", D0 + i, "1h").values()) for i in range(6)]
    frame = spark.createDataFrame(rows, TILE_DDL)
    read = read_state(uri, GROUPS)
    _commit(uri, read, write_staged(frame, uri, "s1"), "s1", 1, clicks={})
    read = read_state(uri, GROUPS)
    # A second staging of the same partition, committed by hand beside the first: two files.
    more = spark.createDataFrame(
        [("clicks", _date(D0), *_tile("u9", D0 + 99, "1d").values())],
        TILE_DDL,
    )
    staged = write_staged(more, uri, "s2")
    DeltaTable(uri).create_write_transaction(
        [f.add_action() for f in staged_files(uri, staged)], mode="append", schema=TILE_SCHEMA
    )
    expected = sorted(tuple(r) for r in read_tiles(spark, uri).collect())
    assert len(tile_files(uri)) == 2 and len(expected) == 7
    result = optimize_tiles(uri, retention_hours=168, runs_started=[])
    assert result is not None and (result.partitions, result.files_after) == (1, 1)
    assert sorted(tuple(r) for r in read_tiles(spark, uri).collect()) == expected
    assert read_state(uri, GROUPS).groups == read.groups
