"""The cluster reader's own bound on connections (redis-py's cluster pool does not wait)."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from online_store.redis_cluster.reader import ConnectionSlots


async def _read(slots: ConnectionSlots, seen: list[str], name: str, until: asyncio.Event) -> None:
    async with slots.held():
        seen.append(name)
        await until.wait()


def test_a_read_waits_for_a_free_slot() -> None:
    async def scenario() -> list[str]:
        slots, seen, release, now = (
            ConnectionSlots(1, timeout_s=30),
            [],
            asyncio.Event(),
            asyncio.Event(),
        )
        now.set()
        first = asyncio.create_task(_read(slots, seen, "first", release))
        await asyncio.sleep(0)
        waiting = asyncio.create_task(_read(slots, seen, "waited", now))
        await asyncio.sleep(0)
        assert seen == ["first"]  # the second read holds no connection yet
        release.set()
        await asyncio.gather(first, waiting)
        return seen

    assert asyncio.run(scenario()) == ["first", "waited"]


def test_a_read_fails_like_a_full_pool_at_the_timeout() -> None:
    async def scenario() -> None:
        slots, seen, never = ConnectionSlots(1, timeout_s=0.05), [], asyncio.Event()
        holder = asyncio.create_task(_read(slots, seen, "holder", never))
        await asyncio.sleep(0)
        with pytest.raises(RedisConnectionError, match="all 1 are in use"):
            await _read(slots, seen, "too late", never)
        holder.cancel()
        assert seen == ["holder"]

    asyncio.run(scenario())
