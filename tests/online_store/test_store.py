"""Both backends' stores: versions, view writes spread over the keyspace, a forward-only
switch that names the version it replaced, previous documents cleaned, and the shared
state."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from feature_core.merge import BatchPointer
from feature_core.windows import DAY_MS
from online_store.base import ViewChanges
from online_store.keys import KeySpace, stamped, tombstone
from runtime.health import FORGET_AFTER_S

pytestmark = pytest.mark.integration

KEYS = KeySpace("lfp")
CUTOFF = 20_000 * DAY_MS


def test_views_switch_forward_only_and_previous_documents_are_cleaned(backend) -> None:
    store, direct = backend.store(), backend.direct
    first = store.next_version()
    assert store.begin_views(first) == 0  # none serving
    written: list[int] = []
    views = [(f"u{i}", orjson.dumps({"v": first})) for i in range(2500)]
    assert store.write_views(first, 0, "g1", views, written.append) == ViewChanges(2500, 0)
    assert written == [500] * 5
    assert store.pointer() is None
    assert store.switch(BatchPointer(first, CUTOFF, DAY_MS)) == 0  # none served before
    older, newer = store.next_version(), store.next_version()
    assert store.begin_views(newer) == first
    assert store.begin_views(older) is None  # a newer run began: this one must not write
    assert store.write_views(older, first, "g1", [("u7", b'{"v": 0}')]) is None
    views = [(f"u{i}", orjson.dumps({"v": newer})) for i in range(2000)]
    assert store.write_views(newer, first, "g1", views) == ViewChanges(0, 0)
    assert store.sweep_views(newer, first) == 500  # u2000..u2499 left the view
    assert store.switch(BatchPointer(older, CUTOFF, DAY_MS)) is None  # older: no switch
    assert store.switch(BatchPointer(newer, CUTOFF, DAY_MS)) == first
    assert store.pointer() == BatchPointer(newer, CUTOFF, DAY_MS)
    assert direct.get(KEYS.batch_doc("g1", "u7")) == stamped(newer, orjson.dumps({"v": newer}))
    assert direct.get(KEYS.batch_previous("g1", "u7")) == stamped(first, b'{"v":1}')
    assert direct.get(KEYS.batch_doc("g1", "u2400")) == tombstone(newer)
    if backend.name == "redis-cluster":  # a view's keys spread over every master
        nodes = direct.get_primaries()
        per_node = [direct.dbsize(target_nodes=node) for node in nodes]
        assert len(per_node) == 3 and all(n > 1000 for n in per_node), per_node
    # Readers of the version replaced keep its documents; then nothing is left of it.
    assert store.clean_views(keep_from=first) == 0
    assert store.clean_views(keep_from=newer) == 2500 + 500  # previous docs, tombstones
    assert direct.get(KEYS.batch_previous("g1", "u7")) is None
    assert direct.get(KEYS.batch_doc("g1", "u2400")) is None
    assert direct.get(KEYS.batch_doc("g1", "u7")) == stamped(newer, orjson.dumps({"v": newer}))
    assert direct.zcard(KEYS.batch_previous_index) == 0
    store.close()


def test_shared_state_round_trips(backend) -> None:
    store = backend.store()
    runs = [(f"r{i}", f'{{"run": {i}}}', float(i)) for i in range(5)]
    store.save_runs(runs, keep=3)
    assert store.has_runs()
    assert store.recent_runs(10) == [b'{"run": 4}', b'{"run": 3}', b'{"run": 2}']
    store.publish_lag("lake-ingest", {"events": 7})
    assert b"lake-ingest|events" in backend.direct.hgetall(KEYS.consumer_lag)
    [lag] = store.consumer_lag()
    assert (lag.consumer, lag.topic, lag.behind) == ("lake-ingest", "events", 7)
    store.publish_health("lake-ingest", b'{"at_ms": 1}')
    store.publish_health("speed-job", b'{"at_ms": 2}')
    assert store.consumer_health() == {
        b"lake-ingest": b'{"at_ms": 1}',
        b"speed-job": b'{"at_ms": 2}',
    }
    assert 0 < backend.direct.ttl(KEYS.consumer_health) <= FORGET_AFTER_S  # bounded life
    store.drop_health("speed-job")
    assert list(store.consumer_health()) == [b"lake-ingest"]
    store.set_speed_stats({"events.valid_events": 3})
    assert store.speed_stats() == {"events.valid_events": 3}
    store.clear_speed_stats()
    assert store.speed_stats() == {}
    assert not store.speed_epoch_kept()
    store.set_speed_epoch({"redis_run_id": "x", "complete": True})
    assert store.speed_epoch_kept()
    backend.direct.hset(KEYS.speed_watermark, mapping={"g1": 5})
    assert store.watermarks(["g1", "g2"]) == {"g1": 5, "g2": None}
    identity = store.server_identity()
    assert identity and identity == store.server_identity()
    if backend.name == "redis-cluster":
        assert identity.count(",") == 2  # every master's run id
    assert store.tile_target().cluster is (backend.name == "redis-cluster")
    assert store.ping()
    store.close()


def test_journals_keep_the_newest_records_in_time_order(backend) -> None:
    store = backend.store()
    records = [orjson.dumps({"at_ms": at, "n": at % 7}) for at in range(1000, 1012)]
    for at, record in zip(range(1000, 1012), records, strict=True):
        store.append_journal("freshness", record, at, keep=10)
    assert store.journal("freshness") == records[2:]  # capped, oldest first
    assert store.journal("freshness", since_ms=1009) == records[9:]
    assert store.journal("freshness", limit=3) == records[9:]  # the newest three
    assert store.journal("verify") == []

    async def read() -> tuple[list[bytes], list[bytes]]:
        reader = backend.reader()
        try:
            return await reader.journal("freshness", 1005), await reader.journal("other")
        finally:
            await reader.close()

    assert asyncio.run(read()) == (records[5:], [])
