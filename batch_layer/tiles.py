"""The tile table ``_lfp_tiles``: every group's tiles in one Delta table, partitioned by
``(group, tile_date)``, written by Spark and committed by the driver (design of issue 32,
sections 1.1, 1.2 and 1.5).

There is no Delta writer in Spark here (no delta-spark jar), and tiles are too many to
collect on the driver on a full rebuild. So Spark writes a run's partition files as plain
Parquet under ``<table>/runs/<run>-<nonce>/group=…/tile_date=…/`` (:func:`write_staged`),
and the driver commits them with delta-rs in **one** transaction (:func:`commit_tiles`):
an ``add`` per file (statistics from its Parquet footer), a ``remove`` per file of every
partition a rebuild or retention replaces, and app transactions recording, per group, the
source table versions (and table ids) and the cutoff the tiles cover and the batch view
version built from them. A run's new state for every group is therefore atomic with its
tiles, and a retried or crashed run never applies its events twice.

Every commit also sets the app transaction :data:`VIEW_APP` to the run's view version: two
runs that read the same table version conflict on it (Delta's optimistic concurrency),
whichever groups they touch. Files of a run that never committed are never referenced: a
*full* vacuum (``DeltaTable.vacuum(full=True)``; the default one deletes only files a
commit removed) deletes them once past retention (their directory has no leading
underscore), so its retention must outlast a run.

**Rows of one tile.** An incremental run adds files beside a partition's files instead of
rewriting the partition: it writes only the tiles its new events changed, each merged
with the tile's stored row (and the session-day rows of the days they fall on). A tile
may therefore have several rows, in different files; the one counting the most events
(``events``; a session-day row counts its day's events) is the tile's value. Incremental
runs need an append-only lake (deleted rows force a rebuild), so a tile recomputed later
covers a superset of the events an older row covers: more events is newer, and equal
counts are equal values. Readers pick per (series, entity, start)
(:func:`newest_tiles`, :func:`newest_rows`); compaction keeps only those rows.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, Schema, Transaction
from deltalake.exceptions import TableNotFoundError
from deltalake.transaction import AddAction, RemoveAction, create_table_with_add_actions
from pyarrow.fs import FileSelector, FileSystem, FileType
from pydantic import BaseModel, ConfigDict
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from batch_layer.lake import data_file_uri, table_id_tag
from feature_core.settings import Settings

#: The tile table's name under the lake root (no source can be declared with it).
TILES_TABLE = "_lfp_tiles"
GROUP = "group"
TILE_DATE = "tile_date"
PARTITIONS = (GROUP, TILE_DATE)

#: The columns of the data files (the partition columns are in their paths).
DATA_SCHEMA = pa.schema(
    [
        pa.field("series", pa.string()),
        pa.field("entity", pa.string()),
        pa.field("keys", pa.list_(pa.string())),
        pa.field("start", pa.int64()),
        pa.field("partials", pa.string()),
        pa.field("events", pa.int64()),
        pa.field("first_ms", pa.int64()),
        pa.field("last_ms", pa.int64()),
        pa.field("frag_start_ms", pa.int64()),
        pa.field("has_gap", pa.bool_()),
        pa.field("prev_last_ms", pa.int64()),
    ]
)
#: The columns only session-day rows fill (:class:`feature_core.tiles.SessionDay`).
SESSION_COLUMNS = ("first_ms", "last_ms", "frag_start_ms", "has_gap", "prev_last_ms")
#: The table's schema: partition columns first.
TILE_SCHEMA = pa.schema(
    [pa.field(GROUP, pa.string()), pa.field(TILE_DATE, pa.string()), *DATA_SCHEMA]
)
#: Spark DDL of the data files, and of a frame of tiles (what :func:`write_staged` takes
#: and :func:`read_tiles` gives).
DATA_DDL = (
    "series STRING, entity STRING, keys ARRAY<STRING>, start BIGINT, partials STRING, "
    "events BIGINT, first_ms BIGINT, last_ms BIGINT, frag_start_ms BIGINT, has_gap BOOLEAN, "
    "prev_last_ms BIGINT"
)
TILE_DDL = f"`{GROUP}` STRING, {TILE_DATE} STRING, {DATA_DDL}"
#: Columns whose min/max go into the Delta statistics of a file.
_STATS_COLUMNS = ("series", "entity", "start", "events")

#: Directory (under the table) of the runs' data files.
RUNS_DIR = "runs"
#: App transaction every tile commit sets to its view version (serializes the runs).
VIEW_APP = "lfp-tiles:view"
#: Commit metadata keys.
RUN_KEY = "lfp.tiles.run"
VIEW_KEY = "lfp.tiles.view"
POINTER_KEY = "lfp.tiles.pointer"
SPEC_KEY = "lfp.tiles.spec."  # + group
MODE_KEY = "lfp.tiles.mode."  # + group


def tiles_uri(settings: Settings) -> str:
    return settings.table_uri(TILES_TABLE)


def spec_tag(fingerprint: str) -> int:
    """A tile spec fingerprint as a non-negative 63-bit number (what fits in a Delta app
    transaction's version; the same hash as a table id's tag)."""
    return table_id_tag(fingerprint)


def _app(group: str, *parts: str) -> str:
    return ":".join(("lfp-tiles", group, *parts))


class LakeState(BaseModel):
    """How far into one source table a group's tiles go."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int
    table_tag: int  # batch_layer.lake.table_id_tag of the table read


