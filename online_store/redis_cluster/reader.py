"""The API's reader on Redis Cluster: one pipelined round trip to every node a request
needs, sent at once; a second only when the batch view switched.

A script cannot read keys of several slots, so the read is not one atomic script as on
one server. A request still never mixes batch view versions:

- The pointer, the watermarks and the speed epoch share the ``{meta}`` slot; every view
  of one entity (batch and speed, every group) shares the entity's slot. The pipeline
  reads the pointer together with the entities' current documents (``bc``,
  :mod:`online_store.keys`), each stamped with the version that wrote it.
- If the pointer read is the one the reader last saw, no switch came between: a
  document newer than the pointer belongs to a run not switched yet, and its previous
  document (``bp``, a second round trip only while a run writes) is the pointer's. If
  it moved, the documents are read again after it (a second round trip, once per
  switch): the run wrote them all before it switched.
- A previous document is unlinked only after a later version replaced the one that
  replaced it (:meth:`online_store.base.OnlineStore.switch` returns the replaced version
  and the batch job keeps its readers' documents): a request reads its views within its
  Redis timeout of reading the pointer, far less than a batch run.
- Watermarks and tiles are read in the same round trip, from different masters at once:
  unlike on one server, a watermark read may be newer than a tile read with it. The tile
  sink writes a group's watermark only after every master acknowledged its tiles, so
  they are there for the next read.

Cached batch views (:mod:`online_store.batch_cache`) are used only when the pointer read
in the same request is the one they were read under, as on one server.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import orjson
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError

from feature_core.credentials import redis_tls_options
from feature_core.merge import BatchPointer
from feature_core.settings import Settings
from online_store import STORE_ERRORS
from online_store.batch_cache import BatchViewCache, CachedBatchView, parse_tiles
from online_store.keys import LAYOUT, KeySpace, doc_version, is_tombstone
from online_store.memory import MemoryUse, memory_uses
from online_store.redis_standalone.reader import RedisStateReads
from online_store.views import (
    EntityViews,
    SpeedEpochWatch,
    ViewsRequest,
    ViewsSnapshot,
    pointer_of,
)


def _tiles_json(tiles: dict[bytes, bytes]) -> bytes:
    """A tiles hash as the JSON array ``[start, partials, ...]`` the cache compares."""
    return b"[" + b",".join(start + b"," + partials for start, partials in tiles.items()) + b"]"


class ConnectionSlots:
    """At most ``size`` reads in flight, so at most ``size`` connections to each node:
    redis-py's cluster pool fails a command above its limit at once (MaxConnectionsError)
    where the one-server pool waits. A read waits here for up to ``timeout_s``, then
    fails as that pool would."""

    def __init__(self, size: int, timeout_s: float) -> None:
        self.size = size
        self.timeout_s = timeout_s
        self._free = asyncio.Semaphore(size)

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        try:
            if self._free.locked():
                await asyncio.wait_for(self._free.acquire(), self.timeout_s)
            else:
                await self._free.acquire()  # a free slot: no timer task on the hot path
        except TimeoutError:
            raise RedisConnectionError(
                f"no free Redis connection within {self.timeout_s:g} s: all "
                f"{self.size} are in use (LFP_API_REDIS_CONNECTIONS)"
            ) from None
        try:
            yield
        finally:
            self._free.release()


class RedisClusterViewReader(RedisStateReads):
    def __init__(
        self,
        client: RedisCluster,
        key_prefix: str,
        batch_cache_entries: int = 0,
        slots: ConnectionSlots | None = None,
    ):
        self.client = client
        self.keys = KeySpace(key_prefix)
        self.batch_cache = BatchViewCache(batch_cache_entries)
        self.speed_epoch = SpeedEpochWatch()
        self.slots = slots
        # The pointer text of the last read: the next one reads that version's views
        # in its first round trip.
        self._last_pointer: str | None = None
        self._watermarks_read: dict[bytes, bytes] | None = None
        self._watermarks: dict[str, int] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisClusterViewReader:
        client = RedisCluster.from_url(
            settings.redis_url,
            socket_timeout=settings.redis_timeout_s,
            socket_connect_timeout=settings.redis_timeout_s,
            max_connections=settings.api_redis_connections,
            **redis_tls_options(settings.redis_url),
        )
        slots = ConnectionSlots(settings.api_redis_connections, settings.redis_timeout_s)
        return cls(client, settings.key_prefix, settings.api_batch_cache_entries, slots)

    def _connection(self) -> AbstractAsyncContextManager[Any]:
        return self.slots.held() if self.slots is not None else contextlib.nullcontext()

    async def memory(self) -> list[MemoryUse]:
        """Every master's used memory and maxmemory (INFO memory of each)."""
        async with self._connection():
            return memory_uses(
                await self.client.info("memory", target_nodes=RedisCluster.PRIMARIES)
            )

    async def read(self, parts: Sequence[ViewsRequest] = ()) -> ViewsSnapshot:
        async with self._connection():  # its pipelines run one after the other
            return await self._read(parts)

    async def _read(self, parts: Sequence[ViewsRequest]) -> ViewsSnapshot:
        cache = self.batch_cache
        caching = cache.max_entries > 0
        guess = self._last_pointer
        guessed = pointer_of(guess) if guess else None
        views_read: list[tuple[str, str, CachedBatchView | None]] = []
        pipe = self.client.pipeline()
        pipe.get(self.keys.batch_pointer)
        pipe.hgetall(self.keys.speed_watermark)
        pipe.get(self.keys.speed_epoch)
        for groups, entities in parts:
            for entity in entities:
                for group in groups:
                    held = cache.get(group, entity) if caching else None
                    if held is not None and cache.pointer_text != guess:
                        held = None
                    views_read.append((group, entity, held))
                    if held is None and guessed is not None:
                        pipe.get(self._doc_key(guessed, group, entity))
                    pipe.hgetall(self.keys.speed_tiles(group, entity))
        try:
            replies: list[Any] = await pipe.execute()
        except STORE_ERRORS:
            cache.clear()  # a Redis that went away may come back with other data
            raise
        head, marks, epoch = replies[0], replies[1], replies[2]
        pointer_text = head.decode() if head is not None else None
        self._last_pointer = pointer_text
        pointer = pointer_of(pointer_text) if pointer_text else None
        floor = pointer.cutoff if pointer else None
        if marks != self._watermarks_read:  # they move once per speed layer flush
            self._watermarks = {g.decode(): int(m) for g, m in marks.items()}
            self._watermarks_read = marks
        docs: list[Any] = []
        tiles: list[bytes] = []
        at = 3
        for _, _, held in views_read:
            if held is None and guessed is not None:
                docs.append(replies[at])
                at += 1
            else:
                docs.append(None)
            tiles.append(_tiles_json(replies[at]))
            at += 1
        if pointer_text != guess:
            # The version switched (or this is the first read): the views read, held or
            # not, belong to another version than the pointer's.
            views_read = [(group, entity, None) for group, entity, _ in views_read]
            docs = await self._views_at(pointer, views_read)
        elif pointer is not None and pointer.layout == LAYOUT:
            docs = await self._as_of(pointer.version, views_read, docs)
        entities_views = []
        for (group, entity, held), doc, tiles_json in zip(views_read, docs, tiles, strict=True):
            entry: CachedBatchView | None = held
            if entry is None:
                doc = _parsed(doc)
                if pointer_text is not None and caching:
                    entry = cache.put(pointer_text, group, entity, doc)
            if entry is None:
                tiles, corrections = parse_tiles(tiles_json, floor)
                entities_views.append(EntityViews(doc, tiles, None, corrections))
            else:
                tiles = entry.tiles(tiles_json, floor)
                entities_views.append(EntityViews(entry.doc, tiles, entry.memo, entry.corrections))
        return ViewsSnapshot(
            pointer, self._watermarks, entities_views, *self.speed_epoch.state(epoch)
        )

    def _doc_key(self, pointer: BatchPointer, group: str, entity: str) -> str:
        """The key of a (group, entity)'s document under ``pointer``'s layout."""
        if pointer.layout == LAYOUT:
            return self.keys.batch_doc(group, entity)
        return self.keys.legacy_view(pointer.version, group, entity)

    async def _views_at(
        self, pointer: BatchPointer | None, views: list[tuple[str, str, Any]]
    ) -> list[Any]:
        """Every view's document as ``pointer``'s version shows it, read after it."""
        if pointer is None or not views:
            return [None] * len(views)
        docs = await self._get([self._doc_key(pointer, g, e) for g, e, _ in views])
        if pointer.layout != LAYOUT:
            return docs
        return await self._as_of(pointer.version, views, docs)

    async def _as_of(
        self, version: int, views: list[tuple[str, str, Any]], docs: list[Any]
    ) -> list[Any]:
        """Documents read from ``bc`` keys as ``version`` shows them: one written by a
        run newer than it (not switched yet) gives way to the previous document (a second
        round trip, only while such a run writes); a tombstone, or a previous document
        newer still, is none."""
        newer = [i for i, doc in enumerate(docs) if doc is not None and doc_version(doc) > version]
        if newer:
            docs = list(docs)
            previous = await self._get(
                [self.keys.batch_previous(views[i][0], views[i][1]) for i in newer]
            )
            for i, doc in zip(newer, previous, strict=True):
                docs[i] = doc if doc is not None and doc_version(doc) <= version else None
        return [None if doc is None or is_tombstone(doc) else doc for doc in docs]

    async def _get(self, keys: list[str]) -> list[Any]:
        pipe = self.client.pipeline()
        for key in keys:
            pipe.get(key)
        try:
            return list(await pipe.execute())
        except STORE_ERRORS:
            self.batch_cache.clear()
            raise


def _parsed(doc: bytes | None) -> Any:
    if doc is None:
        return None
    parsed = orjson.loads(doc)
    parsed.pop("@v", None)  # the stored version: not a window
    return parsed
