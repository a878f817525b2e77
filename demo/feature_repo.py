"""Demo feature definitions (the default ``LFP_FEATURE_REPO``)."""

from feature_core.definitions import Aggregation, Entity, EventSource, FeatureGroup

user = Entity("user", join_key="user_id", description="A shopper.")
events = EventSource("events", topic="events", table="raw_events")

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
