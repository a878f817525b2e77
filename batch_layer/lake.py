"""The lakehouse: each source's events in a Delta table (delta-rs), the batch layer's
master dataset. Tables are laid out by :mod:`feature_core.sources` (its ``lake_schema``)."""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.dataset as ds
from deltalake import CommitProperties, DeltaTable, Transaction, WriterProperties, write_deltalake
from deltalake.exceptions import DeltaError, TableNotFoundError
from pyarrow.fs import FileSystem, FileType
from pydantic import BaseModel, ConfigDict

from feature_core.definitions import FeatureRepo
from feature_core.settings import Settings
from feature_core.sources import EVENT_DATE, EventSource, Record, records_to_arrow


def ingest_app_id(topic: str, topic_id: str, partition: int) -> str:
    """Delta app-transaction id under which the next offset of a partition is stored.

    Includes the topic instance's id: offsets of a deleted-and-recreated topic (or of a
    restarted memory-only broker) start afresh instead of skipping the new log's records.
    """
    return f"lfp-ingest:{topic}:{topic_id}:{partition}"


def open_table(uri: str, version: int | None = None) -> DeltaTable | None:
    try:
        return DeltaTable(uri, version=version)
    except TableNotFoundError:
        return None


def committed_offsets(
    uri: str, topic: str, topic_id: str, partitions: Iterable[int]
) -> dict[int, int]:
    """Next offset to read per partition, as recorded in the Delta log (absent: none yet)."""
    table = open_table(uri)
    if table is None:
        return {}
    offsets = {}
    for partition in partitions:
        version = table.transaction_version(ingest_app_id(topic, topic_id, partition))
        if version is not None:
            offsets[partition] = version
    return offsets


def append_with_offsets(
    uri: str,
    source: EventSource,
    rows: list[tuple[Record, int, int]],
    topic_id: str,
    next_offsets: dict[int, int],
    dead_letters: tuple[str, str, Mapping[int, int]] | None = None,
) -> int:
    """Append records and record the partitions' next offsets in the same Delta commit;
    returns the commit's version.

    The data and the offsets become visible atomically, so a crash either loses both
    (and the batch is re-read) or keeps both (and it is skipped): exactly once.
    ``dead_letters``: (dead-letter topic, its instance id, next offset per partition)
    after this batch's acknowledged dead letters, kept in the same commit: a restart
    reads only the dead letters sent after it, to send none of them twice.
    """
    transactions = [
        Transaction(ingest_app_id(source.topic_name, topic_id, partition), offset)
        for partition, offset in sorted(next_offsets.items())
    ]
    if dead_letters is not None:
        dlq_topic, dlq_id, dlq_offsets = dead_letters
        transactions += [
            Transaction(ingest_app_id(dlq_topic, dlq_id, partition), offset)
            for partition, offset in sorted(dlq_offsets.items())
        ]
    token = uuid.uuid4().hex
    _append(uri, records_to_arrow(source, rows), transactions, {INGEST_COMMIT: token})
    return commit_version(uri, token)


#: Commit metadata naming a lake ingest commit (its value is unique to the commit).
INGEST_COMMIT = "lfp_ingest_commit"


def commit_version(uri: str, token: str) -> int:
    """The version of the commit tagged ``token``: other writers (optimize, file loads)
    may have committed since, so it is looked up, not assumed to be the latest."""
    table = DeltaTable(uri)
    for limit in (16, None):
        for entry in table.history(limit):
            if entry.get(INGEST_COMMIT) == token:
                return int(entry["version"])
    raise LookupError(f"no commit tagged {token} in {uri}")


def ingest_commits_after(uri: str, version: int) -> list[int]:
    """The versions after ``version`` that lake ingest committed (records from Kafka),
    oldest first."""
    table = open_table(uri)
    if table is None or table.version() <= version:
        return []
    entries = table.history(table.version() - version)
    return sorted(
        int(e["version"]) for e in entries if INGEST_COMMIT in e and int(e["version"]) > version
    )


