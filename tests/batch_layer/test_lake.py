"""The lake: writes with offsets (the Delta log is the only source of resume points),
file skipping by statistics, and clustering by entity keys."""

import json
import random
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from batch_layer.lake import (
    LakeChanges,
    OptimizeMark,
    append_with_offsets,
    committed_offsets,
    count_rows,
    delta_files,
    files_bytes,
    files_matching,
    lake_changes,
    optimize_lake,
    optimize_table,
    parquet_dataset,
    table_id_tag,
)
from demo.feature_repo import events as shop
from feature_core.definitions import FeatureRepo
from feature_core.settings import Settings


def _event(i: int):
    raw = {
        "event_id": f"e{i}",
        "user_id": "u",
        "event_type": "view",
        "event_time": 1_700_000_000_000 + i,
    }
    return shop.parse(json.dumps(raw))


def test_offsets_commit_with_the_data_and_are_per_topic_instance(tmp_path):
    uri = str(tmp_path / "raw")
    assert committed_offsets(uri, "events", "id-1", [0, 1]) == {}
    append_with_offsets(uri, shop, [(_event(0), 0, 41), (_event(1), 1, 7)], "id-1", {0: 42, 1: 8})
    append_with_offsets(uri, shop, [], "id-1", {1: 9})  # only rejects: offsets still move
    assert count_rows(uri) == 2
    assert committed_offsets(uri, "events", "id-1", [0, 1, 2]) == {0: 42, 1: 9}
    # A recreated topic (new id) starts from the beginning of its own log.
    assert committed_offsets(uri, "events", "id-2", [0, 1]) == {}


def _shop_event(i: int, user: str, day: int):
    raw = {
        "event_id": f"e{i}",
        "user_id": user,
        "event_type": "view",
        "event_time": 1_700_000_000_000 + day * 86_400_000 + i,
    }
    return shop.parse(json.dumps(raw))


def _rows(uri: str) -> list[tuple[str, str, int]]:
    table = DeltaTable(uri).to_pyarrow_table(columns=["event_id", "user_id", "event_time"])
    return sorted(zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True))


def test_files_are_skipped_by_their_key_statistics(tmp_path):
    uri = str(tmp_path / "raw")
    for n, users in enumerate([["u1", "u2", "u3"], ["u6", "u7"]]):
        records = [(_shop_event(10 * n + i, u, 0), 0, 10 * n + i) for i, u in enumerate(users)]
        append_with_offsets(uri, shop, records, "id", {0: 10 * n + len(users)})
    table = DeltaTable(uri)
    assert len(table.file_uris()) == 2
    (low,) = files_matching(table, {"user_id": ["u2"]})
    (high,) = files_matching(table, {"user_id": ["u7", "u9"]})
    assert {low, high} == set(table.file_uris())
    assert files_matching(table, {"user_id": ["u4"]}) == []
    assert files_matching(table, {"user_id": ["u0"]}) == []


def test_files_bytes_are_the_sizes_of_the_files_on_disk(tmp_path):
    """What a run records as the lake bytes it read: the Delta log's sizes, which are the
    files' own (date-partitioned paths matched to the URIs a reader gets)."""
    uri = str(tmp_path / "raw")
    for n, day in enumerate([0, 1, 0]):
        records = [(_shop_event(10 * n + i, f"u{i}", day), 0, 10 * n + i) for i in range(5)]
        append_with_offsets(uri, shop, records, "id", {0: 10 * n + 5})
    table = DeltaTable(uri)
    uris = table.file_uris()
    assert len(uris) == 3 and all("event_date=" in u for u in uris)
    on_disk = {u: Path(u).stat().st_size for u in uris}
    assert files_bytes(table, uris) == sum(on_disk.values()) > 0
    assert files_bytes(table, uris[:1]) == on_disk[uris[0]]
    assert files_bytes(table, []) == 0
    # A file the log does not name has no size to add: unknown, not a guess.
    assert files_bytes(table, [*uris, str(tmp_path / "elsewhere.parquet")]) is None


