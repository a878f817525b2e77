"""The serving merge: batch IRs (event time < B) + speed tiles (>= B) -> feature values.

Pure functions over already-fetched data, so the API, the consistency checks and the
tests all use the one merge. See :mod:`feature_core.windows` for the layout it reads.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, NamedTuple

import orjson

from feature_core.aggregations import IR
from feature_core.corrections import Correction, uncovered
from feature_core.definitions import FeatureGroup
from feature_core.statuses import ValueStatus
from feature_core.windows import COLLAPSED, FINEST_HOP_MS, Window, batch_layout, floor_to

BatchDoc = Mapping[str, Mapping[str, Sequence[Any]]]  # window -> bucket -> partials
# (cutoff, horizon, finest step, speed gap end)
PlanKey = tuple[int | None, int | None, int, int | None]


def values_match(got: Any, want: Any, rel_tol: float = 1e-9) -> bool:
    """The platform's equality of feature values: floats to ``rel_tol`` relative, else ==.

    Batch (Spark) and speed (Flink) add the same numbers in different orders, so float sums
    agree to rounding, not bit for bit; everything else must be identical.
    """
    if isinstance(got, bool) or isinstance(want, bool):
        return got is want
    if isinstance(want, float) and isinstance(got, (int, float)):
        return abs(got - want) <= rel_tol * max(1.0, abs(want))
    if isinstance(want, list) and isinstance(got, list) and len(got) == len(want):
        return all(values_match(g, w, rel_tol) for g, w in zip(got, want, strict=True))
    return got == want


@dataclass(frozen=True)
class BatchPointer:
    """Which batch view is serving, and the cutoff it covers."""

    version: int
    cutoff: int
    horizon_ms: int
    delta_version: int | None = None  # when the view was read from one lake table
    created_at: int | None = None
    delta_versions: Mapping[str, int | None] | None = None  # lake table -> version read
    # group -> FeatureGroup.view_fingerprint of the definitions the view was computed from
    view_fingerprints: Mapping[str, str] | None = None
    # The speed job's allowed lateness when the view was written: events dated after the
    # cutoff that arrive later than this are in no view until the next batch run.
    speed_lateness_ms: int | None = None
    # Not stored: set by the reader while the speed tiles before this time may miss
    # events the broker lost (see online_store.views.ViewsSnapshot.speed_gap_before).
    speed_gap_before: int | None = None
    # The key layout of the view's documents (online_store.keys.LAYOUT); a pointer
    # written before layouts were named has none and reads as 1 (one key per version).
    layout: int = 2

    @classmethod
    def parse(cls, raw: str | bytes) -> BatchPointer:
        """The pointer as stored in Redis (JSON)."""
        return cls.from_json(orjson.loads(raw))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BatchPointer:
        return cls(
            int(data["version"]),
            int(data["cutoff"]),
            int(data["horizon_ms"]),
            data.get("delta_version"),
            data.get("created_at"),
            data.get("delta_versions"),
            data.get("view_fingerprints"),
            data.get("speed_lateness_ms"),
            layout=int(data.get("layout", 1)),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "cutoff": self.cutoff,
            "horizon_ms": self.horizon_ms,
            "delta_version": self.delta_version,
            "created_at": self.created_at,
            "delta_versions": self.delta_versions,
            "view_fingerprints": self.view_fingerprints,
            "speed_lateness_ms": self.speed_lateness_ms,
            "layout": self.layout,
        }

    def stale_groups(self, groups: Sequence[FeatureGroup]) -> list[str]:
        """The names of ``groups`` this view was not computed for as they are defined now
        (their definitions changed since, or another repo wrote the view). Empty when
        the pointer has no fingerprints (written by hand or by an older release)."""
        if self.view_fingerprints is None:
            return []
        return [g.name for g in groups if self.view_fingerprints.get(g.name) != g.view_fingerprint]


class MergedValue(NamedTuple):
    value: Any
    status: ValueStatus


class WindowInputs(NamedTuple):
    """The parts of an entity's views one window merged (:meth:`GroupMerger.inputs`)."""

    window: str
    batch_buckets: list[str]  # bucket start (ms) or "collapsed"
    speed_tiles: list[int]  # tile starts (ms)
    correction_tiles: list[tuple[int, int]]  # (tile start ms, lake version)
    stale: bool  # before a session's bridging, which only the merge sees