def commit_time_after(uri: str, version: int) -> int | None:
    """When the commit after ``version`` was written (ms), if there is one."""
    table = open_table(uri)
    if table is None or table.version() <= version:
        return None
    for entry in table.history(table.version() - version):
        if int(entry["version"]) == version + 1:
            return int(entry["timestamp"])
    return None


def records_added(uri: str, source: EventSource, version: int) -> list[dict[str, Any]]:
    """The records commit ``version`` appended (the files it added), as dicts of the
    source's fields."""
    added = set(DeltaTable(uri, version=version).file_uris())
    if version > 0:
        added -= set(DeltaTable(uri, version=version - 1).file_uris())
    if not added:
        return []
    schema = pa.schema([f for f in source.lake_schema if f.name in source.by_name])
    # Read with the declared schema: a file written before a field was added reads null.
    return ds.dataset(sorted(added), schema=schema, format="parquet").to_table().to_pylist()


def _append(
    uri: str,
    data: pa.Table,
    transactions: list[Transaction] | None = None,
    metadata: Mapping[str, str] | None = None,
) -> None:
    # "merge": a field added to the source (nullable) adds its column in this commit;
    # old rows read null. Breaking changes never get here (see schema_problems).
    properties = None
    if transactions or metadata:
        properties = CommitProperties(
            app_transactions=transactions or None,
            custom_metadata=dict(metadata) if metadata else None,
        )
    write_deltalake(
        uri,
        data,
        mode="append",
        partition_by=[EVENT_DATE],
        schema_mode="merge",
        commit_properties=properties,
    )


#: ``kafka_partition``/``kafka_offset`` of records written straight to the lake (history).
BACKFILL = -1


def append_backfill(
    uri: str, source: EventSource, records: Iterable[Record], chunk: int = 50_000
) -> int:
    """Append already validated, back-dated records straight to the lake (never through
    Kafka): the batch layer reads them like ingested events; the speed layer never sees
    them, which is right as long as they are older than the next batch cutoff."""
    written = 0
    rows: list[tuple[Record, int, int]] = []
    for record in records:
        rows.append((record, BACKFILL, BACKFILL))
        if len(rows) >= chunk:
            _append(uri, records_to_arrow(source, rows))
            written += len(rows)
            rows.clear()
    if rows:
        _append(uri, records_to_arrow(source, rows))
        written += len(rows)
    return written


def load_app_id(table: str, content_hash: str) -> str:
    """Delta app-transaction id of a file's prefix, named by the SHA-256 of its bytes: its
    version is the number of records in that prefix already handled (appended or
    rejected). A load's last commit names the whole file, so the same content under any
    path is recognized."""
    return f"lfp-load:{table}:{content_hash}"


def load_path_app_id(table: str, path: str) -> str:
    """Delta app-transaction id of the file at ``path``: its version is the byte offset
    its load has committed up to (the prefix that :func:`load_app_id` names)."""
    return f"lfp-load-path:{table}:{path}"


def transaction_versions(uri: str, app_ids: Iterable[str]) -> dict[str, int | None]:
    """The versions of app transactions recorded in a table (None: never, or no table)."""
    table = open_table(uri)
    return {a: None if table is None else table.transaction_version(a) for a in app_ids}


def loaded_records(uri: str, app_id: str) -> int:
    """How many of a file's records earlier loads got through (0: none)."""
    return transaction_versions(uri, [app_id])[app_id] or 0


def append_loaded(
    uri: str, source: EventSource, records: list[Record], progress: Mapping[str, int]
) -> None:
    """Append one chunk of a file's records and, in the same commit, how far into the
    file the load has got (``progress``: app id -> version), so a re-run (or a run after
    a crash) resumes exactly there."""
    rows = [(record, BACKFILL, BACKFILL) for record in records]
    transactions = [Transaction(app_id, version) for app_id, version in progress.items()]
    _append(uri, records_to_arrow(source, rows), transactions)


