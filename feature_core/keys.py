"""How an entity is named wherever views are kept: the batch and speed layers write
views under this name and the serving layer reads them by it (the online store's key
layout, :mod:`online_store.keys`, puts it in the keys)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any


def entity_id(values: Sequence[Any]) -> str:
    """The one text naming an entity in keys and caches, from its join key values in the
    entity's declared order (an integer key as its decimal text, as Spark's and Flink's
    CAST to STRING write it). Writers (batch, speed) and the reader (serving) call it."""
    if len(values) == 1:
        return str(values[0])
    return json.dumps([str(v) for v in values], separators=(",", ":"), ensure_ascii=False)
