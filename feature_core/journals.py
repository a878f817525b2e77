"""Operations journals: time-stamped records the platform's processes publish for operators
(the console, ``/metrics``), each kind capped to its newest records in the online store.

In ``feature_core`` because writers (scheduler, batch layer) and readers (serving layer)
share the names, like the run record. Each record is JSON carrying its own time
(``at_ms``), which also scores it in the store.
"""

from __future__ import annotations

from enum import StrEnum


class Journal(StrEnum):
    #: Per group the speed watermark's and the batch view's age, per consumer the lag.
    FRESHNESS = "freshness"
    #: Per batch run, each feature's statistics and drift against the previous run.
    FEATURE_STATS = "feature-stats"
    #: Per training set built, each feature's statistics (a drift baseline).
    TRAINING_STATS = "training-stats"
    #: The scheduler's sampled verifications: a few entities against a recompute.
    SAMPLED_VERIFY = "sampled-verify"
    #: Every ``lfp verify`` report.
    VERIFY = "verify"

    @property
    def keep(self) -> int:
        """Records kept: a freshness sample every 15 s for a day; a few hundred of the rest."""
        return 6000 if self is Journal.FRESHNESS else 500