def test_optimize_clusters_crowded_partitions_keeps_every_row_and_removes_old_files(tmp_path):
    uri = str(tmp_path / "raw")
    offset = 0
    for commit in range(4):  # three files on day 0, one on day 1
        records = []
        for i in range(500):
            day = 1 if commit == 3 else 0
            records.append((_shop_event(offset, f"u{(i * 7919 + commit) % 300}", day), 0, offset))
            offset += 1
        append_with_offsets(uri, shop, records, "id", {0: offset})
    before = _rows(uri)
    old_files = set(DeltaTable(uri).file_uris())

    result = optimize_table(uri, ["user_id"], row_group_rows=100, retention_hours=0)
    assert result is not None
    assert (result.partitions, result.files_before, result.files_after) == (1, 3 + 1, 1 + 1)
    assert _rows(uri) == before
    table = DeltaTable(uri)
    assert result.vacuumed == 3  # the day-0 files the rewrite replaced
    assert not any(Path(f).exists() for f in old_files - set(table.file_uris()))
    (clustered,) = [f for f in table.file_uris() if f not in old_files]
    metadata = pq.ParquetFile(clustered).metadata
    assert metadata.num_row_groups == 15  # 1500 rows in groups of at most 100
    users = metadata.schema.to_arrow_schema().get_field_index("user_id")
    ranges = [
        (g.column(users).statistics.min, g.column(users).statistics.max)
        for g in (metadata.row_group(i) for i in range(metadata.num_row_groups))
    ]
    assert ranges == sorted(ranges)  # sorted by the key: each group a narrow range
    assert all(hi <= ranges[i + 1][0] for i, (_, hi) in enumerate(ranges[:-1]))
    again = optimize_table(uri, ["user_id"], row_group_rows=100, retention_hours=0)
    assert again is not None and (again.partitions, again.vacuumed) == (0, 0)


def _append_day(uri: str, day: int, first: int, n: int = 200) -> int:
    records = [(_shop_event(first + i, f"u{(i * 31) % 97}", day), 0, first + i) for i in range(n)]
    append_with_offsets(uri, shop, records, "id", {0: first + n})
    return first + n


def _files_by_day(uri: str) -> dict[str, set[str]]:
    table = DeltaTable(uri)
    days: dict[str, set[str]] = {}
    for action in pa.table(table.get_add_actions(flatten=True)).to_pylist():
        days.setdefault(action["partition.event_date"], set()).add(action["path"])
    return days


def test_optimize_rewrites_only_partitions_with_files_since_the_last_run(tmp_path):
    uri = str(tmp_path / "raw")
    offset = 0
    for day in (0, 0, 1, 1):
        offset = _append_day(uri, day, offset)
    first = optimize_table(uri, ["user_id"], row_group_rows=100, retention_hours=0)
    assert first is not None and first.partitions == 2
    clustered = _files_by_day(uri)

    # Day 1 gets new events: only day 1 is clustered again.
    offset = _append_day(uri, 1, offset)
    second = optimize_table(uri, ["user_id"], 100, 0, since=first.mark)
    assert second is not None and second.partitions == 1
    days = _files_by_day(uri)
    day0, day1 = sorted(days)
    assert days[day0] == clustered[day0] and len(days[day1]) == 1
    assert days[day1] != clustered[day1]

    # Nothing new: nothing rewritten.
    third = optimize_table(uri, ["user_id"], 100, 0, since=second.mark)
    assert third is not None and third.partitions == 0
    assert _files_by_day(uri) == days
    assert len(_rows(uri)) == offset


def test_a_mark_of_another_table_at_the_same_uri_rewrites_every_crowded_partition(tmp_path):
    uri = str(tmp_path / "raw")
    offset = 0
    for day in (0, 0):
        offset = _append_day(uri, day, offset)
    stale = OptimizeMark("another-table-id", read_version=5, rewrite_version=None)
    result = optimize_table(uri, ["user_id"], 100, 0, since=stale)
    assert result is not None and result.partitions == 1


def test_files_present_at_the_marked_read_count_as_handled(tmp_path):
    """A partition whose files were all there when the last run read the table is left
    alone though it holds several files (a partition larger than one target file)."""
    uri = str(tmp_path / "raw")
    offset = 0
    for day in (0, 0):
        offset = _append_day(uri, day, offset)
    table = DeltaTable(uri)
    mark = OptimizeMark(table.metadata().id, table.version(), None)
    before = _files_by_day(uri)
    result = optimize_table(uri, ["user_id"], 100, 0, since=mark)
    assert result is not None and result.partitions == 0
    assert _files_by_day(uri) == before


