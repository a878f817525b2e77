"""Operations on the tile table ``_lfp_tiles`` (design of issue 32, sections 1.1 and 4.6):
compaction and vacuum on the lake's optimize schedule, and the dates retention drops.

**Compaction.** A rebuild writes one file per partition ``(group, tile_date)``; an
incremental run adds one beside them per partition its events touch, holding the newer
rows of the tiles they changed (:mod:`batch_layer.tiles`, rows of one tile). Each run
then folds the small files of a partition that holds :data:`RUN_FILES_FOLDED` into one
(:func:`fold_run_files`), and the optimize schedule rewrites every partition holding
more than one file as one file of each tile's newest row, its rows sorted as a run sorts
them (series, entity, start), not Z-ordered by entity: readers read a partition whole
(:func:`batch_layer.tiles.read_tiles` by partition), so an order across entities buys
nothing. On 4 dates of 3 files of 50,000 rows each (medians of 3, 2 shared cores), this
took 0.81 s for 10.8 MB, delta-rs's ``optimize.compact`` 0.74 s for 12.0 MB and its
``z_order(["entity"])`` 1.57 s for 11.3 MB. It is done here rather than by delta-rs's
``optimize``, whose commit carries no app transaction: see :func:`_rewrite` for why the
commit needs one. Its actions are ``dataChange: false`` and the groups' recorded state
(:func:`batch_layer.tiles.read_state`) is unchanged; :func:`batch_layer.tiles.last_commit`
skips it.

**Retention.** A run's commit drops the dates whose every series is past its floor
(:func:`retention_drops`, for ``drop_dates``). Most dates also hold a series kept for good
(``1d`` under a lifetime window, session-day rows): 6 of the demo's 8 groups never drop a
date, and would keep their ``5m`` and ``1h`` rows of all history. So the same rewrite also
takes out, per partition, the rows of series past their floor at the cutoff the group's
state records (:func:`recorded_floors`; floors only grow with the cutoff, so no later state
reads them); that commit is a data change.

**Vacuum** is *full*: besides the files a commit removed, it deletes files no commit ever
referenced, i.e. a failed run's staged files (:mod:`batch_layer.tiles`), each once its
modification time is older than the retention. A run still going has staged files that no
commit references *yet*; they are never older than its start, so the retention is
stretched past the start of every run the run history shows in progress
(:func:`runs_in_progress`; a run that started after it was read wrote its files after
that, well within the retention, at least an hour). When the history cannot be read,
only the default vacuum runs (files a commit removed), which never touches staged files.
On a local lake the run directories a full vacuum emptied are deleted too.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, Transaction
from deltalake.transaction import AddAction, RemoveAction
from pyarrow.fs import FileSelector, FileSystem, FileType, LocalFileSystem

from batch_layer.lake import (
    _OPTIMIZE_TAG,
    Optimized,
    OptimizeMark,
    _commit_tagged,
    data_file_uri,
    open_table,
)
from batch_layer.tiles import (
    DATA_SCHEMA,
    GROUP,
    PARTITIONS,
    RUNS_DIR,
    TILE_DATE,
    TILE_SCHEMA,
    VIEW_APP,
    TileFile,
    TileTableState,
    newest_tiles,
    read_state,
    spec_tag,
    staged_files,
    tile_files,
)
from feature_core.definitions import FeatureGroup
from feature_core.settings import Settings
from feature_core.tiles import retention_floor, tile_spec_fingerprint

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
#: Files of one partition at which a run folds the runs' small files (:func:`fold_run_files`).
RUN_FILES_FOLDED = 8
#: Run records read to find the runs in progress (the newest: a run in progress is one
#: of the last few started).
_RECENT_RUNS = 50


def table_size(uri: str, version: int | None = None) -> tuple[int, int] | None:
    """(data files, bytes) of a Delta table's version (latest when None); None: no table."""
    table = open_table(uri, version)
    if table is None:
        return None
    sizes = pa.table(table.get_add_actions(flatten=True)).column("size_bytes").to_pylist()
    return len(sizes), sum(int(s) for s in sizes)