class _WindowPlan(NamedTuple):
    """What one window reads at one query time: fixed per (batch view, 5-minute step)."""

    name: str
    columns: tuple[tuple[int, Callable[[list[Any]], Any]], ...]  # (tile index, merge_many)
    # Per feature: its position in the group, finalize, and a getter of its IR from a row
    # of partials (itemgetter; ``single``: the IR is that one partial).
    features: tuple[tuple[int, Callable[[IR, int], Any], Callable[[Sequence[Any]], Any], bool], ...]
    reads_batch: bool
    buckets: frozenset[str] | None  # batch buckets in the window; None: every bucket
    stale: bool  # the window starts inside the collapsed batch IR (past the horizon)
    # Speed tiles from here on; None: every tile since the cutoff (the window starts
    # before it, or has no start).
    lower: int | None
    empty: tuple[Any, ...]  # each feature's value when nothing is in the window
    start: int | None  # the window's start at the query time (None: unbounded, session)
    gap_ms: int | None  # a session window's gap
    # Its values move with the query time within a step (a session's end, decay): they
    # are finalized again on every query, the others' kept from the memoized result.
    moves: bool = False
    # The window reaches back past the speed job's allowed lateness while the view is
    # older than that: late events dated after the cutoff may be missing (stale).
    behind: bool = False


class _Memo:
    """What merge keeps for one batch view at one plan key (see :meth:`GroupMerger.merge`)."""

    __slots__ = ("batch_parts", "newest_tile", "result", "rows", "speed_tiles")

    def __init__(self, batch_parts: tuple[list[Sequence[Any]] | None, ...]) -> None:
        self.batch_parts = batch_parts
        # The last merge's speed tiles and result, kept while every tile starts before the
        # query time: no tile was then left out for being ahead of it.
        self.speed_tiles: Mapping[int, Sequence[Any]] | None = None
        self.newest_tile = 0
        self.result: tuple[list[Any], list[ValueStatus]] | None = None
        # Each window's merged row and staleness behind the result, finalized again for
        # values that move with the query time.
        self.rows: list[tuple[Sequence[Any] | None, bool]] = []


