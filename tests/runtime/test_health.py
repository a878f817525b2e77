"""Consumer health: the judgement /readyz and `lfp stack status` share (pure logic)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from feature_core.settings import Settings
from runtime.health import (
    FORGET_AFTER_S,
    MAX_SAMPLES,
    MAX_STARTS,
    ConsumerHealth,
    HealthLimits,
    HealthReporter,
    judge,
    judge_all,
    reported,
    started,
)

NOW = 1_800_000_000_000
LIMITS = HealthLimits(max_restarts_per_min=2, stall_s=120, lag_window_s=60)


def consuming(**changes) -> ConsumerHealth:
    """A consumer that started 10 minutes ago, reported and committed just now, lag 0."""
    fields = {
        "consumer": "lake-ingest",
        "starts_ms": (NOW - 600_000,),
        "at_ms": NOW - 1000,
        "last_commit_ms": NOW - 1000,
        "lag": {"events": 0},
        "samples": tuple((NOW - s * 2000, 0) for s in range(29, -1, -1)),
    }
    return ConsumerHealth(**(fields | changes))


def test_a_consumer_keeping_up_is_healthy():
    assert judge(consuming(), NOW, LIMITS) is None


def test_restarts_in_the_last_minute_past_the_limit_are_a_crash_loop():
    starts = (NOW - 600_000, NOW - 50_000, NOW - 30_000, NOW - 5000)
    why = judge(consuming(starts_ms=starts), NOW, LIMITS)
    assert why is not None
    assert why.startswith("lake-ingest is crash-looping: it restarted 3 times in the last minute")
    assert "LFP_CONSUMER_MAX_RESTARTS_PER_MIN 2" in why
    # Two restarts is within the limit, and the first start ever is not a restart.
    assert judge(consuming(starts_ms=starts[1:]), NOW, LIMITS) is None
    assert judge(consuming(starts_ms=starts[:1] + starts[2:]), NOW, LIMITS) is None


def test_a_consumer_that_stopped_reporting_is_stalled_until_forgotten():
    silent = consuming(at_ms=NOW - 121_000)
    why = judge(silent, NOW, LIMITS)
    assert why is not None and "lake-ingest has not reported for 121 s" in why
    assert judge(consuming(at_ms=NOW - 119_000), NOW, LIMITS) is None
    gone = consuming(at_ms=NOW - int(FORGET_AFTER_S * 1000) - 1)
    assert judge(gone, NOW, LIMITS) is None


def test_no_commit_while_records_wait_is_a_stall_but_an_idle_consumer_is_fine():
    waiting = consuming(last_commit_ms=NOW - 300_000, lag={"events": 4, "clicks": 1})
    why = judge(waiting, NOW, LIMITS)
    assert why == (
        "lake-ingest is stalled: no commit for 300 s while 5 records wait on its topics "
        "(LFP_CONSUMER_STALL_S 120); see its log"
    )
    idle = consuming(last_commit_ms=NOW - 300_000, lag={"events": 0})
    assert judge(idle, NOW, LIMITS) is None


def test_a_restart_gives_one_grace_period_to_commit_not_one_per_restart():
    old_commit = {"last_commit_ms": NOW - 900_000, "lag": {"events": 3}}
    # Restarted once, 30 s ago, after a long run: still within its grace period.
    assert (
        judge(consuming(starts_ms=(NOW - 800_000, NOW - 30_000), **old_commit), NOW, LIMITS) is None
    )
    # Restarting every 40 s for 5 minutes (few restarts a minute, each under the limit):
    # the grace period counts from the first of them.
    loop = tuple(NOW - 300_000 + i * 40_000 for i in range(8))
    why = judge(consuming(starts_ms=loop, **old_commit), NOW, LIMITS)
    assert why is not None and why.startswith("lake-ingest is stalled: no commit for 300 s")


def test_lag_growing_through_the_window_is_falling_behind():
    growing = tuple((NOW - (29 - i) * 2000, 1000 + i * 100) for i in range(30))
    why = judge(consuming(samples=growing, lag={"events": 3900}), NOW, LIMITS)
    assert why == (
        "lake-ingest is falling behind: its lag grew from 1000 to 3900 records over the "
        "last 60 s (LFP_CONSUMER_LAG_WINDOW_S)"
    )


def test_a_burst_being_drained_or_a_sawtooth_is_not_falling_behind():
    burst = tuple(
        (NOW - (29 - i) * 2000, 0 if i < 10 else 5000 - (i - 10) * 200) for i in range(30)
    )
    assert judge(consuming(samples=burst), NOW, LIMITS) is None
    sawtooth = tuple((NOW - (29 - i) * 2000, (i % 5) * 1000) for i in range(30))
    assert judge(consuming(samples=sawtooth), NOW, LIMITS) is None
    # Too little history (the consumer just started) is no verdict.
    young = tuple((NOW - (9 - i) * 2000, i * 1000) for i in range(10))
    assert judge(consuming(samples=young), NOW, LIMITS) is None


@given(st.lists(st.integers(0, 10**9), min_size=3, max_size=60))
def test_lag_that_never_rises_is_never_falling_behind(values):
    falling = sorted(values, reverse=True)
    step = 60_000 // len(falling)
    samples = tuple((NOW - (len(falling) - 1 - i) * step, v) for i, v in enumerate(falling))
    assert judge(consuming(samples=samples), NOW, LIMITS) is None


@given(
    st.lists(st.integers(0, 120_000), max_size=40),
    st.integers(0, 600_000),
    st.lists(st.integers(0, 10**6), max_size=40),
)
def test_records_stay_bounded_and_round_trip(start_ages, commit_age, lags):
    record = None
    for age in sorted(start_ages, reverse=True):
        record = started(record, "speed-job", NOW - age)
    record = record or started(None, "speed-job", NOW)
    for i, behind in enumerate(lags):
        record = reported(record, NOW + i * 500, {"events": behind}, NOW - commit_age, 60)
    assert len(record.starts_ms) <= MAX_STARTS
    assert len(record.samples) <= MAX_SAMPLES
    assert len(record.to_json()) < 4096
    assert ConsumerHealth.from_json("speed-job", record.to_json()) == record
    why = judge(record, NOW + len(lags) * 500, LIMITS)
    assert why is None or why.startswith("speed-job ")


@given(st.integers(0, 60), st.integers(1, 10), st.integers(0, 100))
def test_more_restarts_than_the_limit_in_a_minute_is_always_a_crash_loop(extra, limit, gap):
    restarts = limit + 1 + extra
    starts = (NOW - 3_600_000, *(NOW - 59_000 + i * gap for i in range(restarts)))
    record = consuming(starts_ms=starts[-MAX_STARTS:])
    why = judge(record, NOW, HealthLimits(limit, 120, 60))
    expected = min(restarts, MAX_STARTS - 1)
    if expected > limit:
        assert why is not None and f"restarted {expected} times" in why
    else:  # the record keeps MAX_STARTS starts: counts stop there
        assert why is None


def test_a_new_process_carries_the_earlier_ones_commit_and_the_judgement_reads_every_record():
    first = reported(
        started(None, "lake-ingest", NOW - 10_000), NOW - 9000, {"e": 2}, NOW - 9000, 60
    )
    second = reported(started(first, "lake-ingest", NOW - 1000), NOW, {"e": 2}, None, 60)
    assert second.last_commit_ms == NOW - 9000 and second.starts_ms == (NOW - 10_000, NOW - 1000)
    raw = {b"lake-ingest": second.to_json(), b"speed-job": b"{not json"}
    verdicts = judge_all(raw, NOW, LIMITS)
    assert verdicts["lake-ingest"] is None
    assert "speed-job published an unreadable health record" in verdicts["speed-job"]


class MemoryStore:
    """The three store calls the reporter makes, in a dict (the store's own tests run
    against Redis)."""

    def __init__(self) -> None:
        self.records: dict[bytes, bytes] = {}

    def consumer_health(self) -> dict[bytes, bytes]:
        return dict(self.records)

    def publish_health(self, consumer: str, record: bytes) -> None:
        self.records[consumer.encode()] = record

    def drop_health(self, consumer: str) -> None:
        self.records.pop(consumer.encode(), None)


def test_the_reporter_counts_restarts_across_processes_and_drops_its_record_on_stop():
    store = MemoryStore()
    for _ in range(4):  # four processes, each starting and failing at once
        HealthReporter(store, "lake-ingest", 60, (OSError,)).started()
    record = ConsumerHealth.from_json("lake-ingest", store.records[b"lake-ingest"])
    why = judge(record, record.at_ms + 1000, LIMITS)
    assert why is not None and "restarted 3 times" in why  # right then, a loop ...
    (later,) = judge_all(store.records, record.at_ms + 61_000, LIMITS).values()
    assert later is None  # ... a minute later, no restarts in the last minute
    reporter = HealthReporter(store, "lake-ingest", 60, (OSError,))
    reporter.started()
    reporter.report({"events": 0}, None)
    reporter.stopped()
    assert store.records == {}


def test_thresholds_come_from_the_documented_settings():
    settings = Settings(
        _env_file=None,
        consumer_max_restarts_per_min=5,
        consumer_stall_s=30,
        consumer_lag_window_s=90,
    )
    assert HealthLimits.from_settings(settings) == HealthLimits(5, 30, 90)
    for name in ("consumer_max_restarts_per_min", "consumer_stall_s", "consumer_lag_window_s"):
        assert Settings.model_fields[name].description


def test_records_left_behind_by_an_idle_consumer_are_not_a_stall_new_ones_are():
    """Seen on the live stack after the speed job replayed its topics: the committed
    offsets sat 3 records short of the broker's log end while nothing arrived. Only
    records that arrive after the last commit and wait past the limit are a stall."""
    record = consuming(last_commit_ms=None, lag={})
    record = reported(record, NOW - 300_000, {"events": 3}, NOW - 300_000, LIMITS.lag_window_s)
    record = reported(record, NOW, {"events": 3}, None, LIMITS.lag_window_s)
    assert record.behind_at_commit == 3 and judge(record, NOW, LIMITS) is None
    later = reported(record, NOW + 1000, {"events": 5}, None, LIMITS.lag_window_s)
    why = judge(later, NOW + 1000, LIMITS)
    assert why is not None and "5 records wait on its topics, 2 of them arrived since" in why
    # A commit takes the baseline again; a restart forgets it until its first report.
    moved = reported(later, NOW + 2000, {"events": 1}, NOW + 2000, LIMITS.lag_window_s)
    assert moved.behind_at_commit == 1
    assert started(moved, "lake-ingest", NOW + 3000).behind_at_commit is None