def schema_problems(uri: str, source: EventSource) -> list[str]:
    """Why the source's declared fields cannot be written to its existing lake table:
    a field removed, or its type changed (history would be lost or misread). Added
    nullable fields are fine: the next commit adds their columns."""
    table = open_table(uri)
    if table is None:
        return []
    existing = {f.name: f.type for f in pa.schema(table.schema().to_arrow())}
    declared = {f.name: f.type for f in source.lake_schema}
    problems = []
    for name, arrow_type in existing.items():
        if name not in declared:
            problems.append(
                f"source {source.name}: field {name!r} is in lake table {uri} but no longer "
                "declared; declare it again (nullable) instead of removing it"
            )
        elif _normalized(arrow_type) != _normalized(declared[name]):
            problems.append(
                f"source {source.name}: field {name!r} is {arrow_type} in the lake but now "
                f"declared as {declared[name]}; keep its type, or add a new field with the "
                "new type"
            )
    for f in source.fields:
        if f.name not in existing and f.required:
            problems.append(
                f"source {source.name}: new field {f.name!r} is required, but the lake's "
                "existing rows have no value for it; add it as nullable (required=False)"
            )
    return problems


def _normalized(arrow_type: pa.DataType) -> pa.DataType:
    # Delta stores strings as large strings in some writers: compare the logical type.
    if pa.types.is_large_string(arrow_type):
        return pa.string()
    return arrow_type


def files_matching(table: DeltaTable, values: Mapping[str, Sequence[Any]]) -> list[str]:
    """The table's data files that may hold a row whose column ``c`` is one of
    ``values[c]`` for every column given, by the per-file min/max statistics in the Delta
    log. A file without statistics for a column is kept, and so is every file when one
    cannot be matched to its URI: this only ever reads more than needed."""
    actions = pa.table(table.get_add_actions(flatten=True))
    keep = [True] * actions.num_rows
    for column, wanted in values.items():
        ordered = sorted(wanted)
        if f"min.{column}" not in actions.column_names:
            continue
        lows = actions.column(f"min.{column}").to_pylist()
        highs = actions.column(f"max.{column}").to_pylist()
        for i, (low, high) in enumerate(zip(lows, highs, strict=True)):
            if low is None or high is None or not keep[i]:
                continue
            first = bisect.bisect_left(ordered, low)
            keep[i] = first < len(ordered) and ordered[first] <= high
    kept = {p for p, k in zip(actions.column("path").to_pylist(), keep, strict=True) if k}
    uris = table.file_uris()
    by_path = {}
    depths = {path.count("/") + 1 for path in kept}  # once: per file it cost O(files²)
    for uri in uris:
        # A data file's path in the log is relative to the table: its last segments.
        for depth in depths:
            relative = "/".join(uri.split("/")[-depth:])
            if relative in kept:
                by_path[relative] = uri
    if len(by_path) != len(kept):
        return uris
    return sorted(by_path.values())


def files_bytes(table: DeltaTable, uris: Iterable[str]) -> int | None:
    """The bytes of ``uris`` (some of ``table.file_uris()``) by the sizes in the Delta log,
    for run records; None when one cannot be matched to the log's paths (never a guess)."""
    actions = pa.table(table.get_add_actions(flatten=True))
    sizes = {
        unquote(path): int(size)
        for path, size in zip(
            actions.column("path").to_pylist(),
            actions.column("size_bytes").to_pylist(),
            strict=True,
        )
    }
    depths = {path.count("/") + 1 for path in sizes}
    total = 0
    for uri in uris:
        # A data file's path in the log is relative to the table: its last segments.
        segments = unquote(uri).split("/")
        found = [sizes[p] for d in depths if (p := "/".join(segments[-d:])) in sizes]
        if not found:
            return None
        total += found[0]
    return total