class GroupState(BaseModel):
    """What a group's stored tiles cover: the events of each source table's ``version``
    with time before ``cutoff_ms``; ``view_version`` is the batch view built from them and
    ``spec_tag`` the :func:`spec_tag` of the tile spec fingerprint they were built under."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lakes: dict[str, LakeState]
    cutoff_ms: int
    view_version: int
    spec_tag: int


class TileTableState(BaseModel):
    """The tile table at one version: the groups with a complete recorded state."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int | None  # None: no table yet
    table_id: str | None
    view_version: int | None  # the last run's (VIEW_APP)
    groups: dict[str, GroupState]


def _group_transactions(group: str, state: GroupState) -> list[Transaction]:
    transactions = [
        Transaction(_app(group, "cutoff"), state.cutoff_ms),
        Transaction(_app(group, "view"), state.view_version),
        Transaction(_app(group, "spec"), state.spec_tag),
    ]
    for table, lake in sorted(state.lakes.items()):
        transactions.append(Transaction(_app(group, "lake", table), lake.version))
        transactions.append(Transaction(_app(group, "lake-id", table), lake.table_tag))
    return transactions


def read_state(
    uri: str, groups: Mapping[str, Collection[str]], version: int | None = None
) -> TileTableState:
    """The recorded state of each of ``groups`` (group -> the source tables it reads) at
    ``version`` (latest when None). A group is left out unless every part of its state is
    recorded (never committed, or it reads a table it did not read then)."""
    try:
        table = DeltaTable(uri, version=version)
    except TableNotFoundError:
        return TileTableState(version=None, table_id=None, view_version=None, groups={})
    states: dict[str, GroupState] = {}
    for group, tables in groups.items():
        values = {
            part: table.transaction_version(_app(group, part))
            for part in ("cutoff", "view", "spec")
        }
        lakes: dict[str, LakeState] = {}
        for name in tables:
            read = table.transaction_version(_app(group, "lake", name))
            tag = table.transaction_version(_app(group, "lake-id", name))
            if read is not None and tag is not None:
                lakes[name] = LakeState(version=read, table_tag=tag)
        cutoff, view, spec = values["cutoff"], values["view"], values["spec"]
        if cutoff is None or view is None or spec is None or len(lakes) != len(set(tables)):
            continue
        states[group] = GroupState(lakes=lakes, cutoff_ms=cutoff, view_version=view, spec_tag=spec)
    return TileTableState(
        version=table.version(),
        table_id=table.metadata().id,
        view_version=table.transaction_version(VIEW_APP),
        groups=states,
    )


