"""What a read of the online store returns: a request's views, from one batch view version."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
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


@lru_cache(maxsize=8)
def recomputing(epoch: bytes | None) -> bool:
    """Whether the speed job's epoch says it is writing every tile again."""
    return epoch is not None and not orjson.loads(epoch).get("complete", True)


@lru_cache(maxsize=8)
def pointer_of(text: str) -> BatchPointer:
    return BatchPointer.parse(text)
