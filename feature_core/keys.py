"""How an entity is named wherever views are kept: the batch and speed layers write
views under this name and the serving layer reads them by it (the online store's key
layout, :mod:`online_store.keys`, puts it in the keys)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any


def entity_id(values: Sequence[Any]) -> str:
    """The one text naming an entity in keys and caches, from its join key values in the
    entity's declared order (an integer key as its decimal text, as Spark's and Flink's
    CAST to STRING write it). Writers (batch, speed) and the reader (serving) call it."""
    if len(values) == 1:
        return str(values[0])
    return json.dumps([str(v) for v in values], separators=(",", ":"), ensure_ascii=False)


#: A join key declared integer is a BIGINT in the lake, Spark and Flink: 64 bits.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# ASCII digits only: int() would also take "1_000", " 7 " and other scripts' digits.
_DECIMAL = re.compile(r"[+-]?[0-9]{1,19}")


class KeyValueError(ValueError):
    """A join key value that its declared type cannot hold (the message names the key)."""


def typed_key(key: str, python: type, value: str | int) -> str | int:
    """A join key value in its declared type: text for a string key, an int for an integer
    key (``"007"`` and ``7`` are the same entity, named ``"7"`` by :func:`entity_id`, as the
    writers' CAST to STRING names it). The serving endpoints (``/v1`` and Feast's) all call
    this, so a value finds the same entity whichever endpoint asks."""
    if python is not int:
        return str(value)
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and _DECIMAL.fullmatch(value):
        number = int(value)
    else:
        raise KeyValueError(f"{key}: integer values expected (the join key is declared integer)")
    if not INT64_MIN <= number <= INT64_MAX:
        raise KeyValueError(f"{key}: integer values expected (64 bits: the join key's type)")
    return number
