"""What a batch run does per feature group: advance its stored tiles and documents
incrementally where the stored state allows it, else rebuild them from the raw events
(design of issue 32, section 4.2).

A group runs **incrementally** when its tiles in ``_lfp_tiles`` were built under its
current tile spec, the serving view is the one built from them by the run just before
this one, its definitions and horizon are those of the serving view, the lake only grew
since (its Delta log says which files are new). It then reads only the new events (the
files added since, and the rows of older files between the two cutoffs), rewrites the tile
partitions those touch and the documents of the entities whose served values can change.
A session group whose new events fall before the ``5m`` tiles it keeps merges them into
those days' session rows (``feature_core.tiles.merge_session_day``); it reads the date
partitions of only the days where one joins the last session to an earlier one (the
row keeps no partials of that), as the reference model does.

When the tiles are sound but the served documents cannot be advanced (no serving view,
or not the one built from the tiles: Redis lost or restored its data; a later run did
not finish; definitions or the horizon changed without changing the tile spec;
``--reassemble``), it is **reassembled**: the tiles advance as in an incremental run (the
same reads), and every entity's document is assembled from its tiles, the group's old
documents swept. Otherwise it is **rebuilt**: every tile and document from the snapshot,
its old documents swept. The reason is recorded with the run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from batch_layer.assembly import fine_floor
from batch_layer.lake import (
    DeltaFiles,
    LakeChanges,
    data_file_uri,
    delta_files,
    lake_changes,
    open_table,
    table_id_tag,
)
from batch_layer.tiles import GroupState, LakeState, TileTableState, spec_tag
from feature_core.definitions import FeatureGroup
from feature_core.merge import BatchPointer
from feature_core.settings import Settings
from feature_core.sources import EVENT_DATE, EventSource, quoted
from feature_core.tiles import tile_spec_fingerprint

INCREMENTAL = "incremental"
#: Tiles advanced as incrementally, every document assembled from them (none advanced).
REASSEMBLE = "reassemble"
REBUILD = "rebuild"


@dataclass(frozen=True)
class GroupPlan:
    """How one group runs, why it is not incremental (None: it is), and unless it is
    rebuilt the state it starts from and the files holding its new events."""

    mode: str
    reason: str | None = None
    state: GroupState | None = None
    files: DeltaFiles | None = None
    #: Session groups: every file of the dates new events fall on before the ``5m``
    #: tiles kept (:func:`late_days`; None: no such event).
    days: DeltaFiles | None = None
    #: A rebuild without tiles: recomputed window by window, the group's stored tiles
    #: and state left as they are (none wanted, or they are ahead of this run's cutoff
    #: or lake version and still serve the runs after it).
    window_by_window: bool = False


@dataclass(frozen=True)
class RunContext:
    """What every group's plan is decided against."""

    requested: str | None  # "full", "reassemble" or None
    incremental: bool  # LFP_BATCH_INCREMENTAL
    tiles: TileTableState
    pointer: BatchPointer | None  # the serving view
    version: int  # this run's view version
    serving: int  # the serving view's version (0: none)
    cutoff: int
    horizon_ms: int
    pinned: Mapping[str, int | None]  # lake table -> version this run reads
    #: Lake table -> events in the version read (None: its log does not say), for the
    #: tables LFP_BATCH_TILES_MIN_EVENTS is checked on.
    rows: Mapping[str, int | None] = field(default_factory=dict)
    tiles_min_events: int = 0  # LFP_BATCH_TILES_MIN_EVENTS

    def too_small(self, table: str) -> str | None:
        """Why ``table`` is too small for tiles to pay (None: it is not, or unknown)."""
        rows = self.rows.get(table)
        if rows is None or rows >= self.tiles_min_events:
            return None
        return (
            f"{table} holds {rows:,} events, under LFP_BATCH_TILES_MIN_EVENTS="
            f"{self.tiles_min_events:,} (window by window, the tiles kept)"
        )


