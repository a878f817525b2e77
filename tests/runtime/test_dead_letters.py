"""Dead letters: any record ends valid or as an envelope within the bound (with its true
size and sha256); a dead letter the broker does not take is spilled to disk, fsync'd,
before settle() returns; a spill that cannot be written stops the batch."""

from __future__ import annotations

import base64
import hashlib
import time
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

from demo.feature_repo import events
from feature_core.sources import InvalidRecord
from fraud.feature_repo import transactions
from runtime.dead_letters import (
    REASON_MAX_CHARS,
    DeadLetters,
    encode,
    envelope,
    place,
    read_spilled,
    spill_path,
)
from tests.hostile_records import NOW, hostile_records

BOUNDS = [4096, 64 * 1024, 256 * 1024]


def _held(letter: dict) -> bytes | None:
    """The record bytes an envelope holds (whole, or its head when truncated)."""
    if "raw_base64" in letter:
        return base64.b64decode(letter["raw_base64"])
    return None if letter["raw"] is None else letter["raw"].encode()


def assert_envelope(raw: bytes | None, letter: dict, max_bytes: int) -> None:
    assert len(encode(letter)) <= max_bytes
    assert len(letter["reason"]) <= REASON_MAX_CHARS and "\n" not in letter["reason"]
    held = _held(letter)
    if raw is None:
        assert held is None and letter["size"] is None and letter["sha256"] is None
        return
    assert letter["size"] == len(raw)
    assert letter["sha256"] == hashlib.sha256(raw).hexdigest()
    assert held is not None
    if letter["truncated"]:
        assert raw.startswith(held) and len(held) < len(raw)
        # The head is not needlessly short: at least a quarter of the bound (base64 and
        # JSON escapes cost up to 6x for control characters).
        assert len(held) >= min(len(raw), max_bytes // 8)
    else:
        assert held == raw


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data(), max_bytes=st.sampled_from(BOUNDS))
def test_every_hostile_record_is_valid_or_a_bounded_envelope(data, max_bytes):
    source = data.draw(st.sampled_from([events, transactions]))
    raw = data.draw(hostile_records(source))
    try:
        source.parse(raw, NOW)
    except InvalidRecord as error:
        letter = envelope(raw, str(error), source.topic_name, 3, 17, max_bytes)
        assert_envelope(raw, letter, max_bytes)
        assert letter["topic"] == source.topic_name and letter["offset"] == 17


def test_the_issues_record_gets_a_bounded_envelope():
    """400 KB of non-UTF-8 text: a 1.2 MB dead letter before, which the producer refused."""
    raw = bytes(range(0xA0, 0x100)) * 4000
    with pytest.raises(InvalidRecord) as error:
        events.parse(raw, NOW)
    letter = envelope(raw, str(error.value), "events", 0, 5, 256 * 1024)
    assert_envelope(raw, letter, 256 * 1024)
    assert letter["truncated"] and letter["reason"] == "not valid JSON"


def test_a_huge_reason_is_cut_to_one_bounded_line():
    letter = envelope(b"x", "bad\nvalue " + "v" * 100_000, "events", 0, 5, 4096)
    assert_envelope(b"x", letter, 4096)
    assert letter["reason"].startswith("bad value") and letter["reason"].endswith("…")


class _Future:
    def __init__(self, error: Exception | None = None, delay_s: float = 0.0) -> None:
        self.error, self.delay_s = error, delay_s

    def get(self, timeout: float | None = None) -> object:
        if self.delay_s > (timeout or 0):
            raise KafkaTimeoutError("no acknowledgement in time")
        if self.error:
            raise self.error
        return object()


class _Producer:
    """A kafka-python producer's send/flush contract: refuses values over ``limit`` at
    send (as kafka-python does), fails or delays futures of chosen topics."""

    def __init__(self, limit: int, failing: dict[str, _Future]) -> None:
        self.limit, self.failing = limit, failing
        self.sent: list[tuple[str, bytes]] = []
        self.flushed = False

    def send(self, topic: str, key=None, value=b"", headers=None) -> _Future:
        if len(value) > self.limit:
            raise MessageSizeTooLargeError(f"{len(value)} bytes over {self.limit}")
        self.sent.append((topic, value))
        return self.failing.get(topic, _Future())

    def flush(self, timeout: float | None = None) -> None:
        self.flushed = True


