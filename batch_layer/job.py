"""The batch job: pinned Delta snapshots -> each group's tiles and documents for event
time < B -> the tile table and Redis.

With ``LFP_BATCH_INCREMENTAL`` (the default), each group is advanced from its stored
tiles (only the events added since the last run, only the documents whose values can
change), reassembled (its tiles advanced the same way, every document assembled from them:
the served ones cannot be advanced) or rebuilt from every event, as
:mod:`batch_layer.tile_runs` decides; :mod:`batch_layer.event_tiles` and
:mod:`batch_layer.assembly` compute it. With it false (and for a run before the stored
tiles' cutoff, or a source under ``LFP_BATCH_TILES_MIN_EVENTS``), a group is recomputed
window by window (:mod:`batch_layer.window_views`)
and no tiles are written. Groups are independent until the tile commit: a run computes
``LFP_BATCH_GROUP_CONCURRENCY`` of them at once, in threads of its driver. Documents are
written under a fresh version (the serving one's kept for its readers), the tiles and every
group's new state are committed in one Delta transaction, and then the serving pointer
flips; a crash anywhere leaves the old view serving.
"""

from __future__ import annotations

import functools
import logging
import operator
import threading
import time
from collections.abc import Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from batch_layer.assembly import (
    DOC_SERIES,
    BaseDocuments,
    advance,
    edge_dates,
    late_days_needed,
    rebuild,
)
from batch_layer.carried_sample import Carried, CarriedGroup, hex_bound, load_carried, save_carried
from batch_layer.columns import filter_column
from batch_layer.event_tiles import event_tiles
from batch_layer.feature_stats import (
    EntitySampler,
    previous_run,
    priority_below,
    record_run_stats,
)
from batch_layer.lake import (
    DeltaFiles,
    commit_time_after,
    files_bytes,
    files_matching,
    logged_rows,
    open_table,
)
from batch_layer.task_store import task_store, write_task_views
from batch_layer.tile_ops import fold_run_files
from batch_layer.tile_runs import (
    INCREMENTAL,
    REASSEMBLE,
    REBUILD,
    GroupPlan,
    RunContext,
    lake_state,
    late_day_events,
    new_events,
    plan_group,
    pointer_json,
    run_mode,
)
from batch_layer.tiles import (
    GroupCommit,
    GroupState,
    TileCommit,
    TileFile,
    TileTableState,
    commit_tiles,
    read_state,
    read_tile_files,
    spec_tag,
    tile_files,
    tiles_uri,
    write_staged,
)
from batch_layer.window_views import bucket_sql, group_irs, write_partition
from feature_core.definitions import FeatureGroup, FeatureRepo
from feature_core.merge import BatchPointer, group_merger
from feature_core.settings import Settings
from feature_core.sources import EventSource, quoted
from feature_core.stats import RunFeatureStats
from feature_core.tiles import tile_spec_fingerprint
from feature_core.windows import align_cutoff
from online_store import open_store
from online_store.base import OnlineStore
from online_store.timeouts import explain_timeouts

log = logging.getLogger(__name__)

#: Prefix of the Spark job description a run gives each step's jobs (the group, or the
#: run-wide step): what the Spark UI and ``make bench-batch`` show jobs by.
STEP_PREFIX = "lfp batch: "
_DESCRIPTION = "spark.job.description"


def _step(spark: SparkSession, what: str) -> None:
    """Describe the Spark jobs of the run's next step."""
    spark.sparkContext.setLocalProperty(_DESCRIPTION, STEP_PREFIX + what)


#: The modes a caller may ask :func:`run_batch` for (None: each group's own): ``full``
#: recomputes every group from the raw events (`lfp batch run --full`), ``reassemble``
#: advances the stored tiles and assembles every document from them, reading no raw
#: events before their cutoff (operators: `--reassemble`; groups without usable tiles
#: are rebuilt).
REQUESTED_MODES = ("full", "reassemble")


@dataclass(frozen=True)
class BatchResult:
    """What a run did. The figures after ``garbage_collected`` are recorded with the run
    (:class:`feature_core.runs.RunRecord`, same names); None: this run cannot tell."""

    version: int
    cutoff: int
    delta_versions: dict[str, int | None]  # lake table -> version read
    rows_read: int
    entities_written: int
    started_at: float
    finished_at: float
    switched: bool = True
    garbage_collected: int = 0
    mode: str = "full"  # incremental, reassemble, full or mixed
    group_modes: dict[str, str] = field(default_factory=dict)  # group -> its mode
    mode_reasons: dict[str, str] = field(default_factory=dict)  # group -> why not incremental
    lake_files_read: int | None = None
    lake_bytes_read: int | None = None
    new_events: int | None = None
    tiles_written: int | None = None
    entities_changed: dict[str, int] | None = None  # data / edge -> entities
    keys_written: int | None = None
    keys_deleted: int | None = None

    @property
    def delta_version(self) -> int | None:
        """The version read, when the groups read one table (else see delta_versions)."""
        return single_version(self.delta_versions)

    def to_json(self) -> dict:
        return {**asdict(self), "delta_version": self.delta_version}


