"""One server's reader: one atomic script per request, whatever the key prefix, and a
connection pool that makes a burst wait."""

from __future__ import annotations

import asyncio
import os

import orjson
import pytest
import redis
import redis.asyncio as aioredis

from feature_core.merge import BatchPointer
from feature_core.settings import Settings
from feature_core.windows import DAY_MS
from online_store.keys import KeySpace, stamped
from online_store.redis_standalone.reader import RedisViewReader, connect
from online_store.views import EntityViews, ViewsRequest, ViewsSnapshot

pytestmark = pytest.mark.integration

KEYS = KeySpace("lfp")
CUTOFF = 20_000 * DAY_MS


def _read(port: int, parts: list[ViewsRequest]) -> ViewsSnapshot:
    async def read() -> ViewsSnapshot:
        client = aioredis.Redis(host="127.0.0.1", port=port)
        try:
            return await RedisViewReader(client, "lfp").read(parts)
        finally:
            await client.aclose()

    return asyncio.run(read())


def test_a_redis_error_empties_the_batch_cache(redis_process):
    client = redis.Redis(host="127.0.0.1", port=redis_process.port)
    client.set(KEYS.batch_pointer, orjson.dumps(BatchPointer(3, CUTOFF, DAY_MS).to_json()))
    client.set(KEYS.batch_doc("g1", "u1"), stamped(3, orjson.dumps({"lifetime": {"c": ["v3"]}})))

    async def scenario() -> None:
        aclient = aioredis.Redis(host="127.0.0.1", port=redis_process.port)
        store = RedisViewReader(aclient, "lfp", batch_cache_entries=10)
        try:
            await store.read([(("g1",), ["u1"])])
            assert len(store.batch_cache) == 1
            redis_process.stop()
            with pytest.raises(redis.exceptions.ConnectionError):
                await store.read([(("g1",), ["u1"])])
            assert len(store.batch_cache) == 0  # it may come back with other data
        finally:
            await aclient.aclose()

    asyncio.run(scenario())


def test_more_reads_at_once_than_connections_wait_for_one(redis_process):
    settings = Settings(
        redis_url=f"redis://127.0.0.1:{redis_process.port}/0",
        api_redis_connections=2,
        redis_password_file=os.devnull,  # the test's own Redis has none
    )

    async def burst() -> list[ViewsSnapshot]:
        client = connect(settings)
        try:
            store = RedisViewReader(client, "lfp")
            return await asyncio.gather(*(store.read([(("g1",), [f"u{i}"])]) for i in range(20)))
        finally:
            await client.aclose()

    snapshots = asyncio.run(burst())
    assert len(snapshots) == 20 and all(len(s.entities) == 1 for s in snapshots)


def test_a_redis_that_lost_its_scripts_gets_the_read_script_again(redis_process):
    client = redis.Redis(host="127.0.0.1", port=redis_process.port)
    client.hset(KEYS.speed_tiles("g1", "u1"), str(CUTOFF), orjson.dumps([1]))
    parts: list[ViewsRequest] = [(("g1",), ["u1"])]

    async def scenario() -> list[ViewsSnapshot]:
        aclient = aioredis.Redis(host="127.0.0.1", port=redis_process.port)
        store = RedisViewReader(aclient, "lfp")
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
    client = redis.Redis(host="127.0.0.1", port=redis_process.port)
    client.set(keys.batch_pointer, orjson.dumps(BatchPointer(1, CUTOFF, DAY_MS).to_json()))
    client.set(keys.batch_doc("g1", "u1"), stamped(1, orjson.dumps({"lifetime": {"c": [7]}})))
    client.hset(keys.speed_tiles("g1", "u1"), str(CUTOFF), orjson.dumps([1]))

    async def read() -> ViewsSnapshot:
        aclient = aioredis.Redis(host="127.0.0.1", port=redis_process.port)
        try:
            return await RedisViewReader(aclient, prefix).read([(("g1",), ["u1"])])
        finally:
            await aclient.aclose()

    snapshot = asyncio.run(read())
    assert snapshot.pointer == BatchPointer(1, CUTOFF, DAY_MS)
    assert snapshot.entities == [EntityViews({"lifetime": {"c": [7]}}, {CUTOFF: [1]})]