def plan_group(settings: Settings, group: FeatureGroup, run: RunContext) -> GroupPlan:
    """Incremental, reassemble or rebuild, with the first reason that rules out the
    mode before it: the tiles are checked first (unusable: rebuild), then whether the
    served documents can be advanced (not: reassemble)."""
    table = group.source.table_name
    small = run.too_small(table) if run.incremental else None
    if run.requested == "full":
        if small is not None:
            return GroupPlan(REBUILD, f"--full; {small}", window_by_window=True)
        return GroupPlan(REBUILD, "--full")
    if not run.incremental:
        return GroupPlan(REBUILD, "LFP_BATCH_INCREMENTAL=false", window_by_window=True)
    reading = run.pinned.get(table)
    if reading is None:
        # Nothing to tile, and no lake version a state could record.
        return GroupPlan(REBUILD, f"no lake table {table} yet", window_by_window=True)
    if small is not None:
        return GroupPlan(REBUILD, small, window_by_window=True)
    state = run.tiles.groups.get(group.name)
    if state is None:
        return GroupPlan(REBUILD, "no stored tiles")
    if state.spec_tag != spec_tag(tile_spec_fingerprint(group)):
        return GroupPlan(REBUILD, "tile spec changed (columns, keys, filters or series)")
    if run.cutoff < state.cutoff_ms:
        return GroupPlan(
            REBUILD,
            "cutoff before the stored tiles' cutoff (window by window, the tiles kept)",
            window_by_window=True,
        )
    stored = state.lakes.get(table)
    if stored is None:
        return GroupPlan(REBUILD, f"no lake version of {table} recorded")
    if reading < stored.version:
        return GroupPlan(
            REBUILD,
            f"{table} v{reading} is older than the tiles' v{stored.version} (window by "
            "window, the tiles kept)",
            window_by_window=True,
        )
    uri = settings.table_uri(table)
    changes = lake_changes(
        uri,
        stored.version,
        reading,
        time_column=group.source.event_time,
        expected_tag=stored.table_tag,
    )
    if changes is None:
        return GroupPlan(REBUILD, f"{table}'s log since v{stored.version} is gone or recreated")
    if not changes.append_only:
        return GroupPlan(REBUILD, f"rows were deleted from {table}")
    files = delta_files(
        uri, changes, state.cutoff_ms, run.cutoff, time_column=group.source.event_time
    )
    if files is None:
        return GroupPlan(REBUILD, f"a file of {table} rewritten since v{stored.version} is gone")
    days = None
    floor = fine_floor(group, state.cutoff_ms)
    if floor is not None:
        days = late_days(uri, changes, files, floor, reading)
    reason = _not_advanceable(group, run, state)
    return GroupPlan(INCREMENTAL if reason is None else REASSEMBLE, reason, state, files, days)


def _not_advanceable(group: FeatureGroup, run: RunContext, state: GroupState) -> str | None:
    """Why the served documents of ``group`` cannot be advanced, so every document is
    reassembled from its tiles (None: they can)."""
    if run.requested == "reassemble":
        return "--reassemble"
    pointer = run.pointer
    if pointer is None:
        return "serving view lost (Redis flushed or emptied)"
    if pointer.version != state.view_version:
        return (
            f"the serving view v{pointer.version} is not the tiles' v{state.view_version} "
            "(a run at an earlier cutoff, or Redis restored)"
        )
    if run.version != run.serving + 1:
        return f"a run after v{run.serving} did not finish"
    fingerprints = pointer.view_fingerprints or {}
    if fingerprints.get(group.name) != group.view_fingerprint:
        return "feature definitions changed (same tiles)"
    if pointer.horizon_ms != run.horizon_ms:
        return "LFP_BATCH_HORIZON_S changed"
    return None


def late_days(
    uri: str, changes: LakeChanges, files: DeltaFiles, floor: int, version: int
) -> DeltaFiles | None:
    """The files of the table at ``version`` holding every event of the dates that new
    events (of ``files.new``) fall on before ``floor``, the first day a session group's
    state keeps ``5m`` tiles of (None: no such event). Those days' session rows are
    derived from all of their events (:func:`batch_layer.assembly.advance`). By date
    partition; a new file with no partition date makes it every file."""
    new = set(files.new)
    late = [
        f
        for f in changes.added
        if data_file_uri(uri, f.path) in new and (f.min_time is None or f.min_time < floor)
    ]
    if not late:
        return None
    dates = {f.event_date for f in late}
    table = open_table(uri, version)
    if table is None:
        raise ValueError(f"{uri} v{version} is gone: it was read a moment ago")
    actions = pa.table(table.get_add_actions(flatten=True))
    partition = f"partition.{EVENT_DATE}"
    if partition in actions.column_names:
        on = actions.column(partition).to_pylist()
    else:
        on = [None] * actions.num_rows
    chosen = [
        (data_file_uri(uri, unquote(path)), int(size), rows, date)
        for path, size, rows, date in zip(
            actions.column("path").to_pylist(),
            actions.column("size_bytes").to_pylist(),
            actions.column("num_records").to_pylist(),
            on,
            strict=True,
        )
        if None in dates or date is None or date in dates
    ]
    counts = [rows for _, _, rows, _ in chosen]
    # Rows of days before the floor are all before the cutoff: read, every one.
    dated = None not in dates and None not in on
    chosen.sort()
    return DeltaFiles(
        new=tuple(u for u, _, _, _ in chosen),
        band=(),
        bytes=sum(s for _, s, _, _ in chosen),
        rows=sum(counts) if dated and None not in counts else None,
        new_dates=tuple(d for _, _, _, d in chosen) if dated else None,
        new_bytes=tuple(s for _, s, _, _ in chosen),
        new_rows=tuple(counts),
    )


