"""Reads both views from Redis in one round trip, atomically.

A Lua script reads the batch pointer, then the pointed-to batch view and the speed
tiles of every requested (group, entity), and the speed watermarks. Redis runs a
script atomically, so a request never sees half of a batch view switch, and the whole
read is one network round trip whatever the number of entities.

Reads that arrive while a script call is in flight are coalesced into the next call,
as Chronon's fetcher batches its KV requests: the client's fixed cost per call (about a
third of a bare one-HGETALL endpoint's whole request) is then shared under load, and a
lone request is sent at once, never held back to wait for company.
"""

from __future__ import annotations

import asyncio
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

    def slice(self, start: int, end: int) -> ViewsSnapshot:
        """The same read's views ``start:end`` (one part of a read of several)."""
        return ViewsSnapshot(self.pointer, self.speed_watermarks, self.entities[start:end])


def view_count(parts: Sequence[ViewsRequest]) -> int:
    """How many views a read of ``parts`` returns: groups x entities of each part."""
    return sum(len(groups) * len(entities) for groups, entities in parts)


def connect(settings: Settings) -> aioredis.Redis:
    """The API's Redis client: bounded timeouts, so a dead or paused Redis costs a request
    at most ``LFP_REDIS_TIMEOUT_S`` before its 503."""
    return aioredis.Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
        max_connections=64,
    )


_Waiting = tuple[Sequence[ViewsRequest], "asyncio.Future[ViewsSnapshot]"]


class FeatureStore:
    """Async reader of the batch and speed views."""

    def __init__(
        self, client: aioredis.Redis, key_prefix: str, max_coalesced_views: int = 3000
    ) -> None:
        self.client = client
        self.keys = KeySpace(key_prefix)
        self._script = client.register_script(_READ_SCRIPT)
        # Bounds one coalesced script call, which blocks Redis while it runs.
        self.max_coalesced_views = max_coalesced_views
        self._busy = False
        self._waiting: list[_Waiting] = []
        self._calls: set[asyncio.Task[None]] = set()

    async def read(self, parts: Sequence[ViewsRequest] = ()) -> ViewsSnapshot:
        """The views of each part's groups for each of its entities (entity-major, parts
        in order), plus the pointer and watermarks used. No parts: those two only.

        A read queued behind a call in flight waits for that call and then its own, so
        a dead Redis answers it within twice the client's socket timeout."""
        if self._busy:
            future: asyncio.Future[ViewsSnapshot] = asyncio.get_running_loop().create_future()
            self._waiting.append((parts, future))
            return await future
        self._busy = True
        try:
            return await self._read_now(parts)
        finally:
            self._next_call()

    def _next_call(self) -> None:
        """Send the reads that queued during the last call in one call, or go idle."""
        if not self._waiting:
            self._busy = False
            return
        batch, views = [], 0
        while self._waiting and (not batch or views < self.max_coalesced_views):
            batch.append(self._waiting.pop(0))
            views += view_count(batch[-1][0])
        task = asyncio.get_running_loop().create_task(self._read_for(batch))
        self._calls.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._calls.discard)

    async def _read_for(self, batch: list[_Waiting]) -> None:
        """One script call for every queued read; each gets its own slice of the views."""
        try:
            snapshot = await self._read_now([part for parts, _ in batch for part in parts])
        except Exception as error:  # each waiter gets the error its own call would have
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
        except asyncio.CancelledError:  # shutting down
            for _, future in batch:
                future.cancel()
            raise
        else:
            start = 0
            for parts, future in batch:
                end = start + view_count(parts)
                if not future.done():  # a waiter whose client went away is cancelled
                    future.set_result(snapshot.slice(start, end))
                start = end
        finally:
            self._next_call()

    async def _read_now(self, parts: Sequence[ViewsRequest]) -> ViewsSnapshot:
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
