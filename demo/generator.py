"""A synthetic shop: users with tastes, a Zipf-popular catalog, sessions that convert.

Deterministic with a seed: the same :class:`ShopConfig` gives the same catalog, the same
users and, for the same time range, the same events. Three ways to draw events:

- :meth:`Shop.history`: back-dated sessions spread over a past range (the demo writes them
  straight to the lake for the batch layer);
- :meth:`Shop.live`: sessions happening now, paced at a rate, for a duration (produced to
  Kafka, seen by both layers);
- :meth:`Shop.burst`: one user suddenly browsing one category (the freshness story).
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import orjson

CATEGORIES = ("books", "electronics", "garden", "toys", "fashion", "sports")
#: The share of a session's views that follow its intent, and how much likelier a click on
#: an item of the intent's category is.
INTENT_SHARE = 0.5
INTENT_CLICK_LIFT = 0.2
_SECOND = 1000


@dataclass(frozen=True)
class ShopConfig:
    """The shop's shape. Prefixes let several shops share one stack without colliding."""

    users: int = 200
    items: int = 300
    seed: int = 7
    zipf_exponent: float = 1.1
    user_prefix: str = "user_"
    item_prefix: str = "item_"


@dataclass(frozen=True)
class Item:
    item_id: str
    category: str
    price: float
    appeal: float  # chance a view of it turns into a click, before the user's taste


@dataclass(frozen=True)
class Shopper:
    user_id: str
    tastes: tuple[float, ...]  # probability of browsing each category, sums to 1


