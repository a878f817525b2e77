"""bench-redis-loss's pure part: the history sample's entities and their events."""

from __future__ import annotations

import random

from benchmarks.redis_loss import History, history_entities
from demo.feature_repo import events, item_popularity, user_purchases
from feature_core.keys import entity_id
from feature_core.synthetic import random_record

NOW = 1_796_550_000_000


def test_sampled_entities_come_with_every_event_their_group_accepts() -> None:
    rng = random.Random(3)
    history = History()
    history.sampled["events"] = {"user_id": {"u1", "u2"}, "item_id": {"i1"}}
    every = []
    for n in range(3000):
        record = dict(random_record(events, rng, NOW - n * 1000))
        record["user_id"] = f"u{rng.randrange(6)}"
        if record["item_id"] is not None:
            record["item_id"] = f"i{rng.randrange(4)}"
        every.append(record)
        if record["user_id"] in {"u1", "u2"} or record["item_id"] == "i1":
            history.kept["events"].append(record)
    for group, sampled in ((user_purchases, {"u1", "u2"}), (item_popularity, {"i1"})):
        key = group.join_keys[0]
        found = history_entities(history, group, 10)
        assert {k[key] for k, _ in found.values()} == sampled
        for eid, (k, records) in found.items():
            assert eid == entity_id([k[key]])
            assert records == [r for r in every if r[key] == k[key] and group.accepts(r)]
    assert len(history_entities(history, user_purchases, 1)) == 1