def parquet_dataset(files: Sequence[str], schema: pa.Schema | None = None) -> ds.Dataset:
    """Data files of a table (``DeltaTable.file_uris``: local paths or URIs) as one
    pyarrow dataset, read through pyarrow's own filesystem for their scheme. Lighter than
    ``DeltaTable.to_pyarrow_dataset``, which builds a statistics expression per file
    (150 MB and seconds for a table of 4,000 files) and reads through Python: for a
    reader that picked its files already (:func:`files_matching`, a random few).
    ``schema``: the columns read (a column a file lacks reads null)."""
    filesystem = FileSystem.from_uri(files[0])[0] if files else None
    paths = [FileSystem.from_uri(f)[1] for f in files]
    return ds.dataset(paths, schema=schema, format="parquet", filesystem=filesystem)


@dataclass(frozen=True)
class OptimizeMark:
    """Where one optimization left a table, for the next to tell new files from its own:
    the table's id, the version it read, and the version of its rewrite (if any)."""

    table_id: str
    read_version: int
    rewrite_version: int | None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.table_id, "read": self.read_version, "rewrite": self.rewrite_version}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> OptimizeMark:
        return cls(str(doc["id"]), int(doc["read"]), doc.get("rewrite"))


@dataclass(frozen=True)
class Optimized:
    """What one table's optimization did."""

    table: str
    columns: tuple[str, ...]
    partitions: int
    files_before: int
    files_after: int
    bytes_after: int  # the table's data files after it
    vacuumed: int
    seconds: float
    mark: OptimizeMark
    notes: tuple[str, ...] = ()  # what it left undone, and why


def _paths(table: DeltaTable) -> set[str]:
    """The table's data files, as its log names them (relative to the table)."""
    return set(pa.table(table.get_add_actions()).column("path").to_pylist())


def _files_at(uri: str, version: int) -> set[str] | None:
    try:
        return _paths(DeltaTable(uri, version=version))
    except (DeltaError, OSError, ValueError):  # that version's log was cleaned up
        return None


def _commit_tagged(table: DeltaTable, since_version: int, tag: str) -> int | None:
    """The version of the commit after ``since_version`` carrying ``tag``: the table
    object's own version may already include others' commits made meanwhile."""
    for commit in table.history(limit=max(1, table.version() - since_version)):
        if commit.get(_OPTIMIZE_TAG) == tag:
            return int(commit["version"])
    return None


def _written_since(
    uri: str, table: DeltaTable, current: set[str], mark: OptimizeMark | None
) -> set[str] | None:
    """Of the table's ``current`` data files, those added since ``mark`` by others than
    that optimization's own rewrite; None when that cannot be told (no mark, another
    table at this URI, its log gone)."""
    if mark is None or table.metadata().id != mark.table_id:
        return None
    read = _files_at(uri, mark.read_version)
    if read is None:
        return None
    rewritten: set[str] = set()
    if mark.rewrite_version is not None:
        after = _files_at(uri, mark.rewrite_version)
        before = _files_at(uri, mark.rewrite_version - 1)
        if after is None or before is None:
            return None
        rewritten = after - before
    return current - read - rewritten


#: Custom metadata on a rewrite's commit, naming the run that made it.
_OPTIMIZE_TAG = "lfp.optimize"


