"""Reads both views from Redis in one round trip, atomically.

A Lua script reads the batch pointer, then the pointed-to batch view and the speed
tiles of every requested (group, entity), and the speed watermarks. Redis runs a
script atomically, so a request never sees half of a batch view switch, and the whole
read is one network round trip whatever the number of entities.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from feature_core.keys import KeySpace
from feature_core.merge import BatchPointer
from feature_core.settings import Settings
from serving_layer.batch_cache import BatchViewCache, CachedBatchView

# KEYS: pointer, watermark hash. ARGV: batch view key prefix, speed key prefix, the pointer
# (raw JSON) the client's cached batch views belong to, and the parts as one JSON text
# (one argument costs the client far less than many): [[groups], [entity ids], flags]
# each, flags holding one character per view (entity-major), "1" if the client holds
# that view. The reply is one JSON text,
# [pointer text, {group: watermark}, [[batch_doc, [[tile, partials], ...]], ...]] with
# views entity-major within each part, so the client parses it in one call. A held view
# of the serving pointer comes back as 1, unread; speed tiles older than the batch
# cutoff (kept until their TTL) are left out.
_READ_SCRIPT = """
local pointer = redis.call('GET', KEYS[1])
local version, cutoff = nil, nil
if pointer then
  local decoded = cjson.decode(pointer)
  version, cutoff = decoded['version'], decoded['cutoff']
end
local held = pointer and pointer == ARGV[3]
local marks, flat = {}, redis.call('HGETALL', KEYS[2])
for i = 1, #flat, 2 do marks[#marks + 1] = '"' .. flat[i] .. '":' .. flat[i + 1] end
local views = {}
for _, part in ipairs(cjson.decode(ARGV[4])) do
  local groups, flags, k = part[1], part[3], 0
  for _, entity in ipairs(part[2]) do
    for _, group in ipairs(groups) do
      k = k + 1
      local suffix = group .. ':' .. entity
      local doc
      if held and string.byte(flags, k) == 49 then
        doc = '1'
      else
        doc = version and redis.call('GET', ARGV[1] .. version .. ':' .. suffix)
      end
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
end
return '[' .. (pointer and cjson.encode(pointer) or 'null') .. ',{' ..
  table.concat(marks, ',') .. '},[' .. table.concat(views, ',') .. ']]'
"""

#: What to read: (group names, entity ids). Views come back entity-major per part.
ViewsRequest = tuple[Sequence[str], Sequence[str]]


@dataclass(frozen=True, slots=True)
class EntityViews:
    batch_doc: dict[str, dict[str, list[Any]]] | None
    speed_tiles: dict[int, list[Any]]
    # The merge's memo of this batch view, when the view is cached (see batch_cache).
    memo: dict[Any, Any] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ViewsSnapshot:
    pointer: BatchPointer | None
    speed_watermarks: dict[str, int]
    entities: list[EntityViews]


@lru_cache(maxsize=8)
def _pointer_of(text: str) -> BatchPointer:
    return BatchPointer.from_json(orjson.loads(text))


def connect(settings: Settings) -> aioredis.Redis:
    """The API's Redis client: bounded timeouts, so a dead or paused Redis costs a request
    at most ``LFP_REDIS_TIMEOUT_S`` before its 503. A burst of more requests than
    ``LFP_API_REDIS_CONNECTIONS`` waits for a connection (redis-py's plain pool would
    fail the excess at once)."""
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.api_redis_connections,
        timeout=settings.redis_timeout_s,
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
    )
    return aioredis.Redis.from_pool(pool)


class FeatureStore:
    """Async reader of the batch and speed views, keeping up to ``batch_cache_entries``
    batch views in process (:mod:`serving_layer.batch_cache`)."""

    def __init__(
        self, client: aioredis.Redis, key_prefix: str, batch_cache_entries: int = 0
    ) -> None:
        self.client = client
        self.keys = KeySpace(key_prefix)
        self.batch_cache = BatchViewCache(batch_cache_entries)
        self._script = client.register_script(_READ_SCRIPT)

    async def read(self, parts: Sequence[ViewsRequest] = ()) -> ViewsSnapshot:
        """The views of each part's groups for each of its entities (entity-major, parts
        in order), plus the pointer and watermarks used. No parts: those two only."""
        cache = self.batch_cache
        caching = cache.max_entries > 0
        wanted: list[tuple[Sequence[str], Sequence[str], str]] = []
        views_read: list[tuple[str, str, CachedBatchView | None]] = []
        for groups, entities in parts:
            flags = []
            for entity in entities:
                for group in groups:
                    held = cache.get(group, entity) if caching else None
                    views_read.append((group, entity, held))
                    flags.append("1" if held else "0")
            wanted.append((groups, entities, "".join(flags)))
        try:
            raw = await self._script(
                keys=[self.keys.batch_pointer, self.keys.speed_watermark],
                args=[
                    self.keys.batch_view_root,
                    self.keys.speed_tiles_root,
                    cache.pointer_text,
                    orjson.dumps(wanted),
                ],
            )
        except RedisError:
            cache.clear()  # a Redis that went away may come back with other data
            raise
        pointer_text, watermarks, views = orjson.loads(raw)
        entities_views = []
        for (doc, tiles), (group, entity, held) in zip(views, views_read, strict=True):
            if doc == 1:  # held, and the pointer is still the one it was read under
                assert held is not None
                entities_views.append(EntityViews(held.doc, dict(tiles), held.memo))
            elif pointer_text is not None and caching:
                entry = cache.put(pointer_text, group, entity, doc)
                entities_views.append(EntityViews(doc, dict(tiles), entry.memo))
            else:
                entities_views.append(EntityViews(doc, dict(tiles)))
        return ViewsSnapshot(
            _pointer_of(pointer_text) if pointer_text else None, watermarks, entities_views
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
