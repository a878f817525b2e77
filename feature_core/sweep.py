"""Feature values at many query times for one entity, in one sweep over its events.

Point-in-time training sets ask, for each spine row ``(entity, t)``, what the API would
have served at ``t``: each feature's aggregation over the entity's events in its window
``[window.start(t), t)``. Joining every row to every event of its entity costs their
product, which explodes on hot keys. Here one entity's events are sorted by time once;
each window becomes an index range ``[lo, hi)`` of that order (``searchsorted``); and
each primitive computes its partial for every range at once, in time linear in events
plus queries (up to a log factor):

- count and sum: prefix sums (sums in extended precision, so the differences keep the
  precision of a sum over the range);
- min and max: a monotonic deque, as the ranges only move forward when queries are sorted;
- last and last_k: the newest non-null values before ``hi``, events at the same
  millisecond ordered by value as the algebra's merge orders them;
- hll: per register, a monotonic deque of ranks, so the window's registers are exact.

The partials are the algebra's (``feature_core.aggregations``) and are finalized by it,
so values equal the reference evaluator's (tests/feature_core/test_sweep.py).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from feature_core import sketches
from feature_core.aggregations import Partial, Primitive
from feature_core.definitions import FeatureGroup


@dataclass(frozen=True)
class Ranges:
    """Each query's events as an index range of the time-sorted events, queries sorted."""

    lo: np.ndarray
    hi: np.ndarray


@dataclass(frozen=True)
class ColumnEvents:
    """One column of the entity's events, sorted by (time, value): ``values[i]`` is
    ``None`` where the column is null (skipped by every primitive)."""

    times: np.ndarray
    values: list[Any]
    present: np.ndarray  # bool: the value is not null


def column_events(times: np.ndarray, values: Sequence[Any] | None) -> ColumnEvents:
    """``times`` sorted; ``values`` aligned with them (``None``: no column, every event
    counts). Events at the same time are put in value order, nulls first."""
    if values is None:
        return ColumnEvents(times, [True] * len(times), np.ones(len(times), dtype=bool))
    codes, _ = pd.factorize(pd.Series(values, dtype=object), sort=True)
    order = np.lexsort((codes, times))  # stable on times: same-time events by value
    ordered = [values[i] for i in order]
    present = codes[order] >= 0
    return ColumnEvents(
        times, [v if p else None for v, p in zip(ordered, present, strict=True)], present
    )


def window_ranges(times: np.ndarray, starts: Sequence[int | None], ends: np.ndarray) -> Ranges:
    """``[start, end)`` as index ranges of ``times`` (a ``None`` start: from the first)."""
    hi = np.searchsorted(times, ends, side="left")
    if all(s is None for s in starts):
        return Ranges(np.zeros(len(ends), dtype=np.int64), hi)
    lo = np.searchsorted(times, np.asarray(starts, dtype=np.int64), side="left")
    return Ranges(lo, hi)


def _present_counts(column: ColumnEvents, ranges: Ranges) -> np.ndarray:
    """Non-null values in each range."""
    prefix = np.concatenate(([0], np.cumsum(column.present, dtype=np.int64)))
    return prefix[ranges.hi] - prefix[ranges.lo]


def _count(_: Primitive, column: ColumnEvents, ranges: Ranges) -> list[Partial]:
    return [int(n) for n in _present_counts(column, ranges)]


def _sum(_: Primitive, column: ColumnEvents, ranges: Ranges) -> list[Partial]:
    counts = _present_counts(column, ranges)
    numbers = [v for v in column.values if v is not None]
    integral = all(isinstance(v, int) and not isinstance(v, bool) for v in numbers)
    if integral:  # exact: Python ints
        running = [0]
        for v in column.values:
            running.append(running[-1] + (v if v is not None else 0))
        return [
            None if c == 0 else running[h] - running[lo]
            for c, lo, h in zip(counts, ranges.lo, ranges.hi, strict=True)
        ]
    filled = np.array([0.0 if v is None else v for v in column.values], dtype=np.longdouble)
    prefix = np.concatenate((np.zeros(1, dtype=np.longdouble), np.cumsum(filled)))
    sums = prefix[ranges.hi] - prefix[ranges.lo]
    return [None if c == 0 else float(s) for c, s in zip(counts, sums, strict=True)]


def _extreme(smaller: bool) -> Callable[[Primitive, ColumnEvents, Ranges], list[Partial]]:
    def sweep(_: Primitive, column: ColumnEvents, ranges: Ranges) -> list[Partial]:
        values, kept = column.values, deque()
        result: list[Partial] = []
        pushed = 0
        for lo, hi in zip(ranges.lo.tolist(), ranges.hi.tolist(), strict=True):
            while pushed < hi:
                value = values[pushed]
                if value is not None:
                    while kept and (
                        values[kept[-1]] >= value if smaller else values[kept[-1]] <= value
                    ):
                        kept.pop()
                    kept.append(pushed)
                pushed += 1
            while kept and kept[0] < lo:
                kept.popleft()
            result.append(values[kept[0]] if kept else None)
        return result

    return sweep


