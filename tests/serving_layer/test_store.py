"""The one-round-trip read of both views, against a private redis-server."""

from __future__ import annotations

import asyncio

import orjson
import pytest
import redis
import redis.asyncio as aioredis

from feature_core.keys import KeySpace
from feature_core.merge import BatchPointer
from feature_core.settings import Settings
from feature_core.windows import DAY_MS, SPEED_TILE_MS
from serving_layer.store import EntityViews, FeatureStore, ViewsRequest, ViewsSnapshot, connect

pytestmark = pytest.mark.integration

KEYS = KeySpace("lfp")
CUTOFF = 20_000 * DAY_MS


def _read(port: int, parts: list[ViewsRequest]) -> ViewsSnapshot:
    async def read() -> ViewsSnapshot:
        client = aioredis.Redis(port=port)
        try:
            return await FeatureStore(client, "lfp").read(parts)
        finally:
            await client.aclose()

    return asyncio.run(read())


def test_views_come_back_entity_major_per_part_with_pointer_and_watermarks(redis_process):
    client = redis.Redis(port=redis_process.port)
    client.set(KEYS.batch_pointer, orjson.dumps(BatchPointer(3, CUTOFF, DAY_MS).to_json()))
    client.hset(KEYS.speed_watermark, mapping={"g1": CUTOFF + 5, "g2": CUTOFF + 7})
    for group, entity in [("g1", "u1"), ("g2", "u1"), ("g1", "u2"), ("h", "i1")]:
        doc = {"lifetime": {"c": [f"{group}/{entity}"]}}
        client.set(KEYS.batch_view(3, group, entity), orjson.dumps(doc))
        client.set(KEYS.batch_view(2, group, entity), orjson.dumps({"old": "version"}))
        client.hset(KEYS.speed_tiles(group, entity), str(CUTOFF), orjson.dumps([entity]))
    # A tile from before the cutoff, still in Redis until its TTL: the batch view has it.
    client.hset(KEYS.speed_tiles("g1", "u1"), str(CUTOFF - SPEED_TILE_MS), orjson.dumps(["x"]))

    snapshot = _read(redis_process.port, [(("g1", "g2"), ["u1", "u2", "new"]), (("h",), ["i1"])])

    assert snapshot.pointer == BatchPointer(3, CUTOFF, DAY_MS)
    assert snapshot.speed_watermarks == {"g1": CUTOFF + 5, "g2": CUTOFF + 7}
    docs = [v.batch_doc and v.batch_doc["lifetime"]["c"][0] for v in snapshot.entities]
    assert docs == ["g1/u1", "g2/u1", "g1/u2", None, None, None, "h/i1"]
    assert snapshot.entities[0].speed_tiles == {CUTOFF: ["u1"]}  # the older tile left out
    assert snapshot.entities[4] == EntityViews(None, {})  # never seen: no views, no error


def test_without_a_batch_view_every_speed_tile_is_read(redis_process):
    client = redis.Redis(port=redis_process.port)
    tiles = {str(CUTOFF - SPEED_TILE_MS): orjson.dumps([1]), str(CUTOFF): orjson.dumps([2])}
    client.hset(KEYS.speed_tiles("g1", "u1"), mapping=tiles)

    snapshot = _read(redis_process.port, [(("g1",), ["u1"])])

    assert snapshot.pointer is None and snapshot.speed_watermarks == {}
    assert snapshot.entities == [EntityViews(None, {CUTOFF - SPEED_TILE_MS: [1], CUTOFF: [2]})]


