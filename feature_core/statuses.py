"""The status each served value carries: what a model may trust it for."""

from __future__ import annotations

from enum import StrEnum


class ValueStatus(StrEnum):
    PRESENT = "present"  # exact value from the views
    NO_DATA = "no_data"  # no event for this entity in the window: aggregation identity
    STALE_BATCH_VIEW = "stale_batch_view"  # batch view older than its horizon: approximate
    DEFAULT = "default"  # null value replaced by the feature service's default (serving)
    # No batch view was serving (opt-in, LFP_API_SERVE_SPEED_ONLY): the value covers only
    # the speed layer's tiles, not the history before them.
    SPEED_ONLY = "speed_only"
    # A derived feature's operation is undefined there (a division by zero, log1p of -1
    # or less, an overflow): the value is null, never infinity or an error.
    UNDEFINED = "undefined"