class CommitRecord(BaseModel):
    """What a tile commit recorded beside its tiles (its custom metadata)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int
    run: str
    view_version: int
    pointer: str  # the BatchPointer JSON the run switches to (roll-forward)
    specs: dict[str, str]  # group -> tile spec fingerprint
    modes: dict[str, str]  # group -> mode
    metadata: dict[str, Any]  # the rest


def last_commit(uri: str) -> CommitRecord | None:
    """The newest run commit of the tile table (commits of others, e.g. a compaction,
    are skipped); None when there is none."""
    try:
        table = DeltaTable(uri)
    except TableNotFoundError:
        return None
    for limit in (16, None):
        for entry in table.history(limit):
            if RUN_KEY in entry:
                return _record(entry)
    return None


def _record(entry: Mapping[str, Any]) -> CommitRecord:
    specs = {k[len(SPEC_KEY) :]: str(v) for k, v in entry.items() if k.startswith(SPEC_KEY)}
    modes = {k[len(MODE_KEY) :]: str(v) for k, v in entry.items() if k.startswith(MODE_KEY)}
    ours = {RUN_KEY, VIEW_KEY, POINTER_KEY}
    rest = {
        k: v
        for k, v in entry.items()
        if k.startswith("lfp.") and k not in ours and not k.startswith((SPEC_KEY, MODE_KEY))
    }
    return CommitRecord(
        version=int(entry["version"]),
        run=str(entry[RUN_KEY]),
        view_version=int(entry[VIEW_KEY]),
        pointer=str(entry[POINTER_KEY]),
        specs=specs,
        modes=modes,
        metadata=rest,
    )


# Writing: Spark stages, the driver commits ------------------------------------------------


def newest_rows(rows: Iterable[Mapping[str, Any]]) -> dict[tuple[str, int], Mapping[str, Any]]:
    """(series, start) -> the row of each tile counting the most events, of one entity's
    tile rows (see the module: rows of one tile)."""
    newest: dict[tuple[str, int], Mapping[str, Any]] = {}
    for row in rows:
        key = (row["series"], row["start"])
        held = newest.get(key)
        if held is None or (row["events"] or 0) > (held["events"] or 0):
            newest[key] = row
    return newest


def newest_tiles(rows: pa.Table) -> pa.Table:
    """Tile rows (:data:`DATA_SCHEMA` columns, with or without the partition columns) with
    only each tile's newest row: per (series, entity, start), the one counting the most
    events. Sorted as a run writes them (series, entity, start)."""
    if rows.num_rows == 0:
        return rows
    events = pc.fill_null(rows.column("events"), -1)
    ordered = rows.append_column("__events", events).sort_by(
        [
            ("series", "ascending"),
            ("entity", "ascending"),
            ("start", "ascending"),
            ("__events", "descending"),
        ]
    )
    # A row is its tile's newest when its key differs from the row before it.
    count = ordered.num_rows
    differs = pa.array([False] * (count - 1), pa.bool_())
    for name in ("series", "entity", "start"):
        column = ordered.column(name).combine_chunks()
        differs = pc.or_(differs, pc.not_equal(column.slice(1), column.slice(0, count - 1)))
    newest = pa.concat_arrays([pa.array([True]), differs])
    return ordered.filter(newest).drop_columns(["__events"])


def write_staged(frame: DataFrame, uri: str, run_id: str) -> str:
    """Write a frame of tiles (:data:`TILE_DDL` columns) as Parquet partition files under
    the table, one file per ``(group, tile_date)``, sorted by series, entity and start
    (narrow statistics per row group). Returns the directory written, relative to the
    table (unique per call: a retried run never overwrites files a commit may name)."""
    # The run id as far as it is safe in a path: a character a URL must escape (a
    # space) would be escaped in the log's paths but not on disk.
    name = re.sub(r"[^A-Za-z0-9._-]", "_", run_id)[:64]
    staged = f"{RUNS_DIR}/{name}-{uuid.uuid4().hex[:12]}"
    columns = [F.col(f"`{GROUP}`"), F.col(TILE_DATE)]
    (
        frame.select(*(F.col(f"`{f.name}`") for f in TILE_SCHEMA))
        .repartition(*columns)
        .sortWithinPartitions(*columns, "series", "entity", "start")
        .write.mode("errorifexists")
        .option("compression", "zstd")
        .partitionBy(*PARTITIONS)
        .parquet(data_file_uri(uri, staged))
    )
    _tidy(uri, staged)
    return staged


def _tidy(uri: str, staged: str) -> None:
    """Delete the side files Spark leaves beside the data (``_SUCCESS``, local checksum
    ``.crc`` files): vacuum skips names starting with ``_`` or ``.``, so nothing else would
    ever delete them."""
    filesystem, base = FileSystem.from_uri(data_file_uri(uri, staged))
    for info in filesystem.get_file_info(FileSelector(base, recursive=True)):
        if info.type == FileType.File and (
            info.base_name == "_SUCCESS" or info.base_name.endswith(".crc")
        ):
            filesystem.delete_file(info.path)


class StagedFile(BaseModel):
    """One data file a run wrote, ready to be added to the table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str  # relative to the table
    group: str
    tile_date: str
    size: int
    modification_time: int  # ms
    rows: int
    stats: str  # Delta statistics JSON

    def add_action(self) -> AddAction:
        return AddAction(
            path=self.path,
            size=self.size,
            partition_values={GROUP: self.group, TILE_DATE: self.tile_date},
            modification_time=self.modification_time,
            data_change=True,
            stats=self.stats,
        )


