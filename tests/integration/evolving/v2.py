"""Page visits after the change: a nullable ``referrer`` field and a feature over it."""

from feature_core.definitions import Aggregation, Entity, FeatureGroup
from feature_core.sources import EventSource, Field
from tests.integration.evolving import v1

visits = EventSource(
    "visits",
    topic="visits",
    event_time="visit_time",
    fields=[*v1.FIELDS, Field("referrer", "string")],
)
visitor = Entity("visitor", join_key="visitor_id")
visitor_activity = FeatureGroup(
    "visitor_activity",
    visitor,
    visits,
    [
        *v1.AGGREGATIONS,
        Aggregation("last", column="referrer", windows=["lifetime"], name="last_referrer"),
        Aggregation("approx_count_distinct", column="referrer", windows=["1d"], name="referrers"),
    ],
)
