"""Demo feature definitions (the default ``LFP_FEATURE_REPO``).

Every module-level :class:`FeatureGroup`, :class:`FeatureService`, derived feature view
(``fx.DerivedFeatures``) and request field (``fx.RequestField``) is loaded. Adding a
feature is adding one ``Aggregation`` line, or one expression; adding a group is one more
``FeatureGroup``.
"""

from collections.abc import Iterator
from typing import Any

from demo.generator import CATEGORIES
from feature_core import derived as fx
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
        # The item's unit price, as the cart shows it when the item is added.
        Field("price", "float", min=0),
    ],
    # The shop's own rules: a purchase has an amount and an add-to-cart a price; nothing
    # else has either.
    rules=[
        RequiredWhen("amount", when="event_type", values=["purchase"], only=True),
        RequiredWhen("price", when="event_type", values=["add_to_cart"], only=True),
    ],
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
        # The categories of the last 20 interactions over a week.
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

user_clicks = FeatureGroup(
    name="user_clicks",
    entity=user,
    source=events,
    filter={"event_type": "click"},
    description="What a user clicked: how often, and when last.",
    aggregations=[
        Aggregation("count", windows=["7d"], name="clicks"),
        Aggregation("last", column="event_time", windows=["lifetime"], name="last_click_time"),
    ],
)

user_carts = FeatureGroup(
    name="user_carts",
    entity=user,
    source=events,
    filter={"event_type": "add_to_cart"},
    description="What a user put in the cart since their last pause of 30 minutes.",
    aggregations=[
        Aggregation("sum", column="price", windows=["session:30m"], name="cart_value"),
        Aggregation("count", windows=["session:30m"], name="cart_items"),
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
        for group in (
            user_activity,
            user_purchases,
            user_browsing,
            user_views,
            user_clicks,
            user_carts,
        )
        for feature in group.features
    ],
)

# --- derived features -----------------------------------------------------------------
# Declared once, computed by the platform for serving and training sets alike: the model
# reads them as served, and no feature is computed in the demo's own code.

#: The category of the item being ranked: the recommender gives it with each candidate
#: (its catalog's), a training set's spine as a column of that name.
candidate_category = fx.RequestField(
    "candidate_category", "string", description="The category of the item being ranked."
)


def _share(hits: Any, total: Any) -> fx.Expr:
    """``hits`` of ``total`` as a share, pulled toward the uniform share of a category
    (a user with no history is equally drawn to every category)."""
    return (fx.coalesce(hits, 0) + 1 / len(CATEGORIES)) / (fx.coalesce(total, 0) + 1)


def _log_count(count: Any) -> fx.Expr:
    """``ln(1 + count)``, 0 for no count: counts on the scale a model compares them."""
    return fx.log1p(fx.coalesce(count, 0))


def _click_rate(clicks: Any, views: Any) -> fx.Expr:
    """Clicks over views, smoothed toward 10% (one click in ten views before evidence)."""
    return (fx.coalesce(clicks, 0) + 1.0) / (fx.greatest(fx.coalesce(views, 0), 0) + 10.0)


#: The seed design's six example features of a shopper.
shopper = fx.DerivedFeatures(
    "shopper",
    description="A shopper at a glance: spend, taste for the candidate's category, the "
    "current session.",
    features={
        # The mean purchase over 90 days; null (status undefined) without a purchase.
        "user_avg_purchase_90d": user_purchases["spend_90d"] / user_purchases["purchases_90d"],
        # The candidate category's share of the user's views over the week, smoothed.
        "category_affinity_score": _share(
            user_views["views_by_category_7d"].get(candidate_category, 0), user_views["views_7d"]
        ),
        "lifetime_value": fx.coalesce(user_activity["purchase_amount_sum_lifetime"], 0.0),
        "items_viewed_this_session": fx.coalesce(user_views["items_viewed_session_30m"], 0),
        "cart_value": fx.coalesce(user_carts["cart_value_session_30m"], 0.0),
        # Null when the user never clicked.
        "time_since_last_click": fx.seconds_since(user_clicks["last_click_time_lifetime"]),
    },
)