def test_the_lake_job_remembers_where_it_left_each_table(tmp_path):
    settings = Settings(_env_file=None, data_dir=tmp_path, lake_uri=str(tmp_path / "lake"))
    repo = FeatureRepo.from_module("demo.feature_repo")
    uri = settings.table_uri(shop.table_name)
    offset = 0
    for day in (0, 0):
        offset = _append_day(uri, day, offset)
    (first,) = optimize_lake(settings, repo)
    assert (first.table, first.partitions) == (uri, 1)
    marks = json.loads((tmp_path / "lake-optimized.json").read_text())
    assert OptimizeMark.from_json(marks[uri]) == first.mark
    (again,) = optimize_lake(settings, repo)
    assert again.partitions == 0


def test_a_partition_the_rewrite_left_in_several_files_is_not_rewritten_again(tmp_path):
    uri = str(tmp_path / "raw")
    offset = 0
    for day in (0, 0, 0):
        offset = _append_day(uri, day, offset, n=1000)
    first = optimize_table(uri, ["user_id"], 100, 0, target_file_bytes=1)
    assert first is not None and first.partitions == 1
    clustered = _files_by_day(uri)
    (day0,) = clustered
    assert len(clustered[day0]) > 1  # still "crowded" by file count
    again = optimize_table(uri, ["user_id"], 100, 0, since=first.mark, target_file_bytes=1)
    assert again is not None and again.partitions == 0
    assert _files_by_day(uri) == clustered


def test_a_commit_landing_right_after_the_rewrite_still_counts_as_new(tmp_path, monkeypatch):
    """An ingest commit between the rewrite's commit and the table's refresh is not taken
    for the rewrite: its partition is clustered next time, the rewritten one is not."""
    uri = str(tmp_path / "raw")
    offset = 0
    for day in (0, 0, 1):
        offset = _append_day(uri, day, offset)
    refresh = DeltaTable.update_incremental
    raced: list[int] = []

    def ingest_then_refresh(self: DeltaTable) -> None:
        if not raced:
            raced.append(_append_day(uri, 1, offset))
        refresh(self)

    monkeypatch.setattr(DeltaTable, "update_incremental", ingest_then_refresh)
    first = optimize_table(uri, ["user_id"], 100, 0)
    monkeypatch.undo()
    assert raced and first is not None and first.partitions == 1
    operations = {c["version"]: c["operation"] for c in DeltaTable(uri).history()}
    assert operations[first.mark.rewrite_version] == "OPTIMIZE"
    clustered = _files_by_day(uri)
    day0, day1 = sorted(clustered)
    assert len(clustered[day1]) == 2

    second = optimize_table(uri, ["user_id"], 100, 0, since=first.mark)
    assert second is not None and second.partitions == 1
    days = _files_by_day(uri)
    assert days[day0] == clustered[day0] and len(days[day1]) == 1


# lake_changes / delta_files: what a table gained between two states ---------------------

DAY = 86_400_000
T0 = 1_700_006_400_000  # 2023-11-15T00:00:00Z


class _Lake:
    """A source table under test plus every event ever appended, by id."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.times: dict[str, int] = {}
        self.next_id = 0
        self.offset = 0

    def append(self, times: list[int], files: int = 1) -> int:
        """Append events at ``times`` in ``files`` ingest commits (with offsets); returns
        the table's version after them."""
        for part in range(files):
            records = []
            for t in times[part::files]:
                event_id = f"e{self.next_id}"
                self.next_id += 1
                self.times[event_id] = t
                raw = {"event_id": event_id, "user_id": "u", "event_type": "view", "event_time": t}
                records.append((shop.parse(json.dumps(raw)), 0, self.offset))
                self.offset += 1
            append_with_offsets(self.uri, shop, records, "id", {0: self.offset})
        return DeltaTable(self.uri).version()

    def ids(self, version: int, before: int) -> set[str]:
        table = DeltaTable(self.uri, version=version).to_pyarrow_table(
            columns=["event_id", "event_time"]
        )
        rows = zip(*(table.column(c).to_pylist() for c in ("event_id", "event_time")), strict=True)
        return {e for e, t in rows if t < before}