class Shop:
    """Catalog and users built once from the seed; events drawn from them."""

    def __init__(self, config: ShopConfig | None = None) -> None:
        self.config = config or ShopConfig()
        rng = random.Random(self.config.seed)
        self.items = tuple(self._item(rng, i) for i in range(self.config.items))
        self.users = tuple(self._shopper(rng, u) for u in range(self.config.users))
        self._ids = random.Random(self.config.seed ^ 0x5EED)

    def _item(self, rng: random.Random, index: int) -> Item:
        category = CATEGORIES[rng.randrange(len(CATEGORIES))]
        return Item(
            f"{self.config.item_prefix}{index}",
            category,
            round(rng.lognormvariate(3.3, 0.7), 2),
            rng.uniform(0.05, 0.35),
        )

    def _shopper(self, rng: random.Random, index: int) -> Shopper:
        # Two favourite categories take most of the attention; the rest share what is left.
        raw = [rng.uniform(0.02, 0.1) for _ in CATEGORIES]
        for favourite, weight in zip(
            rng.sample(range(len(CATEGORIES)), 2), (0.55, 0.25), strict=True
        ):
            raw[favourite] = weight
        total = sum(raw)
        return Shopper(f"{self.config.user_prefix}{index}", tuple(w / total for w in raw))

    @cached_property
    def _by_category(self) -> dict[str, tuple[list[Item], list[float]]]:
        """Items of each category with Zipf weights by catalog rank (item 0 most popular)."""
        grouped: dict[str, tuple[list[Item], list[float]]] = {c: ([], []) for c in CATEGORIES}
        for rank, item in enumerate(self.items, start=1):
            items, weights = grouped[item.category]
            items.append(item)
            weights.append(rank**-self.config.zipf_exponent)
        return grouped

    @cached_property
    def catalog(self) -> dict[str, str]:
        """item id -> category."""
        return {item.item_id: item.category for item in self.items}

    def _pick_item(self, rng: random.Random, category: str) -> Item:
        items, weights = self._by_category[category]
        if not items:  # a tiny catalog may leave a category empty
            return rng.choice(self.items)
        return rng.choices(items, weights)[0]

    def _event(
        self, user: Shopper, item: Item, event_type: str, at_ms: int, amount: float | None = None
    ) -> dict[str, Any]:
        """One event; an add-to-cart carries the item's price, a purchase its ``amount``."""
        event: dict[str, Any] = {
            "event_id": str(uuid.UUID(int=self._ids.getrandbits(128))),
            "user_id": user.user_id,
            "event_type": event_type,
            "event_time": at_ms,
            "item_id": item.item_id,
            "category": item.category,
        }
        if event_type == "add_to_cart":
            event["price"] = item.price
        if amount is not None:
            event["amount"] = amount
        return event

    def session(self, rng: random.Random, user: Shopper, start_ms: int) -> list[dict[str, Any]]:
        """Views; some become clicks, carts and purchases. Taste drives browsing and clicks,
        and so does the session's intent: a category drawn from the user's tastes, which
        half the session's views follow and whose items are clicked more (what the user
        is after now, beside what they like; over many sessions, views follow tastes)."""
        events = []
        at = start_ms
        intent = rng.choices(CATEGORIES, user.tastes)[0]
        for _ in range(1 + min(int(rng.expovariate(1 / 4)), 30)):
            if rng.random() < INTENT_SHARE:
                category = intent
            else:
                category = rng.choices(CATEGORIES, user.tastes)[0]
            item = self._pick_item(rng, category)
            events.append(self._event(user, item, "view", at))
            taste = user.tastes[CATEGORIES.index(item.category)]
            wanted = INTENT_CLICK_LIFT if item.category == intent else 0.0
            if rng.random() < min(0.95, item.appeal + 0.4 * taste + wanted):
                at += rng.randrange(2, 20) * _SECOND
                events.append(self._event(user, item, "click", at))
                if rng.random() < 0.3:
                    at += rng.randrange(5, 60) * _SECOND
                    events.append(self._event(user, item, "add_to_cart", at))
                    if rng.random() < 0.5:
                        at += rng.randrange(10, 120) * _SECOND
                        quantity = 1 + int(rng.random() < 0.2)
                        events.append(
                            self._event(user, item, "purchase", at, round(item.price * quantity, 2))
                        )
            at += rng.randrange(5, 90) * _SECOND
        return events

    def history(self, events: int, start_ms: int, end_ms: int) -> list[dict[str, Any]]:
        """About ``events`` events from sessions starting in [start_ms, end_ms), time-ordered.

        Events a session would have after ``end_ms`` are dropped (they have not happened).
        """
        if end_ms <= start_ms:
            raise ValueError(f"empty time range [{start_ms}, {end_ms})")
        rng = random.Random(f"{self.config.seed}:{start_ms}:{end_ms}")
        drawn: list[dict[str, Any]] = []
        while len(drawn) < events:
            user = rng.choice(self.users)
            start = rng.randrange(start_ms, end_ms)
            drawn.extend(e for e in self.session(rng, user, start) if e["event_time"] < end_ms)
        drawn.sort(key=lambda e: e["event_time"])
        return drawn[:events] if len(drawn) > events else drawn

    def live(
        self,
        rate: float,
        duration_s: float,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> Iterator[dict[str, Any]]:
        """Sessions happening now: about ``rate`` events/s for ``duration_s`` seconds.

        Sessions are planned over the coming interval and interleave as on a real site; each
        event is yielded when its time comes, so its ``event_time`` is (about) the send time.
        """
        if rate <= 0 or duration_s <= 0:
            raise ValueError("rate and duration must be positive")
        start = int(clock() * 1000)
        planned = self.history(int(rate * duration_s), start, start + int(duration_s * 1000))
        for event in planned:
            wait = event["event_time"] / 1000 - clock()
            if wait > 0:
                sleep(wait)
            yield event

    def burst(self, user_id: str, category: str, views: int, now_ms: int) -> list[dict[str, Any]]:
        """One user views (and clicks) ``views`` items of one category, one every
        ``BURST_STEP_MS`` up to ``now_ms`` (the burst spans ``burst_span_ms(views)``)."""
        if category not in CATEGORIES:
            raise ValueError(f"unknown category {category!r}; known: {', '.join(CATEGORIES)}")
        rng = random.Random(f"{self.config.seed}:burst:{user_id}:{category}")
        user = Shopper(user_id, tuple(1.0 if c == category else 0.0 for c in CATEGORIES))
        events = []
        for n in range(views):
            at = now_ms - (views - n) * BURST_STEP_MS
            item = self._pick_item(rng, category)
            events.append(self._event(user, item, "view", at))
            events.append(self._event(user, item, "click", at + BURST_STEP_MS // 2))
        return events


#: A burst's views are this far apart (each click half-way to the next view).
BURST_STEP_MS = 100


def burst_span_ms(views: int) -> int:
    """How far back from its ``now_ms`` a burst of ``views`` views is dated."""
    return views * BURST_STEP_MS


def encode(event: dict[str, Any]) -> bytes:
    return orjson.dumps(event)
