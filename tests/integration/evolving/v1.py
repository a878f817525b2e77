"""Page visits, as first declared."""

from feature_core.definitions import Aggregation, Entity, FeatureGroup
from feature_core.sources import EventSource, Field

FIELDS = [
    Field("visit_id", "string", required=True),
    Field("visitor_id", "string", required=True),
    Field("page", "string", required=True),
    Field("visit_time", "timestamp", required=True),
]
AGGREGATIONS = [
    Aggregation("count", windows=["1h", "lifetime"], name="visits"),
    Aggregation("last", column="page", windows=["lifetime"], name="last_page"),
]

visits = EventSource("visits", topic="visits", event_time="visit_time", fields=FIELDS)
visitor = Entity("visitor", join_key="visitor_id")
visitor_activity = FeatureGroup("visitor_activity", visitor, visits, AGGREGATIONS)