def single_version(versions: dict[str, int | None]) -> int | None:
    return next(iter(versions.values())) if len(versions) == 1 else None


@dataclass(frozen=True)
class Snapshot:
    """A pinned read of a source's lake table and what it reads (for the run record)."""

    frame: DataFrame
    version: int | None  # None: no table yet
    files: int
    bytes: int | None  # None: a file's size is not in the Delta log


def read_snapshot(
    spark: SparkSession,
    settings: Settings,
    source: EventSource,
    version: int | None = None,
    where: Mapping[str, Sequence[Any]] | None = None,
) -> tuple[DataFrame, int | None]:
    """A source's lake table at a pinned Delta version (latest when ``version`` is None),
    read with the schema its declaration compiles to: a field added later reads null in
    older files. ``where`` (column -> values) skips the files whose Delta statistics hold
    none of a column's values; it does not filter rows."""
    snapshot = pinned_snapshot(spark, settings, source, version, where)
    return snapshot.frame, snapshot.version


def pinned_snapshot(
    spark: SparkSession,
    settings: Settings,
    source: EventSource,
    version: int | None = None,
    where: Mapping[str, Sequence[Any]] | None = None,
) -> Snapshot:
    """:func:`read_snapshot` with the number of data files read and their bytes."""
    schema = source.spark_ddl()
    table = open_table(settings.table_uri(source.table_name), version)
    if table is None:
        return Snapshot(spark.createDataFrame([], schema), None, 0, 0)
    files = table.file_uris() if where is None else files_matching(table, where)
    if not files:
        return Snapshot(spark.createDataFrame([], schema), table.version(), 0, 0)
    frame = spark.read.schema(schema).parquet(*files)
    return Snapshot(frame, table.version(), len(files), files_bytes(table, files))


def _write_documents(
    rows,
    settings: Settings,
    version: int,
    serving: int,
    group: str,
    tombstones: bool,
    counters,
    sampler: EntitySampler | None = None,
):
    """Write a task's document rows (:data:`~batch_layer.assembly.DOC_SERIES`) of one
    group. An empty document is a tombstone in an incremental run (the entity left the
    view) and skipped when the run writes every document of the group (rebuilt or
    reassembled: the sweep removes what was not written)."""
    taken = sampler.task() if sampler is not None else None

    def views():
        for row in rows:
            raw = row["partials"]
            if raw == "{}" and not tombstones:
                continue
            if taken is not None:
                taken.offer(row["entity"], None if raw == "{}" else orjson.loads(raw))
            yield row["entity"], raw.encode()

    write_task_views(settings, version, serving, group, views(), counters)
    if taken is not None:
        taken.publish()


def _count_documents(rows, settings: Settings, version: int, group: str, sampler, counter) -> None:
    """Read the documents version ``version`` shows for a task's entities: count those
    present and offer them to the sample (an incremental run that does not know how
    many entities its group's view holds)."""
    taken = sampler.task()
    with task_store(settings) as store:
        docs = store.read_base(version, group, [r["entity"] for r in rows])
    present = {entity: doc for entity, doc in docs.items() if doc}
    for entity, doc in present.items():
        taken.offer(entity, doc)
    taken.publish()
    counter.add(len(present))


def _sample_served(
    spark: SparkSession,
    settings: Settings,
    version: int,
    sampling: Sequence[tuple[str, EntitySampler, DataFrame]],
    listed: Mapping[str, tuple[EntitySampler, Sequence[str]]],
) -> None:
    """Offer incremental groups' samples the documents version ``version`` shows for
    their candidates: in ``sampling`` (group, its sampler, the entities with tiles) the
    entities under the sampler's bound, in ``listed`` (group -> its sampler, entities)
    the entities named (a carried sample's, merged again at the new cutoff). One Spark
    job does it for every group: the candidates are picked by their hash in the JVM, and
    as many Python tasks as cores read and merge them (a task per partition and group,
    each reading Redis, cost more than the reads)."""
    frames = [
        known.where(priority_below("entity", sampler.bound)).select(
            F.lit(name).alias("sampled"), "entity"
        )
        for name, sampler, known in sampling
    ]
    named = [(name, entity) for name, (_, entities) in listed.items() for entity in entities]
    if named:
        frames.append(spark.createDataFrame(named, "sampled STRING, entity STRING"))
    if not frames:
        return
    candidates = functools.reduce(DataFrame.unionByName, frames).distinct()
    samplers = {name: sampler for name, sampler, _ in sampling}
    samplers |= {name: sampler for name, (sampler, _) in listed.items()}
    # Repartitioned, not coalesced: the distinct candidates are one small shuffle
    # partition, which coalescing would leave as one task on one core.
    candidates.repartition(spark.sparkContext.defaultParallelism).foreachPartition(
        functools.partial(_sample_task, settings=settings, version=version, samplers=samplers)
    )


