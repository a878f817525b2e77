"""Lake ingest's correction tiles on a real Delta lake and Redis: written after each commit,
written again from the lake for a commit whose process stopped before writing them, and
retired once the serving batch view read their commit."""

from __future__ import annotations

import os
import time
import uuid

import orjson
import pytest
import redis

from batch_layer.corrections import CorrectionWriter
from batch_layer.lake import append_with_offsets, open_table
from demo.feature_repo import events, user_activity
from feature_core.merge import BatchPointer
from feature_core.settings import Settings
from feature_core.windows import DAY_MS
from online_store import open_store
from online_store.keys import KeySpace

pytestmark = pytest.mark.integration

KEYS = KeySpace("lfp")


def _records(user: str, ages_days: list[float]) -> list[dict]:
    now = int(time.time() * 1000)
    return [
        events.check(
            {
                "event_id": str(uuid.uuid4()),
                "user_id": user,
                "event_type": "view",
                "event_time": now - int(age * DAY_MS),
                "item_id": "i1",
                "category": "books",
            }
        )
        for age in ages_days
    ]


def _commit(settings: Settings, records: list[dict], offset: int) -> int:
    rows = [(r, 0, offset + i) for i, r in enumerate(records)]
    uri = settings.table_uri(events.table_name)
    return append_with_offsets(uri, events, rows, "topic-id", {0: offset + len(records)})


def _corrections(client: redis.Redis, user: str) -> list[list[int]]:
    fields = client.hkeys(KEYS.speed_tiles(user_activity.name, user))
    return sorted(orjson.loads(f) for f in fields if f.startswith(b"["))


def test_corrections_are_written_after_each_commit_again_after_a_crash_and_retired(
    tmp_path, redis_process
):
    url = f"redis://127.0.0.1:{redis_process.port}/0"
    settings = Settings(
        _env_file=None, data_dir=tmp_path, redis_url=url, redis_password_file=os.devnull
    )
    client = redis.Redis.from_url(url)
    store = open_store(settings)
    writer = CorrectionWriter(settings, [user_activity], store)

    # Before any commit: nothing recorded, nothing to do.
    assert writer.catch_up(events) and store.corrections_written(events.table_name) is None
    first = _records("u1", [3, 3.01, 20])
    v1 = _commit(settings, first, 0)
    store.set_corrections_written(events.table_name, v1 - 1)  # as a running ingest has
    writer.after_commit(events, v1, first)
    assert {f[1] for f in _corrections(client, "u1")} == {v1}
    assert store.corrections_written(events.table_name) == v1
    assert writer.stats.records == 3

    # A commit whose process stopped before its corrections: the next start writes them
    # from the records the commit added to the lake.
    second = _records("u2", [1, 10])
    v2 = _commit(settings, second, 3)
    assert _corrections(client, "u2") == []
    restarted = CorrectionWriter(settings, [user_activity], store)
    assert restarted.catch_up(events)
    assert {f[1] for f in _corrections(client, "u2")} == {v2}
    assert len(_corrections(client, "u2")) == 2
    assert store.corrections_written(events.table_name) == v2
    assert {f[2] for f in _corrections(client, "u2")} == {300_000}  # 5-minute tiles

    # A view that read v1 retires v1's corrections; v2's stay until a view reads it.
    pointer = BatchPointer(1, 0, DAY_MS, delta_versions={events.table_name: v1})
    client.set(KEYS.batch_pointer, orjson.dumps(pointer.to_json()))
    restarted.retire()
    assert _corrections(client, "u1") == [] and len(_corrections(client, "u2")) == 2
    latest = open_table(settings.table_uri(events.table_name)).version()
    pointer = BatchPointer(2, 0, DAY_MS, delta_versions={events.table_name: latest})
    client.set(KEYS.batch_pointer, orjson.dumps(pointer.to_json()))
    restarted.retire()
    assert _corrections(client, "u2") == []
    assert restarted.stats.retired == len(first) + 2  # one tile per event here
    store.close()
    client.close()