def _partition_of(relative: str) -> tuple[str, str] | None:
    """(group, tile_date) of a data file's path below a run directory, if it is one."""
    parts = relative.split("/")
    if len(parts) != 3 or parts[2].startswith(("_", ".")) or not parts[2].endswith(".parquet"):
        return None
    group, date = parts[0].partition("=")[2], parts[1].partition("=")[2]
    if not parts[0].startswith(f"{GROUP}=") or not parts[1].startswith(f"{TILE_DATE}="):
        return None
    return group, date


def _footer_stats(metadata: pq.FileMetaData) -> str:
    """Delta statistics (numRecords, min/max, null counts) from a Parquet footer: only
    columns whose every row group has them."""
    names = [metadata.schema.column(i).path for i in range(metadata.num_columns)]
    lows: dict[str, Any] = {}
    highs: dict[str, Any] = {}
    nulls: dict[str, int] = {}
    for index, name in enumerate(names):
        if "." in name:  # nested (keys): no statistics
            continue
        columns = [metadata.row_group(g).column(index) for g in range(metadata.num_row_groups)]
        stats = [c.statistics for c in columns]
        if stats and all(s is not None and s.has_null_count for s in stats):
            nulls[name] = sum(s.null_count for s in stats)
        if name not in _STATS_COLUMNS or not stats:
            continue
        if all(s is not None and s.has_min_max for s in stats):
            lows[name] = min(s.min for s in stats)
            highs[name] = max(s.max for s in stats)
    return json.dumps(
        {"numRecords": metadata.num_rows, "minValues": lows, "maxValues": highs, "nullCount": nulls}
    )


def staged_files(uri: str, staged: str) -> list[StagedFile]:
    """The data files a run wrote under ``staged`` (:func:`write_staged`), with their
    Delta statistics read from their Parquet footers (in parallel: one read each)."""
    filesystem, base = FileSystem.from_uri(data_file_uri(uri, staged))
    infos = filesystem.get_file_info(FileSelector(base, recursive=True, allow_not_found=True))
    found: list[tuple[str, tuple[str, str], Any]] = []
    for info in infos:
        if info.type != FileType.File:
            continue
        relative = info.path[len(base) :].lstrip("/")
        partition = _partition_of(relative)
        if partition is not None:
            found.append((relative, partition, info))

    def describe(item: tuple[str, tuple[str, str], Any]) -> StagedFile:
        relative, (group, date), info = item
        with filesystem.open_input_file(info.path) as handle:
            metadata = pq.ParquetFile(handle).metadata
        return StagedFile(
            path=f"{staged}/{relative}",
            group=group,
            tile_date=date,
            size=info.size,
            modification_time=int(info.mtime.timestamp() * 1000),
            rows=metadata.num_rows,
            stats=_footer_stats(metadata),
        )

    with ThreadPoolExecutor(8) as pool:
        return sorted(pool.map(describe, found), key=lambda f: f.path)


class GroupCommit(BaseModel):
    """One group's part of a run's commit: its new state, and which of its partitions
    are removed (the files the run wrote are added beside the others)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    state: GroupState
    spec: str  # the tile spec fingerprint (its spec_tag is state.spec_tag)
    mode: str  # incremental | rebuild | full | ...
    replace_all: bool = False  # every current partition of the group goes (full, rebuild)
    drop_dates: tuple[str, ...] = ()  # partitions removed with no new files (retention)


class TileCommit(BaseModel):
    """What one commit did."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int
    files_added: int
    files_removed: int
    bytes_added: int
    rows_added: int
    partitions_written: int


class StaleTilesError(RuntimeError):
    """The tile table is not at the version (or not the table) the run read."""


