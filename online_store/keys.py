"""The online store's key layout, the same on standalone Redis and on Redis Cluster.

Per entity (the hash tag is the entity id, so every view of one entity, batch and speed,
of every group, lives in one hash slot: a request reads one slot per entity):

- ``{p}:bv:v{N}:{group}:{{entity}}``: JSON ``{window: {bucket: partials}}`` (batch IRs of
  batch view version N).
- ``{p}:st:{group}:{{entity}}``: hash ``tile_start_ms -> partials`` (speed tiles, TTL),
  and ``[tile_start_ms,lake_version] -> partials`` (correction tiles of late events,
  :mod:`feature_core.corrections`), in the same hash so one read returns both.

Shared state, all under the hash tag ``{meta}`` (one slot: read together, and changed in
one transaction where needed):

- ``{p}:{meta}:batch:pointer``: JSON of the serving batch view (version, cutoff, ...).
  Set only after every key of that version is written, so readers never see a part.
- ``{p}:{meta}:batch:seq``: counter allocating batch view versions.
- ``{p}:{meta}:batch:runs`` / ``...:runs:index``: batch run records, and their index.
- ``{p}:{meta}:speed:watermark``: per group, the latest event time (ms) written.
- ``{p}:{meta}:speed:epoch``, ``...:speed:stats``: the speed job's start, its counters.
- ``{p}:{meta}:lag``: each consumer's lag per topic (lake ingest, speed job).
- ``{p}:{meta}:consumers``: each consumer's health record (:mod:`runtime.health`); the
  key expires ``FORGET_AFTER_S`` after the last write.
- ``{p}:{meta}:verify:last``: the last consistency report.
- ``{p}:{meta}:corrections:written``: per lake table, the last version whose correction
  tiles lake ingest has written.
- ``{p}:{meta}:corrections:keys:{table}``: sorted set of the speed tiles keys holding a
  correction tile of ``table``, scored by the newest version written to each.
- ``{p}:{meta}:journal:{kind}``: sorted set of an operations journal's records (JSON, each
  carrying its own time), scored by that time in ms, capped to the newest few thousand:
  freshness samples, feature statistics, sampled verifications (:mod:`feature_core.journals`).

``{entity}`` is :func:`feature_core.keys.entity_id` of the join key values.
"""

from __future__ import annotations

from dataclasses import dataclass

META_TAG = "{meta}"


@dataclass(frozen=True)
class KeySpace:
    prefix: str = "lfp"

    def _meta(self, name: str) -> str:
        return f"{self.prefix}:{META_TAG}:{name}"

    @property
    def batch_pointer(self) -> str:
        return self._meta("batch:pointer")

    @property
    def batch_seq(self) -> str:
        return self._meta("batch:seq")

    @property
    def batch_runs(self) -> str:
        """Hash: run id -> run record (JSON)."""
        return self._meta("batch:runs")

    @property
    def batch_runs_index(self) -> str:
        """Sorted set: run id scored by start time."""
        return self._meta("batch:runs:index")

    @property
    def consistency(self) -> str:
        """The last consistency verification's report (JSON)."""
        return self._meta("verify:last")

    @property
    def speed_watermark(self) -> str:
        return self._meta("speed:watermark")

    @property
    def speed_epoch(self) -> str:
        """Set by the speed job at start: gone means Redis lost what the job wrote."""
        return self._meta("speed:epoch")

    @property
    def corrections_written(self) -> str:
        """Hash: lake table -> the last version whose correction tiles are written."""
        return self._meta("corrections:written")

    def corrections_index(self, table: str) -> str:
        """Sorted set: speed tiles keys holding correction tiles of ``table``, by the
        newest lake version written to each."""
        return self._meta(f"corrections:keys:{table}")

    def journal(self, kind: str) -> str:
        """Sorted set: an operations journal's records (JSON), scored by their time (ms)."""
        return self._meta(f"journal:{kind}")

    @property
    def speed_stats(self) -> str:
        return self._meta("speed:stats")

    @property
    def consumer_lag(self) -> str:
        """Hash: ``{consumer}|{topic}`` -> JSON ``{"behind": records, "at_ms": ...}``."""
        return self._meta("lag")

    @property
    def consumer_health(self) -> str:
        """Hash: consumer -> its health record (JSON, :mod:`runtime.health`)."""
        return self._meta("consumers")

    @property
    def batch_view_root(self) -> str:
        """Every batch view key starts with this, followed by its version number."""
        return f"{self.prefix}:bv:v"

    def batch_view_affixes(self, version: int, group: str) -> tuple[str, str]:
        """What goes before and after the entity id in a batch view key."""
        return f"{self.batch_view_root}{version}:{group}:{{", "}"

    def batch_view(self, version: int, group: str, entity: str) -> str:
        before, after = self.batch_view_affixes(version, group)
        return f"{before}{entity}{after}"

    @property
    def speed_tiles_root(self) -> str:
        return f"{self.prefix}:st:"

    def speed_tiles_affixes(self, group: str) -> tuple[str, str]:
        """What goes before and after the entity id in a speed tiles key."""
        return f"{self.speed_tiles_root}{group}:{{", "}"

    def speed_tiles(self, group: str, entity: str) -> str:
        before, after = self.speed_tiles_affixes(group)
        return f"{before}{entity}{after}"
