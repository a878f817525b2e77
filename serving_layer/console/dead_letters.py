"""Dead letters page: each source's recent rejects, counted by reason, with the newest
record of each reason.

Rejects are envelopes (:mod:`runtime.dead_letters`) on each source's dead-letter topic,
plus those lake ingest spilled to ``<data_dir>/dead-letters/`` when the broker did not take
them. The newest :data:`NEWEST` of each topic are read with kafka-python in a worker thread
(the event loop never waits on the broker), within :data:`READ_TIMEOUT_S`, and the result
is shared for :data:`CACHE_S` seconds: a page reload does not read the topics again. A
broker that does not answer is a line on the page, not an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from kafka import TopicPartition
from kafka.errors import KafkaError

from feature_core.definitions import FeatureRepo
from feature_core.settings import Settings
from feature_core.sources import EventSource
from runtime.dead_letters import read_spilled, spill_path
from runtime.kafka import consumer as kafka_consumer
from serving_layer.console.auth import LoggedIn
from serving_layer.console.render import page

router = APIRouter(include_in_schema=False)

#: Envelopes read from the end of each dead-letter topic (and of each spill file).
NEWEST = 1000
#: The whole read of every topic, at most.
READ_TIMEOUT_S = 8.0
#: A read is shared by the requests of this many seconds.
CACHE_S = 5.0
#: A sample record's text shown, at most (the envelope holds up to LFP_DEAD_LETTER_MAX_BYTES).
SAMPLE_CHARS = 2000


@dataclass
class Reason:
    reason: str
    count: int = 0
    newest_ms: int | None = None
    sample: dict[str, Any] | None = None

    def add(self, letter: dict[str, Any]) -> None:
        self.count += 1
        at = letter.get("rejected_at")
        at = at if isinstance(at, int) and not isinstance(at, bool) else None
        if self.sample is None or (at is not None and (self.newest_ms or 0) <= at):
            self.newest_ms, self.sample = at, letter

    @property
    def sample_text(self) -> str:
        """The sample record: its text (UTF-8 records), else its base64, cut for the page."""
        letter = self.sample or {}
        raw = letter.get("raw")
        text = raw if isinstance(raw, str) else letter.get("raw_base64")
        if not isinstance(text, str):
            return "(no value: a null record)"
        return text if len(text) <= SAMPLE_CHARS else f"{text[:SAMPLE_CHARS]}…"


@dataclass
class SourceRejects:
    source: str
    topic: str
    dead_letter_topic: str
    read: int = 0
    spilled: int = 0
    reasons: list[Reason] = field(default_factory=list)
    #: Why the topic could not be read (the spill file still was).
    problem: str | None = None


#: A field's rejected value at the start of one problem of a reason (``amount: -3.0 is
#: below the minimum 0``): the value as the source's checks quote it (``repr``).
_QUOTED_VALUE = re.compile(
    r"""(?:^|(?<=; ))(?P<field>[^:;'"]+): """
    r"""(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|-?(?:\d+(?:\.\d*)?(?:e[+-]?\d+)?|inf)"""
    r"""|nan|True|False|None)(?= )"""
)


def reason_kind(reason: str) -> str:
    """A reason without the rejected values it quotes: records that failed the same checks
    with different values count as one reason, not one each."""
    return _QUOTED_VALUE.sub(r"\g<field>: <value>", reason)


def count_reasons(letters: Iterable[dict[str, Any]]) -> list[Reason]:
    """Rejects counted by reason (the values they quote left out), the most frequent first,
    each with its newest record."""
    found: dict[str, Reason] = {}
    for letter in letters:
        reason = letter.get("reason")
        key = reason_kind(reason) if isinstance(reason, str) else "(no reason given)"
        found.setdefault(key, Reason(key)).add(letter)
    return sorted(found.values(), key=lambda r: (-r.count, r.reason))


def newest_letters(consumer: Any, topic: str, newest: int, deadline: float) -> list[dict]:
    """The newest ``newest`` envelopes of a topic (each partition's tail), oldest first;
    those read by ``deadline`` (monotonic) when the broker is slow."""
    partitions = sorted(consumer.partitions_for_topic(topic) or ())
    if not partitions:
        return []
    tps = [TopicPartition(topic, p) for p in partitions]
    consumer.assign(tps)
    ends = consumer.end_offsets(tps)
    begins = consumer.beginning_offsets(tps)
    for tp in tps:
        consumer.seek(tp, max(begins[tp], ends[tp] - newest))
    remaining = {tp for tp in tps if consumer.position(tp) < ends[tp]}
    letters: list[dict] = []
    while remaining and time.monotonic() < deadline:
        for tp, records in consumer.poll(timeout_ms=300).items():
            for record in records:
                if record.offset >= ends[tp]:
                    break
                with contextlib.suppress(orjson.JSONDecodeError, TypeError):
                    letter = orjson.loads(record.value)
                    if isinstance(letter, dict):
                        letters.append(letter)
        remaining = {tp for tp in remaining if consumer.position(tp) < ends[tp]}
    letters.sort(key=lambda e: e.get("rejected_at") if isinstance(e.get("rejected_at"), int) else 0)
    return letters[-newest:]


def spilled_letters(data_dir: Path, dead_letter_topic: str, newest: int) -> list[dict]:
    """The newest envelopes of a dead-letter topic's spill file."""
    if not spill_path(data_dir, dead_letter_topic).exists():
        return []
    return list(deque(read_spilled(data_dir, dead_letter_topic), maxlen=newest))


def read_rejects(
    settings: Settings, sources: Sequence[EventSource], newest: int = NEWEST
) -> list[SourceRejects]:
    """Every source's rejects, from its dead-letter topic and its spill file (blocking:
    run it in a thread)."""
    deadline = time.monotonic() + READ_TIMEOUT_S
    found = [SourceRejects(s.name, s.topic_name, s.dlq_topic) for s in sources]
    consumer = None
    problem: str | None = None
    try:
        consumer = kafka_consumer(
            settings,
            group_id=None,
            enable_auto_commit=False,
            bootstrap_timeout_ms=3000,
            request_timeout_ms=5000,
            fetch_max_wait_ms=200,
            reconnect_backoff_max_ms=1000,
            client_id="lfp-console",
        )
    except (KafkaError, OSError, RuntimeError) as error:
        servers = settings.kafka_bootstrap_servers
        problem = f"no Kafka broker answered at {servers} ({type(error).__name__})"
    try:
        for rejects in found:
            letters: list[dict] = []
            if consumer is None:
                rejects.problem = problem
            elif time.monotonic() > deadline:
                rejects.problem = f"not read: the broker took over {READ_TIMEOUT_S:.0f} s"
            else:
                try:
                    letters = newest_letters(consumer, rejects.dead_letter_topic, newest, deadline)
                except (KafkaError, OSError) as error:
                    why = f"{type(error).__name__}: {error}"
                    rejects.problem = f"reading {rejects.dead_letter_topic} failed ({why})"
            rejects.read = len(letters)
            spilled = spilled_letters(settings.data_dir, rejects.dead_letter_topic, newest)
            rejects.spilled = len(spilled)
            rejects.reasons = count_reasons([*letters, *spilled])
    finally:
        if consumer is not None:
            with contextlib.suppress(Exception):
                consumer.close(autocommit=False)
    return found


class RejectsCache:
    """One read of the dead letters shared by every request within :data:`CACHE_S`
    (concurrent requests wait for the same read)."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._read_at = -CACHE_S
        self._result: tuple[list[SourceRejects], float] | None = None

    async def get(self, settings: Settings, repo: FeatureRepo) -> tuple[list[SourceRejects], float]:
        async with self._lock:
            if self._result is None or time.monotonic() - self._read_at > CACHE_S:
                rejects = await asyncio.to_thread(read_rejects, settings, repo.sources)
                self._read_at = time.monotonic()
                self._result = (rejects, time.time())
            return self._result


@router.get("/console/dead-letters")
async def dead_letters(request: Request, _: LoggedIn) -> Response:
    """Recent rejects per source, counted by reason, with a sample record of each."""
    cache: RejectsCache = request.app.state.console_rejects
    rejects, read_at = await cache.get(request.app.state.settings, request.app.state.repo)
    context = {
        "rejects": rejects,
        "read_at_ms": read_at * 1000,
        "newest": NEWEST,
        "broker": request.app.state.settings.kafka_bootstrap_servers,
    }
    return page(request, "dead_letters.html", context)
