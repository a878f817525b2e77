"""Batch documents of layout 2 (one current document per entity, stamped with its
version, and its previous one while a run writes) against a real Redis: readers looping
while runs write, die and switch never get a document of another version than their
pointer's, nor a mix of two."""

from __future__ import annotations

import asyncio
import random
import threading
import time

import orjson
import pytest
import redis
import redis.asyncio as aioredis

from feature_core.merge import BatchPointer
from feature_core.windows import DAY_MS
from online_store.keys import KeySpace, doc_version, is_tombstone, stamped
from online_store.redis_standalone.reader import RedisViewReader
from online_store.redis_standalone.store import RedisStore

pytestmark = pytest.mark.integration

KEYS = KeySpace("lfp")
GROUP = "g1"
ENTITIES = [f"u{i}" for i in range(80)]
CUTOFF = 20_000 * DAY_MS
OUTCOMES = ["switched", "switched", "killed writing", "killed before switch"]


def _doc(version: int, entity: str) -> bytes:
    return orjson.dumps({"lifetime": {"c": [version, entity]}})


class Writer:
    """Replays full runs as the batch job does them (begin, documents in small chunks,
    sweep, switch, clean), some of them killed between two writes or between the last
    write and the switch; records what each switched version holds."""

    def __init__(self, store: RedisStore, rng: random.Random) -> None:
        self.store = store
        self.rng = rng
        self.views: dict[int, frozenset[str]] = {}  # switched version -> its entities
        self.killed_writing = self.killed_before_switch = 0
        self.failures: list[BaseException] = []

    def run(self, outcome: str) -> None:
        store = self.store
        version = store.next_version()
        serving = store.begin_views(version)
        assert serving is not None
        entities = [e for e in ENTITIES if self.rng.random() < 0.7]
        self.rng.shuffle(entities)
        stop = self.rng.randrange(len(entities)) if outcome == "killed writing" else None
        for start in range(0, len(entities), 7):
            if stop is not None and start >= stop:
                self.killed_writing += 1
                return
            chunk = entities[start : start + 7]
            changes = store.write_views(
                version, serving, GROUP, [(e, _doc(version, e)) for e in chunk]
            )
            assert changes is not None
            time.sleep(0.0005)
        store.sweep_views(version, serving)
        if outcome == "killed before switch":
            self.killed_before_switch += 1
            return
        self.views[version] = frozenset(entities)
        replaced = store.switch(BatchPointer(version, CUTOFF, DAY_MS))
        assert replaced is not None
        keep = self.rng.choice([1, 2])
        keep_from = version - keep + 1
        if replaced and keep > 1:
            keep_from = min(keep_from, replaced)
        store.clean_views(keep_from)

    def replay(self, runs: int, done: threading.Event) -> None:
        try:
            for _ in range(runs):
                self.run(
                    self.rng.choice(
                        ["switched", "switched", "killed writing", "killed before switch"]
                    )
                )
        except BaseException as error:  # reported by the test
            self.failures.append(error)
        finally:
            done.set()


async def _read_until(
    port: int, writer: Writer, done: threading.Event, cache_entries: int
) -> tuple[int, set[int]]:
    """Loop reads of every entity until the writer is done: each document must be its
    pointer version's, for exactly the entities that version holds."""
    reader = RedisViewReader(aioredis.Redis(port=port), KEYS.prefix, cache_entries)
    reads, versions = 0, set()
    half = len(ENTITIES) // 2
    parts = [((GROUP,), ENTITIES[:half]), ((GROUP,), ENTITIES[half:])]
    try:
        while not done.is_set():
            snapshot = await reader.read(parts)
            reads += 1
            if snapshot.pointer is None:
                assert all(v.batch_doc is None for v in snapshot.entities)
                continue
            version = snapshot.pointer.version
            versions.add(version)
            held = writer.views[version]
            for entity, views in zip(ENTITIES, snapshot.entities, strict=True):
                if entity in held:
                    assert views.batch_doc == {"lifetime": {"c": [version, entity]}}, (
                        version,
                        entity,
                    )
                else:
                    assert views.batch_doc is None, (version, entity, views.batch_doc)
            await asyncio.sleep(0)
    finally:
        await reader.close()
    return reads, versions


