"""The test stack's feature repo: the demo shop and the fraud example at once.

One stack then serves three sources on three topics and lake tables, one-key and
composite entities, as a platform serving several teams does.
"""

from demo import feature_repo as shop
from feature_core.definitions import FeatureGroup, FeatureService
from feature_core.derived import DerivedFeatures, RequestField
from feature_core.sources import EventSource
from fraud import feature_repo as fraud

globals().update(
    {
        name: value
        for module in (shop, fraud)
        for name, value in vars(module).items()
        if isinstance(
            value, (EventSource, FeatureGroup, FeatureService, DerivedFeatures, RequestField)
        )
    }
)
