"""The API's reader on one Redis server: both views in one round trip, atomically.

A Lua script reads the batch pointer, then the pointed-to batch view and the speed
tiles of every requested (group, entity), and the speed watermarks. Redis runs a
script atomically, so a request never sees half of a batch view switch, and the whole
read is one network round trip whatever the number of entities.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError

from feature_core.credentials import redis_tls_options
from feature_core.settings import Settings
from online_store.base import ViewReader
from online_store.batch_cache import BatchViewCache, CachedBatchView, parse_tiles
from online_store.keys import LAYOUT, KeySpace
from online_store.memory import MemoryUse, memory_uses
from online_store.views import (
    EntityViews,
    SpeedEpochWatch,
    ViewsRequest,
    ViewsSnapshot,
    pointer_of,
)
from runtime import lag
from runtime.lag import TopicLag

# The key names are in the script (see _read_script); its one argument is the request as
# a JSON text: [held pointer, its version, parts], the held pointer being the raw JSON of
# the pointer the client's cached batch views belong to ("" if none), and each part
# [[groups], [entity ids], flags], flags holding one character per view (entity-major),
# "1" if the client holds that view. Every argument costs the client's command packing
# more than its JSON encoding, so there is one. The reply is a flat array the client's
# RESP parser splits in C, with no JSON built here: the pointer (1 if it is the held
# one, nil if none), the watermark hash's fields and values, the speed job's epoch (nil
# if none), then per view (entity-major
# within each part) its batch view (1 if held, nil if none) and its speed tiles as one
# JSON array of tile start, partials, tile start, ...; the client parses those only
# when they changed (see RedisViewReader.read).
#
# A batch document (online_store.keys) starts with the version that wrote it: one newer
# than the pointer's belongs to a run not switched yet, and the previous document (bp)
# is the one this version shows. A tombstone, or a previous document newer still, reads
# as none. A pointer of layout 1 names one key per version instead. The held version is
# sent negated for a layout 1 pointer.
_READ_SCRIPT = """
local pointer_key, watermark_key, speed_epoch_key, doc_root, previous_root, legacy_root,
      tiles_root = %s, %s, %s, %s, %s, %s, %s
local request = cjson.decode(ARGV[1])
local pointer = redis.call('GET', pointer_key)
local held = pointer and pointer == request[1]
local version, legacy = nil, false
if held then
  version = tonumber(request[2])
  if version < 0 then version, legacy = -version, true end
elseif pointer then
  local decoded = cjson.decode(pointer)
  version, legacy = tonumber(decoded['version']), decoded['layout'] ~= 2
end
local reply = {held and 1 or pointer, redis.call('HGETALL', watermark_key),
               redis.call('GET', speed_epoch_key)}
local n = 3
for _, part in ipairs(request[3]) do
  local groups, flags, k = part[1], part[3], 0
  for _, entity in ipairs(part[2]) do
    for _, group in ipairs(groups) do
      k = k + 1
      local suffix = group .. ':{' .. entity .. '}'
      if held and string.byte(flags, k) == 49 then
        reply[n + 1] = 1
      elseif not version then
        reply[n + 1] = false
      elseif legacy then
        reply[n + 1] = redis.call('GET', legacy_root .. version .. ':' .. suffix)
      else
        local doc = redis.call('GET', doc_root .. suffix)
        if doc then
          -- One match: the version, and what follows it ('}' only in a tombstone).
          local v, after = string.match(doc, '^{"@v":(%%d+)(.)')
          if tonumber(v) > version then
            doc = redis.call('GET', previous_root .. suffix)
            if doc then
              v, after = string.match(doc, '^{"@v":(%%d+)(.)')
              if tonumber(v) > version then doc = false end
            end
          end
          if after == '}' then doc = false end
        end
        reply[n + 1] = doc
      end
      local tiles = redis.call('HGETALL', tiles_root .. suffix)
      reply[n + 2] = '[' .. table.concat(tiles, ',') .. ']'
      n = n + 2
    end
  end