def _ids(files: tuple[str, ...], start: int, end: int) -> list[str]:
    if not files:
        return []
    table = parquet_dataset(files).to_table(columns=["event_id", "event_time"])
    rows = zip(*(table.column(c).to_pylist() for c in ("event_id", "event_time")), strict=True)
    return [e for e, t in rows if start <= t < end]


def _check_delta(lake: _Lake, since: int, start: int, until: int, end: int) -> LakeChanges:
    """The files chosen hold exactly the events of (until, < end) missing from
    (since, < start), each once."""
    changes = lake_changes(lake.uri, since, until)
    assert changes is not None and changes.append_only
    files = delta_files(lake.uri, changes, start, end)
    assert files is not None
    got = _ids(files.new, -(2**63), end) + _ids(files.band, start, end)
    assert len(got) == len(set(got))
    before = lake.ids(since, start) if since >= 0 else set()
    assert set(got) == lake.ids(until, end) - before
    assert files.bytes > 0 or files.files == 0
    return changes


def test_changes_of_appends_are_their_new_files_and_the_band_of_older_ones(tmp_path):
    lake = _Lake(str(tmp_path / "raw"))
    v0 = lake.append([T0 + 1000 * i for i in range(10)])  # times T0 .. T0 + 9 s
    b0 = T0 + 4500  # the state covers events before it: 5 of them
    v1 = lake.append([T0 + 20_000, T0 + 30_000, T0 + DAY + 5], files=2)  # today, tomorrow
    changes = _check_delta(lake, v0, b0, v1, T0 + DAY + 10)
    found = [(f.version, f.event_date, f.rows, f.min_time, f.max_time) for f in changes.added]
    assert sorted(found) == [
        (v0 + 1, "2023-11-15", 1, T0 + 20_000, T0 + 20_000),
        (v0 + 1, "2023-11-16", 1, T0 + DAY + 5, T0 + DAY + 5),
        (v0 + 2, "2023-11-15", 1, T0 + 30_000, T0 + 30_000),
    ]
    assert changes.rewrites == 0 and changes.moved == ()
    # A cutoff before some new events: they wait for a later run (the band of that one).
    _check_delta(lake, v0, b0, v1, T0 + 25_000)
    _check_delta(lake, v0, b0, v1, b0)  # the cutoff did not move: only new files' rows
    # Nothing new, the cutoff moves: the band alone.
    assert lake_changes(lake.uri, v1, v1) == LakeChanges(
        table_id=DeltaTable(lake.uri).metadata().id,
        since=v1,
        until=v1,
        added=(),
        removed=(),
        moved=(),
        rewrites=0,
    )
    _check_delta(lake, v1, T0 + DAY, v1, T0 + DAY + 6)


def test_commits_with_only_offsets_add_nothing(tmp_path):
    lake = _Lake(str(tmp_path / "raw"))
    v0 = lake.append([T0, T0 + 1])
    append_with_offsets(lake.uri, shop, [], "id", {0: 99})  # rejects only: offsets move
    v1 = DeltaTable(lake.uri).version()
    assert v1 == v0 + 1
    changes = _check_delta(lake, v0, T0 + 1, v1, T0 + 2)
    assert changes.added == ()


def test_late_events_are_new_files_in_old_date_partitions(tmp_path):
    lake = _Lake(str(tmp_path / "raw"))
    v0 = lake.append([T0 + i for i in range(5)] + [T0 + 3 * DAY + i for i in range(5)])
    b0 = T0 + 3 * DAY + 3
    v1 = lake.append([T0 - 20 * DAY + 7, T0 + 2 * DAY])  # 20 days late, and the day before
    changes = _check_delta(lake, v0, b0, v1, T0 + 3 * DAY + 100)
    assert {f.event_date for f in changes.added} == {"2023-10-26", "2023-11-17"}


