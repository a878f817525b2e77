"""Feature values at many query times for one entity, in one sweep over its events.

Point-in-time training sets ask, for each spine row ``(entity, t)``, what the API would
have served at ``t``: each feature's aggregation over the entity's events in its window
``[window.start(t), t)``. Joining every row to every event of its entity costs their
product, which explodes on hot keys. Here one entity's events are sorted by time once;
each window becomes an index range ``[lo, hi)`` of that order (``searchsorted``); and
each primitive computes its partial for every range at once, in time linear in events
plus queries (up to a log factor): its windowed form, :meth:`Primitive.windowed` (prefix
sums, monotonic deques, or a two-stack queue for any other primitive).

The partials are the algebra's (``feature_core.aggregations``) and are finalized by it,
so values equal the reference evaluator's (tests/feature_core/test_sweep.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from feature_core.aggregations import ColumnEvents, Partial, Ranges
from feature_core.definitions import FeatureGroup


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


def session_ranges(times: np.ndarray, ends: np.ndarray, gap_ms: int) -> Ranges:
    """The session current at each query time as an index range of ``times`` (sorted):
    from the first event after the last gap of at least ``gap_ms`` before the query, or
    empty when the newest event before it is ``gap_ms`` old."""
    hi = np.searchsorted(times, ends, side="left")
    if len(times) == 0:
        return Ranges(hi.copy(), hi)
    opens = np.concatenate(([True], np.diff(times) >= gap_ms))
    session_first = np.maximum.accumulate(np.where(opens, np.arange(len(times)), 0))
    newest = np.maximum(hi - 1, 0)
    alive = (hi > 0) & (ends - times[newest] < gap_ms)
    return Ranges(np.where(alive, session_first[newest], hi), hi)


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
            if window.is_session:
                ranges[window] = session_ranges(sorted_times, ends, window.gap_ms or 0)
            else:
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
            partials[key] = tile.primitive.windowed(by_column[tile.column], ranges[window])
    rows: list[list[Any]] = [[] for _ in range(len(ends))]
    for feature in wanted:
        keys = [(i, feature.window) for i in feature.tile_indices]
        finalize = feature.finalize
        for q in range(len(ends)):
            rows[q].append(finalize(tuple(partials[key][q] for key in keys), int(ends[q])))
    result: list[list[Any]] = [[] for _ in range(len(ends))]
    for q, original in enumerate(by_query.tolist()):
        result[original] = rows[q]
    return result