end
return reply
"""


def _lua_string(text: str) -> str:
    """``text`` as a Lua string literal, every byte escaped (any key prefix is safe)."""
    return '"' + "".join(f"\\{byte}" for byte in text.encode()) + '"'


def _read_script(keys: KeySpace) -> str:
    """The read script for one key prefix. Its keys are not declared as KEYS: most of
    them are only known inside it (the batch view version), and it runs on a single
    Redis, not a cluster."""
    names = (
        keys.batch_pointer,
        keys.speed_watermark,
        keys.speed_epoch,
        keys.batch_doc_root,
        keys.batch_previous_root,
        keys.legacy_view_root,
        keys.speed_tiles_root,
    )
    return _READ_SCRIPT % tuple(_lua_string(name) for name in names)


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
        **redis_tls_options(settings.redis_url),
    )
    return aioredis.Redis.from_pool(pool)


class RedisStateReads(ViewReader):
    """The reads of shared state both Redis readers send alike (single keys, or keys of
    the ``{meta}`` slot); ``client`` is an asyncio Redis or Redis Cluster client."""

    client: Any

    def _connection(self) -> AbstractAsyncContextManager[Any]:
        """Held around each command or pipeline. Nothing here: one server's pool waits
        for a free connection itself (:func:`connect`)."""
        return contextlib.nullcontext()

    async def batch_runs(self, limit: int) -> list[bytes]:
        """The newest batch run records (JSON), newest first."""
        async with self._connection():
            ids = await self.client.zrevrange(self.keys.batch_runs_index, 0, limit - 1)
            if not ids:
                return []
            runs = await self.client.hmget(self.keys.batch_runs, ids)
        return [r for r in runs if r is not None]

    async def consumer_lag(self) -> list[TopicLag]:
        """Each consumer's lag per topic, as lake ingest and the speed job last published
        it (reports older than a minute are left out)."""
        async with self._connection():
            return lag.parse(await self.client.hgetall(self.keys.consumer_lag))

    async def consumer_health(self) -> dict[bytes, bytes]:
        """Each consumer's last health record (judged by :func:`runtime.health.judge`)."""
        async with self._connection():
            return dict(await self.client.hgetall(self.keys.consumer_health))

    async def memory(self) -> list[MemoryUse]:
        """The server's used memory and maxmemory (INFO memory)."""
        async with self._connection():
            return memory_uses(await self.client.info("memory"))

    async def consistency_report(self) -> bytes | None:
        """The last consistency verification (JSON), if one was published."""
        async with self._connection():
            return await self.client.get(self.keys.consistency)

    async def journal(self, kind: str, since_ms: int = 0, limit: int = 1000) -> list[bytes]:
        async with self._connection():
            newest = await self.client.zrevrangebyscore(
                self.keys.journal(kind), "+inf", since_ms, start=0, num=limit
            )
        return newest[::-1]

    async def ping(self) -> bool:
        async with self._connection():
            return bool(await self.client.ping())

    async def close(self) -> None:
        await self.client.aclose()


class RedisViewReader(RedisStateReads):
    """Async reader of the batch and speed views, keeping up to ``batch_cache_entries``
    batch views in process (:mod:`online_store.batch_cache`)."""

    def __init__(
        self, client: aioredis.Redis, key_prefix: str, batch_cache_entries: int = 0
    ) -> None:
        self.client = client
        self.keys = KeySpace(key_prefix)
        self.batch_cache = BatchViewCache(batch_cache_entries)
        self.speed_epoch = SpeedEpochWatch()
        self._script = _read_script(self.keys)
        # The last watermarks read, parsed: shared by every snapshot until they move.
        self._watermarks_read: list[bytes] = []
        self._watermarks: dict[str, int] = {}
        self._evalsha = (b"EVALSHA", hashlib.sha1(self._script.encode()).hexdigest().encode(), b"0")

    async def _run_read_script(self, request: bytes) -> list[Any]:
        """EVALSHA with redis-py's plain command path: its Script helper costs more than
        the rest of the read's Python. A Redis that lost its script cache (restarted,
        flushed) gets the script again."""
        try:
            return await self.client.execute_command(*self._evalsha, request)
        except NoScriptError:
            await self.client.script_load(self._script)
            return await self.client.execute_command(*self._evalsha, request)

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisViewReader:
        return cls(connect(settings), settings.key_prefix, settings.api_batch_cache_entries)

    async def read(self, parts: Sequence[ViewsRequest] = ()) -> ViewsSnapshot:
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
        held_pointer = cache.pointer_text
        held_version = ""
        if held_pointer:
            held_at = pointer_of(held_pointer)
            held_version = str(held_at.version if held_at.layout == LAYOUT else -held_at.version)
        try:
            reply = await self._run_read_script(orjson.dumps((held_pointer, held_version, wanted)))
        except RedisError:
            cache.clear()  # a Redis that went away may come back with other data
            raise
        head = reply[0]
        pointer_text = held_pointer if head == 1 else head.decode() if head is not None else None
        pointer = pointer_of(pointer_text) if pointer_text else None
        floor = pointer.cutoff if pointer else None
        if reply[1] != self._watermarks_read:  # they move once per speed layer flush
            marks = iter(reply[1])
            self._watermarks = {g.decode(): int(mark) for g, mark in zip(marks, marks, strict=True)}
            self._watermarks_read = reply[1]
        watermarks = self._watermarks
        entities_views = []
        for i, (group, entity, held) in enumerate(views_read):
            doc, tiles_json = reply[3 + 2 * i], reply[4 + 2 * i]
            entry: CachedBatchView | None = None
            if doc == 1:  # held, and the pointer is still the one it was read under
                assert held is not None
                entry = held
            else:
                if doc is not None:
                    doc = orjson.loads(doc)
                    doc.pop("@v", None)  # the stored version: not a window
                if pointer_text is not None and caching:
                    entry = cache.put(pointer_text, group, entity, doc)
            if entry is None:
                tiles, corrections = parse_tiles(tiles_json, floor)
                entities_views.append(EntityViews(doc, tiles, None, corrections))
            else:
                tiles = entry.tiles(tiles_json, floor)
                entities_views.append(EntityViews(entry.doc, tiles, entry.memo, entry.corrections))
        return ViewsSnapshot(pointer, watermarks, entities_views, *self.speed_epoch.state(reply[2]))
