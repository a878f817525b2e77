"""The demo's declared features (pure: the reference evaluator, no stack).

The six example features of a shopper and the recommender's pair features are derived
features: computed here as the platform computes them (each group's values at the query
time, then the repo's one :class:`~feature_core.derived.DerivedPlan`), from a small
hand-made history whose answers are worked out by hand.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from demo import feature_repo
from feature_core import reference
from feature_core.definitions import FeatureRepo
from feature_core.derived import DerivedPlan
from feature_core.statuses import ValueStatus

REPO = FeatureRepo.from_module(feature_repo)
T = 1_700_000_000_000
MIN, DAY = 60_000, 86_400_000
SIX = (
    "user_avg_purchase_90d",
    "category_affinity_score",
    "lifetime_value",
    "items_viewed_this_session",
    "cart_value",
    "time_since_last_click",
)


def event(kind: str, at: int, item: str = "i1", category: str = "toys", **more: Any) -> dict:
    return {
        "event_id": f"{kind}-{at}-{item}",
        "user_id": "u1",
        "event_type": kind,
        "event_time": at,
        "item_id": item,
        "category": category,
        **more,
    }


def derived(
    events: list[dict], references: list[str], t: int, context: dict | None = None
) -> tuple[dict[str, Any], dict[str, ValueStatus]]:
    """Values and statuses of features (aggregates or derived) of u1 and i1 at ``t``."""
    plan_base, row, statuses = [], [], []
    for group in REPO.groups:
        entity = "u1" if group.join_keys == ("user_id",) else "i1"
        seen = reference.evaluate(group, [e for e in events if e["event_time"] <= t], t)
        values = seen.get(entity)
        for feature in group.features:
            plan_base.append(feature.qualified_name)
            if values is None:
                row.append(reference.default_values(group)[feature.name])
                statuses.append(ValueStatus.NO_DATA)
            else:
                row.append(values[feature.name])
                statuses.append(ValueStatus.PRESENT)
    plan = DerivedPlan(REPO.derived, [r for r in references if r in REPO.derived], plan_base)
    context = context or {}
    row += [context.get(f.name) for f in plan.request_fields] + [t]
    plan.compute(row)
    plan.statuses(row, statuses)
    positions = {**{name: i for i, name in enumerate(plan_base)}, **plan.positions}
    return (
        {r: DerivedPlan.served(row[positions[r]]) for r in references},
        {r: statuses[positions[r]] for r in references},
    )


def shopper(events: list[dict], t: int = T, category: str = "toys") -> dict[str, Any]:
    values, _ = derived(
        events, [f"shopper:{name}" for name in SIX], t, {"candidate_category": category}
    )
    return {name.partition(":")[2]: value for name, value in values.items()}


HISTORY = [
    # Long ago: a purchase outside 90 days (still lifetime value).
    event("purchase", T - 100 * DAY, amount=50.0),
    # Last week: views in two categories, a click, purchases.
    event("view", T - 3 * DAY, category="toys"),
    event("view", T - 3 * DAY + MIN, item="b1", category="books"),
    event("click", T - 3 * DAY + 2 * MIN),
    event("purchase", T - 2 * DAY, amount=10.0),
    event("purchase", T - DAY, amount=30.0),
    # An earlier session's cart (the pause after it is longer than 30 minutes).
    event("add_to_cart", T - 2 * 60 * MIN, price=99.0),
    # The current session: three views, a click, two items in the cart.
    event("view", T - 20 * MIN, category="toys"),
    event("view", T - 15 * MIN, category="toys"),
    event("click", T - 14 * MIN),
    event("add_to_cart", T - 13 * MIN, price=12.5),
    event("view", T - 10 * MIN, item="g1", category="garden"),
    event("add_to_cart", T - 9 * MIN, item="g1", category="garden", price=7.5),
]


def test_the_six_shopper_features_at_the_query_time() -> None:
    values = shopper(HISTORY)
    assert values["user_avg_purchase_90d"] == pytest.approx((10.0 + 30.0) / 2)
    # toys: 3 of 5 views this week, smoothed toward 1/6 with one more view.
    assert values["category_affinity_score"] == pytest.approx((3 + 1 / 6) / (5 + 1))
    assert values["lifetime_value"] == pytest.approx(90.0)
    assert values["items_viewed_this_session"] == 3
    assert values["cart_value"] == pytest.approx(12.5 + 7.5)  # not the earlier session's 99
    assert values["time_since_last_click"] == pytest.approx(14 * 60.0)


def test_the_request_field_picks_the_category() -> None:
    assert shopper(HISTORY, category="books")["category_affinity_score"] == pytest.approx(
        (1 + 1 / 6) / 6
    )
    # A category never viewed: the smoothed share of nothing.
    assert shopper(HISTORY, category="sports")["category_affinity_score"] == pytest.approx(
        (1 / 6) / 6
    )


def test_the_query_time_moves_what_depends_on_it() -> None:
    later = shopper(HISTORY, T + 60 * MIN)  # the session ended 30 minutes after its last event
    assert later["items_viewed_this_session"] == 0 and later["cart_value"] == 0.0
    assert later["time_since_last_click"] == pytest.approx(74 * 60.0)


def test_a_new_user_has_neutral_values_and_undefined_where_it_is() -> None:
    values, statuses = derived(
        [], [f"shopper:{name}" for name in SIX], T, {"candidate_category": "toys"}
    )
    values = {name.partition(":")[2]: value for name, value in values.items()}
    assert values == {
        "user_avg_purchase_90d": None,  # no purchase: 0 / 0
        "category_affinity_score": pytest.approx(1 / 6),
        "lifetime_value": 0.0,
        "items_viewed_this_session": 0,
        "cart_value": 0.0,
        "time_since_last_click": None,
    }
    assert statuses["shopper:user_avg_purchase_90d"] is ValueStatus.UNDEFINED
    assert statuses["shopper:lifetime_value"] is ValueStatus.NO_DATA


def test_the_recommender_reads_one_vector_of_user_item_and_derived_features() -> None:
    service = REPO.service("recommender")
    assert REPO.join_keys_of(service.features) == ("user_id", "item_id")
    fields = {
        f.name
        for r in service.features
        if r in REPO.derived
        for f in REPO.derived[r].request_fields
    }
    assert fields == {"candidate_category"}
    values, _ = derived(HISTORY, list(service.features), T, {"candidate_category": "toys"})
    assert all(isinstance(v, (int, float)) for v in values.values())  # a model's numbers
    assert values["ranking:category_share_session"] == pytest.approx((2 + 1 / 6) / 4)
    assert values["ranking:log_items_viewed_session"] == pytest.approx(math.log1p(3))
    assert values["ranking:log_minutes_idle"] == pytest.approx(math.log1p(9))
    # i1: 3 views and 2 clicks over the week (its interactions count both).
    assert values["ranking:item_ctr_7d"] == pytest.approx((2 + 1) / (5 - 2 + 10))
    assert values["ranking:user_ctr_7d"] == pytest.approx((2 + 1) / (5 + 10))


def test_the_baseline_reads_no_derived_feature() -> None:
    raw = REPO.service("recommender_raw").features
    assert not set(raw) & set(REPO.derived)
    assert REPO.join_keys_of(raw) == ("user_id", "item_id")
