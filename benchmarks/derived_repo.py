"""The serving benchmarks' feature repo: the demo's, plus five derived features over
``user_features`` and a service serving both (``make bench-serving``, LFP_FEATURE_REPO).

``user_features_derived`` is the demo's ``user_features`` vector (every user feature)
with five derived features over those same features appended, one of each kind a model
asks for: a safe division, a log-scaled count, the time since an event, a ``count_by``
map's value at a request field, and a ``when``/``clip``. Their inputs are all in the
vector, so it reads exactly the views ``user_features`` reads: what the two services
cost apart is what computing the derived features costs.
"""

from demo import feature_repo as demo
from feature_core import derived as fx
from feature_core.definitions import FeatureGroup, FeatureService
from feature_core.sources import EventSource

# Everything the demo's repo declares (groups, sources, services, derived views and
# request fields), so the API serves the demo's services as it would with the demo's repo.
globals().update(
    {
        name: value
        for name, value in vars(demo).items()
        if isinstance(
            value, (FeatureGroup, FeatureService, EventSource, fx.DerivedFeatures, fx.RequestField)
        )
    }
)

#: The benchmark's synthetic events have categories c0..c19: each request names one.
bench_category = fx.RequestField(
    "bench_category", "string", description="The category a benchmark request asks about."
)

bench_derived = fx.DerivedFeatures(
    "bench_derived",
    description="Five derived features over user_features (the serving benchmark's).",
    features={
        # Division by zero (no purchase in 90 days) is null with status undefined.
        "avg_order_value_90d": demo.user_purchases["spend_90d"]
        / demo.user_purchases["purchases_90d"],
        "log_events_lifetime": fx.log1p(fx.coalesce(demo.user_activity["event_count_lifetime"], 0)),
        "seconds_since_last_event": fx.seconds_since(
            demo.user_browsing["last_event_time_lifetime"]
        ),
        "category_views_7d": demo.user_views["views_by_category_7d"].get(bench_category, 0),
        # Events of the last hour, capped at 50, for a user active in the last 5 minutes.
        "active_events_1h": fx.when(
            demo.user_browsing["events_5m"] > 0,
            fx.clip(fx.coalesce(demo.user_browsing["events_1h"], 0), 0, 50),
            0,
        ),
    },
)

user_features_derived = FeatureService(
    name="user_features_derived",
    description="user_features and five derived features over them (context: bench_category).",
    features=[
        *demo.user_features.features,
        *(f"bench_derived:{name}" for name in bench_derived.features),
    ],
    defaults=dict(demo.user_features.defaults),
)
