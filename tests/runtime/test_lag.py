"""Consumer lag: per-topic records behind, published and read back."""

import orjson
from kafka import TopicPartition as TP

from runtime.lag import STALE_AFTER_S, behind, parse


def test_lag_sums_each_topics_partitions_and_counts_unread_partitions_whole():
    ends = {TP("a", 0): 10, TP("a", 1): 5, TP("b", 0): 3, TP("c", 0): 7}
    positions = {TP("a", 0): 4, TP("b", 0): 9}  # b: a position past a reported end
    assert behind(ends, positions) == {"a": 11, "b": 0, "c": 7}


def test_only_fresh_reports_are_read():
    now = 1_000_000_000
    raw = {
        b"lake-ingest|events": orjson.dumps({"behind": 5, "at_ms": now - 1000}),
        b"speed-job|events": orjson.dumps({"behind": 9, "at_ms": now - STALE_AFTER_S * 1000 - 1}),
    }
    (fresh,) = parse(raw, now)
    assert (fresh.consumer, fresh.topic, fresh.behind) == ("lake-ingest", "events", 5)