def commit_tiles(
    uri: str,
    read: TileTableState,
    staged: str | None,
    groups: Mapping[str, GroupCommit],
    *,
    run_id: str,
    view_version: int,
    pointer: str,
    metadata: Mapping[str, Any] | None = None,
) -> TileCommit:
    """Commit a run's tiles and every group's new state in one Delta transaction.

    ``read`` is the state the run started from (:func:`read_state`): the transaction is
    made against that version, so a commit by anyone else since fails it (Delta's
    conflict check on :data:`VIEW_APP` and on the removed files) instead of overwriting
    it. The run's files are added to their partitions (their rows are newer rows of the
    tiles they hold: see the module); ``groups`` may replace a group whole (a rebuild)
    or drop dates. The table is created by the
    first commit. ``metadata``: more commit metadata (counters), keys ``lfp.…``."""
    files = staged_files(uri, staged) if staged is not None else []
    strangers = {f.group for f in files} - set(groups)
    if strangers:
        raise ValueError(f"tiles written for groups without a new state: {sorted(strangers)}")
    transactions = [Transaction(VIEW_APP, view_version)]
    extra = dict(metadata or {})
    if any(not key.startswith("lfp.") for key in extra):
        raise ValueError("commit metadata keys must start with 'lfp.'")
    custom: dict[str, Any] = {
        **extra,
        RUN_KEY: run_id,
        VIEW_KEY: view_version,
        POINTER_KEY: pointer,
    }
    for group, commit in sorted(groups.items()):
        if spec_tag(commit.spec) != commit.state.spec_tag:
            raise ValueError(f"group {group}: spec_tag is not the tag of its spec")
        transactions += _group_transactions(group, commit.state)
        custom[SPEC_KEY + group] = commit.spec
        custom[MODE_KEY + group] = commit.mode
    properties = CommitProperties(custom_metadata=custom, app_transactions=transactions)
    adds = [f.add_action() for f in files]
    removes: list[RemoveAction] = []
    if read.version is None:
        if DeltaTable.is_deltatable(uri):
            raise StaleTilesError(f"{uri}: the tile table was created since the run read it")
        create_table_with_add_actions(
            uri,
            Schema.from_arrow(TILE_SCHEMA),
            adds,
            mode="error",
            partition_by=list(PARTITIONS),
            commit_properties=properties,
        )
    else:
        try:
            table = DeltaTable(uri, version=read.version)
        except TableNotFoundError as missing:
            raise StaleTilesError(f"{uri}: no tile table at version {read.version}") from missing
        if table.metadata().id != read.table_id:
            raise StaleTilesError(f"{uri}: the tile table was recreated since the run read it")
        removes = _removes(table, groups)
        table.create_write_transaction(
            [*adds, *removes],
            mode="append",
            schema=TILE_SCHEMA,
            partition_by=list(PARTITIONS),
            commit_properties=properties,
        )
    return TileCommit(
        version=_commit_of(uri, run_id),
        files_added=len(adds),
        files_removed=len(removes),
        bytes_added=sum(f.size for f in files),
        rows_added=sum(f.rows for f in files),
        partitions_written=len({(f.group, f.tile_date) for f in files}),
    )


def _removes(table: DeltaTable, groups: Mapping[str, GroupCommit]) -> list[RemoveAction]:
    """Remove actions for the current files of every group rebuilt and date dropped."""
    now = int(time.time() * 1000)
    removes = []
    for current in _current_files(table):
        commit = groups.get(current.group)
        if commit is not None and (commit.replace_all or current.tile_date in commit.drop_dates):
            removes.append(
                RemoveAction(
                    path=current.path,
                    data_change=True,
                    deletion_timestamp=now,
                    size=current.size,
                    partition_values={GROUP: current.group, TILE_DATE: current.tile_date},
                )
            )
    return removes


def _commit_of(uri: str, run_id: str) -> int:
    """The version of the run's commit: other commits may have landed since."""
    table = DeltaTable(uri)
    for limit in (16, None):
        for entry in table.history(limit):
            if entry.get(RUN_KEY) == run_id:
                return int(entry["version"])
    raise LookupError(f"no tile commit of run {run_id} in {uri}")


# Reading ------------------------------------------------------------------------------------