def _sample_task(
    rows, settings: Settings, version: int, samplers: Mapping[str, EntitySampler]
) -> None:
    """A task of :func:`_sample_served`: its candidates' documents, group by group."""
    by_group: dict[str, list[str]] = {}
    for row in rows:
        by_group.setdefault(row["sampled"], []).append(row["entity"])
    with task_store(settings) as store:
        for name, entities in by_group.items():
            taken = samplers[name].task()
            for entity, doc in store.read_base(version, name, entities).items():
                if doc:
                    taken.offer(entity, doc)
            taken.publish()


def _swept_groups(repo: FeatureRepo, plans: Mapping[str, GroupPlan]) -> Collection[str] | None:
    """The groups whose documents a run sweeps: those it wrote every document of
    (rebuilt or reassembled), or every group's and those of groups that left the repo
    when it wrote all of them."""
    rewritten = [g.name for g in repo.groups if plans[g.name].mode != INCREMENTAL]
    return None if len(rewritten) == len(repo.groups) else rewritten


def _commit_tiles(
    uri: str,
    read: TileTableState,
    outputs: Sequence[DataFrame],
    commits: Mapping[str, GroupCommit],
    run_id: str,
    pointer: BatchPointer,
) -> TileCommit | None:
    """Stage every group's new tile rows and commit them with each group's new state in
    one transaction (None: no group has a lake table to record)."""
    if not commits:
        return None
    union = outputs[0]
    for frame in outputs[1:]:
        union = union.unionByName(frame)
    staged = write_staged(union, uri, run_id)
    return commit_tiles(
        uri,
        read,
        staged,
        commits,
        run_id=run_id,
        view_version=pointer.version,
        pointer=pointer_json(pointer),
    )


class _Reads:
    """A run's lake reads, each once (cached until :meth:`release`), with what they
    read for the run record."""

    def __init__(
        self, spark: SparkSession, settings: Settings, pinned: Mapping[str, int | None], cutoff: int
    ) -> None:
        self.spark, self.settings, self.pinned, self.cutoff = spark, settings, pinned, cutoff
        self.rows = 0
        self.files = 0
        self.bytes: int | None = 0
        self._frames: dict[Any, DataFrame] = {}
        self._snapshot_rows: dict[str, int] = {}  # source -> rows of its snapshot
        # Groups run in threads: one of them reads a shared frame, the others wait for it.
        self._lock = threading.RLock()

    def _count(
        self, frame: DataFrame, files: int, size: int | None, cache: bool = True
    ) -> tuple[DataFrame, int]:
        frame = frame.cache() if cache else frame
        rows = frame.count()
        self._book(rows, files, size)
        return frame, rows

    def _book(self, rows: int, files: int, size: int | None) -> None:
        """Add a read to the run record's figures (bytes unknown once any read's is)."""
        with self._lock:
            self.rows += rows
            self.files += files
            self.bytes = None if self.bytes is None or size is None else self.bytes + size

    def snapshot(self, source: EventSource) -> DataFrame:
        """Every event of the source's table before the cutoff."""
        with self._lock:
            if source.name not in self._frames:
                version = self.pinned.get(source.table_name)
                snapshot = pinned_snapshot(self.spark, self.settings, source, version)
                frame = snapshot.frame.where(f"{quoted(source.event_time)} < {self.cutoff}")
                counted, rows = self._count(frame, snapshot.files, snapshot.bytes)
                self._frames[source.name], self._snapshot_rows[source.name] = counted, rows
            return self._frames[source.name]

    def snapshot_rows(self, source: EventSource) -> int:
        """How many events :meth:`snapshot` holds (counted when it was read)."""
        with self._lock:  # reentrant: snapshot() takes it too
            self.snapshot(source)
            return self._snapshot_rows[source.name]

    def new_events(self, source: EventSource, files: DeltaFiles, before: int) -> DataFrame:
        """The events the state at ``before`` lacks (see :func:`tile_runs.new_events`)."""
        key = (source.name, before, files.new, files.band)
        with self._lock:
            if key not in self._frames:
                frame = new_events(self.spark, source, files, before, self.cutoff)
                self._frames[key], _ = self._count(frame, files.files, files.bytes)
            return self._frames[key]

    def days(
        self,
        source: EventSource,
        join_keys: Sequence[str],
        files: DeltaFiles,
        keys_by_date: Mapping[str, Sequence[Sequence[str]]] | None,
    ) -> DataFrame:
        """The events before the cutoff in ``files`` (whole date partitions: the days of
        late events a session group derives its session rows of, GroupPlan.days), of
        the dates and entities in ``keys_by_date`` (:func:`tile_runs.late_day_events`;
        None: every one). Not cached: one group reads them once, by the columns its
        tiles need. Booked as the days' files and rows, from the log's statistics when
        it has them (Parquet skips the row groups without those entities), else counted
        by a read of the time alone."""
        if keys_by_date is None or files.new_dates is None:
            frame = new_events(self.spark, source, files, self.cutoff, self.cutoff)
        else:
            frame = late_day_events(self.spark, source, join_keys, files, self.cutoff, keys_by_date)
        if files.rows is None:
            return self._count(frame, files.files, files.bytes, cache=False)[0]
        self._book(files.rows, files.files, files.bytes)
        return frame

    def release(self) -> None:
        for frame in self._frames.values():
            frame.unpersist()


