"""The synthetic shop: deterministic, valid, and shaped like a shop."""

from __future__ import annotations

from collections import Counter

import pytest

from demo.feature_repo import events as shop
from demo.generator import CATEGORIES, Shop, ShopConfig, encode

START, END = 1_700_000_000_000, 1_700_000_000_000 + 7 * 86_400_000


def test_same_seed_same_events_other_seed_other_events() -> None:
    assert Shop().history(500, START, END) == Shop().history(500, START, END)
    assert Shop().history(500, START, END) != Shop(ShopConfig(seed=8)).history(500, START, END)


def test_every_event_passes_the_platform_validator() -> None:
    prices = {item.item_id: item.price for item in Shop().items}
    for event in Shop().history(2000, START, END):
        parsed = shop.parse(encode(event), now_ms=END)
        assert START <= parsed["event_time"] < END
        assert (parsed["amount"] is not None) == (event["event_type"] == "purchase")
        # An add-to-cart carries the item's price (what the cart's value sums), only it.
        if event["event_type"] == "add_to_cart":
            assert parsed["price"] == prices[event["item_id"]]
        else:
            assert parsed["price"] is None


def test_funnel_narrows_and_purchases_follow_carts() -> None:
    events = Shop().history(20_000, START, END)
    kinds = Counter(e["event_type"] for e in events)
    assert kinds["view"] > kinds["click"] > kinds["add_to_cart"] > kinds["purchase"] > 0
    carted = {(e["user_id"], e["item_id"]) for e in events if e["event_type"] == "add_to_cart"}
    purchases = [(e["user_id"], e["item_id"]) for e in events if e["event_type"] == "purchase"]
    assert all(p in carted for p in purchases)


def test_popularity_is_skewed_and_tastes_show() -> None:
    shop = Shop()
    events = shop.history(20_000, START, END)
    views = Counter(e["item_id"] for e in events if e["event_type"] == "view")
    ranked = [count for _, count in views.most_common()]
    top_tenth = sum(ranked[: len(ranked) // 10])
    assert top_tenth > 0.3 * sum(ranked)  # Zipf: a tenth of the catalog takes a third
    user = shop.users[0]
    favourite = CATEGORIES[max(range(len(CATEGORIES)), key=lambda i: user.tastes[i])]
    own = Counter(e["category"] for e in events if e["user_id"] == user.user_id)
    assert own.most_common(1)[0][0] == favourite


def test_prefixes_keep_shops_apart() -> None:
    shop = Shop(ShopConfig(user_prefix="t1_u", item_prefix="t1_i", users=5, items=20))
    events = shop.history(200, START, END)
    assert all(e["user_id"].startswith("t1_u") and e["item_id"].startswith("t1_i") for e in events)


def test_live_events_are_paced_by_the_clock() -> None:
    now = [1000.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    events = list(Shop().live(20, 5, clock=lambda: now[0], sleep=sleep))
    assert 80 <= len(events) <= 100
    times = [e["event_time"] for e in events]
    assert times == sorted(times) and times[0] >= 1_000_000 and times[-1] < 1_005_000
    assert sum(slept) == pytest.approx((times[-1] - 1_000_000) / 1000, abs=0.01)


def test_burst_is_one_user_in_one_category() -> None:
    events = Shop().burst("u9", "toys", 10, END)
    assert len(events) == 20
    assert {e["category"] for e in events} == {"toys"} and {e["user_id"] for e in events} == {"u9"}
    assert all(e["event_time"] < END for e in events)
    with pytest.raises(ValueError, match="unknown category"):
        Shop().burst("u9", "cars", 1, END)
