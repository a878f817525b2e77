"""Correction tiles: late events served exactly, counted once.

A batch view covers the lake's records up to the Delta version it read (``V``) with event
time before its cutoff ``B``; speed tiles cover event time ``>= B``. A record that reaches
the lake in a later commit (version ``v > V``) with event time ``< B`` is in neither: it
is *late* for that view. Lake ingest therefore writes, after each commit ``v``, the tiles
of that commit's records dated before ``floor(commit time, 5 min)`` as correction tiles
keyed by (tile start, ``v``), beside the entity's speed tiles. The serving merge adds a
correction tile to a view's partials when ``v > V`` and its tile starts before ``B``;
a later view that read ``v`` covers those records itself and skips the tile.

Why the threshold is enough: a view that did not read commit ``v`` read the lake before
``v`` landed, and its cutoff is at most ``floor(read time, 5 min)`` (the batch job
clamps it), so ``B <= floor(commit time, 5 min)``: every record of ``v`` dated before
``B`` is in a correction tile. Records dated at or after the threshold are the speed
tiles' alone. Each record is then counted by exactly one of: the view, a correction tile
of the view, a speed tile.

A correction tile is 5 minutes wide, as speed tiles are: the batch cutoff is 5-minute
aligned, so a tile that starts before it ends at or before it and never holds an event the
speed tiles count.

It is stored in the entity's speed tiles hash under the field
``[tile_start,version,width]`` (JSON, so the read script returns it with the speed tiles
and a request costs no extra Redis command). Lake ingest drops the fields of versions the
serving view has read (see ``OnlineStore.retire_corrections``); the rest expire with the
hash.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from feature_core.aggregations import merge, normalize
from feature_core.definitions import FeatureGroup
from feature_core.keys import entity_id
from feature_core.local_views import event_ir
from feature_core.windows import SPEED_TILE_MS, floor_to

#: (tile start, Delta version of the commit, partials)
Correction = tuple[int, int, Sequence[Any]]


def late_threshold(commit_done_ms: int) -> int:
    """Records of a commit dated before this get correction tiles (see module doc)."""
    return floor_to(commit_done_ms, SPEED_TILE_MS)


def field_name(tile_start: int, version: int, width: int) -> str:
    """The hash field of a correction tile: a JSON array, told apart from a speed tile's
    (a bare integer) by its first character."""
    return f"[{tile_start},{version},{width}]"


def tile_width(group: FeatureGroup, age_ms: int) -> int:
    """A correction tile's width: the speed tiles' 5 minutes, whatever the windows' hops.

    A wider tile (an hour or a day, for groups whose windows all hop by them) is held whole
    by every window, but the batch cutoff is only 5-minute aligned: a wide tile starting
    before it may hold events at or after it, which the speed tiles count too (a clean-clone
    CI run served 11 for 8 that way). Kept as a function: the one place a width is chosen."""
    return SPEED_TILE_MS


def reach(group: FeatureGroup, now_ms: int, max_age_ms: int | None = None) -> int | None:
    """The oldest event time that can still change one of the group's values at a query
    made now or later (None: any, for a lifetime or session window), capped by a
    declared ``max_age_ms``. Older late events are counted and kept in the lake only."""
    oldest: int | None = now_ms
    for window in group.windows:
        start = window.start(now_ms)
        if start is None:  # lifetime, or a session (a late event may bridge its gaps)
            oldest = None
            break
        oldest = min(oldest, start) if oldest is not None else start
    if max_age_ms is not None:
        floor = now_ms - max_age_ms
        oldest = floor if oldest is None else max(oldest, floor)
    return oldest


def correction_tiles(
    group: FeatureGroup,
    records: Iterable[Mapping[str, Any]],
    threshold_ms: int,
    oldest_ms: int | None = None,
    now_ms: int | None = None,
) -> tuple[dict[str, dict[tuple[int, int], list[Any]]], int, int]:
    """One commit's correction tiles of ``group``: ``{entity: {(tile start, width):
    partials}}`` (canonical partials) for the records dated before ``threshold_ms`` (and
    not before ``oldest_ms``), each tile as wide as its records' age at ``now_ms``
    allows (default: the threshold); then how many records they hold, and how many were
    too old to change any value."""
    now = threshold_ms if now_ms is None else now_ms
    primitives = group.primitives
    time_column = group.event_time
    keys = group.join_keys
    tiles: dict[str, dict[tuple[int, int], tuple[Any, ...]]] = {}
    late = too_old = 0
    for record in records:
        time = record.get(time_column)
        if time is None or time >= threshold_ms or not group.accepts(record):
            continue
        values = [record.get(k) for k in keys]
        if any(v is None for v in values):
            continue
        if oldest_ms is not None and time < oldest_ms:
            too_old += 1
            continue
        late += 1
        entity = tiles.setdefault(entity_id(values), {})
        width = tile_width(group, now - int(time))
        tile = (floor_to(int(time), width), width)
        current = entity.get(tile)
        ir = event_ir(group, record)
        entity[tile] = ir if current is None else merge(primitives, current, ir)
    return (
        {
            entity: {tile: list(normalize(primitives, ir)) for tile, ir in by_tile.items()}
            for entity, by_tile in tiles.items()
        },
        late,
        too_old,
    )


def uncovered(corrections: Sequence[Correction], covered: int | None) -> list[Correction]:
    """The corrections a view that read lake version ``covered`` lacks (None: it read no
    version of the table, so it lacks them all)."""
    if covered is None:
        return list(corrections)
    return [c for c in corrections if c[1] > covered]
