"""Page visits with a field removed and one retyped: history would break."""

from feature_core.definitions import Aggregation, Entity, FeatureGroup
from feature_core.sources import EventSource, Field

visits = EventSource(
    "visits",
    topic="visits",
    event_time="visit_time",
    fields=[
        Field("visit_id", "string", required=True),
        Field("visitor_id", "string", required=True),
        Field("visit_time", "timestamp", required=True),
        Field("referrer", "integer"),
    ],
)
visitor_activity = FeatureGroup(
    "visitor_activity",
    Entity("visitor", join_key="visitor_id"),
    visits,
    [Aggregation("count", windows=["1h"], name="visits")],
)
