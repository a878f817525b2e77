"""Consumer health: is lake ingest (or the speed job) consuming, and if not, why.

Each consumer publishes one small record to the online store (wherever it runs: the API
may be on another machine than the consumers): its process start times, its last commit,
the lag it last measured and a short window of lag samples. :func:`judge` turns a record
into one sentence why the consumer is not consuming (or None); ``/readyz`` and
``lfp stack status`` both call it, with the thresholds of :class:`HealthLimits`.

Pure logic: no Redis, Kafka or FastAPI here; :class:`HealthReporter` talks to the store
it is handed.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import orjson

log = logging.getLogger(__name__)

#: Process starts kept per consumer (enough to count a crash loop's restarts in a minute).
MAX_STARTS = 16
#: Lag samples kept per consumer (spread over the lag window).
MAX_SAMPLES = 30
#: A record not updated for this long is dropped (its consumer was removed); the store
#: expires the records' key after the same time.
FORGET_AFTER_S = 3600.0


@dataclass(frozen=True)
class HealthLimits:
    """When a consumer is not consuming (LFP_CONSUMER_* settings)."""

    max_restarts_per_min: int = 2
    stall_s: float = 120.0
    lag_window_s: float = 60.0

    @classmethod
    def from_settings(cls, settings: Any) -> HealthLimits:
        return cls(
            max_restarts_per_min=settings.consumer_max_restarts_per_min,
            stall_s=settings.consumer_stall_s,
            lag_window_s=settings.consumer_lag_window_s,
        )


@dataclass(frozen=True)
class ConsumerHealth:
    """One consumer's published record (times in ms since the epoch)."""

    consumer: str
    host: str = ""
    starts_ms: tuple[int, ...] = ()  # process starts, oldest first
    at_ms: int = 0  # the last report (or start)
    last_commit_ms: int | None = None  # the last time its position moved forward
    lag: Mapping[str, int] = field(default_factory=dict)  # records behind, per topic
    samples: tuple[tuple[int, int], ...] = ()  # (at_ms, records behind in all), oldest first
    #: Records behind in all at the first report after the last commit (or start): only
    #: records beyond these arrived since and wait on a consumer that does not commit.
    #: (An idle consumer can read a few records behind for good: the embedded broker's
    #: log end and Flink's committed offsets need not agree to the record.)
    behind_at_commit: int | None = None

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "consumer": self.consumer,
                "host": self.host,
                "starts_ms": list(self.starts_ms),
                "at_ms": self.at_ms,
                "last_commit_ms": self.last_commit_ms,
                "lag": dict(self.lag),
                "samples": [list(s) for s in self.samples],
                "behind_at_commit": self.behind_at_commit,
            }
        )

    @classmethod
    def from_json(cls, consumer: str, raw: bytes) -> ConsumerHealth:
        """The record as published; ValueError (or KeyError, TypeError) if malformed."""
        data = orjson.loads(raw)
        commit = data.get("last_commit_ms")
        baseline = data.get("behind_at_commit")
        return cls(
            consumer=consumer,
            host=str(data.get("host", "")),
            starts_ms=tuple(int(s) for s in data.get("starts_ms", ())),
            at_ms=int(data["at_ms"]),
            last_commit_ms=None if commit is None else int(commit),
            lag={str(t): int(n) for t, n in dict(data.get("lag", {})).items()},
            samples=tuple((int(a), int(b)) for a, b in data.get("samples", ())),
            behind_at_commit=None if baseline is None else int(baseline),
        )


def started(previous: ConsumerHealth | None, consumer: str, now_ms: int) -> ConsumerHealth:
    """The record of a process that starts now: the earlier processes' starts, last commit
    and lag carry over (so restarts are counted and a stall outlives a restart)."""
    base = previous if previous is not None else ConsumerHealth(consumer)
    return replace(
        base,
        host=socket.gethostname(),
        starts_ms=(*base.starts_ms, now_ms)[-MAX_STARTS:],
        at_ms=now_ms,
        behind_at_commit=None,  # taken again at this process's first report
    )


def reported(
    record: ConsumerHealth,
    now_ms: int,
    lag: Mapping[str, int],
    committed_ms: int | None,
    window_s: float,
) -> ConsumerHealth:
    """The record after a report: the lag now, the last commit (None: none by this process
    yet, the earlier one stays), a lag sample (at most ``MAX_SAMPLES`` over ``window_s``)."""
    samples = [s for s in record.samples if now_ms - s[0] <= window_s * 1000]
    spacing_ms = window_s * 1000 / MAX_SAMPLES
    if not samples or now_ms - samples[-1][0] >= spacing_ms:
        samples.append((now_ms, sum(lag.values())))
    commit = record.last_commit_ms
    if committed_ms is not None:
        commit = max(committed_ms, commit or 0)
    baseline = record.behind_at_commit
    if baseline is None or commit != record.last_commit_ms:
        baseline = sum(lag.values())
    return replace(
        record,
        at_ms=now_ms,
        last_commit_ms=commit,
        behind_at_commit=baseline,
        lag=dict(lag),
        samples=tuple(samples[-MAX_SAMPLES:]),
    )


def restarts_in_last_minute(record: ConsumerHealth, now_ms: int) -> int:
    """Starts in the last minute that followed an earlier start."""
    return sum(1 for s in record.starts_ms[1:] if 0 <= now_ms - s <= 60_000)


def streak_start(record: ConsumerHealth, stall_s: float) -> int:
    """When the current run of starts began: the newest start, or the first of starts each
    less than ``stall_s`` after the one before (a restarting consumer gets one grace
    period to commit, not one per restart). 0 when it never started."""
    starts = record.starts_ms
    if not starts:
        return 0
    i = len(starts) - 1
    while i > 0 and starts[i] - starts[i - 1] < stall_s * 1000:
        i -= 1
    return starts[i]


