"""No single record stops a consumer: the issue's 400 KB non-UTF-8 record on the live
stack, and a dead-letter topic that refuses (spill file, commit order, no duplicates)."""

from __future__ import annotations

import hashlib
import time
import uuid
from pathlib import Path

import orjson
import pytest
from kafka import TopicPartition
from typer.testing import CliRunner

import batch_layer.ingest as ingest_module
from batch_layer.ingest import LakeIngest
from batch_layer.lake import committed_offsets
from feature_core.settings import Settings
from feature_core.sources import EventSource, Field
from infra import stack as embedded
from infra.cli import app
from runtime.dead_letters import encode, read_spilled
from runtime.kafka import consumer as kafka_consumer
from runtime.kafka import ensure_topics, producer, topic_id
from tests.conftest import wait_for
from tests.integration.helpers import SHOP, lake_event_ids, make_event, produce

pytestmark = pytest.mark.integration


def _letters(settings: Settings, dlq_topic: str) -> list[dict]:
    """Every envelope in a dead-letter topic (read to its end)."""
    consumer = kafka_consumer(settings, enable_auto_commit=False)
    try:
        tps = [TopicPartition(dlq_topic, p) for p in consumer.partitions_for_topic(dlq_topic)]
        consumer.assign(tps)
        ends = consumer.end_offsets(tps)
        consumer.seek_to_beginning(*tps)
        found: list[dict] = []
        deadline = time.monotonic() + 30
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            assert time.monotonic() < deadline, f"{dlq_topic} not read to its end in 30 s"
            for tp, records in consumer.poll(timeout_ms=500).items():
                found += [orjson.loads(r.value) for r in records if r.offset < ends[tp]]
        return found
    finally:
        consumer.close()


def _restarts(settings: Settings, service: str) -> int:
    return embedded.service_state(settings, service).get("restarts", 0)


def test_the_issues_record_goes_to_the_dlq_and_ingest_keeps_running(stack):
    """A 400 KB non-UTF-8, non-JSON record among valid events: before, its 1.2 MB dead
    letter was refused and lake ingest restarted at its offset forever."""
    settings = stack.settings
    before = {s: _restarts(settings, s) for s in ("lake-ingest", "speed-job")}
    user = f"hostile-{uuid.uuid4().hex[:8]}"
    hostile = bytes(range(0xA0, 0x100)) * 4000 + uuid.uuid4().bytes  # unique: its own hash
    digest = hashlib.sha256(hostile).hexdigest()
    now = int(time.time() * 1000)
    good = [make_event(f"{user}-{i}", now - i) for i in range(3)]
    produce(settings, [good[0], hostile, good[1], good[2]])

    wait_for(lambda: len(lake_event_ids(settings, user)) == 3, 120, "valid events in the lake")
    mine = wait_for(
        lambda: [e for e in _letters(settings, SHOP.dlq_topic) if e.get("sha256") == digest],
        60,
        "the hostile record's dead letter",
    )
    assert len(mine) == 1, "exactly one dead letter"
    (letter,) = mine
    assert len(encode(letter)) <= settings.dead_letter_max_bytes
    assert letter["size"] == len(hostile) and letter["truncated"]
    assert letter["reason"] == "not valid JSON" and letter["topic"] == SHOP.topic_name
    assert sorted(lake_event_ids(settings, user)) == sorted(e["event_id"] for e in good)
    assert {s: _restarts(settings, s) for s in before} == before
    assert stack.service_healthy("lake-ingest")


def _probe_source() -> EventSource:
    return EventSource(
        f"probe_{uuid.uuid4().hex[:8]}",
        fields=[Field("id", "string", required=True), Field("ts", "timestamp", required=True)],
        event_time="ts",
    )


def _send(settings: Settings, source: EventSource, values: list[bytes]) -> None:
    out = producer(settings)
    for value in values:
        out.send(source.topic_name, value=value, partition=0)
    out.flush()
    out.close()