@dataclass
class _GroupOutcome:
    """What one group's part of a run produced."""

    entities: int | None = None  # entities its view holds (None: not known)
    tiles: DataFrame | None = None  # its new tile rows, for the commit
    commit: GroupCommit | None = None
    sampling: tuple[str, EntitySampler, DataFrame] | None = None  # entities to sample after
    written: int = 0  # Redis keys
    deleted: int = 0


#: The local properties a group's thread takes from the run's: the job group the
#: progress display and the benchmark find its jobs by, and cancellation.
_INHERITED = ("spark.jobGroup.id", "spark.job.interruptOnCancel", "spark.scheduler.pool")


class _GroupRunner:
    """Each group's tiles and documents of one run. Groups are independent until the
    tile commit, so ``LFP_BATCH_GROUP_CONCURRENCY`` of them run at once: one group's
    planning, driver work and Redis writes overlap another's Spark jobs."""

    def __init__(
        self,
        spark: SparkSession,
        settings: Settings,
        version: int,
        serving: int,
        cutoff: int,
        horizon: int,
        plans: Mapping[str, GroupPlan],
        reads: _Reads,
        samplers: Mapping[str, EntitySampler],
        carried: Mapping[str, Carried],
        stored_files: Mapping[str, list[TileFile]],
        previous: RunFeatureStats | None,
        pinned: Mapping[str, int | None],
    ) -> None:
        self.spark, self.settings = spark, settings
        self.version, self.serving, self.cutoff, self.horizon = version, serving, cutoff, horizon
        self.plans, self.reads, self.samplers, self.carried = plans, reads, samplers, carried
        self.stored_files, self.previous, self.pinned = stored_files, previous, pinned

    def run_all(self, groups: Sequence[FeatureGroup]) -> dict[str, _GroupOutcome]:
        """Every group's outcome, in the order of ``groups``; the first failure cancels
        the groups not started and is raised once the started ones end."""
        context = self.spark.sparkContext
        inherited = {key: context.getLocalProperty(key) for key in _INHERITED}
        workers = min(self.settings.batch_group_concurrency, len(groups))
        if workers <= 1:
            return {g.name: self.run(g) for g in groups}

        def run(group: FeatureGroup) -> _GroupOutcome:
            for key, value in inherited.items():
                context.setLocalProperty(key, value)  # type: ignore[arg-type]
            return self.run(group)

        with ThreadPoolExecutor(workers, thread_name_prefix="lfp-batch-group") as pool:
            futures = {g.name: pool.submit(run, g) for g in groups}
            try:
                return {name: future.result() for name, future in futures.items()}
            except BaseException:
                for future in futures.values():
                    future.cancel()
                raise

    def run(self, group: FeatureGroup) -> _GroupOutcome:
        spark, settings, version, serving = self.spark, self.settings, self.version, self.serving
        cutoff, horizon, reads = self.cutoff, self.horizon, self.reads
        plan = self.plans[group.name]
        _step(spark, f"{group.name} ({plan.mode})")
        context = spark.sparkContext
        written, created, deleted = (context.accumulator(0) for _ in range(3))
        outcome = _GroupOutcome()
        if plan.window_by_window:
            # No tiles written: one aggregation per window, cheaper than a tile rebuild.
            group_irs(reads.snapshot(group.source), group, cutoff, horizon).foreachPartition(
                functools.partial(
                    write_partition,
                    settings=settings,
                    version=version,
                    serving=serving,
                    group=group.name,
                    join_keys=len(group.join_keys),
                    primitives=group.primitives,
                    columns=group.batch_columns,
                    counters=(written, created, deleted),
                    sampler=self.samplers.get(group.name),
                )
            )
            outcome.entities = outcome.written = written.value
            outcome.deleted = deleted.value
            return outcome
        if plan.mode == REBUILD:
            out = rebuild(reads.snapshot(group.source), group, cutoff, horizon)
        else:
            assert plan.state is not None and plan.files is not None
            events = reads.new_events(group.source, plan.files, plan.state.cutoff_ms)
            delta = event_tiles(events, group, cutoff).persist()
            files = self.stored_files.get(group.name, [])
            stored = read_tile_files(spark, files)
            # Reassembling: no served document is read, every one comes from the tiles.
            base = None if plan.mode == REASSEMBLE else BaseDocuments(settings, serving, group.name)

            def stored_on(dates: set[str]) -> DataFrame:
                return read_tile_files(spark, [f for f in files if f.tile_date in dates])

            days = None
            if plan.days is not None:
                # The days' files without recorded dates are read whole: no keys needed.
                late = None
                if plan.days.new_dates is not None:
                    late = late_days_needed(delta, group, plan.state.cutoff_ms, stored_on)
                if late is None:
                    days = reads.days(group.source, group.join_keys, plan.days, None)
                elif late:
                    # Only the dates some entity's rows need the lake's events of.
                    needed = plan.days.of_dates(late)
                    days = reads.days(group.source, group.join_keys, needed, late)
            # Edges are found in the few dates their bands span, not in every stored tile.
            edge_rows = stored_on(set(edge_dates(group, plan.state.cutoff_ms, cutoff, horizon)))
            out = advance(
                stored, delta, group, plan.state.cutoff_ms, cutoff, horizon, base, days, edge_rows
            )
        out = out.persist()
        # The writers read two columns: each row reaches Python pickled, the others too.
        docs = out.where(F.col("series") == DOC_SERIES).select("entity", "partials")
        if plan.mode == INCREMENTAL:
            # The changed entities' documents and the untouched dates' tiles: ~10
            # partitions, most without a document, each a Python task (~0.2 s, and a
            # Redis connection) for nothing. As many as the cores, merged as they are.
            docs = docs.coalesce(context.defaultParallelism)
        docs.foreachPartition(
            functools.partial(
                _write_documents,
                settings=settings,
                version=version,
                serving=serving,
                group=group.name,
                tombstones=plan.mode == INCREMENTAL,
                counters=(written, created, deleted),
                # An incremental group's writers offer only with a carried sample:
                # else its candidates' served documents are all read after the loop.
                sampler=(
                    self.samplers.get(group.name)
                    if plan.mode != INCREMENTAL or group.name in self.carried
                    else None
                ),
            )
        )
        outcome.written, outcome.deleted = written.value, deleted.value
        tiles_out = out.where(F.col("series") != DOC_SERIES)
        outcome.tiles = tiles_out
        previous = self.previous
        if plan.mode != INCREMENTAL:
            outcome.entities = written.value
        elif previous is not None and group.name in previous.entities:
            outcome.entities = previous.entities[group.name] + created.value - deleted.value
        sampler = self.samplers.get(group.name)
        if plan.mode == INCREMENTAL and sampler is not None and group.name not in self.carried:
            # The served documents of the sample's entities: the group's entities are
            # those with tiles (the stored ones and those this run wrote), sampled with
            # the other groups' after the loop. Without the previous count, every
            # document is read to count them.
            known = stored.select("entity").union(tiles_out.select("entity"))
            if outcome.entities is not None:
                outcome.sampling = (group.name, sampler, known)
            else:
                counter = context.accumulator(0)
                known.distinct().foreachPartition(
                    functools.partial(
                        _count_documents,
                        settings=settings,
                        version=version,
                        group=group.name,
                        sampler=sampler,
                        counter=counter,
                    )
                )
                outcome.entities = counter.value
        lake = lake_state(settings, group, self.pinned.get(group.source.table_name))
        if lake is not None:
            spec = tile_spec_fingerprint(group)
            outcome.commit = GroupCommit(
                state=GroupState(
                    lakes={group.source.table_name: lake},
                    cutoff_ms=cutoff,
                    view_version=version,
                    spec_tag=spec_tag(spec),
                ),
                spec=spec,
                mode=plan.mode,
                replace_all=plan.mode == REBUILD,
            )
        return outcome


