"""Lake writes with offsets: the Delta log is the only source of resume points."""

import json

from batch_layer.lake import append_with_offsets, committed_offsets, count_rows
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
