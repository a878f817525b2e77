"""The online store's key layout, the same on standalone Redis and on Redis Cluster.

Per entity (the hash tag is the entity id, so every view of one entity, batch and speed,
of every group, lives in one hash slot: a request reads one slot per entity):

- ``{p}:bc:{group}:{{entity}}``: the entity's current batch document, JSON stamped with
  the version that wrote it: ``{"@v":N,window: {bucket: partials}}`` (``@v`` is never a
  window name). ``{"@v":N}`` alone is a tombstone: version N removed the entity.
- ``{p}:bp:{group}:{{entity}}``: its previous document, copied there by the run that
  rewrote ``bc`` while an older version served; readers at a pointer older than ``bc``'s
  version read this one instead (see :func:`stamped`). Unlinked once no reader can need it.
- ``{p}:st:{group}:{{entity}}``: hash ``tile_start_ms -> partials`` (speed tiles, TTL),
  and ``[tile_start_ms,lake_version] -> partials`` (correction tiles of late events,
  :mod:`feature_core.corrections`), in the same hash so one read returns both.

Shared state, all under the hash tag ``{meta}`` (one slot: read together, and changed in
one transaction where needed):

- ``{p}:{meta}:batch:pointer``: JSON of the serving batch view (version, cutoff, ...).
  Set only after every key of that version is written, so readers never see a part.
- ``{p}:{meta}:batch:seq``: counter allocating batch view versions.
- ``{p}:{meta}:batch:writing``: the newest version a run began writing; an older run
  neither writes nor switches once a newer one began (they share ``bc`` keys).
- ``{p}:{meta}:batch:previous``: sorted set of the ``{group}:{{entity}}`` suffixes whose
  ``bp`` key may exist, scored by the version that last rewrote their ``bc``.
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

Layout 1 (releases before the pointer carried ``"layout": 2``) kept one key per version,
``{p}:bv:v{N}:{group}:{{entity}}``; readers still read it under such a pointer, and the
first run of layout 2 unlinks it (:attr:`KeySpace.legacy_view_root`).
"""

from __future__ import annotations

from dataclasses import dataclass

META_TAG = "{meta}"

#: The pointer's ``layout`` of the documents described here (absent: 1, ``bv:v{N}`` keys).
LAYOUT = 2


def stamped(version: int, doc: bytes) -> bytes:
    """A document (JSON object) as stored: its version first, so the read script finds it
    with one anchored match. An empty document stamps to a tombstone (reads as none)."""
    head = b'{"@v":%d' % version
    return head + b"}" if doc == b"{}" else head + b"," + doc[1:]


def tombstone(version: int) -> bytes:
    return b'{"@v":%d}' % version


def doc_version(raw: bytes) -> int:
    """The version stamped on a stored document."""
    end = raw.find(b",", 6)
    return int(raw[6 : end if end > 0 else -1])


def is_tombstone(raw: bytes) -> bool:
    return raw.find(b",") < 0


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
    def batch_writing(self) -> str:
        """The newest batch view version a run began writing."""
        return self._meta("batch:writing")

    @property
    def batch_previous_index(self) -> str:
        """Sorted set: ``{group}:{{entity}}`` suffixes whose ``bp`` key may exist, by the
        version that last rewrote their ``bc``."""
        return self._meta("batch:previous")

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
    def batch_doc_root(self) -> str:
        """Every current batch document key starts with this, then ``{group}:{{entity}}``."""
        return f"{self.prefix}:bc:"

    @property
    def batch_previous_root(self) -> str:
        return f"{self.prefix}:bp:"

    @staticmethod
    def batch_suffix(group: str, entity: str) -> str:
        """What follows either root in a (group, entity)'s batch keys."""
        return f"{group}:{{{entity}}}"

    def batch_doc(self, group: str, entity: str) -> str:
        return f"{self.batch_doc_root}{group}:{{{entity}}}"

    def batch_previous(self, group: str, entity: str) -> str:
        return f"{self.batch_previous_root}{group}:{{{entity}}}"

    @property
    def legacy_view_root(self) -> str:
        """Layout 1's batch view keys: this, their version, ``:{group}:{{entity}}``."""
        return f"{self.prefix}:bv:v"

    def legacy_view(self, version: int, group: str, entity: str) -> str:
        return f"{self.legacy_view_root}{version}:{group}:{{{entity}}}"

    @property
    def speed_tiles_root(self) -> str:
        return f"{self.prefix}:st:"

    def speed_tiles_affixes(self, group: str) -> tuple[str, str]:
        """What goes before and after the entity id in a speed tiles key."""
        return f"{self.speed_tiles_root}{group}:{{", "}"

    def speed_tiles(self, group: str, entity: str) -> str:
        before, after = self.speed_tiles_affixes(group)
        return f"{before}{entity}{after}"