def _run(settings: Settings, source: EventSource, upto: int, **dlq_options) -> LakeIngest:
    """Lake ingest of one source in this process, until partition 0 is committed up to
    ``upto`` (or 90 s)."""
    ingest = LakeIngest(settings, [source])
    ingest.dead_letter_producer_options = dlq_options
    tp = TopicPartition(source.topic_name, 0)
    deadline = time.monotonic() + 90
    ingest.run(
        until=lambda: ingest.stats.next_offsets.get(tp, 0) >= upto or time.monotonic() > deadline
    )
    return ingest


def test_a_refused_dead_letter_is_spilled_before_the_commit_and_none_is_sent_twice(
    stack, tmp_path: Path, monkeypatch
):
    # Its own lake and spill folder; its own key prefix, so that the health and lag this
    # in-process ingest publishes are not the stack's lake ingest's.
    settings = stack.settings.model_copy(
        update={
            "data_dir": tmp_path,
            "lake_uri": None,
            "key_prefix": f"probe{uuid.uuid4().hex[:6]}",
        }
    )
    source = _probe_source()
    ensure_topics(settings, [source])
    uri = settings.table_uri(source.table_name)
    tid = topic_id(settings, source.topic_name)
    now = int(time.time() * 1000)

    def valid(n: int) -> bytes:
        return orjson.dumps({"id": f"e{n}", "ts": now - n})

    refused = b"\xfe" * 10_000
    _send(settings, source, [valid(0), refused, valid(2)])

    # The dead-letter producer refuses (records over 2 KiB) and the spill folder cannot
    # be made: ingest stops, and nothing is committed past the reject.
    (tmp_path / "dead-letters").write_text("a file where the spill folder should be")
    with pytest.raises(OSError):
        _run(settings, source, 3, max_request_size=2048)
    assert committed_offsets(uri, source.topic_name, tid, [0]) == {}

    # The spill can be written: the record is spilled, then the batch committed.
    (tmp_path / "dead-letters").unlink()
    _run(settings, source, 3, max_request_size=2048)
    assert committed_offsets(uri, source.topic_name, tid, [0]) == {0: 3}
    (spilled,) = read_spilled(tmp_path)
    assert spilled["offset"] == 1 and spilled["size"] == len(refused)
    assert spilled["sha256"] == hashlib.sha256(refused).hexdigest()
    assert "MessageSizeTooLarge" in spilled["send_error"]
    assert _letters(settings, source.dlq_topic) == []
    listed = CliRunner().invoke(
        app, ["dead-letters", "spilled", "--json"], env={"LFP_DATA_DIR": str(tmp_path)}
    )
    assert listed.exit_code == 0, listed.output
    assert [orjson.loads(line)["offset"] for line in listed.output.splitlines()] == [1]
    table = CliRunner().invoke(
        app, ["dead-letters", "spilled"], env={"LFP_DATA_DIR": str(tmp_path), "COLUMNS": "80"}
    )
    assert table.exit_code == 0 and "10,000" in table.output
    # 80 columns, but for the line naming the folder (a path is never broken).
    lines = [line for line in table.output.splitlines() if str(tmp_path) not in line]
    assert max(len(line) for line in lines) <= 80, table.output

    # A crash after the dead letter is acknowledged, before the Delta commit: after the
    # restart the record is read again, but its dead letter is not sent twice.
    _send(settings, source, [b"not json", valid(4)])
    real_append = ingest_module.append_with_offsets

    def crash(*args, **kwargs):
        raise RuntimeError("killed before the commit")

    monkeypatch.setattr(ingest_module, "append_with_offsets", crash)
    with pytest.raises(RuntimeError, match="killed before the commit"):
        _run(settings, source, 5)
    assert [e["offset"] for e in _letters(settings, source.dlq_topic)] == [3]
    monkeypatch.setattr(ingest_module, "append_with_offsets", real_append)
    _run(settings, source, 5)
    assert committed_offsets(uri, source.topic_name, tid, [0]) == {0: 5}
    assert [e["offset"] for e in _letters(settings, source.dlq_topic)] == [3]
    # And the next batch's dead letters are sent as ever.
    _send(settings, source, [b"[1]", valid(6)])
    _run(settings, source, 7)
    assert [e["offset"] for e in _letters(settings, source.dlq_topic)] == [3, 5]