def test_a_rewrite_adds_nothing_and_new_rows_it_moved_are_read_from_their_first_file(tmp_path):
    lake = _Lake(str(tmp_path / "raw"))
    v0 = lake.append([T0 + i for i in range(20)], files=3)  # three files on one day
    result = optimize_table(lake.uri, ["user_id"], row_group_rows=100, retention_hours=1000)
    assert result is not None and result.partitions == 1
    v1 = DeltaTable(lake.uri).version()
    changes = _check_delta(lake, v0, T0 + 10, v1, T0 + 15)
    assert (changes.added, changes.rewrites, len(changes.moved)) == ((), 1, 3)
    # New rows on both days, then rewritten together with the old ones: the new files
    # are gone from the table but still in storage, the band comes from the old files.
    lake.append([T0 + 50, T0 + DAY + 50])
    lake.append([T0 + DAY + 51])
    optimize_table(lake.uri, ["user_id"], 100, 1000, since=result.mark)
    v2 = lake.append([T0 + 60])  # and a file after the rewrite
    changes = _check_delta(lake, v1, T0 + 15, v2, T0 + DAY + 60)
    assert [(f.event_date, f.moved) for f in changes.added] == [
        ("2023-11-15", True),
        ("2023-11-16", True),
        ("2023-11-16", True),
        ("2023-11-15", False),
    ]
    assert changes.rewrites == 1


def test_new_rows_a_rewrite_moved_and_vacuumed_cannot_be_read_incrementally(tmp_path):
    lake = _Lake(str(tmp_path / "raw"))
    v0 = lake.append([T0 + i for i in range(10)])
    lake.append([T0 + 20])
    optimize_table(lake.uri, ["user_id"], 100, retention_hours=0)  # vacuums at once
    v1 = lake.append([T0 + 30])
    changes = lake_changes(lake.uri, v0, v1)
    assert changes is not None and [f.moved for f in changes.added] == [True, False]
    assert delta_files(lake.uri, changes, T0 + 5, T0 + 40) is None
    # A state after the rewrite reads on: its files are all there.
    _check_delta(lake, v1 - 1, T0 + 5, v1, T0 + 40)


@pytest.mark.parametrize("seed", range(4))
def test_random_appends_and_rewrites_give_exactly_the_missing_rows(tmp_path, seed):
    rng = random.Random(seed)
    lake = _Lake(str(tmp_path / "raw"))
    states = [(lake.append([T0 + rng.randrange(3 * DAY) for _ in range(5)]), T0)]
    mark = None
    for _ in range(8):
        if rng.random() < 0.3:
            done = optimize_table(lake.uri, ["user_id"], 100, 1000, since=mark)
            mark = None if done is None else done.mark
        else:
            late = [T0 + rng.randrange(4 * DAY) for _ in range(rng.randrange(1, 6))]
            lake.append(late, files=rng.randrange(1, 3))
        version = DeltaTable(lake.uri).version()
        cutoff = states[-1][1] + rng.randrange(DAY)
        for since, start in rng.sample(states, min(2, len(states))):
            _check_delta(lake, since, start, version, max(cutoff, start))
        states.append((version, cutoff))


def test_a_dataChange_remove_is_reported(tmp_path):
    lake = _Lake(str(tmp_path / "raw"))
    v0 = lake.append([T0 + i for i in range(10)])
    DeltaTable(lake.uri).delete("event_time < 1700006400003")  # a hand-run delete
    v1 = lake.append([T0 + 20])
    changes = lake_changes(lake.uri, v0, v1)
    assert changes is not None and not changes.append_only
    assert [r.version for r in changes.removed] == [v0 + 1]
    assert changes.removed[0].event_date == "2023-11-15"


def test_a_cleaned_up_log_or_a_recreated_table_cannot_be_followed(tmp_path):
    lake = _Lake(str(tmp_path / "raw"))
    v0 = lake.append([T0])
    lake.append([T0 + 1])
    lake.append([T0 + 2])
    table = DeltaTable(lake.uri)
    tag = table_id_tag(table.metadata().id)
    assert lake_changes(lake.uri, v0, v0 + 2, expected_tag=tag) is not None
    assert lake_changes(lake.uri, v0, v0 + 3) is None  # not a version yet
    assert lake_changes(lake.uri, v0 + 2, v0) is None
    table.create_checkpoint()
    (tmp_path / "raw" / "_delta_log" / f"{v0 + 1:020d}.json").unlink()
    assert lake_changes(lake.uri, v0 + 1, v0 + 2) is not None
    assert lake_changes(lake.uri, v0, v0 + 2) is None

    shutil.rmtree(tmp_path / "raw")
    again = _Lake(lake.uri)
    for i in range(4):
        again.append([T0 + i])
    assert lake_changes(lake.uri, v0, v0 + 2) is not None  # the new table's own commits
    assert lake_changes(lake.uri, v0, v0 + 2, expected_tag=tag) is None