def run_batch(
    spark: SparkSession,
    settings: Settings,
    repo: FeatureRepo,
    cutoff_ms: int | None = None,
    delta_versions: dict[str, int] | None = None,
    run_id: str | None = None,
    mode: str | None = None,
) -> BatchResult:
    """Recompute every feature group up to ``cutoff_ms`` and switch serving to it.

    Each group reads its own source's table, pinned at ``delta_versions[table]`` (the
    latest version when absent). A Redis that does not answer within
    ``LFP_BATCH_REDIS_TIMEOUT_S`` (here or in an executor) fails it with
    :class:`~online_store.timeouts.StoreTimeoutError`, one line naming Redis and the setting.
    A view that serves gets its feature statistics recorded (:mod:`batch_layer.feature_stats`,
    under ``run_id``); their failure is logged, never the run's.

    ``mode`` is one of :data:`REQUESTED_MODES`, or None (each group in the mode
    :func:`~batch_layer.tile_runs.plan_group` picks); the result records each group's
    mode and why it was not incremental."""
    if mode is not None and mode not in REQUESTED_MODES:
        raise ValueError(f"unknown batch run mode {mode!r}: one of {', '.join(REQUESTED_MODES)}")
    store = open_store(settings)
    described = spark.sparkContext.getLocalProperty(_DESCRIPTION)
    try:
        with explain_timeouts(settings.redis_url, settings.batch_redis_timeout_s):
            return _run_batch(spark, settings, repo, store, cutoff_ms, delta_versions, run_id, mode)
    finally:
        spark.sparkContext.setLocalProperty(_DESCRIPTION, described)  # type: ignore[arg-type]
        store.close()  # a failed attempt too: a retry opens its own