class TileFile(BaseModel):
    """One data file of the tile table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str  # relative to the table
    uri: str
    group: str
    tile_date: str
    size: int
    rows: int | None


def _current_files(table: DeltaTable) -> list[TileFile]:
    actions = pa.table(table.get_add_actions(flatten=True))
    if actions.num_rows == 0:
        return []
    files = []
    for path, size, rows, group, date in zip(
        actions.column("path").to_pylist(),
        actions.column("size_bytes").to_pylist(),
        actions.column("num_records").to_pylist(),
        actions.column(f"partition.{GROUP}").to_pylist(),
        actions.column(f"partition.{TILE_DATE}").to_pylist(),
        strict=True,
    ):
        files.append(
            TileFile(
                path=path,
                uri=data_file_uri(table.table_uri, path),
                group=group,
                tile_date=date,
                size=int(size),
                rows=None if rows is None else int(rows),
            )
        )
    return files


def tile_files(
    uri: str,
    version: int | None = None,
    *,
    groups: Collection[str] | None = None,
    partitions: Collection[tuple[str, str]] | None = None,
) -> list[TileFile]:
    """The data files of the tile table at ``version`` (latest when None), of the
    ``groups`` and ``partitions`` ((group, tile_date)) named (all when None)."""
    try:
        table = DeltaTable(uri, version=version)
    except TableNotFoundError:
        return []
    wanted = None if partitions is None else set(partitions)
    return [
        f
        for f in _current_files(table)
        if (groups is None or f.group in groups)
        and (wanted is None or (f.group, f.tile_date) in wanted)
    ]


def _check_layout(files: Iterable[TileFile]) -> None:
    """Spark reads a file's partition values from its path: they must be the log's."""
    for f in files:
        if f"/{GROUP}={f.group}/{TILE_DATE}={f.tile_date}/" not in f"/{f.path}":
            raise ValueError(f"tile file {f.path} is not under its partition's directory")


def read_tiles_arrow(
    uri: str,
    version: int | None = None,
    *,
    groups: Collection[str] | None = None,
    partitions: Collection[tuple[str, str]] | None = None,
) -> pa.Table:
    """The newest row of each tile (:data:`TILE_SCHEMA`, :func:`newest_tiles`) of the
    partitions named, as Arrow (small reads: the driver, tests)."""
    files = tile_files(uri, version, groups=groups, partitions=partitions)
    parts = []
    by_partition: dict[tuple[str, str], list[str]] = {}
    for f in files:
        by_partition.setdefault((f.group, f.tile_date), []).append(f.uri)
    for (group, date), uris in sorted(by_partition.items()):
        filesystem = FileSystem.from_uri(uris[0])[0]
        paths = [FileSystem.from_uri(u)[1] for u in uris]
        data = ds.dataset(paths, schema=DATA_SCHEMA, format="parquet", filesystem=filesystem)
        table = newest_tiles(data.to_table())
        table = table.add_column(0, TILE_DATE, pa.array([date] * table.num_rows, pa.string()))
        table = table.add_column(0, GROUP, pa.array([group] * table.num_rows, pa.string()))
        parts.append(table)
    if not parts:
        return TILE_SCHEMA.empty_table()
    return pa.concat_tables(parts)


def read_tiles(
    spark: SparkSession,
    uri: str,
    version: int | None = None,
    *,
    groups: Collection[str] | None = None,
    partitions: Collection[tuple[str, str]] | None = None,
) -> DataFrame:
    """Tile rows (:data:`TILE_DDL`) of the partitions named, as a Spark frame read from
    the table's file list at ``version`` (delta-rs: there is no Delta reader in Spark). The
    partition columns come from each file's path (group names are identifiers). Every row
    of a tile is there: readers take the newest per entity (:func:`newest_rows`)."""
    return read_tile_files(spark, tile_files(uri, version, groups=groups, partitions=partitions))


def read_tile_files(spark: SparkSession, files: Sequence[TileFile]) -> DataFrame:
    """Tile rows (:data:`TILE_DDL`) of ``files`` (from :func:`tile_files`), as a Spark
    frame: what :func:`read_tiles` reads, for a caller that lists the files once."""
    if not files:
        return spark.createDataFrame([], TILE_DDL)
    _check_layout(files)
    path = F.col("_metadata.file_path")
    frame = spark.read.schema(DATA_DDL).parquet(*(f.uri for f in files))
    return frame.select(
        F.regexp_extract(path, f"/{GROUP}=([^/]+)/", 1).alias(GROUP),
        F.regexp_extract(path, f"/{TILE_DATE}=([^/]+)/", 1).alias(TILE_DATE),
        *(F.col(f.name) for f in DATA_SCHEMA),
    )
