"""The batch job: pinned Delta snapshot -> per-entity IRs for event time < B -> Redis.

Compiled from the feature definitions: each window contributes one bucketing expression
(collapsed part or hop tile, see :mod:`feature_core.windows`) and each tile column one
primitive SQL aggregate. The new view is written under a fresh version and the serving
pointer flips only after every key is written; a crash leaves the old view serving.
"""

from __future__ import annotations

import functools
import logging
import operator
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from batch_layer.feature_stats import EntitySampler, previous_run, record_run_stats
from batch_layer.lake import commit_time_after, files_bytes, files_matching, open_table
from feature_core.aggregations import Primitive, SparkColumns
from feature_core.definitions import FeatureGroup, FeatureRepo, TileColumn, batch_partials
from feature_core.keys import entity_id
from feature_core.merge import BatchPointer
from feature_core.settings import Settings
from feature_core.sources import EventSource, quoted
from feature_core.windows import COLLAPSED, Window, align_cutoff, batch_layout
from online_store import open_store
from online_store.base import OnlineStore
from online_store.timeouts import explain_timeouts

log = logging.getLogger(__name__)


#: The modes a caller may ask :func:`run_batch` for (None: each group's own): ``full``
#: recomputes every group from the raw events (`lfp batch run --full`), ``reassemble``
#: every view from stored tiles (operators: `--reassemble`).
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
    mode: str = "full"  # incremental, full or mixed
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


def session_start_column(window: Window) -> str:
    """The column holding each event's entity's current session start (at the cutoff)."""
    return f"__session_{window.gap_ms}"


def with_session_starts(events: DataFrame, group: FeatureGroup) -> DataFrame:
    """``events`` with, per session window, the first event time of each entity's last
    session: the latest event that follows a gap of at least the window's gap."""
    time = quoted(group.event_time)
    entity = ", ".join(quoted(k) for k in group.join_keys)
    for window in group.windows:
        if not window.is_session:
            continue
        previous = f"LAG({time}) OVER (PARTITION BY {entity} ORDER BY {time})"
        gap = f"{time} - {previous} >= {window.gap_ms}"
        opens = f"CASE WHEN {previous} IS NULL OR {gap} THEN {time} END"
        events = events.withColumn("__opens", F.expr(opens)).withColumn(
            session_start_column(window),
            F.expr(f"MAX(__opens) OVER (PARTITION BY {entity})"),
        )
    return events.drop("__opens") if "__opens" in events.columns else events


def bucket_sql(window: Window, cutoff: int, horizon_ms: int, time_column: str) -> str:
    """SQL labelling an event with its batch bucket (see ``BatchLayout.bucket``); a
    session window keeps only the entity's last session, collapsed."""
    time_column = quoted(time_column)
    layout = batch_layout(window, cutoff, horizon_ms)
    beyond = f"WHEN {time_column} >= {cutoff} THEN NULL"
    if window.is_session:
        start = session_start_column(window)
        return f"CASE {beyond} WHEN {time_column} >= {start} THEN '{COLLAPSED}' END"
    if layout.tail_start is None:
        return f"CASE {beyond} ELSE '{COLLAPSED}' END"
    hop = window.hop_ms
    return (
        f"CASE {beyond} WHEN {time_column} < {layout.tail_start} THEN NULL "
        f"WHEN {time_column} >= {layout.collapsed_start} THEN '{COLLAPSED}' "
        f"ELSE CAST(({time_column} DIV {hop}) * {hop} AS STRING) END"
    )


#: The column holding each event's batch bucket's end (every event of it is before).
BUCKET_END = "__bucket_end"


def bucket_end_sql(window: Window, cutoff: int, horizon_ms: int, time_column: str) -> str:
    """SQL of the end of an event's batch bucket: the cutoff for the collapsed part, the
    tile's end for a tail tile (decayed partials are rebased to it)."""
    layout = batch_layout(window, cutoff, horizon_ms)
    if window.is_session or layout.collapsed_start is None:
        return str(cutoff)
    time_column, hop = quoted(time_column), window.hop_ms
    return (
        f"CASE WHEN {time_column} >= {layout.collapsed_start} THEN {cutoff} "
        f"ELSE ({time_column} DIV {hop}) * {hop} + {hop} END"
    )


