"""bench-speed's pure parts: the late events' ages and the late probes' bound."""

from __future__ import annotations

import math
import random

from benchmarks.speed import (
    LATE_MAX_MS,
    LATE_MIN_MS,
    late_age_ms,
    percentile,
    percentiles,
    probe_max_age_ms,
)
from demo.feature_repo import item_popularity, user_activity
from feature_core.windows import DAY_MS, HOUR_MS

NOW = 1_796_550_000_000


def test_late_ages_are_log_uniform_between_a_minute_and_a_week() -> None:
    rng = random.Random(7)
    ages = [late_age_ms(rng) for _ in range(20_000)]
    assert min(ages) >= LATE_MIN_MS and max(ages) <= LATE_MAX_MS
    # Log-uniform: each decade of the range holds its share of the draws.
    span = math.log(LATE_MAX_MS / LATE_MIN_MS)
    for low, high in ((LATE_MIN_MS, 10 * LATE_MIN_MS), (HOUR_MS, 10 * HOUR_MS)):
        share = sum(low <= a < high for a in ages) / len(ages)
        assert abs(share - math.log(high / low) / span) < 0.02


def test_late_ages_keep_to_a_narrower_range() -> None:
    rng = random.Random(1)
    ages = [late_age_ms(rng, LATE_MIN_MS, 2 * LATE_MIN_MS) for _ in range(1000)]
    assert all(LATE_MIN_MS <= a <= 2 * LATE_MIN_MS for a in ages)


def test_a_lifetime_window_takes_late_probes_of_a_week() -> None:
    assert probe_max_age_ms(user_activity, NOW) == LATE_MAX_MS


def test_late_probes_stay_well_inside_the_longest_window() -> None:
    # item_popularity's longest window is 7 days (1-hour hops): half of its reach.
    bound = probe_max_age_ms(item_popularity, NOW)
    assert 3.5 * DAY_MS <= bound <= 3.5 * DAY_MS + HOUR_MS


def test_the_late_events_max_age_caps_late_probes() -> None:
    assert probe_max_age_ms(user_activity, NOW, max_age_s=3600) == HOUR_MS // 2
    assert probe_max_age_ms(user_activity, NOW, max_age_s=10) == LATE_MIN_MS


def test_percentiles() -> None:
    values = [i / 100 for i in range(100)]
    assert percentile(values, 0.5) == 0.5 and percentile(values, 0.99) == 0.99
    assert percentiles(values, 5, first=8) == "    0.50  0.95  0.99"
    assert "nan" in percentiles([], 5)