def runs_in_progress(settings: Settings) -> list[float] | None:
    """Start times (epoch s) of the batch runs the run history shows as still running
    (a run whose lease ran out reads as abandoned); None when the history cannot be read
    (the online store unreachable)."""
    from batch_layer.history import RUNS_TABLE, RunHistory
    from feature_core.runs import RunStatus
    from online_store import STORE_ERRORS, open_store

    try:
        store = open_store(settings, timeout_s=2)
        try:
            history = RunHistory(
                store,
                settings.batch_run_history,
                settings.table_uri(RUNS_TABLE),
                settings.batch_run_lease_s,
            )
            runs = history.recent(_RECENT_RUNS)
        finally:
            store.close()
    except (*STORE_ERRORS, OSError) as error:
        log.info("run history unreadable (%r): the tile table's full vacuum waits", error)
        return None
    return [r.started_at for r in runs if r.status is RunStatus.RUNNING]


def vacuum_retention_hours(
    retention_hours: int, runs_started: Sequence[float], now: float | None = None
) -> int:
    """The full vacuum's retention: ``retention_hours``, stretched to an hour past the
    start of the oldest run in progress (its staged files are not older than that)."""
    now = time.time() if now is None else now
    if not runs_started:
        return retention_hours
    running_hours = math.ceil(max(0.0, now - min(runs_started)) / 3600) + 1
    return max(retention_hours, running_hours)


def _crowded(table: DeltaTable, min_files: int = 2) -> dict[str, list[str]]:
    """Group -> its dates whose partition holds ``min_files`` files or more."""
    actions = pa.table(table.get_add_actions(flatten=True))
    if actions.num_rows == 0:
        return {}
    counts: dict[tuple[str, str], int] = {}
    for group, date in zip(
        actions.column(f"partition.{GROUP}").to_pylist(),
        actions.column(f"partition.{TILE_DATE}").to_pylist(),
        strict=True,
    ):
        counts[(group, date)] = counts.get((group, date), 0) + 1
    crowded: dict[str, list[str]] = {}
    for (group, date), files in sorted(counts.items()):
        if files >= min_files:
            crowded.setdefault(group, []).append(date)
    return crowded


class Rewrite(NamedTuple):
    """One rewrite commit: its version, partitions rewritten and expired rows dropped."""

    version: int
    partitions: int
    rows_dropped: int


