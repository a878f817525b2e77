"""Incremental batch tiles: what the lake keeps per feature group, and how batch views are
assembled and advanced from it, in plain Python (the engine-free model the batch job
shares; design of issue 32).

A group's events are kept as tiles, per *series*: hop series (``5m``, ``1h``, ``1d``:
the canonical partials of every tile column over ``[start, start + width)``, cut at the
state's cutoff ``B``) and, per session window, session-day rows (``s<gap>``: one per entity
and day, see :class:`SessionDay`). Tiles of a state at ``B`` hold the events before ``B``;
a new state is the old one merged with the tiles of the new events (``Primitive.merge``,
commutative monoids: exact for every kind, with no subtraction).

A batch document (``local_views.batch_doc``) is assembled from tiles alone
(:func:`assemble_doc`): tail buckets are hop tiles as they are, the collapsed part is a
*sawtooth* cover of ``[collapsed_start, B)`` by the coarsest aligned tiles, the lifetime
window merges every ``1d`` tile and a session window walks back over rows by their first
and last event times (:func:`last_session`). :func:`advance_doc` moves a document from
``B0`` to ``B1``: the collapsed part additively (old part plus the new events' tiles)
unless an edge moved past the entity's tiles, then re-merged from tiles.

:class:`LocalLake` and :class:`LocalTileStore` are the reference of the whole loop (lake
commits, the events a run reads, tiles, the entities it rewrites, retention) that the
property tests drive and the engine is held to.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from feature_core.aggregations import normalize
from feature_core.corrections import reach
from feature_core.definitions import FeatureGroup, batch_partials
from feature_core.keys import entity_id
from feature_core.local_views import event_ir
from feature_core.windows import (
    COLLAPSED,
    DAY_MS,
    FINEST_HOP_MS,
    HOUR_MS,
    Window,
    batch_layout,
    edge_bands,
    floor_to,
    format_duration,
)

Partials = list[Any]
#: One entity's tiles: series -> tile start (a day start for session-day rows) -> its
#: partials (hop series) or :class:`SessionDay` (session series).
EntityTiles = Mapping[str, Mapping[int, Any]]
#: A batch document: window -> bucket (tile start as text, or ``"c"``) -> partials.
Doc = dict[str, dict[str, list[Any]]]

SESSION_SERIES_PREFIX = "s"
#: What a session-day row holds (:class:`SessionDay`); rows stored in another format are
#: rebuilt (2: the last event before the last fragment, which late events merge by).
SESSION_ROW_FORMAT = "session-rows:2"


# --- which series a group keeps --------------------------------------------------------


def hop_widths(group: FeatureGroup) -> tuple[int, ...]:
    """The widths of the group's hop series, finest first: each sliding window's hop,
    always ``1d`` (lifetime windows and the far part of every collapsed range), ``1h``
    whenever ``5m`` is kept (a sawtooth step between them), and ``5m`` for sessions."""
    widths = {DAY_MS}
    for window in group.windows:
        if window.is_session:
            widths.add(FINEST_HOP_MS)
        elif not window.is_lifetime:
            widths.add(window.hop_ms)
    if FINEST_HOP_MS in widths:
        widths.add(HOUR_MS)
    return tuple(sorted(widths))


@functools.cache
def hop_series(width_ms: int) -> str:
    return format_duration(width_ms)


def session_series(gap_ms: int) -> str:
    return f"{SESSION_SERIES_PREFIX}{format_duration(gap_ms)}"


def tile_series(group: FeatureGroup) -> tuple[str, ...]:
    """Every series the group stores: hop series finest first, then session series."""
    gaps = sorted({w.gap_ms for w in group.windows if w.gap_ms is not None})
    return (*(hop_series(w) for w in hop_widths(group)), *(session_series(g) for g in gaps))


def series_reach(group: FeatureGroup) -> dict[str, int | None]:
    """How far before the cutoff each series is read, in ms (``None``: all history). A
    sliding window ``w`` reads every series at least as wide as its hop from
    ``floor(B - w, hop)`` on; lifetime windows read all ``1d`` tiles, sessions the ``5m``
    tiles of two days and all session-day rows. A series nothing reads keeps one day."""
    widths = hop_widths(group)
    result: dict[str, int | None] = {hop_series(w): 0 for w in widths}
    for window in group.windows:
        if window.is_lifetime:
            result[hop_series(DAY_MS)] = None
        elif window.is_session:
            assert window.gap_ms is not None
            result[session_series(window.gap_ms)] = None
            current = result[hop_series(FINEST_HOP_MS)]
            if current is not None:
                result[hop_series(FINEST_HOP_MS)] = max(current, 2 * DAY_MS)
        else:
            assert window.length_ms is not None
            span = window.length_ms + window.hop_ms
            for width in widths:
                current = result[hop_series(width)]
                if width >= window.hop_ms and current is not None:
                    result[hop_series(width)] = max(current, span)
    return result


def retention_floor(group: FeatureGroup, cutoff: int) -> dict[str, int | None]:
    """Per series, the oldest tile start (a day start: tiles are dropped by date
    partition) a state at ``cutoff`` keeps; ``None``: everything. Monotone in the
    cutoff, so nothing dropped is read by a later state."""
    floors: dict[str, int | None] = {}
    for series, span in series_reach(group).items():
        floors[series] = None if span is None else floor_to(cutoff - span, DAY_MS) - DAY_MS
    return floors


def tile_spec_fingerprint(group: FeatureGroup) -> str:
    """What the group's stored tiles hold, as 12 hex digits: source table, event time,
    join keys, filters, tile columns in order, series and how far back each is kept.
    Tiles stored under another fingerprint cannot serve this group as they are."""
    parts = [
        group.source.table_name,
        group.event_time,
        list(group.join_keys),
        [[f.column, list(f.values)] for f in group.filters],
        [c.key for c in group.tile_columns],
        list(tile_series(group)),
        sorted(series_reach(group).items(), key=lambda item: item[0]),
    ]
    if any(w.is_session for w in group.windows):
        parts.append(SESSION_ROW_FORMAT)
    return hashlib.sha256(json.dumps(parts, default=repr).encode()).hexdigest()[:12]


# --- merging tiles ---------------------------------------------------------------------


def merge_tile_rows(group: FeatureGroup, rows: Iterable[Sequence[Any] | None]) -> Partials | None:
    """Canonical partials of several tile rows (``None`` rows skipped; ``None`` when
    there are none): each column by its primitive's merge."""
    present = [row for row in rows if row is not None]
    if not present:
        return None
    if len(present) == 1:
        return list(present[0])
    return [p.merge_many([row[i] for row in present]) for i, p in enumerate(group.primitives)]


