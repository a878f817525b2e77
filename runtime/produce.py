"""Producing events to the sources' topics: by hand (``lfp send``) or generated."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import IO, Any

import orjson

from feature_core.settings import Settings
from feature_core.sources import EventSource
from feature_core.synthetic import random_record
from runtime.kafka import producer

SourcedEvent = tuple[EventSource, dict[str, Any]]


def produce_records(
    settings: Settings,
    events: Iterable[SourcedEvent],
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Send each event, as JSON, to its source's topic; how many were sent."""
    out = producer(settings)
    sent = 0
    try:
        for source, event in events:
            out.send(source.topic_name, value=orjson.dumps(event))
            sent += 1
            if on_progress:
                on_progress(1)
        out.flush()
    finally:
        out.close()
    return sent


def send_lines(settings: Settings, source: EventSource, lines: IO[bytes]) -> int:
    """Produce each non-blank line as it is: the platform validates it on the way in,
    and a record it rejects goes to the source's dead-letter topic with the reason."""
    out = producer(settings)
    sent = 0
    try:
        for line in lines:
            value = line.rstrip(b"\r\n")
            if value.strip():
                out.send(source.topic_name, value=value)
                sent += 1
        out.flush()
    finally:
        out.close()
    return sent


def live_events(
    sources: Sequence[EventSource],
    rate: float,
    duration_s: float,
    seed: int = 0,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[SourcedEvent]:
    """Random valid events of the sources, in turn, about ``rate`` a second for
    ``duration_s`` seconds, each dated when it is sent."""
    if rate <= 0 or duration_s <= 0:
        raise ValueError("rate and duration must be positive")
    rng = random.Random(seed)
    start = clock()
    for n in range(int(rate * duration_s)):
        wait = start + n / rate - clock()
        if wait > 0:
            sleep(wait)
        source = sources[n % len(sources)]
        yield source, random_record(source, rng, int(clock() * 1000))