def optimize_table(
    uri: str,
    columns: Sequence[str],
    row_group_rows: int,
    retention_hours: int,
    since: OptimizeMark | None = None,
    target_file_bytes: int | None = None,
) -> Optimized | None:
    """Cluster a table by its entity keys (Z-order) in every date partition holding more
    than one file, then delete data files unreferenced for ``retention_hours``.

    Ingest writes one small file per commit and partition, each holding keys from
    everywhere; after this, a partition is a few files of small row groups, each covering
    a narrow range of keys, so a read of a few entities (``lfp verify``) skips the rest by
    their statistics. Readers pinned at an older version keep their files until the
    retention has passed.

    ``since`` (the ``mark`` the previous run returned) makes it incremental: only
    partitions that received files after that run are clustered again, so a partition
    large enough to span several files is not rewritten on every run.
    ``target_file_bytes``: the rewrite's file size (delta-rs's default, 100 MB, if None)."""
    started = time.monotonic()
    table = open_table(uri)
    if table is None:
        return None
    read_version = table.version()
    actions = pa.table(table.get_add_actions(flatten=True))
    dates = actions.column(f"partition.{EVENT_DATE}").to_pylist()
    files_per_date = Counter(dates)
    crowded = sorted(d for d, n in files_per_date.items() if n > 1)
    paths = actions.column("path").to_pylist()
    fresh = _written_since(uri, table, set(paths), since)
    if fresh is not None:
        fresh_dates = {date for path, date in zip(paths, dates, strict=True) if path in fresh}
        crowded = [d for d in crowded if d in fresh_dates]
    rewrite_version = None
    if crowded:
        tag = uuid.uuid4().hex
        table.optimize.z_order(
            list(columns),
            partition_filters=[(EVENT_DATE, "in", crowded)],
            target_size=target_file_bytes,
            writer_properties=WriterProperties(max_row_group_size=row_group_rows),
            commit_properties=CommitProperties(custom_metadata={_OPTIMIZE_TAG: tag}),
        )
        rewrite_version = _commit_tagged(table, read_version, tag)
    # The log keeps naming removed files for a while: count only those still there.
    expired = table.vacuum(
        retention_hours=retention_hours, dry_run=True, enforce_retention_duration=False
    )
    files = table.to_pyarrow_dataset().filesystem
    present = [i for i in files.get_file_info(expired) if i.type != FileType.NotFound]
    table.vacuum(retention_hours=retention_hours, dry_run=False, enforce_retention_duration=False)
    return Optimized(
        table=uri,
        columns=tuple(columns),
        partitions=len(crowded),
        files_before=actions.num_rows,
        files_after=len(table.file_uris()),
        bytes_after=sum(
            int(s) for s in pa.table(table.get_add_actions()).column("size_bytes").to_pylist()
        ),
        vacuumed=len(present),
        seconds=time.monotonic() - started,
        mark=OptimizeMark(table.metadata().id, read_version, rewrite_version),
    )


def optimize_lake(
    settings: Settings,
    repo: FeatureRepo,
    tables: Collection[str] | None = None,
    *,
    compact_tiles: bool = True,
    runs_in_progress: Callable[[], Sequence[float] | None] | None = None,
) -> list[Optimized]:
    """Optimize every lake table the repo's groups read (or the ``tables`` named), each
    clustered by the join keys of the entities read from it. Where each run left each
    table is kept in ``<data_dir>/lake-optimized.json``, so the next run rewrites only
    partitions with new files (without it, every crowded partition is rewritten).

    Then the tile table, last (:func:`batch_layer.tile_ops.optimize_tiles`): compacted,
    and rid of the tiles past each group's retention at its recorded cutoff, unless
    ``compact_tiles`` is False (a run in progress), and vacuumed past the start of the
    runs in progress (``runs_in_progress``; default: read from the run history)."""
    from batch_layer.tile_ops import optimize_tiles, recorded_floors
    from batch_layer.tile_ops import runs_in_progress as runs_in_history
    from batch_layer.tiles import TILES_TABLE

    columns: dict[str, list[str]] = {}
    for group in repo.groups:
        keys = columns.setdefault(group.source.table_name, [])
        keys.extend(k for k in group.join_keys if k not in keys)
    unknown = set(tables or ()) - set(columns) - {TILES_TABLE}
    if unknown:
        raise ValueError(
            f"no source writes lake table(s) {sorted(unknown)}; known: "
            f"{sorted([*columns, TILES_TABLE])}"
        )
    marks_path = settings.data_dir / "lake-optimized.json"
    try:
        marks = json.loads(marks_path.read_text())
    except (OSError, ValueError):
        marks = {}
    done = []
    for table_name, keys in sorted(columns.items()):
        if tables and table_name not in tables:
            continue
        uri = settings.table_uri(table_name)
        result = optimize_table(
            uri,
            keys,
            settings.lake_row_group_rows,
            settings.lake_retention_hours,
            OptimizeMark.from_json(marks[uri]) if uri in marks else None,
        )
        if result is not None:
            done.append(result)
            marks[uri] = result.mark.to_json()
            _write_atomically(marks_path, json.dumps(marks, indent=1))
    tiles_uri = settings.table_uri(TILES_TABLE)
    if (not tables or TILES_TABLE in tables) and DeltaTable.is_deltatable(tiles_uri):
        started = (runs_in_progress or (lambda: runs_in_history(settings)))()
        result = optimize_tiles(
            tiles_uri,
            settings.lake_retention_hours,
            started,
            compact=compact_tiles,
            floors=recorded_floors(tiles_uri, repo.groups),
        )
        if result is not None:
            done.append(result)
    return done


