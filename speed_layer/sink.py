"""What the speed job writes to the online store besides tiles, and the tiles' partials.

Tiles are written from the JVM (``lfp.speed.TileSink``): upserted whole (the aggregate's
current value, never an increment), so a replay after a restart rewrites the same values,
coalesced per (entity, tile) and written in one pipeline followed by the group's
watermark, so a reader that sees the watermark sees the tiles. :func:`to_partial` is how
the algebra finishes a tile column's emitted value; the JVM sink does the same, and a
parity test holds the two together. The per-status counts are few and written from
Python (:class:`StatsWriter`).
"""

from __future__ import annotations

import gc
import threading
from typing import Any

from pyflink.common import Row, RowKind
from pyflink.datastream import MapFunction, RuntimeContext

from feature_core.aggregations import Primitive
from feature_core.settings import Settings
from online_store import open_store

#: Only the new value of a row matters for an upsert.
_UPSERT_KINDS = (RowKind.INSERT, RowKind.UPDATE_AFTER)


def to_partial(primitive: Primitive, raw: Any) -> Any:
    """Flink's raw column -> the algebra's partial (what the JVM sink writes)."""
    return primitive.from_flink(raw)


class _BufferedWriter(MapFunction):
    def __init__(self, settings: Settings, flush_ms: int = 100) -> None:
        self.settings = settings
        self.flush_ms = flush_ms

    def open(self, runtime_context: RuntimeContext) -> None:
        # The worker allocates a few objects per row and keeps none: collecting the young
        # generation every 700 allocations (the default) took a fifth of its time.
        gc.set_threshold(50_000, 20, 20)
        self.store = open_store(self.settings)
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
        self.store.close()


class StatsWriter(_BufferedWriter):
    """Rows ``(source, status, events, max_event_time)`` -> the store's speed stats,
    ``{source}.{status}_events``."""

    def map(self, row: Row) -> int:
        if row.get_row_kind() not in _UPSERT_KINDS:
            return 0
        with self.lock:
            self.buffer[f"{row[0]}.{row[1]}_events"] = int(row[2])
        return 1

    def write(self, pending: dict[Any, Any]) -> None:
        self.store.set_speed_stats(pending)