def partial_sql(column: TileColumn, time_column: str) -> str:
    """Spark SQL computing one tile column's partial (raw form; see :func:`to_partial`)."""
    value = quoted(column.column) if column.column else None
    return column.primitive.spark_sql(SparkColumns(value, quoted(time_column), BUCKET_END))


def to_partial(primitive: Primitive, raw: Any) -> Any:
    """Spark's raw aggregate -> the algebra's partial (reduced by the shared code)."""
    return primitive.from_spark(raw)


def filter_column(group: FeatureGroup) -> Column:
    """The group's filter as a Spark column. Values go in as literals through the API, not
    as SQL text: Spark's parser reads backslashes in string literals as escapes, Flink's
    and Python's do not."""
    condition = F.lit(True)
    for flt in group.filters:
        condition &= F.col(flt.column).isin(list(flt.values))
    return condition


def key_columns(group: FeatureGroup) -> list[str]:
    """SQL of the group's join keys as text, one per key (``k0``, ``k1``, ...)."""
    return [f"CAST({quoted(k)} AS STRING) AS __k{i}" for i, k in enumerate(group.join_keys)]


def group_irs(events: DataFrame, group: FeatureGroup, cutoff: int, horizon_ms: int) -> DataFrame:
    """One row per entity: its keys ``__k0..``, ``buckets`` = [(window, bucket, partials)]."""
    time_column = group.event_time
    keys = [f"__k{i}" for i in range(len(group.join_keys))]
    selected = with_session_starts(
        events.where(f"{quoted(time_column)} < {cutoff}").where(filter_column(group)), group
    )
    partial_columns = [
        F.expr(partial_sql(c, time_column)).alias(f"p{i}") for i, c in enumerate(group.tile_columns)
    ]
    present = " AND ".join(f"{k} IS NOT NULL" for k in keys)
    per_window = []
    for window in group.windows:
        bucketed = selected.selectExpr(
            "*",
            *key_columns(group),
            f"{bucket_sql(window, cutoff, horizon_ms, time_column)} AS __bucket",
            f"{bucket_end_sql(window, cutoff, horizon_ms, time_column)} AS {BUCKET_END}",
        ).where(f"__bucket IS NOT NULL AND {present}")
        aggregated = bucketed.groupBy(*keys, "__bucket").agg(
            F.struct(*partial_columns).alias("partials")
        )
        per_window.append(
            aggregated.select(
                *keys,
                F.lit(window.name).alias("window"),
                F.col("__bucket").alias("bucket"),
                "partials",
            )
        )
    union = per_window[0]
    for frame in per_window[1:]:
        union = union.unionByName(frame)
    return union.groupBy(*keys).agg(
        F.collect_list(F.struct("window", "bucket", "partials")).alias("buckets")
    )


def view_doc(buckets, primitives, columns) -> dict[str, dict[str, list]]:
    """An entity's batch view (window -> bucket -> partials) from its row of
    :func:`group_irs` (``buckets``), as the batch job writes it."""
    doc: dict[str, dict[str, list]] = {}
    for item in buckets:
        partials = [to_partial(p, raw) for p, raw in zip(primitives, item["partials"], strict=True)]
        window = item["window"]
        doc.setdefault(window, {})[item["bucket"]] = batch_partials(partials, columns[window])
    return doc


