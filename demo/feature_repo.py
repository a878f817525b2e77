"""Demo feature definitions (the default ``LFP_FEATURE_REPO``).

Every module-level :class:`FeatureGroup` is loaded. Adding a feature is adding one
``Aggregation`` line; adding a group is one more ``FeatureGroup``.
"""

from collections.abc import Iterator
from typing import Any

from feature_core.definitions import Aggregation, Entity, FeatureGroup, FeatureService
from feature_core.sources import EventSource, Field, RequiredWhen

EVENT_TYPES = ("view", "click", "add_to_cart", "purchase")


events = EventSource(
    "events",
    topic="events",
    table="raw_events",
    description="Shop interactions: views, clicks, add-to-cart and purchases.",
    fields=[
        Field("event_id", "string", required=True, min_length=1, max_length=256),
        Field("user_id", "string", required=True, min_length=1, max_length=256),
        Field("event_type", "string", required=True, values=EVENT_TYPES),
        Field("event_time", "timestamp", required=True),
        Field("item_id", "string", min_length=1, max_length=256),
        Field("category", "string", min_length=1, max_length=256),
        Field("amount", "float", min=0),
    ],
    # The shop's own rule: a purchase has an amount, nothing else does.
    rules=[RequiredWhen("amount", when="event_type", values=["purchase"], only=True)],
)

user = Entity("user", join_key="user_id", description="A shopper.")
item = Entity("item", join_key="item_id", description="A catalog item.")

user_activity = FeatureGroup(
    name="user_activity",
    entity=user,
    source=events,
    description="How active a user is and how much they spend.",
    aggregations=[
        Aggregation("count", windows=["1h", "lifetime"], name="event_count"),
        Aggregation("sum", column="amount", windows=["1h", "lifetime"], name="purchase_amount_sum"),
    ],
)

user_purchases = FeatureGroup(
    name="user_purchases",
    entity=user,
    source=events,
    filter={"event_type": "purchase"},
    description="Spending over several horizons.",
    aggregations=[
        Aggregation("count", windows=["1d", "7d", "30d", "90d"], name="purchases"),
        Aggregation("sum", column="amount", windows=["7d", "30d", "90d"], name="spend"),
        Aggregation("mean", column="amount", windows=["30d"], name="avg_order_value"),
        Aggregation("min", column="amount", windows=["lifetime"], name="smallest_order"),
        Aggregation("max", column="amount", windows=["lifetime"], name="largest_order"),
    ],
)

user_browsing = FeatureGroup(
    name="user_browsing",
    entity=user,
    source=events,
    description="What a user looked at recently.",
    aggregations=[
        Aggregation("count", windows=["5m", "1h"], name="events"),
        Aggregation("last", column="item_id", windows=["1h", "lifetime"], name="last_item"),
        Aggregation("last", column="event_time", windows=["lifetime"], name="last_event_time"),
        Aggregation("last_k", column="category", windows=["1d"], k=5, name="recent_categories"),
        # The categories of the last 20 interactions: the recommender's category affinity.
        Aggregation("last_k", column="category", windows=["7d"], k=20, name="category_history"),
        Aggregation(
            "approx_count_distinct", column="item_id", windows=["7d"], name="distinct_items"
        ),
    ],
)

user_views = FeatureGroup(
    name="user_views",
    entity=user,
    source=events,
    filter={"event_type": "view"},
    description="What a user viewed: per category over a week, and in the current session.",
    aggregations=[
        # Views per category. `category` declares no values: a shop adds categories, and a
        # declared list would dead-letter every event of a category not yet in it. So the
        # map is bounded by max_keys instead: the generator's 6 categories (demo.generator
        # CATEGORIES) with room for more; past 32 a week, the 32 smallest names are kept,
        # each count exact (see feature_core.aggregations.counts_by).
        Aggregation(
            "count_by",
            column="category",
            windows=["7d", "session:30m"],
            max_keys=32,
            name="views_by_category",
        ),
        # The share's denominator: every view, also of categories a full map leaves out.
        Aggregation("count", windows=["7d"], name="views"),
        # Views since the user's last pause of 30 minutes: how engaged they are right now.
        Aggregation("count", windows=["session:30m"], name="items_viewed"),
    ],
)

item_popularity = FeatureGroup(
    name="item_popularity",
    entity=item,
    source=events,
    filter={"event_type": ["view", "click"]},
    description="How much attention an item gets.",
    aggregations=[
        Aggregation("count", windows=["1h", "1d", "7d"], name="interactions"),
        Aggregation(
            "approx_count_distinct", column="user_id", windows=["1d", "7d"], name="distinct_users"
        ),
    ],
)

item_clicks = FeatureGroup(
    name="item_clicks",
    entity=item,
    source=events,
    filter={"event_type": "click"},
    description="Clicks on an item: with item_popularity, its click-through rate.",
    aggregations=[Aggregation("count", windows=["1h", "1d", "7d"], name="clicks")],
)

ranking_features = FeatureService(
    name="ranking_features",
    description="Input vector of the demo ranking model (one user).",
    features=[
        "user_activity:event_count_1h",
        "user_activity:purchase_amount_sum_lifetime",
        "user_purchases:purchases_7d",
        "user_purchases:spend_30d",
        "user_purchases:avg_order_value_30d",
        "user_browsing:events_5m",
        "user_browsing:distinct_items_7d",
        "user_browsing:last_item_1h",
    ],
    defaults={"user_purchases:avg_order_value_30d": 0.0, "user_browsing:last_item_1h": ""},
)

user_features = FeatureService(
    name="user_features",
    description="Every user feature, for exploration and consistency checks.",
    features=[
        f"{group.name}:{feature.name}"
        for group in (user_activity, user_purchases, user_browsing, user_views)
        for feature in group.features
    ],
)

recommender_user = FeatureService(
    name="recommender_user",
    description="User side of the demo recommender's input (see demo.ranking).",
    features=[
        "user_browsing:category_history_7d",
        "user_browsing:last_item_1h",
        "user_browsing:last_event_time_lifetime",
        "user_browsing:events_1h",
        "user_views:views_by_category_session_30m",
        "user_views:items_viewed_session_30m",
        "user_purchases:purchases_30d",
        "user_purchases:spend_30d",
    ],
    defaults={"user_browsing:last_item_1h": ""},
)

recommender_item = FeatureService(
    name="recommender_item",
    description="Item side of the demo recommender's input (see demo.ranking).",
    features=[
        "item_popularity:interactions_1h",
        "item_popularity:interactions_1d",
        "item_popularity:interactions_7d",
        "item_popularity:distinct_users_1d",
        "item_popularity:distinct_users_7d",
        "item_clicks:clicks_1h",
        "item_clicks:clicks_1d",
        "item_clicks:clicks_7d",
    ],
)


def live_events(
    rate: float, duration_s: float, seed: int = 7
) -> Iterator[tuple[EventSource, dict[str, Any]]]:
    """`lfp generate` with this repo: live shop sessions (the realistic generator), not
    schema-random events."""
    from demo.generator import Shop, ShopConfig

    for event in Shop(ShopConfig(seed=seed)).live(rate, duration_s):
        yield events, event