class GroupMerger:
    """Merges one group's views, with the per-window bookkeeping computed once per
    (batch view, 5-minute step) instead of once per entity (the serving hot path)."""

    def __init__(self, group: FeatureGroup) -> None:
        self.group = group
        self.size = len(group.features)
        self.width = len(group.primitives)
        self._position = {f.name: i for i, f in enumerate(group.features)}
        self._identities = [p.identity for p in group.primitives]
        self._plans: dict[PlanKey, tuple[_WindowPlan, ...]] = {}
        self._session_times = group.session_time_indices
        # Values that move within a 5-minute step (decay, a session's end) are finalized
        # again from the memoized rows, never taken as an earlier query's values.
        self.time_dependent = self._session_times is not None or any(
            kind.time_dependent for kind in group.kinds
        )

    @staticmethod
    def plan_key(pointer: BatchPointer | None, t: int) -> PlanKey:
        """What the plans depend on. Window starts move in steps of their hop, a multiple
        of FINEST_HOP_MS: every t within one finest step shares the plans."""
        if pointer is None:
            return None, None, floor_to(t, FINEST_HOP_MS), None
        step = floor_to(t, FINEST_HOP_MS)
        return pointer.cutoff, pointer.horizon_ms, step, pointer.speed_gap_before

    def _plans_at(
        self, key: PlanKey, pointer: BatchPointer | None, t: int
    ) -> tuple[_WindowPlan, ...]:
        plans = self._plans.get(key)
        if plans is None:
            if len(self._plans) > 64:
                self._plans.clear()
            plans = self._plans[key] = tuple(
                self._plan(window, indices, pointer, t)
                for window, indices in self.group.window_tile_indices.items()
            )
        return plans

    def _plan(
        self, window: Window, indices: tuple[int, ...], pointer: BatchPointer | None, t: int
    ) -> _WindowPlan:
        group = self.group
        start = window.start(t)
        cutoff = pointer.cutoff if pointer else None
        reads_batch = pointer is not None and (start is None or start < pointer.cutoff)
        buckets: frozenset[str] | None = None
        stale = False
        if reads_batch and start is not None:
            assert pointer is not None
            layout = batch_layout(window, pointer.cutoff, pointer.horizon_ms)
            collapsed = layout.collapsed_start
            stale = collapsed is not None and collapsed != pointer.cutoff and start > collapsed
            tail_end = pointer.cutoff if collapsed is None else collapsed
            first = start if layout.tail_start is None else max(start, layout.tail_start)
            buckets = frozenset(
                [COLLAPSED, *(str(b) for b in range(first, tail_end, window.hop_ms))]
            )
        identities = self._identities
        features = tuple(
            (
                self._position[f.name],
                f.finalize,
                itemgetter(*f.tile_indices),
                len(f.tile_indices) == 1,
            )
            for f in group.window_features[window]
        )
        return _WindowPlan(
            name=window.name,
            columns=tuple((i, group.primitives[i].merge_many) for i in indices),
            features=features,
            reads_batch=reads_batch,
            buckets=buckets,
            stale=stale,
            lower=None if start is None or (cutoff is not None and start <= cutoff) else start,
            empty=tuple(
                finalize((get(identities),) if single else get(identities), t)
                for _, finalize, get, single in features
            ),
            start=start,
            gap_ms=window.gap_ms,
            moves=window.is_session
            or any(f.aggregation.time_dependent for f in group.window_features[window]),
            behind=_behind(window, pointer, t),
        )

    def _merged(
        self, columns: Sequence[tuple[int, Callable[[list[Any]], Any]]], parts: list[Any]
    ) -> Sequence[Any]:
        """One row of partials from several: only ``columns`` are merged."""
        if len(parts) == 1:  # canonical partials: one needs no merging
            return parts[0]
        row: list[Any] = [None] * self.width
        for i, merge_many in columns:
            row[i] = merge_many([p[i] for p in parts])
        return row

    def _extends_before(
        self,
        session: Sequence[Sequence[Any]],
        batch: Sequence[Sequence[Any]],
        late: Sequence[Sequence[Any]],
    ) -> bool:
        """Whether a correction tile in the session starts before the batch's session."""
        if not late or not batch:
            return False
        assert self._session_times is not None
        first_at = self._session_times[0]
        kept = min((row[first_at] for row in batch if row[first_at] is not None), default=None)
        if kept is None:
            return False
        late_ids = {id(row) for row in late}
        return any(
            id(row) in late_ids and row[first_at] is not None and row[first_at] < kept
            for row in session
        )

    def _session(
        self,
        batch: list[Sequence[Any]],
        tiles: list[tuple[int, Sequence[Any]]],
        gap_ms: int,
        late: Sequence[Sequence[Any]] = (),
    ) -> list[Sequence[Any]]:
        """The rows of the entity's last session: walking back from the newest row, each
        older row joins while the gap from its last event to the next row's first is
        under ``gap_ms``. No row holds a gap inside (a tile is narrower than any gap; the
        batch row holds only the entity's last session), so this is the exact session.
        ``late``: correction tiles (before the cutoff), placed among the batch rows by
        their first event. Whether it has ended by the query time is :meth:`_finalize`'s
        to say."""
        assert self._session_times is not None
        first_at, last_at = self._session_times
        before: list[Sequence[Any]] = [*batch]
        if late:
            before = sorted([*before, *late], key=lambda row: row[first_at] or 0)
        rows = [*before, *(p for _, p in sorted(tiles, key=itemgetter(0)))]
        chosen: list[Sequence[Any]] = []
        following: int | None = None  # first event time of the rows chosen so far
        for row in reversed(rows):
            first, last = row[first_at], row[last_at]
            if last is None:
                continue
            if following is not None and following - last >= gap_ms:
                break
            chosen.append(row)
            following = first
        return chosen

    def _batch_parts(
        self, plans: tuple[_WindowPlan, ...], batch_doc: BatchDoc | None, premerge: bool
    ) -> tuple[list[Sequence[Any]] | None, ...]:
        """Per window, the partials of its batch buckets (``premerge``: merged into one
        row); ``None`` when the view has no data for the window."""
        windows: list[list[Sequence[Any]] | None] = []
        for plan in plans:
            buckets = batch_doc.get(plan.name) if plan.reads_batch and batch_doc else None
            if not buckets:
                windows.append(None)
                continue
            wanted = plan.buckets
            parts = (
                list(buckets.values())
                if wanted is None
                else [p for b, p in buckets.items() if b in wanted]
            )
            if premerge and len(parts) > 1:
                parts = [self._merged(plan.columns, parts)]
            windows.append(parts)
        return tuple(windows)

    def merge(
        self,
        t: int,
        pointer: BatchPointer | None,
        batch_doc: BatchDoc | None,
        speed_tiles: Mapping[int, Sequence[Any]],
        memo: dict[PlanKey, Any] | None = None,
        corrections: Sequence[Correction] = (),
    ) -> tuple[list[Any], list[ValueStatus]]:
        """Values and statuses of the group's features, in ``group.features`` order.

        ``corrections``: the entity's correction tiles (:mod:`feature_core.corrections`);
        those of lake versions the batch view did not read are merged with its buckets.

        ``memo``: a dict kept with ``batch_doc`` by a caller that reads the same batch
        view again (batch views never change): each window's batch buckets are merged
        once per plan and kept there, and so is the last result with the speed tiles it
        came from. Equal tiles at the same plan give the same result, which is then
        returned as it is (callers must not change it). Without a memo the batch buckets
        are merged with the speed tiles.
        """
        key = self.plan_key(pointer, t)
        plans = self._plans_at(key, pointer, t)
        late = self._late(pointer, corrections, t) if corrections else ()
        memoized: _Memo | None = None
        if memo is None:
            batch_parts = self._batch_parts(plans, batch_doc, premerge=False)
        else:
            memoized = memo.get(key)
            if memoized is None:
                memo.clear()  # earlier steps are not asked for again
                memoized = memo[key] = _Memo(self._batch_parts(plans, batch_doc, premerge=True))
            elif (
                memoized.result is not None
                and not late
                and memoized.newest_tile < t
                and (memoized.speed_tiles is speed_tiles or memoized.speed_tiles == speed_tiles)
            ):
                if not self.time_dependent:
                    return memoized.result
                # The same rows: only the values that move with t are finalized again.
                return self._finalize(plans, memoized.rows, t, memoized.result)
            batch_parts = memoized.batch_parts
        floor = pointer.cutoff if pointer else None
        # Every window that starts before the cutoff reads the same tiles: select them once.
        tiles = [
            (start, p)
            for start, p in speed_tiles.items()
            if start < t and (floor is None or start >= floor)
        ]
        since_floor = [p for _, p in tiles]
        rows: list[tuple[Sequence[Any] | None, bool]] = []
        for plan, batch in zip(plans, batch_parts, strict=True):
            # Stale only describes batch data that is there.
            stale = (plan.stale and batch is not None) or plan.behind
            parts: list[Sequence[Any]] = [*batch] if batch else []
            if late and plan.reads_batch:
                if plan.gap_ms is not None:
                    late_parts = [p for _, _, p in late]
                else:
                    late_parts = [p for s, _, p in late if plan.start is None or s >= plan.start]
            else:
                late_parts = []
            if plan.gap_ms is not None:
                session = self._session(parts, tiles, plan.gap_ms, late_parts)
                # A late event that joins the session before the batch row's first event
                # may bridge it to sessions the view did not keep: not exact until the
                # next batch run reads it.
                stale = stale or self._extends_before(session, parts, late_parts)
                parts = session
            elif since_floor:
                lower = plan.lower
                if lower is None:
                    parts.extend(since_floor)
                else:
                    parts.extend([p for start, p in tiles if start >= lower])
            if late_parts and plan.gap_ms is None:
                parts.extend(late_parts)
            rows.append((self._merged(plan.columns, parts) if parts else None, stale))
        result = self._finalize(plans, rows, t)
        if memoized is not None and not late:
            newest = max(speed_tiles, default=0)
            if newest < t:
                memoized.speed_tiles, memoized.newest_tile = speed_tiles, newest
                memoized.rows, memoized.result = rows, result
        return result

    def _late(
        self, pointer: BatchPointer | None, corrections: Sequence[Correction], t: int
    ) -> list[Correction]:
        """The correction tiles the batch view lacks, before its cutoff and ``t``; none
        without a view (the speed tiles then hold every event)."""
        if pointer is None:
            return []
        versions = pointer.delta_versions
        covered = (
            pointer.delta_version
            if versions is None
            else versions.get(self.group.source.table_name)
        )
        return [
            (start, version, p)
            for start, version, p in uncovered(corrections, covered)
            if start < pointer.cutoff and start < t
        ]

    def inputs(
        self,
        t: int,
        pointer: BatchPointer | None,
        batch_doc: BatchDoc | None,
        speed_tiles: Mapping[int, Sequence[Any]],
        corrections: Sequence[Correction] = (),
    ) -> list[WindowInputs]:
        """What each window merges at ``t``, by the rules :meth:`merge` applies: the batch
        buckets, speed tiles and correction tiles (an operator's view of one entity's
        provenance). A session window lists every tile it may chain, from which the
        merge keeps the last session."""
        plans = self._plans_at(self.plan_key(pointer, t), pointer, t)
        late = self._late(pointer, corrections, t) if corrections else []
        floor = pointer.cutoff if pointer else None
        tiles = sorted(s for s in speed_tiles if s < t and (floor is None or s >= floor))
        windows = []
        for plan in plans:
            buckets = (batch_doc or {}).get(plan.name) if plan.reads_batch else None
            read = sorted(b for b in buckets or () if plan.buckets is None or b in plan.buckets)
            session = plan.gap_ms is not None
            lower = None if session else plan.lower
            windows.append(
                WindowInputs(
                    window=plan.name,
                    batch_buckets=read,
                    speed_tiles=[s for s in tiles if lower is None or s >= lower],
                    correction_tiles=sorted(
                        (s, v)
                        for s, v, _ in late
                        if plan.reads_batch and (session or plan.start is None or s >= plan.start)
                    ),
                    stale=(plan.stale and bool(read)) or plan.behind,
                )
            )
        return windows

    def _finalize(
        self,
        plans: tuple[_WindowPlan, ...],
        rows: Sequence[tuple[Sequence[Any] | None, bool]],
        t: int,
        before: tuple[list[Any], list[ValueStatus]] | None = None,
    ) -> tuple[list[Any], list[ValueStatus]]:
        """Each window's merged row (``None``: nothing in it) finalized at ``t``: a
        session whose newest event is its gap old or older has ended, and is empty.

        ``before``: these rows finalized at an earlier time of the same plans; only the
        windows that move with the query time are finalized again, the others' values
        and statuses are copied from it (a session group's 7-day map is not rebuilt)."""
        if before is None:
            values: list[Any] = [None] * self.size
            statuses = [ValueStatus.NO_DATA] * self.size
        else:
            values, statuses = before[0].copy(), before[1].copy()
        for plan, (row, stale) in zip(plans, rows, strict=True):
            if before is not None and not plan.moves:
                continue
            if row is not None and plan.gap_ms is not None:
                assert self._session_times is not None
                if t - row[self._session_times[1]] >= plan.gap_ms:
                    row = None
            if row is None:
                status = ValueStatus.STALE_BATCH_VIEW if stale else ValueStatus.NO_DATA
                for (position, _, _, _), value in zip(plan.features, plan.empty, strict=True):
                    values[position] = value
                    statuses[position] = status
                continue
            status = ValueStatus.STALE_BATCH_VIEW if stale else ValueStatus.PRESENT
            for position, finalize, get, single in plan.features:
                values[position] = finalize((get(row),) if single else get(row), t)
                statuses[position] = status
        return values, statuses


