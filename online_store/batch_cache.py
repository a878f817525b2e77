"""Batch views of recently served entities, kept in the API process.

A batch view never changes once its pointer is published: a batch run writes documents
stamped with a new version (the serving version's stay readable beside them) and flips
the pointer. So a read may skip every view the process already holds
for the serving pointer, once the read has seen that the pointer is still the one they
were read under (in the same atomic script on one server; in the same pipeline on Redis
Cluster). Speed tiles are always read from Redis, so values stay exactly as fresh as
without the cache. Chronon's fetcher
caches batch IRs the same way.

This relies on a pointer never being reused for other data: the batch job gives each
run a new version and its creation time. A Redis error empties the cache, as the server
may come back without its data (then a new batch run writes a new pointer anyway).

Each entry also keeps the merge's memo of the view's batch rows, so the batch buckets of
a hot entity are merged once per 5-minute step instead of on every request, and its last
result with the speed tiles it came from: while those tiles are unchanged, a request in
the same step gets that result without merging (exact: the merge is a pure function).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import orjson

from feature_core.corrections import Correction
from feature_core.merge import BatchDoc


def parse_tiles(
    tiles_json: bytes, floor: int | None
) -> tuple[dict[int, list[Any]], tuple[Correction, ...]]:
    """Speed tiles as the read script sends them (``[start, partials, start, ...]``),
    without those before ``floor`` (the batch cutoff): the batch view covers them, and
    they stay in Redis only until their TTL. Then the correction tiles among them
    (fields ``[start, version]``, :mod:`feature_core.corrections`), if any."""
    flat = orjson.loads(tiles_json)
    pairs = iter(flat)
    try:
        tiles = {
            start: p
            for start, p in zip(pairs, pairs, strict=True)
            if floor is None or start >= floor
        }
        return tiles, ()
    except TypeError:  # a correction's field (a list) among them: the rare case
        pass
    pairs = iter(flat)
    tiles, corrections = {}, []
    for start, p in zip(pairs, pairs, strict=True):
        if isinstance(start, list):
            corrections.append((start[0], start[1], p))
        elif floor is None or start >= floor:
            tiles[start] = p
    return tiles, tuple(corrections)


class CachedBatchView:
    """One (group, entity) batch view, parsed, with the merge's memo of it and the last
    speed tiles read with it."""

    __slots__ = ("_floor", "_tiles", "_tiles_json", "corrections", "doc", "memo")

    def __init__(self, doc: BatchDoc | None) -> None:
        self.doc = doc
        self.memo: dict[Any, Any] = {}
        self._tiles_json = b""
        self._floor: int | None = None
        self._tiles: dict[int, list[Any]] = {}
        self.corrections: tuple[Correction, ...] = ()

    def tiles(self, tiles_json: bytes, floor: int | None) -> dict[int, list[Any]]:
        """The speed tiles of this entity: the last parsed ones if their JSON is the
        same (the common case, between two events of an entity), so the merge memo
        finds the very same dict. Its correction tiles are then in ``corrections``."""
        if tiles_json != self._tiles_json or floor != self._floor:
            self._tiles, self.corrections = parse_tiles(tiles_json, floor)
            self._tiles_json, self._floor = tiles_json, floor
        return self._tiles


class BatchViewCache:
    """Least-recently-used batch views of one pointer (the newest seen), at most
    ``max_entries``; 0 turns the cache off."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self.pointer_text = ""  # the batch pointer (raw JSON) the entries belong to
        self._entries: OrderedDict[tuple[str, str], CachedBatchView] = OrderedDict()
        # Plain counters: exported at scrape time, nothing added to the request path.
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()
        self.pointer_text = ""

    def get(self, group: str, entity: str) -> CachedBatchView | None:
        entry = self._entries.get((group, entity))
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end((group, entity))
        return entry

    def put(
        self, pointer_text: str, group: str, entity: str, doc: BatchDoc | None
    ) -> CachedBatchView:
        """The entry for a view just read under ``pointer_text``, kept if that is the
        newest pointer seen (a new one drops every entry of the old)."""
        entry = CachedBatchView(doc)
        if not self.max_entries:
            return entry
        if pointer_text != self.pointer_text:
            self._entries.clear()
            self.pointer_text = pointer_text
        self._entries[(group, entity)] = entry
        if len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return entry