def event_tiles(
    group: FeatureGroup, events: Iterable[Mapping[str, Any]]
) -> dict[str, dict[str, dict[int, Partials]]]:
    """Tiles of raw events per entity, for every hop series: ``{entity: {series: {start:
    partials}}}``. Events the group filters out or without a join key are skipped."""
    irs: dict[str, dict[str, dict[int, list[Partials]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    widths = hop_widths(group)
    for event, entity in accepted(group, events):
        time = int(event[group.event_time])
        ir = list(event_ir(group, event))
        for width in widths:
            irs[entity][hop_series(width)][floor_to(time, width)].append(ir)
    return {
        entity: {
            series: {start: merge_tile_rows(group, rows) or [] for start, rows in tiles.items()}
            for series, tiles in by_series.items()
        }
        for entity, by_series in irs.items()
    }


def accepted(
    group: FeatureGroup, events: Iterable[Mapping[str, Any]]
) -> Iterable[tuple[Mapping[str, Any], str]]:
    """The events the group reads, with their entity id."""
    for event in events:
        key = [event.get(k) for k in group.join_keys]
        if None not in key and group.accepts(event):
            yield event, entity_id(key)


# --- sessions --------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionDay:
    """One entity's events of one day, as a session walk needs them: the day's first and
    last event times, whether the day holds a gap (two consecutive events ``gap`` or more
    apart), the start of its last fragment (after its last gap; the first event when
    there is none), the partials of that fragment, and the last event before it (None
    without a gap): with it, events arriving late for the day merge into the row
    (:func:`merge_session_day`) unless they join the last fragment to an earlier one."""

    first_ms: int
    last_ms: int
    frag_start_ms: int
    has_gap: bool
    partials: Partials
    prev_last_ms: int | None

    def to_json(self) -> list[Any]:
        return [
            self.first_ms,
            self.last_ms,
            self.frag_start_ms,
            self.has_gap,
            self.partials,
            self.prev_last_ms,
        ]

    @classmethod
    def from_json(cls, group: FeatureGroup, raw: Sequence[Any]) -> SessionDay:
        first, last, frag, gap, partials, prev = raw
        return cls(
            int(first),
            int(last),
            int(frag),
            bool(gap),
            list(normalize(group.primitives, partials)),
            None if prev is None else int(prev),
        )


class Piece(NamedTuple):
    """A run of events no gap splits: its first and last event times, its partials, and
    whether a gap precedes it within the row it came from (a walk stops after it)."""

    first: int
    last: int
    partials: Sequence[Any]
    closed: bool = False


def _walk(pieces: Sequence[Piece], gap_ms: int) -> tuple[list[Piece], bool]:
    """The pieces of the last session (newest first) of time-ordered ``pieces``, and
    whether a gap ended the walk before the oldest piece."""
    chosen: list[Piece] = []
    following: int | None = None
    for piece in reversed(pieces):
        if following is not None and following - piece.last >= gap_ms:
            return chosen, True
        chosen.append(piece)
        if piece.closed:
            return chosen, True
        following = piece.first
    return chosen, False


def tile_pieces(group: FeatureGroup, tiles: Mapping[int, Sequence[Any]]) -> list[Piece]:
    """``5m`` tiles as pieces (a gap is at least 5 minutes, so no tile holds one)."""
    pieces = (tile_piece(group, p) for _, p in sorted(tiles.items()))
    return [piece for piece in pieces if piece is not None]


def tile_piece(
    group: FeatureGroup, partials: Any, times: tuple[Any, Any] | None = None
) -> Piece | None:
    """A ``5m`` tile as a session piece (None: it holds no event). Its first and last
    event times are read from its canonical partials, or given as ``times`` when the
    partials are in another form (converted only if a session row needs them)."""
    if times is None:
        assert group.session_time_indices is not None
        first_at, last_at = group.session_time_indices
        times = partials[first_at], partials[last_at]
    first, last = times
    return None if last is None else Piece(int(first), int(last), partials)


def event_pieces(group: FeatureGroup, events: Iterable[Mapping[str, Any]]) -> list[Piece]:
    """Raw events as pieces, in time order (a day before the ``5m`` retention)."""
    time_column = group.event_time
    pieces = [
        Piece(int(e[time_column]), int(e[time_column]), list(event_ir(group, e))) for e in events
    ]
    return sorted(pieces, key=lambda piece: piece.first)


def session_day(
    group: FeatureGroup,
    gap_ms: int,
    pieces: Sequence[Piece],
    convert: Callable[[Any], Partials] | None = None,
) -> SessionDay | None:
    """The session-day row of one entity and day from its pieces in time order (the
    day's ``5m`` tiles, or its raw events). With ``convert``, the pieces hold partials
    in another form and only those of the last fragment's pieces are converted (a
    rebuild derives every day's row, and reads little else of the older tiles)."""
    if not pieces:
        return None
    chosen, has_gap = _walk(pieces, gap_ms)
    rows = [p.partials for p in chosen]
    partials = merge_tile_rows(group, rows if convert is None else map(convert, rows))
    assert partials is not None
    before = pieces[: len(pieces) - len(chosen)]
    return SessionDay(
        min(p.first for p in pieces),
        max(p.last for p in pieces),
        chosen[-1].first,
        has_gap,
        partials,
        max(p.last for p in before) if has_gap else None,
    )


def merge_session_day(
    group: FeatureGroup, gap_ms: int, row: SessionDay | None, pieces: Sequence[Piece]
) -> SessionDay | None:
    """The session-day row of a day's events and ``pieces`` (more events of the day, as
    ``5m`` tiles or raw events), from the day's row alone. None when a piece joins the
    last fragment to an earlier one (it falls within ``gap`` of both): the row does not
    keep the earlier fragment's partials, the day's events are needed."""
    ordered = sorted(pieces, key=lambda piece: piece.first)
    if row is None:
        return session_day(group, gap_ms, ordered)

    def combine(a: Partials, b: Sequence[Any]) -> Partials:
        merged = merge_tile_rows(group, [a, b])
        assert merged is not None
        return merged

    return _fold_session_day(row, ordered, gap_ms, combine)


def needs_day_events(row: SessionDay | None, pieces: Sequence[Piece], gap_ms: int) -> bool:
    """Whether :func:`merge_session_day` needs the day's events for these pieces: by the
    event times alone (a driver decides which days to read before any partials)."""
    if row is None:
        return False
    ordered = sorted(pieces, key=lambda piece: piece.first)
    return _fold_session_day(row, ordered, gap_ms, lambda a, _: a) is None


def _fold_session_day(
    row: SessionDay,
    ordered: Sequence[Piece],
    gap_ms: int,
    combine: Callable[[Partials, Sequence[Any]], Partials],
) -> SessionDay | None:
    """Adds time-ordered pieces (each a run of events no gap splits) to a day's row one
    at a time; see :func:`merge_session_day`."""
    first, last, start = row.first_ms, row.last_ms, row.frag_start_ms
    has_gap, partials, prev = row.has_gap, row.partials, row.prev_last_ms
    for piece in ordered:
        a, b = piece.first, piece.last
        if a > last and a - last >= gap_ms:  # a new last fragment
            prev, start, partials, has_gap = last, a, list(piece.partials), True
        elif a >= start or start - b < gap_ms:  # in, after or just before the last one
            if a < start:
                if has_gap and (prev is None or a - prev < gap_ms):
                    return None  # joins an earlier fragment: its partials are not kept
                start = a
            partials = combine(partials, piece.partials)
        else:  # before the last fragment, a gap apart from it
            if has_gap and prev is None:
                return None
            prev = b if prev is None else max(prev, b)
            has_gap = True
        first, last = min(first, a), max(last, b)
    return SessionDay(first, last, start, has_gap, list(partials), prev)


def recent_start(cutoff: int) -> int:
    """Session walks read ``5m`` tiles from here on (yesterday and today), and
    session-day rows before."""
    return floor_to(cutoff, DAY_MS) - DAY_MS


def last_session(
    group: FeatureGroup, gap_ms: int, tiles: EntityTiles, cutoff: int
) -> Partials | None:
    """Partials of the entity's last session before ``cutoff`` however old it is: the
    recent ``5m`` tiles, then the days' last fragments back to the first gap."""
    recent = recent_start(cutoff)
    days = tiles.get(session_series(gap_ms), {})
    pieces = [
        Piece(
            row.frag_start_ms if row.has_gap else row.first_ms,
            row.last_ms,
            row.partials,
            row.has_gap,
        )
        for day, row in sorted(days.items())
        if day < recent
    ]
    # By key first: a caller's tiles may decode their partials only when read.
    finest = tiles.get(hop_series(FINEST_HOP_MS), {})
    fine = {s: finest[s] for s in finest if s >= recent}
    pieces.extend(tile_pieces(group, fine))
    chosen, _ = _walk(pieces, gap_ms)
    return merge_tile_rows(group, [p.partials for p in chosen])


# --- assembling and advancing documents --------------------------------------------------


def sawtooth(widths: Sequence[int], start: int, end: int) -> list[tuple[int, int]]:
    """``(width, start)`` of the coarsest aligned tiles covering ``[start, end)``, for
    tiles that hold no event at or after ``end`` (a state's cutoff): finest tiles up to
    the next hour, hours up to the next day, then days. ``start`` is aligned to the
    finest of ``widths``."""
    return [(width, position) for width, _, position in _cover(tuple(widths), start, end)]


@functools.lru_cache(maxsize=256)
def _cover(widths: tuple[int, ...], start: int, end: int) -> tuple[tuple[int, str, int], ...]:
    """:func:`sawtooth` with each tile's series name; every entity of a group assembled at
    one cutoff asks for the same few covers."""
    if start >= end:
        return ()
    ordered = sorted(widths, reverse=True)
    assert start % ordered[-1] == 0, (start, ordered)
    cover = []
    position = start
    while position < end:
        width = next(w for w in ordered if position % w == 0)
        cover.append((width, hop_series(width), position))
        position += width
    return tuple(cover)


def _covered(tiles: EntityTiles, widths: Sequence[int], start: int, end: int) -> list[Any]:
    """The entity's tiles of the sawtooth cover of ``[start, end)``, in the cover's order."""
    by_series = {series: tiles.get(series) or {} for series in map(hop_series, widths)}
    rows = []
    for _, series, position in _cover(tuple(widths), start, end):
        row = by_series[series].get(position)
        if row is not None:
            rows.append(row)
    return rows


def _doc(group: FeatureGroup, buckets: Mapping[Window, Mapping[str, Partials | None]]) -> Doc:
    """Buckets per window as a batch view stores them (only the columns each reads);
    empty buckets and windows are left out, as ``batch_doc`` leaves them."""
    doc: Doc = {}
    for window, by_bucket in buckets.items():
        columns = group.batch_columns[window.name]
        kept = {b: batch_partials(p, columns) for b, p in by_bucket.items() if p is not None}
        if kept:
            doc[window.name] = kept
    return doc


def _tails(window: Window, tiles: EntityTiles, cutoff: int, horizon_ms: int) -> dict[str, Partials]:
    layout = batch_layout(window, cutoff, horizon_ms)
    assert layout.tail_start is not None and layout.collapsed_start is not None
    series = tiles.get(hop_series(window.hop_ms), {})
    return {
        str(start): series[start]
        for start in sorted(series)
        if layout.tail_start <= start < layout.collapsed_start
    }


def _wider(widths: Sequence[int], window: Window) -> tuple[int, ...]:
    return tuple(w for w in widths if w >= window.hop_ms)


def assemble_doc(group: FeatureGroup, tiles: EntityTiles, cutoff: int, horizon_ms: int) -> Doc:
    """An entity's batch document at ``cutoff`` from the tiles of the state at
    ``cutoff`` alone: equal to ``local_views.batch_doc`` over the entity's events."""
    return DocAssembler(group, cutoff, horizon_ms)(tiles)


class DocAssembler:
    """:func:`assemble_doc` for every entity of a group at one cutoff: the tile widths
    each sliding window's collapsed part is covered with are worked out once here, not
    once per entity (layouts and covers are cached by their own functions)."""

    def __init__(self, group: FeatureGroup, cutoff: int, horizon_ms: int) -> None:
        self.group, self.cutoff, self.horizon_ms = group, cutoff, horizon_ms
        widths = hop_widths(group)
        self._widths = {w: _wider(widths, w) for w in group.windows if w.length_ms is not None}

    def __call__(self, tiles: EntityTiles) -> Doc:
        group, cutoff, horizon_ms = self.group, self.cutoff, self.horizon_ms
        buckets: dict[Window, dict[str, Partials | None]] = {}
        for window in group.windows:
            if window.gap_ms is not None:
                buckets[window] = {COLLAPSED: last_session(group, window.gap_ms, tiles, cutoff)}
            elif window.is_lifetime:
                days = tiles.get(hop_series(DAY_MS), {})
                buckets[window] = {COLLAPSED: merge_tile_rows(group, days.values())}
            else:
                layout = batch_layout(window, cutoff, horizon_ms)
                assert layout.collapsed_start is not None
                rows = _covered(tiles, self._widths[window], layout.collapsed_start, cutoff)
                buckets[window] = {
                    **_tails(window, tiles, cutoff, horizon_ms),
                    COLLAPSED: merge_tile_rows(group, rows),
                }
        return _doc(group, buckets)


def _plus(group: FeatureGroup, base: Sequence[Any] | None, rows: Sequence[Any]) -> Partials | None:
    """A stored document's bucket (read back from JSON: normalized here) merged with
    tile rows."""
    stored = None if base is None else list(normalize(group.primitives, base))
    return merge_tile_rows(group, [stored, *rows])


def advance_doc(
    group: FeatureGroup,
    base_doc: Mapping[str, Mapping[str, Sequence[Any]]] | None,
    tiles: EntityTiles,
    delta: EntityTiles,
    before: int,
    after: int,
    horizon_ms: int,
) -> Doc:
    """An entity's document at ``after`` from its document at ``before`` (``None``: not
    known; assembled from tiles), the tiles of the new state (``tiles``) and the tiles of
    the new events alone (``delta``: the events of the new state missing from the old).

    Tails come from the new tiles. A collapsed part is additive (old part plus the new
    events' tiles after the new collapsed start) unless the entity has a tile in the
    band that crossed from the collapsed part into the tails (then it is re-merged from
    the new tiles, as are sessions). Nothing is subtracted, for any kind.

    ``tiles`` must still hold the dates the old state kept (retention drops dates only
    after: a long step's crossing band can lie below the new state's floor, and a tile
    there makes the entity a crosser).
    """
    if base_doc is None:
        return assemble_doc(group, tiles, after, horizon_ms)
    buckets: dict[Window, dict[str, Partials | None]] = {}
    all_widths = hop_widths(group)
    for window in group.windows:
        base = base_doc.get(window.name, {}).get(COLLAPSED)
        if window.gap_ms is not None:
            buckets[window] = {COLLAPSED: last_session(group, window.gap_ms, tiles, after)}
        elif window.is_lifetime:
            new_days = delta.get(hop_series(DAY_MS), {})
            buckets[window] = {COLLAPSED: _plus(group, base, list(new_days.values()))}
        else:
            layout = batch_layout(window, after, horizon_ms)
            assert layout.collapsed_start is not None
            band = edge_bands(window, before, after, horizon_ms).crossing
            own = tiles.get(hop_series(window.hop_ms), {})
            widths = _wider(all_widths, window)
            if any(band[0] <= start < band[1] for start in own):
                rows = _covered(tiles, widths, layout.collapsed_start, after)
                collapsed = merge_tile_rows(group, rows)
            else:
                rows = _covered(delta, widths, layout.collapsed_start, after)
                collapsed = _plus(group, base, rows)
            buckets[window] = {**_tails(window, tiles, after, horizon_ms), COLLAPSED: collapsed}
    return _doc(group, buckets)


# --- the reference loop: a lake, its change feed, and the tile store ---------------------


@dataclass(frozen=True)
class LakeFile:
    """One data file of a source table: the rows of one event date."""

    path: str
    date: int  # day start of the rows' event date (the partition)
    rows: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True)
class LakeCommit:
    """One table version: files added and removed, and whether the rows changed
    (``dataChange``); a rewrite (optimize) moves rows between files, never changes them."""

    added: tuple[LakeFile, ...]
    removed: tuple[str, ...]
    data_change: bool


class LocalLake:
    """An append-mostly Delta table as the batch job sees it: versions, files per date,
    rewrites that only move rows, and hand-run deletes."""

    def __init__(self, time_column: str) -> None:
        self.time_column = time_column
        self.commits: list[LakeCommit] = [LakeCommit((), (), True)]  # version 0: created
        self._paths = 0

    @property
    def version(self) -> int:
        return len(self.commits) - 1

    def _file(self, date: int, rows: Iterable[Mapping[str, Any]]) -> LakeFile:
        self._paths += 1
        return LakeFile(f"part-{self._paths:05d}", date, tuple(rows))

    def _by_date(self, rows: Iterable[Mapping[str, Any]]) -> dict[int, list[Mapping[str, Any]]]:
        dates: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
        for row in rows:
            dates[floor_to(int(row[self.time_column]), DAY_MS)].append(row)
        return dates

    def append(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """One commit, one new file per event date (as lake ingest writes them)."""
        files = tuple(self._file(d, r) for d, r in sorted(self._by_date(rows).items()))
        self.commits.append(LakeCommit(files, (), True))
        return self.version

    def optimize(self) -> int:
        """Compacts every date with more than one live file (``dataChange`` false)."""
        by_date: dict[int, list[LakeFile]] = defaultdict(list)
        for file in self.files(self.version):
            by_date[file.date].append(file)
        added, removed = [], []
        for date, files in sorted(by_date.items()):
            if len(files) > 1:
                removed.extend(f.path for f in files)
                added.append(self._file(date, [row for f in files for row in f.rows]))
        self.commits.append(LakeCommit(tuple(added), tuple(removed), False))
        return self.version

    def delete(self, keep: Callable[[Mapping[str, Any]], bool]) -> int:
        """A hand-run delete: rewrites every file without the rows ``keep`` rejects
        (``dataChange`` true removes: no incremental run can follow it)."""
        added, removed = [], []
        for file in self.files(self.version):
            kept = [row for row in file.rows if keep(row)]
            if len(kept) < len(file.rows):
                removed.append(file.path)
                if kept:
                    added.append(self._file(file.date, kept))
        self.commits.append(LakeCommit(tuple(added), tuple(removed), True))
        return self.version

    def files(self, version: int) -> list[LakeFile]:
        """The live files of ``version`` (``DeltaTable(version=...).file_uris()``)."""
        live: dict[str, LakeFile] = {}
        for commit in self.commits[: version + 1]:
            for path in commit.removed:
                del live[path]
            live.update((f.path, f) for f in commit.added)
        return list(live.values())

    def rows(self, version: int) -> list[Mapping[str, Any]]:
        return [row for file in self.files(version) for row in file.rows]

    def changes(self, since: int, until: int) -> list[LakeFile] | None:
        """The ``dataChange`` adds of the versions in ``(since, until]``, also those a
        later rewrite in the range removed again; ``None`` when a ``dataChange`` remove
        (a delete) is among them: the rows did not only grow."""
        added: list[LakeFile] = []
        for commit in self.commits[since + 1 : until + 1]:
            if not commit.data_change:
                continue
            if commit.removed:
                return None
            added.extend(commit.added)
        return added


def delta_events(
    lake: LocalLake, since: int, until: int, before: int, after: int
) -> list[Mapping[str, Any]] | None:
    """The events of state ``(until, after)`` missing from state ``(since, before)``:
    rows of the files added since (dated before ``after``, late ones included) and rows
    of the *old* version's files dated in ``[before, after)`` (the band). ``None``: the
    rows did not only grow, rebuild.

    The band is read from the old version's file list, not the new one's: a rewrite
    between the two states (optimize) may compact a new file with old ones, and the new
    version's files other than the new files then hold new rows too (read twice) while
    the new file is gone from its list (its rows missed)."""
    added = lake.changes(since, until)
    if added is None:
        return None
    time = lake.time_column
    new = [row for file in added for row in file.rows if int(row[time]) < after]
    band = [
        row for file in lake.files(since) for row in file.rows if before <= int(row[time]) < after
    ]
    return new + band


@dataclass(frozen=True)
class TileState:
    """What the stored tiles cover: the lake version, the cutoff, and the batch view
    version whose documents were built from them."""

    lake_version: int
    cutoff: int
    view_version: int


@dataclass
class GroupRun:
    """What one run did for one group."""

    mode: str  # incremental | rebuild
    data: set[str] = field(default_factory=set)  # entities with new events it reads
    edge: set[str] = field(default_factory=set)  # entities an edge moved past
    written: set[str] = field(default_factory=set)  # documents written or deleted
    # (entity, day) pairs whose session rows were derived from all of the day's events:
    # late events joined the day's last fragment to an earlier one.
    days_read: set[tuple[str, int]] = field(default_factory=set)

    @property
    def changed(self) -> set[str]:
        return self.data | self.edge


def _encode(partials: Any) -> bytes:
    return orjson.dumps(partials)


class LocalTileStore:
    """The tile table and the batch view of groups, in dicts: ``tiles[(group, series,
    entity)][start]`` holds canonical partials as JSON (``SessionDay`` rows for session
    series), ``docs[(group, entity)]`` the documents as JSON (a missing one is the empty
    document), ``state`` the one :class:`TileState` of every group."""

    def __init__(self, groups: Sequence[FeatureGroup], horizon_ms: int) -> None:
        self.groups = {g.name: g for g in groups}
        self.horizon_ms = horizon_ms
        self.tiles: dict[tuple[str, str, str], dict[int, bytes]] = {}
        self.docs: dict[tuple[str, str], bytes] = {}
        self.state: TileState | None = None
        self.last_run: dict[str, GroupRun] = {}

    # Reading.

    def entity_tiles(self, group: FeatureGroup, entity: str) -> dict[str, dict[int, Any]]:
        """One entity's stored tiles, decoded."""
        result: dict[str, dict[int, Any]] = {}
        for series in tile_series(group):
            stored = self.tiles.get((group.name, series, entity), {})
            if series.startswith(SESSION_SERIES_PREFIX):
                result[series] = {
                    s: SessionDay.from_json(group, orjson.loads(raw)) for s, raw in stored.items()
                }
            else:
                result[series] = {
                    s: list(normalize(group.primitives, orjson.loads(raw)))
                    for s, raw in stored.items()
                }
        return result

    def entities(self, group: FeatureGroup) -> set[str]:
        """Entities with tiles or a document."""
        found = {entity for g, _, entity in self.tiles if g == group.name}
        return found | {entity for g, entity in self.docs if g == group.name}

    def doc(self, group: FeatureGroup, entity: str) -> Doc:
        raw = self.docs.get((group.name, entity))
        return {} if raw is None else orjson.loads(raw)

    # Runs.

    def run(self, lake: LocalLake, cutoff: int, full: bool = False) -> dict[str, GroupRun]:
        """One batch run at ``cutoff`` over the lake's current version: incremental from
        the stored state where it can be, else a rebuild from every row."""
        version = lake.version
        state = self.state
        delta = None
        if state is not None and not full and cutoff >= state.cutoff:
            delta = delta_events(lake, state.lake_version, version, state.cutoff, cutoff)
        runs = {}
        for group in self.groups.values():
            if delta is None or state is None:
                runs[group.name] = self._rebuild(group, lake, version, cutoff)
            else:
                runs[group.name] = self._advance(group, lake, version, state, cutoff, delta)
        view_version = 1 if state is None else state.view_version + 1
        self.state = TileState(version, cutoff, view_version)
        self.last_run = runs
        return runs

    def _write(self, group: FeatureGroup, entity: str, doc: Doc, run: GroupRun) -> None:
        key = (group.name, entity)
        if doc:
            self.docs[key] = orjson.dumps(doc)
        else:
            self.docs.pop(key, None)
        run.written.add(entity)

    def _rebuild(self, group: FeatureGroup, lake: LocalLake, version: int, cutoff: int) -> GroupRun:
        run = GroupRun("rebuild")
        events = [row for row in lake.rows(version) if int(row[group.event_time]) < cutoff]
        for key in [k for k in self.tiles if k[0] == group.name]:
            del self.tiles[key]
        for entity, by_series in event_tiles(group, events).items():
            for series, tiles in by_series.items():
                self.tiles[(group.name, series, entity)] = {s: _encode(p) for s, p in tiles.items()}
        self._session_days(group, lake, version, cutoff, events, None, run)
        self._drop_retired(group, cutoff)
        for entity in sorted(self.entities(group)):
            doc = assemble_doc(group, self.entity_tiles(group, entity), cutoff, self.horizon_ms)
            self._write(group, entity, doc, run)
        run.data = {entity for _, entity in accepted(group, events)}
        return run

    def _advance(
        self,
        group: FeatureGroup,
        lake: LocalLake,
        version: int,
        state: TileState,
        cutoff: int,
        events: list[Mapping[str, Any]],
    ) -> GroupRun:
        run = GroupRun("incremental")
        before, horizon = state.cutoff, self.horizon_ms
        delta = event_tiles(group, events)
        # 1. Merge the new events' tiles into the stored ones (late dates included).
        for entity, by_series in delta.items():
            for series, tiles in by_series.items():
                stored = self.tiles.setdefault((group.name, series, entity), {})
                for start, partials in tiles.items():
                    old = stored.get(start)
                    rows = [
                        None
                        if old is None
                        else list(normalize(group.primitives, orjson.loads(old))),
                        partials,
                    ]
                    stored[start] = _encode(merge_tile_rows(group, rows))
        # 2. Session-day rows of the touched days: from their 5m tiles while the old
        # state kept those, else from the day's raw events.
        self._session_days(group, lake, version, cutoff, events, before, run)
        # 3. Which documents change: new events some window reads, and edges that moved
        # past an entity's tiles (found in the new state, before retention drops).
        oldest = reach(group, cutoff)
        run.data = {
            entity
            for event, entity in accepted(group, events)
            if oldest is None or int(event[group.event_time]) >= oldest
        }
        for window in group.windows:
            if window.length_ms is None:
                continue
            bands = edge_bands(window, before, cutoff, horizon)
            series = hop_series(window.hop_ms)
            for (name, stored_series, entity), tiles in self.tiles.items():
                if (name, stored_series) == (group.name, series) and any(
                    bands.touches(start) for start in tiles
                ):
                    run.edge.add(entity)
        # 4. Advance those documents; every other one is left as it is. They read the
        # new state before its retention drop: a step longer than the retention's slack
        # sweeps a crossing band below the new floor, and its tiles still make crossers.
        for entity in sorted(run.changed):
            raw = self.docs.get((group.name, entity))
            base = None if raw is None else orjson.loads(raw)
            doc = advance_doc(
                group,
                base,
                self.entity_tiles(group, entity),
                delta.get(entity, {}),
                before,
                cutoff,
                horizon,
            )
            self._write(group, entity, doc, run)
        self._drop_retired(group, cutoff)
        return run

    def _session_days(
        self,
        group: FeatureGroup,
        lake: LocalLake,
        version: int,
        cutoff: int,
        events: list[Mapping[str, Any]],
        before: int | None,
        run: GroupRun,
    ) -> None:
        """The session-day rows of every (entity, day) ``events`` touch: from the day's
        ``5m`` tiles while the old state kept those, else the stored row merged with the
        new events, or, when they join its last fragment to an earlier one, from all of
        the day's raw events (the lake read only then)."""
        gaps = sorted({w.gap_ms for w in group.windows if w.gap_ms is not None})
        if not gaps:
            return
        new: dict[tuple[str, int], list[Mapping[str, Any]]] = defaultdict(list)
        for event, entity in accepted(group, events):
            new[(entity, floor_to(int(event[group.event_time]), DAY_MS))].append(event)
        fine = hop_series(FINEST_HOP_MS)
        kept_from = None if before is None else retention_floor(group, before)[fine]
        raw: dict[tuple[str, int], list[Mapping[str, Any]]] | None = None
        for (entity, day), day_events in new.items():
            found: dict[int, SessionDay | None] = {}
            if kept_from is not None and day >= kept_from:
                stored = self.tiles.get((group.name, fine, entity), {})
                tiles = {
                    s: list(normalize(group.primitives, orjson.loads(p)))
                    for s, p in stored.items()
                    if day <= s < day + DAY_MS
                }
                pieces = tile_pieces(group, tiles)
                found = {gap: session_day(group, gap, pieces) for gap in gaps}
            else:
                late = event_pieces(group, day_events)
                for gap in gaps:
                    held = self.tiles.get((group.name, session_series(gap), entity), {}).get(day)
                    row = None if held is None else SessionDay.from_json(group, orjson.loads(held))
                    found[gap] = merge_session_day(group, gap, row, late)
                if any(row is None for row in found.values()):
                    if raw is None:
                        raw = self._raw_days(group, lake, version, cutoff)
                    run.days_read.add((entity, day))
                    pieces = event_pieces(group, raw[(entity, day)])
                    found = {gap: session_day(group, gap, pieces) for gap in gaps}
            for gap, row in found.items():
                if row is not None:
                    rows = self.tiles.setdefault((group.name, session_series(gap), entity), {})
                    rows[day] = _encode(row.to_json())

    @staticmethod
    def _raw_days(
        group: FeatureGroup, lake: LocalLake, version: int, cutoff: int
    ) -> dict[tuple[str, int], list[Mapping[str, Any]]]:
        """Every event of the lake at ``version`` before ``cutoff``, by (entity, day)."""
        raw: dict[tuple[str, int], list[Mapping[str, Any]]] = defaultdict(list)
        for row, entity in accepted(group, lake.rows(version)):
            time = int(row[group.event_time])
            if time < cutoff:
                raw[(entity, floor_to(time, DAY_MS))].append(row)
        return raw

    def _drop_retired(self, group: FeatureGroup, cutoff: int) -> None:
        """Drops the dates each series no longer needs (in the run's commit)."""
        floors = retention_floor(group, cutoff)
        for key in [k for k in self.tiles if k[0] == group.name]:
            floor = floors[key[1]]
            if floor is None:
                continue
            tiles = self.tiles[key]
            for start in [s for s in tiles if s < floor]:
                del tiles[start]
            if not tiles:
                del self.tiles[key]
