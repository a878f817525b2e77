"""What a read of the online store returns: a request's views, from one batch view version."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

import orjson

from feature_core.merge import BatchPointer

#: What to read: (group names, entity ids). Views come back entity-major per part.
ViewsRequest = tuple[Sequence[str], Sequence[str]]


# Built per request on the hot path: slotted, not frozen (a frozen dataclass's __init__
# costs three times as much); read only, by convention.
@dataclass(slots=True)
class EntityViews:
    batch_doc: dict[str, dict[str, list[Any]]] | None
    speed_tiles: dict[int, list[Any]]
    # The merge's memo of this batch view, when the view is cached (see batch_cache).
    memo: dict[Any, Any] | None = field(default=None, compare=False)
    # Correction tiles (feature_core.corrections): (tile start, lake version, partials).
    corrections: tuple[tuple[int, int, Any], ...] = ()


@dataclass(slots=True)
class ViewsSnapshot:
    pointer: BatchPointer | None
    speed_watermarks: dict[str, int]
    entities: list[EntityViews]
    # The speed job is writing its tiles again from the topics' start (Redis lost them):
    # until it has caught up, they miss events.
    speed_recomputing: bool = False
    # The speed job started over from topics that no longer hold every event its tiles
    # had (the broker lost them): its tiles before this time (ms) may miss events the lake
    # holds, until a batch view with a cutoff at or after it serves. Values of windows
    # reaching before it are served as stale_batch_view meanwhile.
    speed_gap_before: int | None = None

    def __post_init__(self) -> None:
        # The merge marks the windows reaching into an open gap stale_batch_view.
        gap = self.speed_gap()
        if gap is not None and self.pointer is not None:
            self.pointer = replace(self.pointer, speed_gap_before=gap)

    def speed_gap(self) -> int | None:
        """The speed tiles' gap end, while the serving batch view does not cover it."""
        gap = self.speed_gap_before
        if gap is None or (self.pointer is not None and self.pointer.cutoff >= gap):
            return None
        return gap


class SpeedEpochWatch:
    """The speed job's epoch as one reader sees it over time. Once it has seen an epoch,
    a missing one means Redis lost the job's writes (flushed, or restarted without its
    data): the job is about to write every tile again, so until it sets its epoch anew
    the tiles count as being written again, not as complete (a batch view published
    meanwhile would otherwise serve with empty tiles: values missing every event after
    its cutoff)."""

    def __init__(self) -> None:
        self.seen = False

    def state(self, epoch: bytes | None) -> tuple[bool, int | None]:
        if epoch is None:
            return self.seen, None
        self.seen = True
        return epoch_state(epoch)


@lru_cache(maxsize=8)
def epoch_state(epoch: bytes | None) -> tuple[bool, int | None]:
    """What the speed job's epoch says: whether it is writing every tile again, and the
    end of a gap in its tiles (see ``ViewsSnapshot.speed_gap_before``)."""
    if epoch is None:
        return False, None
    doc = orjson.loads(epoch)
    return not doc.get("complete", True), doc.get("gap_before")


@lru_cache(maxsize=8)
def pointer_of(text: str) -> BatchPointer:
    return BatchPointer.parse(text)