def _last(_: Primitive, column: ColumnEvents, ranges: Ranges) -> list[Partial]:
    positions = np.where(column.present, np.arange(len(column.values)), -1)
    newest = np.maximum.accumulate(positions) if len(positions) else positions
    result: list[Partial] = []
    for lo, hi in zip(ranges.lo.tolist(), ranges.hi.tolist(), strict=True):
        i = int(newest[hi - 1]) if hi > 0 else -1
        result.append([int(column.times[i]), column.values[i]] if i >= lo and i >= 0 else None)
    return result


def _last_k(primitive: Primitive, column: ColumnEvents, ranges: Ranges) -> list[Partial]:
    k = primitive.param or 1
    present = np.flatnonzero(column.present)
    first = np.searchsorted(present, ranges.lo, side="left")
    end = np.searchsorted(present, ranges.hi, side="left")
    result: list[Partial] = []
    for a, b in zip(first.tolist(), end.tolist(), strict=True):
        chosen = present[max(a, b - k) : b][::-1]
        result.append([[int(column.times[i]), column.values[i]] for i in chosen])
    return result


def _hll(primitive: Primitive, column: ColumnEvents, ranges: Ranges) -> list[Partial]:
    precision = primitive.param or sketches.DEFAULT_PRECISION
    cells: dict[Any, tuple[int, int]] = {}  # value -> (register, rank), hashed once each
    register = np.zeros(len(column.values), dtype=np.int64)
    rank = np.zeros(len(column.values), dtype=np.int64)
    for i, value in enumerate(column.values):
        if value is None:
            continue
        found = cells.get(value)
        if found is None:
            found = cells[value] = sketches.cell(str(value), precision)
        register[i], rank[i] = found
    kept: dict[int, deque[int]] = {}  # register -> event indices, ranks decreasing
    current: dict[int, int] = {}  # register -> rank of the window's events
    result: list[Partial] = []
    pushed = popped = 0
    present = column.present
    for lo, hi in zip(ranges.lo.tolist(), ranges.hi.tolist(), strict=True):
        while pushed < hi:
            if present[pushed]:
                r, q = int(register[pushed]), int(rank[pushed])
                queue = kept.setdefault(r, deque())
                while queue and rank[queue[-1]] <= q:
                    queue.pop()
                queue.append(pushed)
                current[r] = int(rank[queue[0]])
            pushed += 1
        while popped < lo:
            if present[popped]:
                r = int(register[popped])
                queue = kept[r]
                if queue and queue[0] == popped:
                    queue.popleft()
                    if queue:
                        current[r] = int(rank[queue[0]])
                    else:
                        del current[r]
            popped += 1
        result.append(sketches.encode(current, precision) if current else None)
    return result


#: Each primitive's windowed form, by kind: its partial over many index ranges at once.
WINDOWED: dict[str, Callable[[Primitive, ColumnEvents, Ranges], list[Partial]]] = {
    "count": _count,
    "sum": _sum,
    "min": _extreme(smaller=True),
    "max": _extreme(smaller=False),
    "last": _last,
    "last_k": _last_k,
    "hll": _hll,
}


def group_values(
    group: FeatureGroup,
    features: Sequence[str],
    times: np.ndarray,
    columns: dict[str, Sequence[Any]],
    query_times: np.ndarray,
) -> list[list[Any]]:
    """Each of ``features`` (names of ``group``'s features, in that order) at each query
    time, for one entity: ``times`` are its events' times (any order), ``columns`` their
    values by column name (``None`` for null); one list per query, in the order of
    ``query_times``."""
    order = np.argsort(times, kind="stable")
    sorted_times = np.asarray(times, dtype=np.int64)[order]
    by_query = np.argsort(query_times, kind="stable")
    ends = np.asarray(query_times, dtype=np.int64)[by_query]
    by_name = {f.name: f for f in group.features}
    wanted = [by_name[name] for name in features]
    by_column: dict[str | None, ColumnEvents] = {}
    ranges: dict[Any, Ranges] = {}
    partials: dict[tuple[int, Any], list[Partial]] = {}
    for feature in wanted:
        window = feature.window
        if window not in ranges:
            starts = [window.start(int(t)) for t in ends]
            ranges[window] = window_ranges(sorted_times, starts, ends)
        for index in feature.tile_indices:
            key = (index, window)
            if key in partials:
                continue
            tile = group.tile_columns[index]
            if tile.column not in by_column:
                raw = None if tile.column is None else [columns[tile.column][i] for i in order]
                by_column[tile.column] = column_events(sorted_times, raw)
            primitive = tile.primitive
            partials[key] = WINDOWED[primitive.kind](
                primitive, by_column[tile.column], ranges[window]
            )
    rows: list[list[Any]] = [[] for _ in range(len(ends))]
    for feature in wanted:
        keys = [(i, feature.window) for i in feature.tile_indices]
        finalize = feature.aggregation.finalize
        for q in range(len(ends)):
            rows[q].append(finalize(tuple(partials[key][q] for key in keys)))
    result: list[list[Any]] = [[] for _ in range(len(ends))]
    for q, original in enumerate(by_query.tolist()):
        result[original] = rows[q]
    return result