def _behind(window: Window, pointer: BatchPointer | None, t: int) -> bool:
    """Whether events the window covers may be in neither view: dated after the cutoff
    and older than the speed job's allowed lateness at some query time of ``t``'s step
    (the speed job skips them), or before the end of a gap in the speed tiles (the
    broker lost events the lake holds). The next batch run reads them."""
    if pointer is None:
        return False
    suspect_before = pointer.speed_gap_before  # tiles the broker's loss left short
    if pointer.speed_lateness_ms is not None:
        skipped = floor_to(t, FINEST_HOP_MS) + FINEST_HOP_MS - pointer.speed_lateness_ms
        suspect_before = max(suspect_before or skipped, skipped)
    if suspect_before is None or suspect_before <= pointer.cutoff:
        return False
    start = window.start(t)
    return window.is_session or start is None or start < suspect_before


_mergers: dict[int, GroupMerger] = {}


def group_merger(group: FeatureGroup) -> GroupMerger:
    """The merger of a group, created once (keyed by identity: groups are long-lived)."""
    merger = _mergers.get(id(group))
    if merger is None or merger.group is not group:
        if len(_mergers) > 1024:
            _mergers.clear()
        merger = _mergers[id(group)] = GroupMerger(group)
    return merger


def merge_group(
    group: FeatureGroup,
    t: int,
    pointer: BatchPointer | None,
    batch_doc: BatchDoc | None,
    speed_tiles: Mapping[int, Sequence[Any]],
    memo: dict[PlanKey, Any] | None = None,
    corrections: Sequence[Correction] = (),
) -> dict[str, MergedValue]:
    """Feature values of one entity at query time ``t``, by feature name.

    Each window merges the batch buckets it covers into one row, then that row with the
    speed tiles it covers: only the tile columns its features read, each in one pass
    (:meth:`Primitive.merge_many`). ``memo`` keeps the batch rows for a caller that
    serves the same batch view again. Views hold canonical partials (their writers
    normalize), so reads skip normalizing.
    """
    values, statuses = group_merger(group).merge(
        t, pointer, batch_doc, speed_tiles, memo, corrections
    )
    return {
        name: MergedValue(value, status)
        for name, value, status in zip(group.feature_names, values, statuses, strict=True)
    }