def safe_cutoff(
    settings: Settings,
    cutoff_ms: int | None,
    started_ms: int,
    delta_versions: Mapping[str, int] | None = None,
) -> int:
    """The cutoff asked for, aligned, and never later than a lake commit this run does
    not read: lake ingest writes correction tiles for a commit's records dated before
    ``floor(commit time, 5 min)`` (:mod:`feature_core.corrections`), so a commit that
    lands after the run read the lake is covered up to the run's start, and one after an
    older pinned version up to that commit's time."""
    cutoff = align_cutoff(min(cutoff_ms if cutoff_ms is not None else started_ms, started_ms))
    for table, version in (delta_versions or {}).items():
        landed = commit_time_after(settings.table_uri(table), version)
        if landed is not None:
            cutoff = min(cutoff, align_cutoff(landed))
    return cutoff


def _run_batch(
    spark: SparkSession,
    settings: Settings,
    repo: FeatureRepo,
    store: OnlineStore,
    cutoff_ms: int | None,
    delta_versions: dict[str, int] | None,
    run_id: str | None = None,
    mode: str | None = None,
) -> BatchResult:
    started = time.time()
    cutoff = safe_cutoff(settings, cutoff_ms, int(started * 1000), delta_versions)
    horizon = settings.batch_horizon_s * 1000
    version = store.next_version()
    # Runs share the documents' keys: once this one began, an older one writes nothing
    # more and never switches.
    serving = store.begin_views(version)
    if serving is None:
        log.warning("batch view v%s superseded by a newer run before it began", version)
        return BatchResult(version, cutoff, {}, 0, 0, started, time.time(), False)
    pinned: dict[str, int | None] = {}
    rows: dict[str, int | None] = {}  # checked against LFP_BATCH_TILES_MIN_EVENTS
    for source in {g.source.name: g.source for g in repo.groups}.values():
        table = open_table(
            settings.table_uri(source.table_name), (delta_versions or {}).get(source.table_name)
        )
        pinned[source.table_name] = None if table is None else table.version()
        if table is not None and settings.batch_incremental and settings.batch_tiles_min_events:
            rows[source.table_name] = logged_rows(table)
    uri = tiles_uri(settings)
    tile_state = read_state(uri, {g.name: [g.source.table_name] for g in repo.groups})
    context = RunContext(
        mode,
        settings.batch_incremental,
        tile_state,
        store.pointer(),
        version,
        serving,
        cutoff,
        horizon,
        pinned,
        rows,
        settings.batch_tiles_min_events,
    )
    plans = {g.name: plan_group(settings, g, context) for g in repo.groups}
    reads = _Reads(spark, settings, pinned, cutoff)
    _step(spark, "lake snapshot and statistics setup")
    samplers, previous = _samplers(
        spark, settings, store, repo.groups, reads, BatchPointer(version, cutoff, horizon)
    )
    counted = previous.entities if previous is not None else {}
    carried = _carried_samples(settings, uri, serving, repo, plans, samplers, counted)
    # The tile table's files, listed once for every group that reads its stored tiles.
    stored_files: dict[str, list[TileFile]] = {}
    if any(p.mode != REBUILD for p in plans.values()):
        for tile_file in tile_files(uri, tile_state.version):
            stored_files.setdefault(tile_file.group, []).append(tile_file)
    runner = _GroupRunner(
        spark,
        settings,
        version,
        serving,
        cutoff,
        horizon,
        plans,
        reads,
        samplers,
        carried,
        stored_files,
        previous,
        pinned,
    )
    outcomes = runner.run_all(repo.groups)
    entities = {n: o.entities for n, o in outcomes.items() if o.entities is not None}
    outputs = [o.tiles for o in outcomes.values() if o.tiles is not None]
    commits = {n: o.commit for n, o in outcomes.items() if o.commit is not None}
    sampling = [o.sampling for o in outcomes.values() if o.sampling is not None]
    written = sum(o.written for o in outcomes.values())
    deleted = sum(o.deleted for o in outcomes.values())
    _step(spark, "statistics sample")
    remerged = _carry_samples(repo, samplers, carried)
    _sample_served(spark, settings, version, sampling, remerged)
    _step(spark, "tile table write")
    # Documents of entities that left a rebuilt or reassembled group's view (or of a
    # group that left the repo) are swept; an incremental group's untouched documents
    # stay as they are.
    swept = store.sweep_views(version, serving, _swept_groups(repo, plans))
    pointer = BatchPointer(
        version,
        cutoff,
        horizon,
        single_version(pinned),
        int(time.time() * 1000),
        pinned,
        {g.name: g.view_fingerprint for g in repo.groups},
        settings.speed_allowed_lateness_s * 1000,
    )
    committed = _commit_tiles(uri, tile_state, outputs, commits, run_id or f"v{version}", pointer)
    replaced = store.switch(pointer)
    removed = 0
    if replaced is not None:
        log.info(
            "batch view v%s serving (cutoff %s, lake versions %s, %s entities removed)",
            version,
            cutoff,
            pinned,
            swept,
        )
        # On Redis Cluster the version replaced stays readable (with 2 or more versions
        # kept): a reader may have read the pointer naming it just before the switch, and
        # reads the documents after it. One server reads both in one atomic script: no
        # reader needs a previous document once the pointer moved.
        keep_from = version
        if not store.atomic_reads:
            keep_from = version - settings.batch_keep_versions + 1
            if replaced and settings.batch_keep_versions > 1:
                keep_from = min(keep_from, replaced)
        removed = store.clean_views(keep_from)
    else:
        log.warning("batch view v%s superseded by a newer run; not switching", version)
    for frame in outputs:
        frame.unpersist()
    reads.release()
    if committed is not None and any(p.mode != REBUILD for p in plans.values()):
        # After the switch: readers of the tiles are the next runs, not the API. The
        # view serves already, so a fold that fails (another compaction committed first)
        # is left to the next run or the optimize schedule.
        try:
            folded = fold_run_files(uri)
        except Exception as error:
            log.warning("tile table: runs' files not folded (the next run tries again): %s", error)
        else:
            if folded is not None:
                log.info("tile table: runs' files of %s partitions folded", folded.partitions)
    if replaced is not None and samplers and len(entities) == len(repo.groups):
        _record_feature_stats(settings, repo, store, pointer, samplers, entities, run_id)
    if replaced is not None and samplers and settings.batch_incremental:
        _save_samples(uri, repo, samplers, version)
    modes = [plans[g.name].mode for g in repo.groups]
    return BatchResult(
        version,
        cutoff,
        pinned,
        reads.rows,
        written,
        started,
        time.time(),
        replaced is not None,
        removed,
        mode=run_mode(modes),
        group_modes={g.name: plans[g.name].mode for g in repo.groups},
        mode_reasons={g.name: r for g in repo.groups if (r := plans[g.name].reason) is not None},
        lake_files_read=reads.files,
        lake_bytes_read=reads.bytes,
        tiles_written=committed.rows_added if committed is not None else None,
        keys_written=written,
        keys_deleted=deleted + swept,
    )


