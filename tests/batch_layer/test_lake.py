"""The lake: writes with offsets (the Delta log is the only source of resume points),
file skipping by statistics, and clustering by entity keys."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable

from batch_layer.lake import (
    OptimizeMark,
    append_with_offsets,
    committed_offsets,
    count_rows,
    files_matching,
    optimize_lake,
    optimize_table,
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
