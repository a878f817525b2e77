"""The serving merge: batch IRs (event time < B) + speed tiles (>= B) -> feature values.

Pure functions over already-fetched data, so the API, the consistency checks and the
tests all use the one merge. See :mod:`feature_core.windows` for the layout it reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from feature_core.aggregations import IR, merge, merge_all, normalize
from feature_core.definitions import FeatureGroup
from feature_core.windows import COLLAPSED, batch_layout

BatchDoc = Mapping[str, Mapping[str, Sequence[Any]]]  # window -> bucket -> partials


class ValueStatus(StrEnum):
    PRESENT = "present"  # exact value from the views
    NO_DATA = "no_data"  # no event for this entity in the window: aggregation identity
    STALE_BATCH_VIEW = "stale_batch_view"  # batch view older than its horizon: approximate


@dataclass(frozen=True)
class BatchPointer:
    """Which batch view is serving, and the cutoff it covers."""

    version: int
    cutoff: int
    horizon_ms: int
    delta_version: int | None = None
    created_at: int | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BatchPointer:
        return cls(
            int(data["version"]),
            int(data["cutoff"]),
            int(data["horizon_ms"]),
            data.get("delta_version"),
            data.get("created_at"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "cutoff": self.cutoff,
            "horizon_ms": self.horizon_ms,
            "delta_version": self.delta_version,
            "created_at": self.created_at,
        }


@dataclass(frozen=True)
class MergedValue:
    value: Any
    status: ValueStatus


def merge_group(
    group: FeatureGroup,
    t: int,
    pointer: BatchPointer | None,
    batch_doc: BatchDoc | None,
    speed_tiles: Mapping[int, Sequence[Any]],
) -> dict[str, MergedValue]:
    """Feature values of one entity at query time ``t``."""
    primitives = group.primitives
    cutoff = pointer.cutoff if pointer else None
    # Each tile serves several windows: read it into canonical form once per request.
    tiles = {start: normalize(primitives, partials) for start, partials in speed_tiles.items()}
    window_irs: dict[Any, tuple[IR, bool, bool]] = {}
    for window in group.windows:
        start = window.start(t)
        ir = merge_all(primitives, ())
        seen = False
        stale = False
        if pointer is not None and batch_doc:
            buckets = batch_doc.get(window.name) or {}
            layout = batch_layout(window, pointer.cutoff, pointer.horizon_ms)
            if start is None or start < pointer.cutoff:
                collapsed_empty = layout.collapsed_start == pointer.cutoff
                if (
                    start is not None
                    and not collapsed_empty
                    and layout.collapsed_start is not None
                    and start > layout.collapsed_start
                ):
                    stale = True
                for bucket, partials in buckets.items():
                    if bucket == COLLAPSED or start is None or int(bucket) >= start:
                        ir = merge(primitives, ir, normalize(primitives, partials))
                        seen = True
        bounds = [x for x in (start, cutoff) if x is not None]
        lower = max(bounds) if bounds else None
        for tile_start, tile_ir in tiles.items():
            if (lower is None or tile_start >= lower) and tile_start < t:
                ir = merge(primitives, ir, tile_ir)
                seen = True
        window_irs[window] = (ir, seen, stale)

    values: dict[str, MergedValue] = {}
    for feature in group.features:
        ir, seen, stale = window_irs[feature.window]
        own = tuple(ir[i] for i in feature.tile_indices)
        if stale:
            status = ValueStatus.STALE_BATCH_VIEW
        else:
            status = ValueStatus.PRESENT if seen else ValueStatus.NO_DATA
        values[feature.name] = MergedValue(feature.aggregation.finalize(own), status)
    return values