def _entity_estimates(
    groups: Sequence[FeatureGroup], snapshots: Mapping[str, DataFrame], cutoff: int, horizon: int
) -> dict[str, int]:
    """About how many entities each group's view will hold (HyperLogLog, 2% relative
    standard deviation): those with an event one of its windows keeps. One pass over
    each source's cached snapshot, for every group reading it."""
    by_source: dict[str, list[FeatureGroup]] = {}
    for group in groups:
        by_source.setdefault(group.source.name, []).append(group)
    found: dict[str, int] = {}
    for source, members in by_source.items():
        columns = []
        for i, group in enumerate(members):
            kept = [
                f"({bucket_sql(w, cutoff, horizon, group.event_time)}) IS NOT NULL"
                for w in group.windows
                if not w.is_session
            ]
            # An entity's last session always holds its newest event.
            sessions = any(w.is_session for w in group.windows)
            in_view = F.expr("TRUE" if sessions or not kept else " OR ".join(kept))
            keys = [F.col(k) for k in group.join_keys]
            present = functools.reduce(
                operator.and_, [k.isNotNull() for k in keys], filter_column(group) & in_view
            )
            entity = F.xxhash64(*(k.cast("string") for k in keys))
            columns.append(F.approx_count_distinct(F.when(present, entity), 0.02).alias(f"g{i}"))
        row = snapshots[source].agg(*columns).first()
        assert row is not None
        found.update({group.name: int(row[f"g{i}"]) for i, group in enumerate(members)})
    return found


def _samplers(
    spark: SparkSession,
    settings: Settings,
    store: OnlineStore,
    groups: Sequence[FeatureGroup],
    reads: _Reads,
    pointer: BatchPointer,
) -> tuple[dict[str, EntitySampler], RunFeatureStats | None]:
    """Each group's sampler of its entities' served values, for the feature statistics
    (:mod:`batch_layer.feature_stats`), and the previous run's statistics; none when they
    are off or cannot be set up (the run goes on without them). The entities of each
    group's view are taken to be as many as in the previous run's record (a Spark job
    estimates those it lacks, over the snapshot)."""
    sample = settings.feature_stats_sample
    if not sample:
        return {}, None
    previous = None
    try:
        previous = previous_run(store)
        estimates = dict(previous.entities) if previous is not None else {}
        missing = [g for g in groups if g.name not in estimates]
        # An empty lake (a fresh stack's first run) holds no entity: no Spark job to say so.
        estimates |= {g.name: 0 for g in missing if reads.snapshot_rows(g.source) == 0}
        missing = [g for g in missing if g.name not in estimates]
        if missing:
            _step(spark, "entity estimates")
            started = time.monotonic()
            snapshots = {g.source.name: reads.snapshot(g.source) for g in missing}
            estimates |= _entity_estimates(missing, snapshots, pointer.cutoff, pointer.horizon_ms)
            log.info(
                "entities of %d groups estimated for the feature statistics' sample in %.1f s",
                len(missing),
                time.monotonic() - started,
            )
        return {
            g.name: EntitySampler.create(spark.sparkContext, g, pointer, sample, estimates[g.name])
            for g in groups
        }, previous
    except Exception:
        log.exception("feature statistics off for batch view v%s: no sample", pointer.version)
        return {}, previous