def _write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` whole (a unique temporary file: two runs at once do not collide)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w") as out:
        out.write(text)
    os.replace(temporary, path)


def count_rows(uri: str) -> int:
    """Rows in the latest version of a Delta table (0 if it does not exist yet)."""
    table = open_table(uri)
    return 0 if table is None else table.to_pyarrow_dataset().count_rows()


def logged_rows(table: DeltaTable) -> int | None:
    """Rows in the table's version, from its log's statistics: no data file is read
    (None: a file without a row count)."""
    counts = table.get_add_actions(flatten=True).column("num_records").to_pylist()
    return None if None in counts else sum(counts)


# What changed in a table between two versions (incremental batch runs) ------------------

#: How many commit files of a table are read at once (object stores: one request each).
_LOG_READERS = 8


class ChangedFile(BaseModel):
    """A data file a ``dataChange`` add put into a table, as its log describes it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str  # relative to the table, decoded
    event_date: str | None
    size: int
    rows: int | None
    min_time: int | None  # of the event-time column (None: no statistics)
    max_time: int | None
    version: int  # the commit that added it
    #: A later rewrite in the range (optimize) moved its rows into other files: it is no
    #: longer in the table at ``until``, but still in storage until vacuumed.
    moved: bool


class RemovedFile(BaseModel):
    """A data file a ``dataChange`` remove took out of a table: rows were deleted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    event_date: str | None
    size: int | None
    version: int


class LakeChanges(BaseModel):
    """The rows a table gained and lost in the versions ``(since, until]``, by file:
    ``added`` holds exactly the rows appended (late ones too, in old date partitions),
    ``removed`` the files whose rows were deleted. ``moved`` names every file a rewrite
    (``dataChange: false``) took out in the range: its rows are in other files now."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    table_id: str
    since: int
    until: int
    added: tuple[ChangedFile, ...]
    removed: tuple[RemovedFile, ...]
    moved: tuple[str, ...]
    rewrites: int  # commits in the range that only rearranged rows

    @property
    def append_only(self) -> bool:
        """No row of ``since`` was deleted: every state of ``until`` is one of ``since``
        plus the appended rows."""
        return not self.removed


def table_id_tag(table_id: str) -> int:
    """A table id (a UUID) as a non-negative 63-bit number, to be recorded as a Delta app
    transaction version next to the state that read the table."""
    return int.from_bytes(hashlib.sha256(table_id.encode()).digest()[:8], "big") >> 1


def _commit_actions(filesystem: FileSystem, log: str, version: int) -> list[dict] | None:
    try:
        with filesystem.open_input_stream(f"{log}/{version:020d}.json") as stream:
            text = stream.read().decode()
    except FileNotFoundError:
        return None
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _time_stats(stats: str | None, time_column: str) -> tuple[int | None, int | None, int | None]:
    """(rows, min, max of the time column) of an add action's statistics."""
    if not stats:
        return None, None, None
    doc = json.loads(stats)
    low = (doc.get("minValues") or {}).get(time_column)
    high = (doc.get("maxValues") or {}).get(time_column)
    rows = doc.get("numRecords")
    return (
        None if rows is None else int(rows),
        None if low is None else int(low),
        None if high is None else int(high),
    )


def lake_changes(
    uri: str,
    since: int,
    until: int,
    *,
    time_column: str = "event_time",
    expected_tag: int | None = None,
) -> LakeChanges | None:
    """What the commits ``(since, until]`` of a table changed, read from their JSON
    commit files (through pyarrow's filesystem: local paths and object stores alike).

    Actions with ``dataChange: false`` only rearrange rows (``optimize``, Z-order): they
    add no rows, and the files they remove are listed in ``moved``. None when it cannot
    be told: a commit file is gone (the log was cleaned up), the table was recreated
    (another table id in the range, or not the ``expected_tag`` recorded with the state
    that read ``since``: :func:`table_id_tag`), or ``until`` is not a version of it. The
    caller then recomputes from the whole table."""
    if until < since:
        return None
    try:
        table_id = DeltaTable(uri, version=until).metadata().id
    except (DeltaError, OSError, ValueError):
        return None
    if expected_tag is not None and table_id_tag(table_id) != expected_tag:
        return None
    filesystem, root = FileSystem.from_uri(uri)
    log = f"{root.rstrip('/')}/_delta_log"
    versions = range(since + 1, until + 1)
    with ThreadPoolExecutor(_LOG_READERS) as pool:
        commits = list(pool.map(lambda v: _commit_actions(filesystem, log, v), versions))
    added: dict[str, ChangedFile] = {}
    removed: list[RemovedFile] = []
    moved: list[str] = []
    rewrites = 0
    for version, actions in zip(versions, commits, strict=True):
        if actions is None:
            return None
        rearranged = False
        for action in actions:
            if "metaData" in action and action["metaData"].get("id") != table_id:
                return None
            if "add" in action and action["add"].get("dataChange", True):
                add = action["add"]
                rows, low, high = _time_stats(add.get("stats"), time_column)
                path = unquote(add["path"])
                added[path] = ChangedFile(
                    path=path,
                    event_date=(add.get("partitionValues") or {}).get(EVENT_DATE),
                    size=int(add["size"]),
                    rows=rows,
                    min_time=low,
                    max_time=high,
                    version=version,
                    moved=False,
                )
            elif "add" in action:
                rearranged = True
            elif "remove" in action:
                remove = action["remove"]
                path = unquote(remove["path"])
                if remove.get("dataChange", True):
                    removed.append(
                        RemovedFile(
                            path=path,
                            event_date=(remove.get("partitionValues") or {}).get(EVENT_DATE),
                            size=remove.get("size"),
                            version=version,
                        )
                    )
                else:
                    rearranged = True
                    moved.append(path)
                    if path in added:
                        added[path] = added[path].model_copy(update={"moved": True})
        rewrites += rearranged
    return LakeChanges(
        table_id=table_id,
        since=since,
        until=until,
        added=tuple(sorted(added.values(), key=lambda f: (f.version, f.path))),
        removed=tuple(removed),
        moved=tuple(moved),
        rewrites=rewrites,
    )


class DeltaFiles(BaseModel):
    """The files a run reads for the rows a table gained between two states ``(since,
    start)`` and ``(until, end)`` (version, time cutoff): the rows before ``end`` of the
    files appended since, and the rows in ``[start, end)`` of the files of ``since`` (the
    band). The two sets of files are disjoint, and so are their rows: a rewrite in between
    moves rows, so the band is read from the old version's files, never the new one's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    new: tuple[str, ...]  # URIs
    band: tuple[str, ...]
    bytes: int
    rows: int | None = None  # of the files, from the log's statistics (None: unknown)
    #: The date partition of each file of ``new`` (None: not recorded).
    new_dates: tuple[str, ...] | None = None
    #: The size and rows of each file of ``new`` (None: not kept; see :meth:`of_dates`).
    new_bytes: tuple[int, ...] | None = None
    new_rows: tuple[int | None, ...] | None = None

    @property
    def files(self) -> int:
        return len(self.new) + len(self.band)

    def of_dates(self, dates: Iterable[str]) -> DeltaFiles:
        """The files of ``new`` on these dates alone (needs the files' dates, sizes and
        rows)."""
        if self.new_dates is None or self.new_bytes is None or self.new_rows is None:
            raise ValueError("the files' dates, sizes or rows were not recorded")
        wanted = set(dates)
        chosen = [
            (uri, date, size, rows)
            for uri, date, size, rows in zip(
                self.new, self.new_dates, self.new_bytes, self.new_rows, strict=True
            )
            if date in wanted
        ]
        counts = [rows for *_, rows in chosen]
        return DeltaFiles(
            new=tuple(c[0] for c in chosen),
            band=(),
            bytes=sum(c[2] for c in chosen),
            rows=None if None in counts else sum(c for c in counts if c is not None),
            new_dates=tuple(c[1] for c in chosen),
            new_bytes=tuple(c[2] for c in chosen),
            new_rows=tuple(counts),
        )


def _overlaps(low: int | None, high: int | None, start: int, end: int) -> bool:
    """May a file whose times span ``[low, high]`` (None: unknown) hold one in
    ``[start, end)``?"""
    return (low is None or low < end) and (high is None or high >= start)


def _date_span(date: str | None) -> tuple[int | None, int | None]:
    if date is None:
        return None, None
    try:
        day = datetime.strptime(date, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        return None, None
    first = int(day.timestamp() * 1000)
    return first, first + 86_400_000 - 1


def data_file_uri(table_uri: str, path: str) -> str:
    """The URI of a data file from its table's URI (or local path) and its decoded path
    relative to the table, in the form ``DeltaTable.file_uris`` gives (local files as
    plain paths)."""
    root = table_uri.rstrip("/")
    if root.startswith("file://"):
        root = unquote(root[len("file://") :])
    elif "://" not in root:
        root = os.path.abspath(root)
    return f"{root}/{path}"


def delta_files(
    uri: str,
    changes: LakeChanges,
    start_ms: int,
    end_ms: int,
    *,
    time_column: str = "event_time",
) -> DeltaFiles | None:
    """Which files hold the rows with time before ``end_ms`` that a state covering version
    ``changes.since`` and the times before ``start_ms`` lacks: the files added since with
    a row before ``end_ms``, and the files of ``since`` that may hold a row in
    ``[start_ms, end_ms)`` (by Delta statistics and partition date). The caller still
    filters the rows by time. None when a file moved by a rewrite since was vacuumed
    already (or ``since`` cannot be loaded): recompute from the whole table."""
    if not changes.append_only:
        raise ValueError("rows were deleted: the changes are not the new rows alone")
    new = [
        f.path
        for f in changes.added
        if _overlaps(f.min_time, f.max_time, -(2**63), end_ms)
        and _overlaps(*_date_span(f.event_date), -(2**63), end_ms)
    ]
    chosen = set(new)
    size = sum(f.size for f in changes.added if f.path in chosen)
    band: list[str] = []
    if changes.since >= 0:
        try:
            old = DeltaTable(uri, version=changes.since)
        except (DeltaError, OSError, ValueError):
            return None
        actions = pa.table(old.get_add_actions(flatten=True))

        def column(name: str) -> list[Any]:
            if name in actions.column_names:
                return actions.column(name).to_pylist()
            return [None] * actions.num_rows

        for path, nbytes, date, low, high in zip(
            actions.column("path").to_pylist(),
            actions.column("size_bytes").to_pylist(),
            column(f"partition.{EVENT_DATE}"),
            column(f"min.{time_column}"),
            column(f"max.{time_column}"),
            strict=True,
        ):
            if _overlaps(low, high, start_ms, end_ms) and _overlaps(
                *_date_span(date), start_ms, end_ms
            ):
                band.append(unquote(path))
                size += int(nbytes)
    uris = {path: data_file_uri(uri, path) for path in [*new, *band]}
    gone = set(changes.moved) & set(uris)
    if gone:
        filesystem, _ = FileSystem.from_uri(uris[min(gone)])
        paths = [FileSystem.from_uri(uris[p])[1] for p in sorted(gone)]
        if any(i.type == FileType.NotFound for i in filesystem.get_file_info(paths)):
            return None
    return DeltaFiles(
        new=tuple(sorted(uris[p] for p in new)),
        band=tuple(sorted(uris[p] for p in band)),
        bytes=size,
    )
