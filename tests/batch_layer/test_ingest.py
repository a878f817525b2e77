"""Lake ingest's batch loop, on a real Delta lake with a scripted consumer and dead-letter
producer: batches are bounded by bytes, and no offset is committed past a reject whose
dead letter was neither acknowledged nor spilled."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from kafka import TopicPartition
from kafka.errors import MessageSizeTooLargeError

from batch_layer.ingest import LakeIngest
from batch_layer.lake import committed_offsets, open_table
from demo.feature_repo import events
from feature_core.settings import Settings
from runtime.dead_letters import DeadLetters, read_spilled

TP = TopicPartition(events.topic_name, 0)
MIB = 1024 * 1024


@dataclass
class _Record:
    key: bytes | None
    value: bytes | None
    offset: int


class _Consumer:
    """poll/seek over a fixed log, as kafka-python's consumer behaves for one partition."""

    def __init__(self, log: list[bytes], position: int = 0) -> None:
        self.log, self.position, self.seeks = log, position, []

    def poll(self, timeout_ms: int, max_records: int) -> dict:
        chunk = self.log[self.position : self.position + max_records]
        if not chunk:
            time.sleep(timeout_ms / 1000)
            return {}
        records = [_Record(None, v, self.position + i) for i, v in enumerate(chunk)]
        self.position += len(chunk)
        return {TP: records}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append(offset)
        self.position = offset


class _Refusing:
    """A dead-letter producer whose every send the broker refuses as too large."""

    def send(self, topic, key=None, value=b"", headers=None):
        raise MessageSizeTooLargeError(f"{len(value)} bytes over the limit")

    def flush(self, timeout=None) -> None:
        pass


class _Instances:
    def check(self, now: bool = False) -> None:
        pass


def _ingest(tmp_path: Path, **overrides) -> LakeIngest:
    settings = Settings(data_dir=tmp_path, ingest_poll_ms=50, **overrides)
    ingest = LakeIngest(settings, [events])
    ingest.topic_ids = {events.topic_name: "instance-1"}
    ingest.instances = _Instances()  # type: ignore[assignment]
    return ingest


def _event(n: int, pad: int = 0) -> bytes:
    event = {
        "event_id": f"e{n}",
        "user_id": "u1",
        "event_type": "view",
        "event_time": int(time.time() * 1000) - 1000,
        "pad": "x" * pad,  # not a declared field: ignored, but it counts as bytes
    }
    return orjson.dumps(event)


def _committed(ingest: LakeIngest) -> dict[int, int]:
    uri = ingest.settings.table_uri(events.table_name)
    return committed_offsets(uri, events.topic_name, "instance-1", [0])


def _lake_ids(ingest: LakeIngest) -> list[str]:
    table = open_table(ingest.settings.table_uri(events.table_name))
    return (
        []
        if table is None
        else table.to_pyarrow_table(columns=["event_id"])["event_id"].to_pylist()
    )


def test_a_batch_is_bounded_by_bytes_and_the_rest_is_read_again(tmp_path):
    ingest = _ingest(tmp_path, ingest_max_bytes=MIB)
    consumer = _Consumer([_event(n, pad=300_000) for n in range(5)])
    letters = DeadLetters(_Refusing(), tmp_path, 4096, 1.0)
    ingest._one_batch(consumer, letters)  # type: ignore[arg-type]
    assert _committed(ingest) == {0: 3} and consumer.seeks == [3]
    ingest._one_batch(consumer, letters)  # type: ignore[arg-type]
    assert _committed(ingest) == {0: 5}
    assert sorted(_lake_ids(ingest)) == [f"e{n}" for n in range(5)]


def test_a_record_larger_than_the_bound_still_makes_a_batch_of_its_own(tmp_path):
    ingest = _ingest(tmp_path, ingest_max_bytes=MIB)
    consumer = _Consumer([_event(0, pad=MIB + 10), _event(1)])
    letters = DeadLetters(_Refusing(), tmp_path, 4096, 1.0)
    ingest._one_batch(consumer, letters)  # type: ignore[arg-type]
    assert _committed(ingest) == {0: 1}


def test_nothing_is_committed_past_a_reject_neither_acknowledged_nor_spilled(tmp_path):
    log = [_event(0), bytes(range(0xA0, 0x100)) * 4000, _event(2)]  # the record
    ingest = _ingest(tmp_path)
    (tmp_path / "dead-letters").write_text("a file where the spill folder should be")
    letters = DeadLetters(_Refusing(), tmp_path, 256 * 1024, 1.0)
    with pytest.raises(OSError):
        ingest._one_batch(_Consumer(log), letters)  # type: ignore[arg-type]
    assert _committed(ingest) == {} and _lake_ids(ingest) == []

    # The spill can be written again: the restarted batch commits, after the spill.
    (tmp_path / "dead-letters").unlink()
    letters = DeadLetters(_Refusing(), tmp_path, 256 * 1024, 1.0)
    ingest._one_batch(_Consumer(log), letters)  # type: ignore[arg-type]
    assert _committed(ingest) == {0: 3}
    assert sorted(_lake_ids(ingest)) == ["e0", "e2"]
    (spilled,) = read_spilled(tmp_path)
    assert (spilled["offset"], spilled["size"], spilled["truncated"]) == (1, 384_000, True)
    assert "MessageSizeTooLargeError" in spilled["send_error"]