def test_cached_batch_views_are_not_read_again_until_the_pointer_moves(redis_process):
    """Proof of the skip: a view rewritten under the same pointer (which the batch job
    never does) still reads as cached, while speed tiles are always read fresh."""
    client = redis.Redis(port=redis_process.port)
    client.set(KEYS.batch_pointer, orjson.dumps(BatchPointer(3, CUTOFF, DAY_MS).to_json()))
    client.set(KEYS.batch_view(3, "g1", "u1"), orjson.dumps({"lifetime": {"c": ["v3"]}}))
    client.hset(KEYS.speed_tiles("g1", "u1"), str(CUTOFF), orjson.dumps(["t1"]))
    parts: list[ViewsRequest] = [(("g1",), ["u1", "unknown"])]

    async def scenario() -> None:
        aclient = aioredis.Redis(port=redis_process.port)
        store = FeatureStore(aclient, "lfp", batch_cache_entries=10)
        try:
            first = await store.read(parts)
            assert [v.batch_doc for v in first.entities] == [{"lifetime": {"c": ["v3"]}}, None]
            assert len(store.batch_cache) == 2

            client.set(KEYS.batch_view(3, "g1", "u1"), orjson.dumps({"lifetime": {"c": ["x"]}}))
            client.hset(KEYS.speed_tiles("g1", "u1"), str(CUTOFF), orjson.dumps(["t2"]))
            second = await store.read(parts)
            assert second.entities[0].batch_doc == {"lifetime": {"c": ["v3"]}}
            assert second.entities[0].speed_tiles == {CUTOFF: ["t2"]}
            assert second.entities[0].memo is first.entities[0].memo  # kept with the view
            assert store.batch_cache.hits == 2

            client.set(KEYS.batch_view(4, "g1", "u1"), orjson.dumps({"lifetime": {"c": ["v4"]}}))
            client.set(KEYS.batch_pointer, orjson.dumps(BatchPointer(4, CUTOFF, DAY_MS).to_json()))
            third = await store.read(parts)
            assert third.pointer is not None and third.pointer.version == 4
            assert third.entities[0].batch_doc == {"lifetime": {"c": ["v4"]}}

            redis_process.stop()
            with pytest.raises(redis.exceptions.ConnectionError):
                await store.read(parts)
            assert len(store.batch_cache) == 0  # it may come back with other data
        finally:
            await aclient.aclose()

    asyncio.run(scenario())


def test_more_reads_at_once_than_connections_wait_for_one(redis_process):
    settings = Settings(
        redis_url=f"redis://127.0.0.1:{redis_process.port}/0", api_redis_connections=2
    )

    async def burst() -> list[ViewsSnapshot]:
        client = connect(settings)
        try:
            store = FeatureStore(client, "lfp")
            return await asyncio.gather(*(store.read([(("g1",), [f"u{i}"])]) for i in range(20)))
        finally:
            await client.aclose()

    snapshots = asyncio.run(burst())
    assert len(snapshots) == 20 and all(len(s.entities) == 1 for s in snapshots)


def test_a_redis_that_lost_its_scripts_gets_the_read_script_again(redis_process):
    client = redis.Redis(port=redis_process.port)
    client.hset(KEYS.speed_tiles("g1", "u1"), str(CUTOFF), orjson.dumps([1]))
    parts: list[ViewsRequest] = [(("g1",), ["u1"])]

    async def scenario() -> list[ViewsSnapshot]:
        aclient = aioredis.Redis(port=redis_process.port)
        store = FeatureStore(aclient, "lfp")
        try:
            first = await store.read(parts)
            await aclient.script_flush()  # as after a restart: EVALSHA answers NOSCRIPT
            return [first, await store.read(parts)]
        finally:
            await aclient.aclose()

    first, second = asyncio.run(scenario())
    assert first.entities == second.entities == [EntityViews(None, {CUTOFF: [1]})]


def test_any_key_prefix_is_safe_in_the_read_script(redis_process):
    prefix = 'team "a"\\b\'\n]]'
    keys = KeySpace(prefix)
    client = redis.Redis(port=redis_process.port)
    client.set(keys.batch_pointer, orjson.dumps(BatchPointer(1, CUTOFF, DAY_MS).to_json()))
    client.set(keys.batch_view(1, "g1", "u1"), orjson.dumps({"lifetime": {"c": [7]}}))
    client.hset(keys.speed_tiles("g1", "u1"), str(CUTOFF), orjson.dumps([1]))

    async def read() -> ViewsSnapshot:
        aclient = aioredis.Redis(port=redis_process.port)
        try:
            return await FeatureStore(aclient, prefix).read([(("g1",), ["u1"])])
        finally:
            await aclient.aclose()

    snapshot = asyncio.run(read())
    assert snapshot.pointer == BatchPointer(1, CUTOFF, DAY_MS)
    assert snapshot.entities == [EntityViews({"lifetime": {"c": [7]}}, {CUTOFF: [1]})]