def test_unacknowledged_dead_letters_are_spilled_before_settle_returns(tmp_path: Path):
    producer = _Producer(
        limit=10_000,
        failing={
            "timing.dlq": _Future(delay_s=60),
            "refused.dlq": _Future(MessageSizeTooLargeError("broker limit")),
        },
    )
    letters = DeadLetters(producer, tmp_path, max_bytes=64 * 1024, timeout_s=0.5)
    big = b"\xff" * 200_000
    letters.reject("ok.dlq", b"{bad", "not valid JSON", "ok", 0, 1)
    letters.reject("ok.dlq", big, "not valid JSON", "ok", 0, 2)  # refused at send
    letters.reject("timing.dlq", b"late", "not valid JSON", "timing", 1, 3)
    letters.reject("refused.dlq", b"no", "not valid JSON", "refused", 0, 4)
    started = time.monotonic()
    settled = letters.settle()
    assert time.monotonic() - started < 5
    assert (settled.acknowledged, settled.spilled) == (1, 3)
    assert producer.flushed and letters.pending == 0
    spilled = {(s["topic"], s["offset"]): s for s in read_spilled(tmp_path)}
    assert set(spilled) == {("ok", 2), ("timing", 3), ("refused", 4)}
    assert "MessageSizeTooLargeError" in spilled[("ok", 2)]["send_error"]
    assert "KafkaTimeoutError" in spilled[("timing", 3)]["send_error"]
    spill_fields = {"dead_letter_topic", "send_error", "spilled_at"}
    letter = {k: v for k, v in spilled[("ok", 2)].items() if k not in spill_fields}
    assert_envelope(big, letter, 64 * 1024)
    assert spill_path(tmp_path, "ok.dlq").exists()
    # A torn last line (a crash mid-write) is skipped, not an error.
    with spill_path(tmp_path, "ok.dlq").open("ab") as out:
        out.write(b'{"reason": "torn')
    assert len(list(read_spilled(tmp_path))) == 3


class _NoMetadataProducer(_Producer):
    """A dead-letter topic the broker has no metadata for (deleted, never created): each
    send waits max_block_ms, then raises, as kafka-python's does."""

    def send(self, topic: str, key=None, value=b"", headers=None) -> _Future:
        self.sent.append((topic, value))
        raise KafkaTimeoutError("Failed to update metadata after 10.0 secs.")


def test_a_dead_letter_topic_without_metadata_is_waited_for_once_a_batch(tmp_path: Path):
    """Every reject of a batch waited the producer's max_block_ms for the missing topic's
    metadata: 1,000 rejects stalled ingest for hours. Now the first one's timeout spills
    the rest of the batch at once, and the next batch asks again."""
    producer = _NoMetadataProducer(limit=10_000, failing={})
    letters = DeadLetters(producer, tmp_path, max_bytes=64 * 1024, timeout_s=0.5)
    for offset in range(100):
        letters.reject("gone.dlq", b"{bad", "not valid JSON", "gone", 0, offset)
    assert len(producer.sent) == 1
    assert letters.settle().spilled == 100
    letters.reject("gone.dlq", b"{bad", "not valid JSON", "gone", 0, 100)
    assert len(producer.sent) == 2
    assert letters.settle().spilled == 1
    assert len(list(read_spilled(tmp_path))) == 101


def test_a_spill_that_cannot_be_written_raises(tmp_path: Path):
    (tmp_path / "dead-letters").write_text("a file where the folder should be")
    producer = _Producer(limit=10, failing={})
    letters = DeadLetters(producer, tmp_path, max_bytes=4096, timeout_s=0.5)
    letters.reject("events.dlq", b"x" * 100, "not valid JSON", "events", 0, 1)
    with pytest.raises(OSError):
        letters.settle()


def test_spilled_lines_are_json_with_the_envelope_fields(tmp_path: Path):
    producer = _Producer(limit=10, failing={})
    letters = DeadLetters(producer, tmp_path, max_bytes=4096, timeout_s=0.5)
    letters.reject("events.dlq", b"\xfe" * 5000, "not valid JSON", "events", 1, 9, key=b"k")
    letters.settle()
    (line,) = spill_path(tmp_path, "events.dlq").read_bytes().splitlines()
    spilled = orjson.loads(line)
    assert spilled["dead_letter_topic"] == "events.dlq" and spilled["key_size"] == 1
    assert spilled["truncated"] and spilled["size"] == 5000 and len(line) < 4096 + 400


def test_a_record_already_dead_lettered_is_not_sent_again(tmp_path: Path):
    """After a restart, records read again that an earlier process dead-lettered."""
    producer = _Producer(limit=10_000, failing={})
    letters = DeadLetters(producer, tmp_path, max_bytes=4096, timeout_s=0.5)
    letters.already = {("events", 0, 1)}
    letters.reject("events.dlq", b"{bad", "not valid JSON", "events", 0, 1)
    letters.reject("events.dlq", b"{bad", "not valid JSON", "events", 0, 2)
    assert [orjson.loads(v)["offset"] for _, v in producer.sent] == [2]


def test_only_dead_letters_of_the_current_topic_instance_count_as_sent():
    """A recreated topic's offsets name other records: its old dead letters never
    stand for the new instance's records."""
    letter = envelope(b"x", "not valid JSON", "events", 0, 7, 4096, topic_id="id-2")
    assert place(letter, {"events": "id-2"}) == ("events", 0, 7)
    assert place(letter, {"events": "id-1"}) is None
    assert place({**letter, "topic_id": None}, {"events": "id-2"}) is None
    assert place({"reason": "an old envelope"}, {"events": "id-2"}) is None