def lag_growth(record: ConsumerHealth, now_ms: int, window_s: float) -> tuple[int, int] | None:
    """(from, to) if the lag grew through the whole window: each third of the window holds
    a sample, and every sample of a third is above every sample of the third before (a
    consumer keeping up, or draining a burst, drops between thirds)."""
    window_ms = window_s * 1000
    thirds: list[list[int]] = [[], [], []]
    for at, behind in record.samples:
        age = now_ms - at
        if 0 <= age <= window_ms:
            thirds[min(int((window_ms - age) * 3 // window_ms), 2)].append(behind)
    if not all(thirds):
        return None
    if min(thirds[1]) > max(thirds[0]) and min(thirds[2]) > max(thirds[1]):
        return record.samples[0][1], record.samples[-1][1]
    return None


def judge(record: ConsumerHealth, now_ms: int, limits: HealthLimits) -> str | None:
    """Why the consumer is not consuming, in one sentence; None if it is (or its record is
    older than ``FORGET_AFTER_S``: the consumer was removed)."""
    silent_s = (now_ms - record.at_ms) / 1000
    if silent_s > FORGET_AFTER_S:
        return None
    name = record.consumer
    restarts = restarts_in_last_minute(record, now_ms)
    if restarts > limits.max_restarts_per_min:
        return (
            f"{name} is crash-looping: it restarted {restarts} times in the last minute "
            f"(LFP_CONSUMER_MAX_RESTARTS_PER_MIN {limits.max_restarts_per_min}); see its log"
        )
    if silent_s > limits.stall_s:
        return (
            f"{name} has not reported for {silent_s:.0f} s (LFP_CONSUMER_STALL_S "
            f"{limits.stall_s:.0f}): it is hung, paused or cannot reach the online store"
        )
    behind = sum(record.lag.values())
    arrived = behind - (record.behind_at_commit or 0)
    since = max(record.last_commit_ms or 0, streak_start(record, limits.stall_s))
    stalled_s = (now_ms - since) / 1000
    if arrived > 0 and stalled_s > limits.stall_s:
        since_text = f", {arrived} of them arrived since," if arrived < behind else ""
        return (
            f"{name} is stalled: no commit for {stalled_s:.0f} s while {behind} records "
            f"wait on its topics{since_text} (LFP_CONSUMER_STALL_S {limits.stall_s:.0f}); "
            "see its log"
        )
    grew = lag_growth(record, now_ms, limits.lag_window_s)
    if grew is not None:
        return (
            f"{name} is falling behind: its lag grew from {grew[0]} to {grew[1]} records "
            f"over the last {limits.lag_window_s:.0f} s (LFP_CONSUMER_LAG_WINDOW_S)"
        )
    return None


def judge_all(
    raw: Mapping[bytes | str, bytes], now_ms: int, limits: HealthLimits
) -> dict[str, str | None]:
    """Each published consumer's verdict (a malformed record is a problem too)."""
    verdicts: dict[str, str | None] = {}
    for key, value in sorted(raw.items()):
        consumer = key.decode() if isinstance(key, bytes) else key
        try:
            record = ConsumerHealth.from_json(consumer, value)
        except (ValueError, KeyError, TypeError) as error:
            verdicts[consumer] = f"{consumer} published an unreadable health record ({error})"
            continue
        if (now_ms - record.at_ms) / 1000 <= FORGET_AFTER_S:
            verdicts[consumer] = judge(record, now_ms, limits)
    return verdicts


class HealthStore(Protocol):
    """What :class:`HealthReporter` needs of the online store."""

    def consumer_health(self) -> dict[bytes, bytes]: ...

    def publish_health(self, consumer: str, record: bytes) -> None: ...

    def drop_health(self, consumer: str) -> None: ...


class HealthReporter:
    """A consumer process's health record, kept in memory and published to the store.

    Best effort: a store error only delays the next publication (``errors`` are the
    store's exceptions)."""

    def __init__(
        self,
        store: HealthStore,
        consumer: str,
        window_s: float,
        errors: tuple[type[Exception], ...],
    ) -> None:
        self.store = store
        self.consumer = consumer
        self.window_s = window_s
        self.errors = errors
        self.record = ConsumerHealth(consumer)

    def started(self) -> None:
        """Record this process's start after the earlier processes' record."""
        previous = None
        try:
            raw = self.store.consumer_health().get(self.consumer.encode())
            if raw is not None:
                previous = ConsumerHealth.from_json(self.consumer, raw)
        except self.errors as error:
            log.warning("health record not read: %r", error)
        except (ValueError, KeyError, TypeError):
            previous = None  # unreadable: start a new one
        self.record = started(previous, self.consumer, _now_ms())
        self._publish()

    def report(self, lag: Mapping[str, int], committed_at_s: float | None) -> None:
        """The lag just measured and the last commit (seconds since the epoch; None if
        this process has not committed yet)."""
        committed_ms = None if committed_at_s is None else int(committed_at_s * 1000)
        self.record = reported(self.record, _now_ms(), lag, committed_ms, self.window_s)
        self._publish()

    def stopped(self) -> None:
        """Stopped on purpose: drop the record (a removed consumer is not a problem)."""
        try:
            self.store.drop_health(self.consumer)
        except self.errors as error:
            log.warning("health record not dropped: %r", error)

    def _publish(self) -> None:
        try:
            self.store.publish_health(self.consumer, self.record.to_json())
        except self.errors as error:
            log.debug("health report skipped: %r", error)


def _now_ms() -> int:
    return int(time.time() * 1000)