#: What the recommender reads of a (user, candidate item) pair, beside the shopper's.
ranking = fx.DerivedFeatures(
    "ranking",
    description="Pair features of the demo recommender: a user against a candidate item.",
    features={
        # What the user browses right now: the candidate category's share of the
        # session's views (count_by over the session), beside the week's affinity.
        "category_share_session": _share(
            user_views["views_by_category_session_30m"].get(candidate_category, 0),
            user_views["items_viewed_session_30m"],
        ),
        "log_items_viewed_session": _log_count(shopper["items_viewed_this_session"]),
        # Minutes since the user's last event (a week without one), log-scaled.
        "log_minutes_idle": fx.log1p(
            fx.greatest(
                fx.coalesce(
                    fx.seconds_since(user_browsing["last_event_time_lifetime"]) / 60.0,
                    7 * 24 * 60.0,
                ),
                0.0,
            )
        ),
        "log_user_events_1h": _log_count(user_browsing["events_1h"]),
        "log_user_purchases_30d": _log_count(user_purchases["purchases_30d"]),
        "user_ctr_7d": _click_rate(user_clicks["clicks_7d"], user_views["views_7d"]),
        "log_item_interactions_1h": _log_count(item_popularity["interactions_1h"]),
        "log_item_interactions_1d": _log_count(item_popularity["interactions_1d"]),
        "log_item_interactions_7d": _log_count(item_popularity["interactions_7d"]),
        "log_item_clicks_1h": _log_count(item_clicks["clicks_1h"]),
        # Interactions are views and clicks: views are interactions less clicks.
        "item_ctr_1d": _click_rate(
            item_clicks["clicks_1d"],
            item_popularity["interactions_1d"] - fx.coalesce(item_clicks["clicks_1d"], 0),
        ),
        "item_ctr_7d": _click_rate(
            item_clicks["clicks_7d"],
            item_popularity["interactions_7d"] - fx.coalesce(item_clicks["clicks_7d"], 0),
        ),
        "log_item_distinct_users_7d": _log_count(item_popularity["distinct_users_7d"]),
    },
)

recommender = FeatureService(
    name="recommender",
    description="The demo recommender's input vector for one (user, candidate item) pair, "
    "as the model takes it (see demo.ranking); context: candidate_category.",
    features=[
        "shopper:category_affinity_score",
        "ranking:category_share_session",
        "ranking:log_items_viewed_session",
        "ranking:log_minutes_idle",
        "ranking:log_user_events_1h",
        "ranking:log_user_purchases_30d",
        "ranking:user_ctr_7d",
        "shopper:time_since_last_click",
        "shopper:cart_value",
        "user_purchases:spend_30d",
        "ranking:log_item_interactions_1h",
        "ranking:log_item_interactions_1d",
        "ranking:log_item_interactions_7d",
        "ranking:log_item_clicks_1h",
        "ranking:item_ctr_1d",
        "ranking:item_ctr_7d",
        "ranking:log_item_distinct_users_7d",
    ],
)

#: The aggregates the recommender's derived features read, as they are (the numeric
#: ones): what a model without derived features gets. `make demo` trains one on it to
#: show what the derived features add.
recommender_raw = FeatureService(
    name="recommender_raw",
    description="The demo recommender's aggregates without derived features (a baseline).",
    features=[
        "user_views:views_7d",
        "user_views:items_viewed_session_30m",
        "user_browsing:last_event_time_lifetime",
        "user_browsing:events_1h",
        "user_purchases:purchases_30d",
        "user_purchases:spend_30d",
        "user_clicks:clicks_7d",
        "user_clicks:last_click_time_lifetime",
        "user_carts:cart_value_session_30m",
        "item_popularity:interactions_1h",
        "item_popularity:interactions_1d",
        "item_popularity:interactions_7d",
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