def test_readers_never_see_a_document_of_another_version_while_runs_write_die_and_switch(
    redis_process,
) -> None:
    client = redis.Redis(port=redis_process.port)
    client.flushall()
    store = RedisStore(client, KEYS.prefix, "")
    writer = Writer(store, random.Random(32))
    writer.run("switched")  # a view serves from the start
    done = threading.Event()
    thread = threading.Thread(target=writer.replay, args=(60, done))

    async def readers() -> list[tuple[int, set[int]]]:
        thread.start()
        loops = [_read_until(redis_process.port, writer, done, n) for n in (0, 0, 1000)]
        return await asyncio.gather(*loops)

    results = asyncio.run(readers())
    thread.join(timeout=60)
    assert not writer.failures, writer.failures
    assert writer.killed_writing and writer.killed_before_switch
    assert all(reads > 10 for reads, _ in results), results
    assert all(len(versions) > 3 for _, versions in results), results  # reads spanned switches


def test_a_clean_after_the_last_switch_leaves_no_previous_document_nor_tombstone(
    redis_process,
) -> None:
    client = redis.Redis(port=redis_process.port)
    client.flushall()
    store = RedisStore(client, KEYS.prefix, "")
    writer = Writer(store, random.Random(7))
    for outcome in ["switched", "killed writing", "switched", "killed before switch"]:
        writer.run(outcome)
    last = store.next_version()
    serving = store.begin_views(last)
    assert serving is not None
    store.write_views(last, serving, GROUP, [(e, _doc(last, e)) for e in ENTITIES[:50]])
    assert store.sweep_views(last, serving) > 0  # some of u50.. were in the view before
    assert store.switch(BatchPointer(last, CUTOFF, DAY_MS)) == serving
    assert store.clean_views(keep_from=last) > 0
    assert client.keys(f"{KEYS.batch_previous_root}*") == []
    assert client.zcard(KEYS.batch_previous_index) == 0
    docs = client.keys(f"{KEYS.batch_doc_root}*")
    assert len(docs) == 50
    assert all(doc_version(d) == last and not is_tombstone(d) for d in client.mget(docs))


def test_read_base_gives_what_the_serving_version_shows(redis_process) -> None:
    """A run that wrote and died leaves newer documents: the base of the next run is
    still the serving version's, tombstones and entities it never had read as none."""
    client = redis.Redis(port=redis_process.port)
    client.flushall()
    store = RedisStore(client, KEYS.prefix, "")
    first = store.next_version()
    store.begin_views(first)
    store.write_views(first, 0, GROUP, [(e, _doc(first, e)) for e in ("u1", "u2", "u3")])
    assert store.switch(BatchPointer(first, CUTOFF, DAY_MS)) == 0
    dead = store.next_version()
    assert store.begin_views(dead) == first
    store.write_views(dead, first, GROUP, [(e, _doc(dead, e)) for e in ("u1", "u4")])
    assert store.sweep_views(dead, first) == 2  # u2, u3: tombstoned

    base = store.read_base(first, GROUP, ["u1", "u2", "u3", "u4", "u5"])

    assert base == {
        "u1": {"lifetime": {"c": [first, "u1"]}},
        "u2": {"lifetime": {"c": [first, "u2"]}},
        "u3": {"lifetime": {"c": [first, "u3"]}},
        "u4": None,
        "u5": None,
    }
    assert store.read_base(dead, GROUP, ["u1", "u2"]) == {
        "u1": {"lifetime": {"c": [dead, "u1"]}},
        "u2": None,
    }


def test_the_first_run_of_layout_2_takes_over_from_a_layout_1_view(redis_process) -> None:
    """A pointer written before layouts were named serves its bv:v{N} keys until a run of
    layout 2 switches; that run's clean unlinks them."""
    client = redis.Redis(port=redis_process.port)
    client.flushall()
    legacy = {"version": 4, "cutoff": CUTOFF, "horizon_ms": DAY_MS}  # no "layout"
    client.set(KEYS.batch_pointer, orjson.dumps(legacy))
    client.set(KEYS.batch_seq, 4)
    for version in (3, 4):
        for entity in ("u1", "u2"):
            client.set(KEYS.legacy_view(version, GROUP, entity), _doc(version, entity))
    store = RedisStore(client, KEYS.prefix, "")
    assert store.pointer() == BatchPointer(4, CUTOFF, DAY_MS, layout=1)
    version = store.next_version()
    assert store.begin_views(version) == 0  # no document of layout 2 is visible yet
    store.write_views(version, 0, GROUP, [("u1", _doc(version, "u1"))])
    assert store.sweep_views(version, 0) == 0
    assert store.switch(BatchPointer(version, CUTOFF, DAY_MS)) == 4
    assert store.clean_views(keep_from=version) == 4
    assert client.keys(f"{KEYS.legacy_view_root}*") == []
    assert client.get(KEYS.batch_doc(GROUP, "u1")) == stamped(version, _doc(version, "u1"))
