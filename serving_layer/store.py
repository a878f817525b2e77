"""Reads both views from Redis in one round trip, atomically.

A Lua script reads the batch pointer, then the pointed-to batch view and the speed
tiles of every requested (group, entity), and the speed watermarks. Redis runs a
script atomically, so a request never sees half of a batch view switch, and the whole
read is one network round trip whatever the number of entities.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis

from feature_core.keys import KeySpace
from feature_core.merge import BatchPointer
from feature_core.settings import Settings

# KEYS: pointer, watermark hash. ARGV: batch view key prefix, speed key prefix, then
# pairs (group, entity). Returns {pointer, watermarks, [batch_doc, speed_tiles] * n}.
_READ_SCRIPT = """
local pointer = redis.call('GET', KEYS[1])
local version = nil
if pointer then version = cjson.decode(pointer)['version'] end
local out = {pointer or false, redis.call('HGETALL', KEYS[2])}
for i = 3, #ARGV, 2 do
  local suffix = ARGV[i] .. ':' .. ARGV[i + 1]
  local doc = false
  if version then doc = redis.call('GET', ARGV[1] .. version .. ':' .. suffix) or false end
  out[#out + 1] = doc
  out[#out + 1] = redis.call('HGETALL', ARGV[2] .. suffix)
end
return out
"""


@dataclass(frozen=True)
class EntityViews:
    batch_doc: dict[str, dict[str, list[Any]]] | None
    speed_tiles: dict[int, list[Any]]


@dataclass(frozen=True)
class ViewsSnapshot:
    pointer: BatchPointer | None
    speed_watermarks: dict[str, int]
    entities: list[EntityViews]


def connect(settings: Settings) -> aioredis.Redis:
    """The API's Redis client: bounded timeouts, so a dead or paused Redis costs a request
    at most ``LFP_REDIS_TIMEOUT_S`` before its 503."""
    return aioredis.Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
        max_connections=64,
    )


def _pairs(flat: Sequence[bytes]) -> list[tuple[bytes, bytes]]:
    return list(zip(flat[0::2], flat[1::2], strict=True))


class FeatureStore:
    """Async reader of the batch and speed views."""

    def __init__(self, client: aioredis.Redis, key_prefix: str) -> None:
        self.client = client
        self.keys = KeySpace(key_prefix)
        self._script = client.register_script(_READ_SCRIPT)

    async def read(self, requests: Sequence[tuple[str, str]]) -> ViewsSnapshot:
        """Views for each (group, entity), plus the pointer and watermarks used."""
        args: list[str] = [self.keys.batch_view_root, self.keys.speed_tiles_root]
        for group, entity in requests:
            args += [group, entity]
        raw = await self._script(
            keys=[self.keys.batch_pointer, self.keys.speed_watermark], args=args
        )
        pointer = BatchPointer.from_json(orjson.loads(raw[0])) if raw[0] else None
        watermarks = {k.decode(): int(v) for k, v in _pairs(raw[1])}
        entities = []
        for i in range(len(requests)):
            doc, tiles = raw[2 + 2 * i], raw[3 + 2 * i]
            entities.append(
                EntityViews(
                    orjson.loads(doc) if doc else None,
                    {int(k): orjson.loads(v) for k, v in _pairs(tiles)},
                )
            )
        return ViewsSnapshot(pointer, watermarks, entities)

    async def batch_runs(self, limit: int) -> list[bytes]:
        """The newest batch run records (JSON), newest first."""
        ids = await self.client.zrevrange(self.keys.batch_runs_index, 0, limit - 1)
        if not ids:
            return []
        return [r for r in await self.client.hmget(self.keys.batch_runs, ids) if r is not None]

    async def consistency_report(self) -> bytes | None:
        """The last consistency verification (JSON), if one was published."""
        return await self.client.get(self.keys.consistency)

    async def ping(self) -> bool:
        return bool(await self.client.ping())
