"""The serving merge: batch IRs (event time < B) + speed tiles (>= B) -> feature values.

Pure functions over already-fetched data, so the API, the consistency checks and the
tests all use the one merge. See :mod:`feature_core.windows` for the layout it reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from feature_core.definitions import FeatureGroup
from feature_core.windows import COLLAPSED, batch_layout

BatchDoc = Mapping[str, Mapping[str, Sequence[Any]]]  # window -> bucket -> partials


class ValueStatus(StrEnum):
    PRESENT = "present"  # exact value from the views
    NO_DATA = "no_data"  # no event for this entity in the window: aggregation identity
    STALE_BATCH_VIEW = "stale_batch_view"  # batch view older than its horizon: approximate
    DEFAULT = "default"  # null value replaced by the feature service's default (serving)


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
    """Feature values of one entity at query time ``t``.

    Each window gathers the batch buckets and speed tiles it covers, then merges only
    the tile columns its features read, each in one pass (:meth:`Primitive.merge_many`).
    Views hold canonical partials (their writers normalize), so reads skip normalizing.
    """
    primitives = group.primitives
    cutoff = pointer.cutoff if pointer else None
    tiles = [(start, partials) for start, partials in speed_tiles.items() if start < t]
    values: dict[str, MergedValue] = {}
    for window, indices in group.window_tile_indices.items():
        start = window.start(t)
        parts: list[Sequence[Any]] = []
        stale = False
        if pointer is not None and batch_doc and (start is None or start < pointer.cutoff):
            buckets = batch_doc.get(window.name)
            if buckets:
                if start is None:
                    parts.extend(buckets.values())
                else:
                    layout = batch_layout(window, pointer.cutoff, pointer.horizon_ms)
                    collapsed = layout.collapsed_start
                    stale = (
                        collapsed is not None and collapsed != pointer.cutoff and start > collapsed
                    )
                    parts.extend(
                        partials
                        for bucket, partials in buckets.items()
                        if bucket == COLLAPSED or int(bucket) >= start
                    )
        lower = start if cutoff is None else cutoff if start is None else max(start, cutoff)
        if lower is None:
            parts.extend(partials for _, partials in tiles)
        else:
            parts.extend(partials for tile_start, partials in tiles if tile_start >= lower)
        merged = {i: primitives[i].merge_many([p[i] for p in parts]) for i in indices}
        status = (
            ValueStatus.STALE_BATCH_VIEW
            if stale
            else ValueStatus.PRESENT
            if parts
            else ValueStatus.NO_DATA
        )
        for feature in group.window_features[window]:
            own = tuple(merged[i] for i in feature.tile_indices)
            values[feature.name] = MergedValue(feature.aggregation.finalize(own), status)
    return {name: values[name] for name in group.feature_names}
