"""Both backends' stores: versions, view writes spread over the keyspace, a forward-only
switch that names the version it replaced, garbage collection, and the shared state."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from feature_core.merge import BatchPointer
from feature_core.windows import DAY_MS
from online_store.keys import KeySpace
from runtime.health import FORGET_AFTER_S

pytestmark = pytest.mark.integration

KEYS = KeySpace("lfp")
CUTOFF = 20_000 * DAY_MS


def test_views_switch_forward_only_and_old_versions_are_collected(backend) -> None:
    store = backend.store()
    versions = [store.next_version() for _ in range(3)]
    assert versions == [1, 2, 3]
    written: list[int] = []
    for version in versions:
        views = ((f"u{i}", orjson.dumps({"v": version})) for i in range(2500))
        store.write_views(version, "g1", views, written.append)
    assert written == [1000, 1000, 500] * 3
    assert store.pointer() is None
    assert store.switch(BatchPointer(2, CUTOFF, DAY_MS)) == 0  # none served before
    assert store.switch(BatchPointer(1, CUTOFF, DAY_MS)) is None  # older: no switch
    assert store.switch(BatchPointer(3, CUTOFF, DAY_MS)) == 2
    assert store.pointer() == BatchPointer(3, CUTOFF, DAY_MS)
    assert orjson.loads(backend.direct.get(KEYS.batch_view(3, "g1", "u7"))) == {"v": 3}
    assert store.collect_garbage(keep_from=2) == 2500
    assert backend.direct.get(KEYS.batch_view(1, "g1", "u7")) is None
    assert backend.direct.get(KEYS.batch_view(2, "g1", "u7")) is not None
    if backend.name == "redis-cluster":  # a view's keys spread over every master
        nodes = backend.direct.get_primaries()
        per_node = [backend.direct.dbsize(target_nodes=node) for node in nodes]
        assert len(per_node) == 3 and all(n > 1000 for n in per_node), per_node
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
