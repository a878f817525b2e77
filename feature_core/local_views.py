"""The batch and speed views of one entity, computed in plain Python from its events.

This is the contract the Spark job and the Flink job each meet (same keys, same
partials), written directly against the algebra. Tests use it to check the serving
merge; the serving benchmark uses it to load views without running the engines.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from feature_core.aggregations import IR, identity, lift, merge
from feature_core.definitions import FeatureGroup, batch_partials
from feature_core.windows import batch_layout, session_start, speed_tile_start


def event_ir(group: FeatureGroup, event: Mapping[str, Any]) -> IR:
    """One event's partials, one per tile column of the group."""
    time = int(event[group.event_time])
    return tuple(
        lift((c.primitive,), event.get(c.column) if c.column else True, time)[0]
        for c in group.tile_columns
    )


def batch_doc(
    group: FeatureGroup, events: Iterable[Mapping[str, Any]], cutoff: int, horizon_ms: int
) -> dict[str, dict[str, list[Any]]]:
    """What the batch job writes for one entity: ``{window: {bucket: partials}}``."""
    primitives = group.primitives
    time_column = group.event_time
    events = [e for e in events if group.accepts(e)]
    doc: dict[str, dict[str, list[Any]]] = {}
    before = sorted(int(e[time_column]) for e in events if int(e[time_column]) < cutoff)
    for window in group.windows:
        layout = batch_layout(window, cutoff, horizon_ms)
        # A session window keeps the entity's last session before the cutoff.
        session = (
            session_start(before, cutoff, window.gap_ms, expire=False)
            if window.is_session
            else None
        )
        for event in events:
            bucket = layout.bucket(int(event[time_column]), window.hop_ms)
            if bucket is None or (session is not None and int(event[time_column]) < session):
                continue
            buckets = doc.setdefault(window.name, {})
            current = tuple(buckets.get(str(bucket), identity(primitives)))
            buckets[str(bucket)] = list(merge(primitives, current, event_ir(group, event)))
    return {
        window: {b: batch_partials(p, group.batch_columns[window]) for b, p in buckets.items()}
        for window, buckets in doc.items()
    }


def speed_tiles(
    group: FeatureGroup,
    events: Iterable[Mapping[str, Any]],
    cutoff: int | None = None,
    produced_at: int | None = None,
) -> dict[int, list[Any]]:
    """What the speed job writes for one entity: ``{tile_start: partials}`` at or after
    ``cutoff`` (all events when ``None``); events dated after ``produced_at`` are
    keyed by their exact time (:func:`feature_core.windows.speed_tile_start`)."""
    primitives = group.primitives
    time_column = group.event_time
    tiles: dict[int, list[Any]] = {}
    for event in events:
        time = int(event[time_column])
        if (cutoff is None or time >= cutoff) and group.accepts(event):
            start = speed_tile_start(time, produced_at)
            current = tuple(tiles.get(start, identity(primitives)))
            tiles[start] = list(merge(primitives, current, event_ir(group, event)))
    return tiles
