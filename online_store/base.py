"""The online store's protocol: what the layers ask of it, whatever keeps the views.

Writers (the batch job, its executors, the speed job's supervisor, the scheduler) use
:class:`OnlineStore`; the API reads through :class:`ViewReader`. The speed job's tile
sink runs in the JVM and gets its target from :meth:`OnlineStore.tile_target`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from feature_core.merge import BatchPointer
from online_store.batch_cache import BatchViewCache
from online_store.keys import KeySpace
from online_store.memory import MemoryUse
from online_store.views import ViewsRequest, ViewsSnapshot
from runtime.lag import TopicLag
from runtime.lag import parse as parse_lag


class ViewChanges(NamedTuple):
    """Entities a write made appear or disappear, relative to what the serving version
    shows (a retried run counts the same)."""

    created: int = 0
    deleted: int = 0


@dataclass(frozen=True)
class TileTarget:
    """Where the JVM tile sink writes: a node's URL, and whether it is a Redis Cluster
    (the sink then routes each key to its slot's node)."""

    url: str
    cluster: bool


class OnlineStore(ABC):
    """Batch views (one document per entity stamped with its version, switched by one
    pointer, :mod:`online_store.keys`), speed tiles and shared state.

    ``client`` is the backend's client for the shared state (run history, lag, stats):
    single-key commands, or keys sharing the ``{meta}`` hash tag."""

    keys: KeySpace
    client: Any
    #: Whether a reader reads the pointer and the documents atomically (one server's
    #: script): then no reader needs a previous document once the pointer moved.
    atomic_reads: bool = True

    @abstractmethod
    def next_version(self) -> int:
        """A new batch view version, never handed out before."""

    @abstractmethod
    def begin_views(self, version: int) -> int | None:
        """Mark ``version`` as the one being written, before any of its documents: the
        version serving now (0: none of this layout), or None when a newer run began or
        serves already (this one must write nothing)."""

    @abstractmethod
    def write_views(
        self,
        version: int,
        serving: int,
        group: str,
        views: Iterable[tuple[str, bytes]],
        written: Callable[[int], None] | None = None,
    ) -> ViewChanges | None:
        """Write (entity id, view JSON) pairs of one group as batch view ``version``'s
        documents, keeping the documents version ``serving`` shows for its readers;
        ``written(n)`` after each chunk reaches the store. None once a newer run began
        (nothing more is written)."""

    @abstractmethod
    def read_base(
        self, serving: int, group: str, entities: Sequence[str]
    ) -> dict[str, dict[str, Any] | None]:
        """Each entity's document as version ``serving`` shows it (None: none), without
        its stamp: what an incremental run starts from, whatever a run that did not
        switch left in the current documents."""

    @abstractmethod
    def sweep_views(self, version: int, serving: int, groups: Collection[str] | None = None) -> int:
        """After a run wrote every entity of ``groups`` (None: of every group, and groups
        that left the repo): tombstone each of their documents older than ``version``
        (entities that left the view); the tombstones written."""

    @abstractmethod
    def switch(self, pointer: BatchPointer) -> int | None:
        """Serve ``pointer``'s version if it is newer than the one serving and no newer run
        began: the version it replaced (0 when none served), or None (no switch)."""

    @abstractmethod
    def pointer(self) -> BatchPointer | None:
        """The batch view serving now, if any."""

    @abstractmethod
    def clean_views(self, keep_from: int) -> int:
        """Unlink what only readers of versions older than ``keep_from`` can read (previous
        documents, tombstones, layout 1 keys); keys unlinked."""

    @abstractmethod
    def watermarks(self, groups: Sequence[str]) -> dict[str, int | None]:
        """Each group's speed watermark (the newest event time its tiles hold)."""

    @abstractmethod
    def server_identity(self) -> str | None:
        """Names the running server(s): it changes when one restarts (and may have lost
        writes). None when not reachable."""

    @abstractmethod
    def keeps_acknowledged_writes(self) -> bool:
        """Whether a restart of the server(s) keeps every write it acknowledged (Redis:
        ``appendonly yes`` with ``appendfsync always``). False when unknown."""

    @abstractmethod
    def tile_target(self) -> TileTarget:
        """Where the JVM tile sink writes."""

    @abstractmethod
    def set_speed_epoch(self, epoch: Mapping[str, Any]) -> None:
        """What the speed job knows at start: the server it writes to, tiles complete."""

    @abstractmethod
    def speed_epoch(self) -> dict[str, Any] | None:
        """The epoch the speed job set last, if the store still has it."""

    @abstractmethod
    def speed_epoch_kept(self) -> bool:
        """Whether the epoch is still there (gone: the store lost the job's writes)."""

    @abstractmethod
    def write_corrections(
        self,
        group: str,
        table: str,
        version: int,
        tiles: Mapping[str, Mapping[tuple[int, int], Sequence[Any]]],
        ttl_s: int,
    ) -> int:
        """Write the correction tiles of lake version ``version`` of ``table`` for
        ``group`` (entity -> (tile start, width) -> partials,
        :mod:`feature_core.corrections`) beside the entities' speed tiles, and index
        their keys for :meth:`retire_corrections`. Returns the fields written."""

    @abstractmethod
    def retire_corrections(self, table: str, covered: int) -> int:
        """Drop the correction tiles of ``table``'s versions ``<= covered`` (the serving
        batch view read them); returns the fields dropped."""

    @abstractmethod
    def corrections_written(self, table: str) -> int | None:
        """The last lake version of ``table`` whose correction tiles are all written."""

    @abstractmethod
    def set_corrections_written(self, table: str, version: int) -> None: ...

    @abstractmethod
    def set_speed_stats(self, counts: Mapping[str, int]) -> None:
        """The speed job's record counts (``{source}.{status}_events``)."""

    @abstractmethod
    def speed_stats(self) -> dict[str, int]: ...

    @abstractmethod
    def clear_speed_stats(self) -> None: ...

    @abstractmethod
    def save_runs(self, runs: Iterable[tuple[str, str, float]], keep: int) -> None:
        """Record batch runs (run id, record JSON, start time); keep the newest ``keep``."""

    @abstractmethod
    def has_runs(self) -> bool: ...

    @abstractmethod
    def recent_runs(self, limit: int) -> list[bytes]:
        """The newest run records (JSON), newest first."""

    @abstractmethod
    def publish_lag(self, consumer: str, lag: Mapping[str, int]) -> None:
        """A consumer's records behind, per topic, stamped now."""

    def consumer_lag(self) -> list[TopicLag]:
        """Each consumer's lag per topic, as last published (fresh ones only)."""
        return parse_lag(self.client.hgetall(self.keys.consumer_lag))

    @abstractmethod
    def publish_health(self, consumer: str, record: bytes) -> None:
        """A consumer's health record (:mod:`runtime.health`), replacing its last one;
        the records are forgotten ``FORGET_AFTER_S`` after the last publication."""

    @abstractmethod
    def consumer_health(self) -> dict[bytes, bytes]:
        """Each consumer's last health record (consumer -> JSON)."""

    @abstractmethod
    def drop_health(self, consumer: str) -> None:
        """Forget a consumer's record (it stopped on purpose)."""

    @abstractmethod
    def publish_report(self, report: str) -> None:
        """The last consistency verification (JSON), for ``/metrics``."""

    @abstractmethod
    def append_journal(self, kind: str, record: bytes, at_ms: int, keep: int) -> None:
        """Add a record to an operations journal (:mod:`feature_core.journals`), keeping the
        newest ``keep``. The record carries its own time: two records must differ."""

    @abstractmethod
    def journal(self, kind: str, since_ms: int = 0, limit: int = 1000) -> list[bytes]:
        """The newest ``limit`` records of a journal dated at or after ``since_ms``,
        oldest first."""

    @abstractmethod
    def ping(self) -> bool: ...

    @abstractmethod
    def close(self) -> None: ...


class ViewReader(ABC):
    """The API's asynchronous reader: every view a request needs, of one batch view
    version, plus the shared state its endpoints show. ``batch_cache`` holds the batch
    views it keeps in process."""

    keys: KeySpace
    batch_cache: BatchViewCache

    @abstractmethod
    async def read(self, parts: Sequence[ViewsRequest] = ()) -> ViewsSnapshot:
        """The views of each part's groups for each of its entities (entity-major, parts
        in order), with the pointer and watermarks they were read under. No parts: those
        two only."""

    @abstractmethod
    async def batch_runs(self, limit: int) -> list[bytes]:
        """The newest batch run records (JSON), newest first."""

    @abstractmethod
    async def consumer_lag(self) -> list[TopicLag]:
        """Each consumer's lag per topic, as last published (fresh ones only)."""

    @abstractmethod
    async def consumer_health(self) -> dict[bytes, bytes]:
        """Each consumer's last health record (consumer -> JSON, :mod:`runtime.health`)."""

    async def memory(self) -> list[MemoryUse]:
        """Each server's memory use against its maxmemory (none known: empty)."""
        return []

    @abstractmethod
    async def consistency_report(self) -> bytes | None:
        """The last consistency verification (JSON), if one was published."""

    @abstractmethod
    async def journal(self, kind: str, since_ms: int = 0, limit: int = 1000) -> list[bytes]:
        """The newest ``limit`` records of an operations journal dated at or after
        ``since_ms``, oldest first."""

    @abstractmethod
    async def ping(self) -> bool: ...

    @abstractmethod
    async def close(self) -> None: ...