def _carried_samples(
    settings: Settings,
    uri: str,
    serving: int,
    repo: FeatureRepo,
    plans: Mapping[str, GroupPlan],
    samplers: dict[str, EntitySampler],
    counted: Mapping[str, int],
) -> dict[str, Carried]:
    """The serving view's sample candidates of the groups this run advances
    incrementally (:mod:`batch_layer.carried_sample`) and whose entities the previous
    run's record ``counted``, their samplers set to draw under the carried bound; none
    that cannot be read (those groups' candidates are picked afresh: statistics never
    fail a run)."""
    advanced = {
        g.name: g.view_fingerprint
        for g in repo.groups
        if plans[g.name].mode == INCREMENTAL and g.name in samplers and g.name in counted
    }
    if not advanced or not serving:
        return {}
    try:
        carried = load_carried(uri, serving, advanced, settings.feature_stats_sample)
    except Exception as error:
        log.warning("feature statistics: v%s's sample not carried: %s", serving, error)
        return {}
    for name, carry in carried.items():
        samplers[name] = samplers[name].carrying_under(carry.bound)
    if carried:
        named = ", ".join(name for name in advanced if name in carried)
        log.info("feature statistics: v%s's sample carried for %s", serving, named)
    return carried


def _carry_samples(
    repo: FeatureRepo, samplers: Mapping[str, EntitySampler], carried: Mapping[str, Carried]
) -> dict[str, tuple[EntitySampler, list[str]]]:
    """Add each carried sample's entities this run did not write to its sampler, with
    their previous values; for a group whose values move with the query time, return
    them instead (group -> its sampler, entities), to be merged again at the cutoff."""
    remerged: dict[str, tuple[EntitySampler, list[str]]] = {}
    for group in repo.groups:
        carry = carried.get(group.name)
        if carry is None:
            continue
        sampler = samplers[group.name]
        touched = set(sampler.touched.value)
        kept = [entry for entry in carry.entries if entry[1] not in touched]
        if group_merger(group).time_dependent:
            sampler.carry([], carry.complete_below)
            remerged[group.name] = (sampler, [entity for _, entity, _, _ in kept])
        else:
            sampler.carry(kept, carry.complete_below)
    return remerged


def _save_samples(
    uri: str, repo: FeatureRepo, samplers: Mapping[str, EntitySampler], version: int
) -> None:
    """Keep view ``version``'s sample candidates for the next run to carry; a failure
    is logged (the next run picks its candidates afresh)."""
    started = time.monotonic()
    try:
        groups = {
            g.name: (
                CarriedGroup(
                    bound=hex_bound(sampler.bound),
                    complete_below=hex_bound(sampler.complete_below()),
                    keep=sampler.keep,
                    view_fingerprint=g.view_fingerprint,
                ),
                sampler.candidates(),
            )
            for g in repo.groups
            if (sampler := samplers.get(g.name)) is not None and not sampler.failures.value
        }
        rows = save_carried(uri, version, groups)
    except Exception as error:
        log.warning(
            "feature statistics: v%s's sample not kept for the next run: %s", version, error
        )
        return
    log.info(
        "feature statistics: v%s's %d sample candidates kept in %.1f s",
        version,
        rows,
        time.monotonic() - started,
    )


def _record_feature_stats(
    settings: Settings,
    repo: FeatureRepo,
    store: OnlineStore,
    pointer: BatchPointer,
    samplers: Mapping[str, EntitySampler],
    entities: Mapping[str, int],
    run_id: str | None,
) -> None:
    """The served view's feature statistics over each group's sample, recorded in the
    journal. A failure is logged: the view already serves, and statistics must not undo
    a run."""
    started = time.monotonic()
    try:
        groups = [(g, entities[g.name], samplers[g.name].sample()) for g in repo.groups]
        record = record_run_stats(store, settings, pointer, run_id, groups)
    except Exception:
        log.exception(
            "feature statistics of batch view v%s not recorded; the view serves all the same",
            pointer.version,
        )
        return
    flagged = record.flagged()
    log.info(
        "feature statistics of batch view v%s: %d features over %d sampled entities "
        "(sampled in %.1f s of task time, summarized in %.1f s); drifting (PSI > %s) "
        "against the previous run: %s, the training sets: %s",
        pointer.version,
        len(record.features),
        sum(record.sampled.values()),
        sum(s.seconds.value for s in samplers.values()),
        time.monotonic() - started,
        record.threshold,
        ", ".join(flagged["previous_run"]) or "none",
        ", ".join(flagged["training"]) or "none",
    )