#: Key types whose text (the tiles' keys) converts back to the column's values exactly.
_PUSHED_KEY_TYPES = {"string": str, "integer": int}


def late_day_events(
    spark: SparkSession,
    source: EventSource,
    join_keys: Sequence[str],
    files: DeltaFiles,
    cutoff: int,
    keys_by_date: Mapping[str, Sequence[Sequence[str]]],
) -> DataFrame:
    """The lake's rows before ``cutoff`` of the late days in ``files`` (see
    :func:`late_days`) that may belong to the entities in ``keys_by_date`` (date -> the
    join keys, as text, of the entities with late events on it): the files of the dates
    some entity needs, in one scan, filtered by the entities' keys before any other
    work on the rows (and by Parquet on its row groups: as equalities up to
    :data:`~batch_layer.spark.PARQUET_IN_VALUES_MAX` keys a column, one min-max range
    beyond). A superset: the caller matches rows to (entity, day).
    Needs the files' dates (``files.new_dates``)."""
    if files.new_dates is None:
        raise ValueError("the late days' files have no recorded dates: read them whole")
    schema = source.spark_ddl()
    needed = {date for date, keys in keys_by_date.items() if keys}
    uris = [u for u, d in zip(files.new, files.new_dates, strict=True) if d in needed]
    if not uris:
        return spark.createDataFrame([], schema)
    frame = spark.read.schema(schema).parquet(*uris)
    frame = frame.where(f"{quoted(source.event_time)} < {cutoff}")
    for i, name in enumerate(join_keys):
        key_field = source.by_name.get(name)
        convert = None if key_field is None else _PUSHED_KEY_TYPES.get(key_field.type)
        values = {key[i] for keys in keys_by_date.values() for key in keys}
        if convert is not None:
            frame = frame.where(F.col(name).isin(sorted(convert(v) for v in values)))
    return frame


def new_events(
    spark: SparkSession, source: EventSource, files: DeltaFiles, before: int, after: int
) -> DataFrame:
    """The events a state at ``after`` adds to one at ``before``: rows of the files
    added since dated before ``after``, and rows of the older files in ``[before, after)``."""
    time = quoted(source.event_time)
    schema = source.spark_ddl()
    frames = []
    if files.new:
        frames.append(spark.read.schema(schema).parquet(*files.new).where(f"{time} < {after}"))
    if files.band:
        band = spark.read.schema(schema).parquet(*files.band)
        frames.append(band.where(f"{time} >= {before} AND {time} < {after}"))
    if not frames:
        return spark.createDataFrame([], schema)
    union = frames[0]
    for frame in frames[1:]:
        union = union.unionByName(frame)
    return union


def lake_state(settings: Settings, group: FeatureGroup, version: int | None) -> LakeState | None:
    """What the new tiles of ``group`` cover of its source table (None: no table)."""
    if version is None:
        return None
    table = open_table(settings.table_uri(group.source.table_name), version)
    if table is None:
        return None
    return LakeState(version=version, table_tag=table_id_tag(table.metadata().id))


def run_mode(modes: Sequence[str]) -> str:
    """The run's mode from its groups': incremental, reassemble, full (every group
    rebuilt, or none), or mixed (groups in different modes)."""
    if not modes or all(m == REBUILD for m in modes):
        return "full"
    if len(set(modes)) == 1:
        return modes[0]
    return "mixed"


def pointer_json(pointer: BatchPointer) -> str:
    """The pointer as the tile commit records it (for a roll-forward)."""
    data: dict[str, Any] = pointer.to_json()
    return json.dumps(data, separators=(",", ":"), sort_keys=True)
