"""Random valid records for any declared source, drawn from its schema alone.

For trying a pipeline before real events flow (``lfp generate --source NAME``): values
respect each field's type and constraints, join-key-like strings repeat over a small
set so features aggregate, the event time is now, and a record the source's own rules
reject is drawn again.
"""

from __future__ import annotations

import math
import random
import string
from typing import Any

from feature_core.sources import EventSource, Field, InvalidRecord, Record

#: Distinct values of a free string field: small, so entities get several events each.
DEFAULT_CARDINALITY = 50
_TRIES = 100


def _string(rng: random.Random, f: Field, cardinality: int) -> str:
    low = f.min_length or 1
    high = f.max_length or max(low, 24)
    text = f"{f.name}_{rng.randrange(cardinality)}"
    if len(text) > high:
        text = text[-high:]
    while len(text) < low:
        text += rng.choice(string.ascii_lowercase)
    return text


def _value(rng: random.Random, f: Field, now_ms: int, cardinality: int) -> Any:
    if f.values is not None:
        return rng.choice(list(f.values))
    kind = f.type
    if kind == "string":
        return _string(rng, f, cardinality)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "timestamp":
        low = int(f.min) if f.min is not None else now_ms - 86_400_000
        high = int(f.max) if f.max is not None else now_ms
        return rng.randint(min(low, high), high)
    low, high = _bounds(f.min, f.max)
    if kind == "integer":
        return rng.randint(math.ceil(low), math.floor(high))
    # Rounded to cents for readable values, and kept inside the bounds after rounding.
    return min(max(round(rng.uniform(low, high), 2), low), high)


def _bounds(low: float | None, high: float | None, span: float = 1000) -> tuple[float, float]:
    """A range to draw from: the field's own bounds, else ``span`` wide from what is set."""
    if low is None and high is None:
        return 0, span
    if low is None:
        assert high is not None
        return min(0, high - span), high
    if high is None:
        return low, max(low, 0) + span
    return low, high


def random_record(
    source: EventSource,
    rng: random.Random,
    now_ms: int,
    cardinality: int = DEFAULT_CARDINALITY,
    null_share: float = 0.2,
) -> Record:
    """One record the source's validator accepts, with its event time ``now_ms``."""
    for _ in range(_TRIES):
        data: dict[str, Any] = {}
        for f in source.fields:
            if f.name == source.event_time:
                data[f.name] = now_ms
            elif not f.required and rng.random() < null_share:
                data[f.name] = None
            else:
                data[f.name] = _value(rng, f, now_ms, cardinality)
        try:
            return source.check(data, now_ms)
        except InvalidRecord:
            continue
    raise InvalidRecord(
        f"source {source.name}: no random record passed its rules in {_TRIES} tries; "
        "send real events with `lfp send` instead"
    )
