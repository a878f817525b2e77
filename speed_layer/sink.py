"""Redis writers run inside Flink's Python workers.

Tiles are upserted whole (the aggregate's current value, never an increment), so a
replay after a restart rewrites the same values: idempotent. Updates are coalesced per
(entity, tile) and flushed every ``flush_ms`` by a background thread in one pipeline,
followed by the group's watermark, so a reader that sees the watermark sees the tiles.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Sequence
from typing import Any

import orjson
import redis
from pyflink.common import Row, RowKind
from pyflink.datastream import MapFunction, RuntimeContext

from feature_core import sketches
from feature_core.aggregations import Primitive
from feature_core.keys import KeySpace, entity_id

#: Only the new value of a row matters for an upsert.
_UPSERT_KINDS = (RowKind.INSERT, RowKind.UPDATE_AFTER)

_MAX_WATERMARK = """
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if tonumber(ARGV[2]) > current then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 1
"""


def to_partial(primitive: Primitive, raw: Any) -> Any:
    """Flink's raw column -> the algebra's partial (collected arrays reduced here)."""
    if primitive.native:
        return raw
    if primitive.kind == "hll":  # the registers' bytes (SketchRegisters)
        if raw is None:
            return None
        return sketches.encode_dense(raw, primitive.param or sketches.DEFAULT_PRECISION)
    if primitive.kind == "last" and not isinstance(raw, (list, tuple)):
        return primitive.from_pairs([] if raw is None else [(raw, raw)])  # last(event_time)
    return primitive.from_pairs((pair[0], pair[1]) for pair in raw or [])


class _BufferedWriter(MapFunction):
    def __init__(self, redis_url: str, key_prefix: str, flush_ms: int = 100) -> None:
        self.redis_url = redis_url
        self.keys = KeySpace(key_prefix)
        self.flush_ms = flush_ms

    def open(self, runtime_context: RuntimeContext) -> None:
        # The worker allocates a few objects per row and keeps none: collecting the young
        # generation every 700 allocations (the default) took a fifth of its time.
        gc.set_threshold(50_000, 20, 20)
        self.client = redis.Redis.from_url(self.redis_url)
        self.lock = threading.Lock()
        self.buffer: dict[Any, Any] = {}
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stopped.wait(self.flush_ms / 1000):
            self.flush()

    def flush(self) -> None:
        with self.lock:
            pending, self.buffer = self.buffer, {}
        if pending:
            self.write(pending)

    def write(self, pending: dict[Any, Any]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        self.stopped.set()
        self.thread.join()
        self.flush()
        self.client.close()


class TileWriter(_BufferedWriter):
    """Rows ``(key0..keyk, tile, raw0..rawn, max_event_time)`` ->
    ``HSET {p}:st:{group}:{entity}`` (``entity``: :func:`entity_id` of the keys)."""

    def __init__(
        self,
        redis_url: str,
        key_prefix: str,
        group: str,
        ttl_s: int,
        primitives: Sequence[Primitive],
        join_keys: int = 1,
    ) -> None:
        super().__init__(redis_url, key_prefix)
        self.group = group
        self.ttl_s = ttl_s
        self.primitives = tuple(primitives)
        self.join_keys = join_keys

    def map(self, row: Row) -> int:
        if row.get_row_kind() not in _UPSERT_KINDS:
            return 0
        values = list(row)
        n = self.join_keys
        entity = entity_id(values[:n])
        tile, raw, max_event_time = values[n], values[n + 1 : -1], values[-1]
        with self.lock:
            self.buffer[(entity, tile)] = (raw, max_event_time)
        return 1

    def write(self, pending: dict[Any, Any]) -> None:
        pipe = self.client.pipeline(transaction=False)
        watermark = 0
        written: set[str] = set()
        for (entity, tile), (raw, max_event_time) in pending.items():
            partials = [to_partial(p, r) for p, r in zip(self.primitives, raw, strict=True)]
            key = self.keys.speed_tiles(self.group, entity)
            pipe.hset(key, str(tile), orjson.dumps(partials))
            written.add(key)
            watermark = max(watermark, int(max_event_time))
        for key in written:
            pipe.expire(key, self.ttl_s)
        # EVAL, not a registered script: redis-py checks a registered script with one more
        # round trip (SCRIPT EXISTS) before every pipeline that runs it.
        pipe.eval(_MAX_WATERMARK, 1, self.keys.speed_watermark, self.group, watermark)
        pipe.execute()


class StatsWriter(_BufferedWriter):
    """Rows ``(source, status, events, max_event_time)`` -> ``HSET {p}:speed:stats``,
    field ``{source}.{status}_events``."""

    def map(self, row: Row) -> int:
        if row.get_row_kind() not in _UPSERT_KINDS:
            return 0
        with self.lock:
            self.buffer[f"{row[0]}.{row[1]}_events"] = int(row[2])
        return 1

    def write(self, pending: dict[Any, Any]) -> None:
        self.client.hset(self.keys.speed_stats, mapping=pending)
