"""Synthetic e-commerce events, deterministic with a seed."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

CATEGORIES = ("books", "electronics", "garden", "toys", "fashion", "sports")
_FUNNEL = (("view", 0.70), ("click", 0.18), ("add_to_cart", 0.08), ("purchase", 0.04))


@dataclass(frozen=True)
class GeneratorConfig:
    users: int = 50
    items: int = 200
    events: int = 2000
    start_ms: int | None = None  # event times spread over [start_ms, end_ms)
    end_ms: int | None = None
    seed: int = 7


def generate(config: GeneratorConfig) -> Iterator[dict[str, Any]]:
    rng = random.Random(config.seed)
    end = config.end_ms if config.end_ms is not None else int(time.time() * 1000)
    start = config.start_ms if config.start_ms is not None else end - 3_600_000
    kinds, weights = zip(*_FUNNEL, strict=True)
    for _ in range(config.events):
        event_type = rng.choices(kinds, weights)[0]
        item = rng.randrange(config.items)
        event: dict[str, Any] = {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128))),
            "user_id": f"user_{rng.randrange(config.users)}",
            "event_type": event_type,
            "event_time": rng.randrange(start, end),
            "item_id": f"item_{item}",
            "category": CATEGORIES[item % len(CATEGORIES)],
        }
        if event_type == "purchase":
            event["amount"] = round(rng.uniform(5, 200), 2)
        yield event


def encode(event: dict[str, Any]) -> bytes:
    return orjson.dumps(event)