def _write_partition(
    rows,
    settings: Settings,
    version: int,
    serving: int,
    group: str,
    join_keys: int,
    primitives,
    columns,
    counter,
    sampler: EntitySampler | None = None,
):
    taken = sampler.task() if sampler is not None else None

    def views():
        for row in rows:
            doc = view_doc(row["buckets"], primitives, columns)
            entity = entity_id([row[f"__k{i}"] for i in range(join_keys)])
            if taken is not None:
                taken.offer(entity, doc)
            yield entity, orjson.dumps(doc)

    # A paused Redis fails this task after LFP_BATCH_REDIS_TIMEOUT_S with one clear line
    # (found again in the driver's error by run_batch) instead of hanging the run.
    with explain_timeouts(settings.redis_url, settings.batch_redis_timeout_s):
        store = open_store(settings)
        try:
            store.write_views(version, serving, group, views(), counter.add)
        finally:
            store.close()
    if taken is not None:
        taken.publish()


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

    ``mode`` is one of :data:`REQUESTED_MODES`, or None. This job keeps no tiles yet: every
    run recomputes every group from the raw events, and its result says so (mode ``full``,
    with each group's reason)."""
    if mode is not None and mode not in REQUESTED_MODES:
        raise ValueError(f"unknown batch run mode {mode!r}: one of {', '.join(REQUESTED_MODES)}")
    store = open_store(settings)
    try:
        with explain_timeouts(settings.redis_url, settings.batch_redis_timeout_s):
            return _run_batch(spark, settings, repo, store, cutoff_ms, delta_versions, run_id, mode)
    finally:
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
    snapshots: dict[str, DataFrame] = {}
    pinned: dict[str, int | None] = {}
    rows_read = 0
    files_read = 0
    bytes_read: int | None = 0
    for source in {g.source.name: g.source for g in repo.groups}.values():
        table = source.table_name
        snapshot = pinned_snapshot(spark, settings, source, (delta_versions or {}).get(table))
        pinned[table] = snapshot.version
        files_read += snapshot.files
        bytes_read = (
            None if bytes_read is None or snapshot.bytes is None else (bytes_read + snapshot.bytes)
        )
        frame = snapshot.frame.where(f"{quoted(source.event_time)} < {cutoff}").cache()
        rows_read += frame.count()
        snapshots[source.name] = frame
    written = spark.sparkContext.accumulator(0)
    samplers = _samplers(
        spark, settings, store, repo.groups, snapshots, BatchPointer(version, cutoff, horizon)
    )
    entities: dict[str, int] = {}
    for group in repo.groups:
        before = written.value
        irs = group_irs(snapshots[group.source.name], group, cutoff, horizon)
        irs.foreachPartition(
            functools.partial(
                _write_partition,
                settings=settings,
                version=version,
                serving=serving,
                group=group.name,
                join_keys=len(group.join_keys),
                primitives=group.primitives,
                columns=group.batch_columns,
                counter=written,
                sampler=samplers.get(group.name),
            )
        )
        entities[group.name] = written.value - before
    # Every entity of every group is written: a document older than this run is one
    # that left the view (or a group that left the repo).
    swept = store.sweep_views(version, serving)
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
    for frame in snapshots.values():
        frame.unpersist()
    if replaced is not None and samplers:
        _record_feature_stats(settings, repo, store, pointer, samplers, entities, run_id)
    return BatchResult(
        version,
        cutoff,
        pinned,
        rows_read,
        written.value,
        started,
        time.time(),
        replaced is not None,
        removed,
        mode="full",
        group_modes={g.name: "full" for g in repo.groups},
        mode_reasons={g.name: full_run_reason(mode) for g in repo.groups},
        lake_files_read=files_read,
        lake_bytes_read=bytes_read,
    )


def full_run_reason(requested: str | None) -> str:
    """Why a run recomputed a group from the raw events: asked to, or no stored tiles
    to run from (this job keeps none yet)."""
    if requested == "full":
        return "--full"
    if requested == "reassemble":
        return "--reassemble, but no stored tiles: recomputed from the raw events"
    return "no stored tiles: recomputed from the raw events"


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
    snapshots: Mapping[str, DataFrame],
    pointer: BatchPointer,
) -> dict[str, EntitySampler]:
    """Each group's sampler of its entities' served values, for the feature statistics
    (:mod:`batch_layer.feature_stats`); none when they are off or cannot be set up (the
    run goes on without them). The entities of each group's view are taken to be as
    many as in the previous run's record (a Spark job estimates those it lacks)."""
    sample = settings.feature_stats_sample
    if not sample:
        return {}
    try:
        previous = previous_run(store)
        estimates = dict(previous.entities) if previous is not None else {}
        missing = [g for g in groups if g.name not in estimates]
        if missing:
            started = time.monotonic()
            estimates |= _entity_estimates(missing, snapshots, pointer.cutoff, pointer.horizon_ms)
            log.info(
                "entities of %d groups estimated for the feature statistics' sample in %.1f s",
                len(missing),
                time.monotonic() - started,
            )
        return {
            g.name: EntitySampler.create(spark.sparkContext, g, pointer, sample, estimates[g.name])
            for g in groups
        }
    except Exception:
        log.exception("feature statistics off for batch view v%s: no sample", pointer.version)
        return {}


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
