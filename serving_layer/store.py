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

# KEYS: pointer, watermark hash. ARGV: batch view key prefix, speed key prefix, then per
# part: its group names (space-separated), its entity count, its entity ids. The reply is
# one JSON text, [pointer, {group: watermark}, [[batch_doc, [[tile, partials], ...]], ...]]
# with views entity-major within each part, so the client parses it in one call. Speed
# tiles older than the batch cutoff (kept until their TTL) are left out.
_READ_SCRIPT = """
local pointer = redis.call('GET', KEYS[1])
local version, cutoff = nil, nil
if pointer then
  local decoded = cjson.decode(pointer)
  version, cutoff = decoded['version'], decoded['cutoff']
end
local marks, flat = {}, redis.call('HGETALL', KEYS[2])
for i = 1, #flat, 2 do marks[#marks + 1] = '"' .. flat[i] .. '":' .. flat[i + 1] end
local views, i = {}, 3
while i <= #ARGV do
  local groups = {}
  for group in string.gmatch(ARGV[i], '%S+') do groups[#groups + 1] = group end
  local last = i + 1 + tonumber(ARGV[i + 1])
  for e = i + 2, last do
    for _, group in ipairs(groups) do
      local suffix = group .. ':' .. ARGV[e]
      local doc = version and redis.call('GET', ARGV[1] .. version .. ':' .. suffix)
      local tiles = redis.call('HGETALL', ARGV[2] .. suffix)
      local entries = {}
      for t = 1, #tiles, 2 do
        -- Tiles before the cutoff are in the batch view: the merge never reads them.
        if not cutoff or tonumber(tiles[t]) >= cutoff then
          entries[#entries + 1] = '[' .. tiles[t] .. ',' .. tiles[t + 1] .. ']'
        end
      end
      views[#views + 1] = '[' .. (doc or 'null') .. ',[' .. table.concat(entries, ',') .. ']]'
    end
  end
  i = last + 1
end
return '[' .. (pointer or 'null') .. ',{' .. table.concat(marks, ',') .. '},[' ..
  table.concat(views, ',') .. ']]'
"""

#: What to read: (group names, entity ids). Views come back entity-major per part.
ViewsRequest = tuple[Sequence[str], Sequence[str]]


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


class FeatureStore:
    """Async reader of the batch and speed views."""

    def __init__(self, client: aioredis.Redis, key_prefix: str) -> None:
        self.client = client
        self.keys = KeySpace(key_prefix)
        self._script = client.register_script(_READ_SCRIPT)

    async def read(self, parts: Sequence[ViewsRequest] = ()) -> ViewsSnapshot:
        """The views of each part's groups for each of its entities (entity-major, parts
        in order), plus the pointer and watermarks used. No parts: those two only."""
        args: list[str | int] = [self.keys.batch_view_root, self.keys.speed_tiles_root]
        for groups, entities in parts:
            args += [" ".join(groups), len(entities), *entities]
        raw = await self._script(
            keys=[self.keys.batch_pointer, self.keys.speed_watermark], args=args
        )
        pointer, watermarks, views = orjson.loads(raw)
        return ViewsSnapshot(
            BatchPointer.from_json(pointer) if pointer else None,
            watermarks,
            [EntityViews(doc, dict(tiles)) for doc, tiles in views],
        )

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