def _rewrite(
    uri: str,
    table: DeltaTable,
    partitions: Mapping[tuple[str, str], Collection[str]],
    keep_largest: bool = False,
) -> Rewrite:
    """Rewrite each of ``partitions`` ((group, tile_date) -> the series whose rows to drop:
    expired ones) as one file of each tile's newest row (:func:`~batch_layer.tiles.newest_tiles`),
    rows sorted as a run writes them (none: the partition goes), with ``keep_largest`` its
    files but the largest (runs' small files of late tiles beside a compacted one: any of a
    partition's files fold into one, the newest row of a tile wins wherever it is),
    in one commit against the version read, recording :data:`VIEW_APP` again at its value:
    a run that read an older version then fails its commit on it (delta-rs 1.6.6 lets a
    write that removes files a compaction removed through otherwise, and its own
    ``optimize`` records no app transaction), and so does this commit if a run committed
    first. Its actions are ``dataChange: false`` unless it dropped rows."""
    read_version = table.version()
    by_partition: dict[tuple[str, str], list[TileFile]] = {}
    for f in tile_files(uri, read_version, partitions=set(partitions)):
        by_partition.setdefault((f.group, f.tile_date), []).append(f)
    if keep_largest:
        for parts in by_partition.values():
            parts.remove(max(parts, key=lambda f: (f.size, f.path)))
    files = [f for parts in by_partition.values() for f in parts]
    staged = f"{RUNS_DIR}/compaction-{uuid.uuid4().hex[:12]}"
    dropped = 0
    for (group, date), parts in sorted(by_partition.items()):
        filesystem = FileSystem.from_uri(parts[0].uri)[0]
        rows = ds.dataset(
            [FileSystem.from_uri(f.uri)[1] for f in parts],
            schema=DATA_SCHEMA,
            format="parquet",
            filesystem=filesystem,
        ).to_table()
        rows = newest_tiles(rows)
        expired = sorted(partitions[(group, date)])
        if expired:
            kept = rows.filter(pc.invert(pc.is_in(rows.column("series"), pa.array(expired))))
            dropped += rows.num_rows - kept.num_rows
            rows = kept
        if rows.num_rows == 0:
            continue
        directory = f"{staged}/{GROUP}={group}/{TILE_DATE}={date}"
        out_fs, path = FileSystem.from_uri(data_file_uri(uri, f"{directory}/part-00000.parquet"))
        out_fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with out_fs.open_output_stream(path) as out:
            pq.write_table(rows, out, compression="zstd")
    changed = dropped > 0
    now = int(time.time() * 1000)
    adds = [
        AddAction(
            path=f.path,
            size=f.size,
            partition_values={GROUP: f.group, TILE_DATE: f.tile_date},
            modification_time=f.modification_time,
            data_change=changed,
            stats=f.stats,
        )
        for f in staged_files(uri, staged)
    ]
    removes = [
        RemoveAction(
            path=f.path,
            data_change=changed,
            deletion_timestamp=now,
            size=f.size,
            partition_values={GROUP: f.group, TILE_DATE: f.tile_date},
        )
        for f in files
    ]
    view = table.transaction_version(VIEW_APP)
    tag = uuid.uuid4().hex
    table.create_write_transaction(
        [*adds, *removes],
        mode="append",
        schema=TILE_SCHEMA,
        partition_by=list(PARTITIONS),
        commit_properties=CommitProperties(
            custom_metadata={_OPTIMIZE_TAG: tag},
            app_transactions=None if view is None else [Transaction(VIEW_APP, view)],
        ),
    )
    version = _commit_tagged(DeltaTable(uri), read_version, tag)
    if version is None:
        raise LookupError(f"no compaction commit tagged {tag} in {uri}")
    return Rewrite(version, len(by_partition), dropped)


def fold_run_files(uri: str, min_files: int = RUN_FILES_FOLDED) -> Rewrite | None:
    """Fold the small files incremental runs add to a partition (one per run whose events
    touch it) into one, in each partition holding ``min_files`` or more, leaving its
    largest (compacted) file as it is: between the optimize schedule's compactions a
    reader opens fewer than ``min_files`` files per partition, and this rewrites only
    runs' files. None: no partition held that many."""
    table = open_table(uri)
    if table is None:
        return None
    crowded = {
        (group, date): frozenset()
        for group, dates in _crowded(table, min_files).items()
        for date in dates
    }
    return _rewrite(uri, table, crowded, keep_largest=True) if crowded else None


def _prune_run_dirs(uri: str, hours: int) -> int:
    """Delete the run directories (``runs/<run>-<nonce>``) the vacuum emptied, on a local
    lake (object stores keep no directories): those holding no file and not created or
    changed within ``hours``, so a run that just began writing keeps its own. Returns how
    many."""
    filesystem, root = FileSystem.from_uri(uri)
    if not isinstance(filesystem, LocalFileSystem):
        return 0
    cutoff = time.time() - hours * 3600
    runs = FileSelector(f"{root.rstrip('/')}/{RUNS_DIR}", allow_not_found=True)
    pruned = 0
    for run in filesystem.get_file_info(runs):
        if run.type != FileType.Directory or run.mtime is None:
            continue
        if run.mtime.timestamp() >= cutoff:
            continue
        inside = filesystem.get_file_info(FileSelector(run.path, recursive=True))
        if any(i.type != FileType.Directory for i in inside):
            continue
        filesystem.delete_dir(run.path)
        pruned += 1
    return pruned


