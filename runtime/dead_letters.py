"""Dead letters: a rejected record's bounded envelope, sent to its source's dead-letter
topic, or, when the broker does not acknowledge it, written to a local spill file.

An envelope is never larger than ``max_bytes`` (``LFP_DEAD_LETTER_MAX_BYTES``), whatever
the record: it names the reason, where the record came from, its size and sha256, and
holds the record whole when it fits (as text when it is UTF-8, else base64), else its
head with ``truncated: true``. So a dead letter always fits the broker's record limit,
and one hostile record can never make its own dead letter fail.

:meth:`DeadLetters.settle` is what a consumer calls before committing past a batch: every
dead letter is then either acknowledged by the broker or fsync'd to
``<data_dir>/dead-letters/<dead-letter topic>.jsonl`` (`lfp dead-letters spilled`).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from kafka import TopicPartition
from kafka.errors import KafkaError, KafkaTimeoutError

log = logging.getLogger(__name__)

#: A reason longer than this is cut (a rejected value quoted in it may be huge).
REASON_MAX_CHARS = 500
#: A record key longer than this is not copied to the dead letter (its size is noted).
KEY_MAX_BYTES = 1024
#: The spill files' folder, under the data directory.
SPILL_DIR = "dead-letters"


def bounded_reason(reason: str) -> str:
    """The reason on one line, at most :data:`REASON_MAX_CHARS` characters."""
    one_line = " ".join(reason.split())
    if len(one_line) <= REASON_MAX_CHARS:
        return one_line
    return one_line[: REASON_MAX_CHARS - 1] + "…"


def envelope(
    raw: bytes | None,
    reason: str,
    topic: str,
    partition: int,
    offset: int,
    max_bytes: int,
    key: bytes | None = None,
    rejected_at_ms: int | None = None,
    topic_id: str | None = None,
) -> dict[str, Any]:
    """The dead letter of one record, whose JSON (:func:`encode`) is at most ``max_bytes``."""
    letter: dict[str, Any] = {
        "reason": bounded_reason(reason),
        "topic": topic,
        "topic_id": topic_id,
        "partition": partition,
        "offset": offset,
        "rejected_at": rejected_at_ms if rejected_at_ms is not None else int(time.time() * 1000),
        "size": None if raw is None else len(raw),
        "sha256": None if raw is None else hashlib.sha256(raw).hexdigest(),
        "key_size": None if key is None else len(key),
        "truncated": False,
    }
    if raw is None:
        letter["raw"] = None
        return _checked(letter, max_bytes)
    try:
        text: str | None = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    field = "raw" if text is not None else "raw_base64"
    # "false" is the longer of the two flags: the budget holds with either.
    budget = max_bytes - len(encode({**letter, "truncated": False, field: ""}))
    if budget < 0:
        raise ValueError(f"a dead-letter envelope needs more than {max_bytes} bytes")
    if text is not None:
        if _text_cost(text) <= budget:
            letter["raw"] = text
        else:
            letter.update(raw=_text_head(raw, budget), truncated=True)
    elif _base64_cost(len(raw)) <= budget:
        letter["raw_base64"] = base64.b64encode(raw).decode("ascii")
    else:
        head = raw[: budget // 4 * 3]
        letter.update(raw_base64=base64.b64encode(head).decode("ascii"), truncated=True)
    return _checked(letter, max_bytes)


def encode(letter: dict[str, Any]) -> bytes:
    return orjson.dumps(letter)


def _checked(letter: dict[str, Any], max_bytes: int) -> dict[str, Any]:
    size = len(encode(letter))
    if size > max_bytes:  # the arithmetic above guarantees it; a bug must not go out
        raise AssertionError(f"dead-letter envelope of {size} bytes over {max_bytes}")
    return letter


def _text_cost(text: str) -> int:
    """Bytes the text takes inside a JSON string (escapes included)."""
    return len(orjson.dumps(text)) - 2


def _base64_cost(size: int) -> int:
    return (size + 2) // 3 * 4


def _text_head(raw: bytes, budget: int) -> str:
    """The longest head of UTF-8 ``raw`` (whole characters) within ``budget`` JSON bytes.

    JSON never takes fewer bytes than UTF-8, so the head has at most ``budget`` bytes;
    the escaped size grows with the head, so a binary search finds it."""
    low, high = 0, min(len(raw), budget)
    while low < high:
        middle = (low + high + 1) // 2
        if _text_cost(raw[:middle].decode("utf-8", "ignore")) <= budget:
            low = middle
        else:
            high = middle - 1
    return raw[:low].decode("utf-8", "ignore")


# --- sending, and the spill file ------------------------------------------------------


def spill_dir(data_dir: Path) -> Path:
    return data_dir / SPILL_DIR


def spill_path(data_dir: Path, dlq_topic: str) -> Path:
    """The spill file of one dead-letter topic (JSON lines, one envelope each)."""
    return spill_dir(data_dir) / f"{dlq_topic}.jsonl"


@dataclass
class _Pending:
    dlq_topic: str
    letter: dict[str, Any]
    sent: Any  # the producer's future, or the error send() raised


@dataclass
class Settled:
    """What :meth:`DeadLetters.settle` did with a batch's dead letters; ``next_offsets``:
    per dead-letter topic and partition, the offset after the last one acknowledged."""

    acknowledged: int = 0
    spilled: int = 0
    next_offsets: dict[str, dict[int, int]] = field(default_factory=dict)


#: A record's place: (topic, partition, offset).
Place = tuple[str, int, int]


def place(letter: dict[str, Any], topic_ids: dict[str, str]) -> Place | None:
    """Where an envelope's record came from, if from the current instance of its topic
    (``topic_ids``: topic -> instance id; None for another instance's, or a foreign one:
    a recreated topic's offsets name other records)."""
    where = (letter.get("topic"), letter.get("partition"), letter.get("offset"))
    if letter.get("topic_id") is None or topic_ids.get(where[0]) != letter["topic_id"]:
        return None
    if isinstance(where[0], str) and isinstance(where[1], int) and isinstance(where[2], int):
        return where  # type: ignore[return-value]
    return None


class DeadLetters:
    """A batch's dead letters: :meth:`reject` sends each, :meth:`settle` waits for the
    broker's acknowledgements and spills (fsync'd) every one it did not get.

    ``producer`` is a kafka-python producer; ``timeout_s`` bounds the wait for the whole
    batch; ``data_dir`` holds the spill files."""

    def __init__(self, producer: Any, data_dir: Path, max_bytes: int, timeout_s: float) -> None:
        self.producer = producer
        self.data_dir = data_dir
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self._pending: list[_Pending] = []
        #: Records already dead-lettered by an earlier process (sent or spilled after the
        #: last commit): read again after a restart, they are not sent twice.
        self.already: set[Place] = set()
        #: Dead-letter topics whose send timed out in this batch: asked again next batch.
        self._unreachable: dict[str, Exception] = {}

    def reject(
        self,
        dlq_topic: str,
        raw: bytes | None,
        reason: str,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None = None,
        topic_id: str | None = None,
    ) -> None:
        if (topic, partition, offset) in self.already:
            return
        letter = envelope(
            raw, reason, topic, partition, offset, self.max_bytes, key, topic_id=topic_id
        )
        kept_key = key if key is not None and len(key) <= KEY_MAX_BYTES else None
        sent: Any = self._unreachable.get(dlq_topic)
        if sent is None:
            try:
                sent = self.producer.send(
                    dlq_topic,
                    key=kept_key,
                    value=encode(letter),
                    headers=[("reason", letter["reason"].encode())],
                )
            except KafkaTimeoutError as error:
                # No metadata for the topic (missing, broker away): every later send
                # of this batch would wait as long, so they are spilled at once.
                self._unreachable[dlq_topic] = sent = error
            except (KafkaError, OSError) as error:  # e.g. refused at once as too large
                sent = error
        self._pending.append(_Pending(dlq_topic, letter, sent))

    @property
    def pending(self) -> int:
        return len(self._pending)

    def close(self) -> None:
        self.producer.close()

    def settle(self) -> Settled:
        """Every dead letter since the last call acknowledged or spilled (fsync'd); an
        ``OSError`` from the spill file propagates: then nothing may be committed."""
        settled = Settled()
        self._unreachable.clear()
        if not self._pending:
            return settled
        deadline = time.monotonic() + self.timeout_s
        try:
            self.producer.flush(timeout=self.timeout_s)
        except KafkaError as error:
            log.warning("dead letters not all flushed in %.0f s: %r", self.timeout_s, error)
        spills: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for pending in self._pending:
            error = pending.sent if isinstance(pending.sent, Exception) else None
            if error is None:
                try:
                    stored = pending.sent.get(timeout=max(0.0, deadline - time.monotonic()))
                except Exception as failed:  # KafkaError or the future's timeout
                    error = failed
            if error is None:
                settled.acknowledged += 1
                offsets = settled.next_offsets.setdefault(pending.dlq_topic, {})
                partition, offset = (
                    getattr(stored, "partition", None),
                    getattr(stored, "offset", -1),
                )
                if isinstance(partition, int) and offset >= offsets.get(partition, 0):
                    offsets[partition] = offset + 1
                continue
            spills[pending.dlq_topic].append(
                {
                    **pending.letter,
                    "dead_letter_topic": pending.dlq_topic,
                    "send_error": f"{type(error).__name__}: {error}"[:300],
                    "spilled_at": int(time.time() * 1000),
                }
            )
        for dlq_topic, letters in spills.items():
            append_spilled(spill_path(self.data_dir, dlq_topic), letters)
            settled.spilled += len(letters)
            log.warning(
                "%d dead letters for %s not acknowledged by the broker: spilled to %s",
                len(letters),
                dlq_topic,
                spill_path(self.data_dir, dlq_topic),
            )
        self._pending.clear()
        return settled


def append_spilled(path: Path, letters: list[dict[str, Any]]) -> None:
    """Append envelopes as JSON lines and fsync them (and a new file's folder entry)."""
    created = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as out:
        out.write(b"".join(orjson.dumps(letter) + b"\n" for letter in letters))
        out.flush()
        os.fsync(out.fileno())
    if created:
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def read_spilled(data_dir: Path, dlq_topic: str | None = None) -> Iterator[dict[str, Any]]:
    """Every spilled envelope (of one dead-letter topic, or all), file by file, oldest
    first; a torn last line (a crash mid-write, never fsync'd, so its batch was not
    committed) is skipped."""
    paths = [spill_path(data_dir, dlq_topic)] if dlq_topic else spill_dir(data_dir).glob("*.jsonl")
    for path in sorted(p for p in paths if p.exists()):
        with path.open("rb") as lines:
            for line in lines:
                try:
                    letter = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(letter, dict):
                    yield letter


def read_letters(
    consumer: Any, dlq_topic: str, start: dict[int, int], timeout_s: float = 60.0
) -> Iterator[dict[str, Any]]:
    """The envelopes in a dead-letter topic from ``start`` (offset per partition; a
    partition not in it: from its beginning) to its current end, with ``consumer`` (a
    kafka-python consumer, whose assignment this replaces). Best effort within
    ``timeout_s``: what it cannot read may be sent again, never lost."""
    partitions = consumer.partitions_for_topic(dlq_topic) or set()
    tps = [TopicPartition(dlq_topic, p) for p in sorted(partitions)]
    if not tps:
        return
    consumer.assign(tps)
    ends = consumer.end_offsets(tps)
    for tp in tps:
        consumer.seek(tp, start.get(tp.partition, 0))
    remaining = {tp for tp in tps if start.get(tp.partition, 0) < ends[tp]}
    deadline = time.monotonic() + timeout_s
    while remaining and time.monotonic() < deadline:
        for tp, records in consumer.poll(timeout_ms=500).items():
            for record in records:
                if record.offset >= ends[tp]:
                    remaining.discard(tp)
                    break
                try:
                    letter = orjson.loads(record.value) if record.value else None
                except orjson.JSONDecodeError:
                    continue
                if isinstance(letter, dict):
                    yield letter
            if consumer.position(tp) >= ends[tp]:
                remaining.discard(tp)
    if remaining:
        log.warning("could not read %s to its end in %.0f s", dlq_topic, timeout_s)
