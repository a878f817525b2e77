"""The lake: writes with offsets (the Delta log is the only source of resume points),
file skipping by statistics, and clustering by entity keys."""

import json
from pathlib import Path

import pyarrow.parquet as pq
from deltalake import DeltaTable

from batch_layer.lake import (
    append_with_offsets,
    committed_offsets,
    count_rows,
    files_matching,
    optimize_table,
)
from demo.feature_repo import events as shop


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