def optimize_tiles(
    uri: str,
    retention_hours: int,
    runs_started: Sequence[float] | None,
    *,
    compact: bool = True,
    floors: Mapping[str, Mapping[str, int | None]] | None = None,
) -> Optimized | None:
    """Rewrite every tile partition holding more than one file, or rows of a series past
    its retention floor (``floors``: group -> series -> the oldest tile start its recorded
    state keeps, :func:`recorded_floors`), as one file without those rows, in one commit;
    then vacuum: fully (never-referenced files too) when ``runs_started`` (the starts of
    the runs in progress, :func:`runs_in_progress`) is known, else only files a commit
    removed. ``compact=False``: vacuum only (a run in progress would conflict with the
    rewrite). None when there is no tile table.

    Dropping whole dates in a run's commit (:func:`retention_drops`) cannot expire the
    ``5m`` and ``1h`` rows of a date that also holds rows kept for good (``1d`` under a
    lifetime window, session-day rows): this does."""
    started = time.monotonic()
    table = open_table(uri)
    if table is None:
        return None
    read_version = table.version()
    files_before = len(table.file_uris())
    rewrite: dict[tuple[str, str], frozenset[str]] = {}
    if compact:
        for group, dates in _crowded(table).items():
            rewrite.update({(group, date): frozenset() for date in dates})
        if floors:
            series = {group: list(kept) for group, kept in floors.items()}
            rewrite.update(expired_series(partition_series(uri, read_version, series), floors))
    done = _rewrite(uri, table, rewrite) if rewrite else None
    table.update_incremental()  # its own commit, and a run's since
    notes = []
    if done is not None and done.rows_dropped:
        notes.append(f"{done.rows_dropped:,} tiles past their series' retention dropped")
    if runs_started is None:
        notes.append("run history unreadable: only files a commit removed were vacuumed")
        hours = retention_hours
    else:
        hours = vacuum_retention_hours(retention_hours, runs_started)
        if hours > retention_hours:
            notes.append(f"a run in progress: files kept for {hours} h, not {retention_hours} h")
    full = runs_started is not None
    expired = table.vacuum(
        retention_hours=hours, dry_run=True, enforce_retention_duration=False, full=full
    )
    filesystem, root = FileSystem.from_uri(uri)
    paths = [f"{root.rstrip('/')}/{p}" for p in expired]
    present = [i for i in filesystem.get_file_info(paths) if i.type != FileType.NotFound]
    table.vacuum(retention_hours=hours, dry_run=False, enforce_retention_duration=False, full=full)
    if full:
        _prune_run_dirs(uri, hours)
    size = table_size(uri)
    files_after, bytes_after = size if size is not None else (0, 0)
    return Optimized(
        table=uri,
        columns=(),
        partitions=0 if done is None else done.partitions,
        files_before=files_before,
        files_after=files_after,
        bytes_after=bytes_after,
        vacuumed=len(present),
        seconds=time.monotonic() - started,
        mark=OptimizeMark(
            table.metadata().id, read_version, None if done is None else done.version
        ),
        notes=tuple(notes),
    )


# Retention drops ------------------------------------------------------------------------


