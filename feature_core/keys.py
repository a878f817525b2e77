"""Redis key layout, shared by the writers (batch, speed) and the reader (serving).

- ``{p}:batch:pointer``: JSON of the serving batch view (version, cutoff, ...). Flipped
  only after every key of that version is written, so readers never see a partial view.
- ``{p}:batch:seq``: counter allocating batch view versions.
- ``{p}:bv:v{N}:{group}:{entity}``: JSON ``{window: {bucket: partials}}`` (batch IRs).
- ``{p}:st:{group}:{entity}``: hash ``tile_start_ms -> partials`` (speed tiles, TTL).
- ``{p}:speed:watermark``: latest event time (ms) the speed layer has written.
- ``{p}:speed:stats``: hash of speed-layer counters (late events, ...).
- ``{p}:lag``: hash of each consumer's lag per topic (lake ingest, speed job).

``{entity}`` is :func:`entity_id` of the entity's join key values: the value itself for
an entity with one join key, a compact JSON array of them for a composite one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


def entity_id(values: Sequence[Any]) -> str:
    """The one text naming an entity in keys and caches, from its join key values in the
    entity's declared order (an integer key as its decimal text, as Spark's and Flink's
    CAST to STRING write it). Writers (batch, speed) and the reader (serving) call it."""
    if len(values) == 1:
        return str(values[0])
    return json.dumps([str(v) for v in values], separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class KeySpace:
    prefix: str = "lfp"

    @property
    def batch_pointer(self) -> str:
        return f"{self.prefix}:batch:pointer"

    @property
    def batch_seq(self) -> str:
        return f"{self.prefix}:batch:seq"

    @property
    def batch_runs(self) -> str:
        """Hash: run id -> run record (JSON)."""
        return f"{self.prefix}:batch:runs"

    @property
    def batch_runs_index(self) -> str:
        """Sorted set: run id scored by start time."""
        return f"{self.prefix}:batch:runs:index"

    @property
    def consistency(self) -> str:
        """The last consistency verification's report (JSON)."""
        return f"{self.prefix}:verify:last"

    @property
    def batch_view_root(self) -> str:
        """Every batch view key starts with this, followed by its version number."""
        return f"{self.prefix}:bv:v"

    def batch_view(self, version: int, group: str, entity: str) -> str:
        return f"{self.batch_view_root}{version}:{group}:{entity}"

    @property
    def speed_tiles_root(self) -> str:
        return f"{self.prefix}:st:"

    def speed_tiles(self, group: str, entity: str) -> str:
        return f"{self.speed_tiles_root}{group}:{entity}"

    @property
    def speed_watermark(self) -> str:
        return f"{self.prefix}:speed:watermark"

    @property
    def speed_epoch(self) -> str:
        """Set by the speed job at start: gone means Redis lost what the job wrote."""
        return f"{self.prefix}:speed:epoch"

    @property
    def speed_stats(self) -> str:
        return f"{self.prefix}:speed:stats"

    @property
    def consumer_lag(self) -> str:
        """Hash: ``{consumer}|{topic}`` -> JSON ``{"behind": records, "at_ms": ...}``."""
        return f"{self.prefix}:lag"