def _day_start(date: str) -> int | None:
    try:
        day = datetime.strptime(date, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        return None
    return int(day.timestamp() * 1000)


def _expired(date: str, series: Collection[str], kept: Mapping[str, int | None]) -> set[str]:
    """Which of ``series`` have every row of the partition dated ``date`` before their
    floor (tiles start on the partition's date: the next day starts at or before it)."""
    day = _day_start(date)
    if day is None:
        return set()
    return {s for s in series if (f := kept.get(s)) is not None and day + DAY_MS <= f}


def expired_series(
    partitions: Mapping[tuple[str, str], Collection[str] | None],
    floors: Mapping[str, Mapping[str, int | None]],
) -> dict[tuple[str, str], frozenset[str]]:
    """(group, tile_date) -> the series whose rows in that partition are all past their
    floor (partitions with none are left out). ``partitions`` and ``floors`` as
    :func:`expired_dates` takes them; an unknown set of series expires nothing."""
    found = {}
    for (group, date), series in partitions.items():
        kept = floors.get(group)
        if kept is None or not series:
            continue
        expired = _expired(date, series, kept)
        if expired:
            found[(group, date)] = frozenset(expired)
    return found


def expired_dates(
    partitions: Mapping[tuple[str, str], Collection[str] | None],
    floors: Mapping[str, Mapping[str, int | None]],
    written: Collection[tuple[str, str]] = (),
) -> dict[str, tuple[str, ...]]:
    """Group -> the dates whose partition holds only expired rows, to drop in a run's
    commit (:class:`batch_layer.tiles.GroupCommit` ``drop_dates``).

    ``partitions``: (group, tile_date) -> the series its rows may be of (None: unknown).
    ``floors``: group -> series -> the oldest tile start kept
    (``feature_core.tiles.retention_floor``; None: all kept). A partition holds the tiles
    starting on its date, so a series' rows in it are expired when the next day starts at
    or before the floor. A date is dropped only when every series in it is expired: not
    for a group without floors, a series without one (or unknown), an unknown set of
    series, a date that is not one, or a partition the run ``written``."""
    skip = set(written)
    dropped: dict[str, list[str]] = {}
    for (group, date), expired in sorted(expired_series(partitions, floors).items()):
        if expired == set(partitions[(group, date)] or ()) and (group, date) not in skip:
            dropped.setdefault(group, []).append(date)
    return {group: tuple(dates) for group, dates in dropped.items()}


def partition_series(
    uri: str, version: int | None, series: Mapping[str, Collection[str]]
) -> dict[tuple[str, str], frozenset[str] | None]:
    """(group, tile_date) -> the series each partition of the ``series`` groups may hold
    (group -> its series), from the min/max of ``series`` in the Delta statistics of its
    files: those of the group's series in each file's range. None (unknown) for a
    partition with a file without statistics, or whose range ends in a series the group
    does not have."""
    table = open_table(uri, version)
    if table is None:
        return {}
    actions = pa.table(table.get_add_actions(flatten=True))
    if actions.num_rows == 0:
        return {}

    def column(name: str) -> list[str | None]:
        if name in actions.column_names:
            return actions.column(name).to_pylist()
        return [None] * actions.num_rows

    found: dict[tuple[str, str], set[str] | None] = {}
    for group, date, low, high in zip(
        column(f"partition.{GROUP}"),
        column(f"partition.{TILE_DATE}"),
        column("min.series"),
        column("max.series"),
        strict=True,
    ):
        if group not in series or group is None or date is None:
            continue
        known = set(series[group])
        key = (group, date)
        if low is None or high is None or low not in known or high not in known:
            found[key] = None
        elif key not in found or found[key] is not None:
            span = {s for s in known if low <= s <= high}
            found[key] = (found.get(key) or set()) | span
    return {k: None if v is None else frozenset(v) for k, v in found.items()}


def retention_drops(
    uri: str,
    read: TileTableState,
    floors: Mapping[str, Mapping[str, int | None]],
    written: Iterable[tuple[str, str]] = (),
) -> dict[str, tuple[str, ...]]:
    """Group -> the dates a run's commit drops: the partitions of the tile table at the
    version the run read holding only series rows older than ``floors`` (group -> series
    -> ``feature_core.tiles.retention_floor(group, the run's cutoff)``), except those it
    ``written`` anew."""
    if read.version is None:
        return {}
    series = {group: list(kept) for group, kept in floors.items()}
    return expired_dates(partition_series(uri, read.version, series), floors, tuple(written))


def recorded_floors(uri: str, groups: Iterable[FeatureGroup]) -> dict[str, dict[str, int | None]]:
    """Group -> its series' retention floors at the cutoff its recorded state covers, for
    the ``groups`` whose stored tiles were built under their current tile spec (others'
    tiles are rebuilt by their next run, and left alone). Floors grow with the cutoff, so
    a later state reads no row older than them."""
    groups = list(groups)
    state = read_state(uri, {g.name: [g.source.table_name] for g in groups})
    floors = {}
    for group in groups:
        recorded = state.groups.get(group.name)
        if recorded is not None and recorded.spec_tag == spec_tag(tile_spec_fingerprint(group)):
            floors[group.name] = retention_floor(group, recorded.cutoff_ms)
    return floors
