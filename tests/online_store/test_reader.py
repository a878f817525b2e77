"""Both backends' readers: one version's views per request, entity-major, cached views
skipped until the pointer moves."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from feature_core.merge import BatchPointer
from feature_core.windows import DAY_MS, SPEED_TILE_MS
from online_store.keys import KeySpace, stamped, tombstone
from online_store.views import EntityViews, ViewsRequest, ViewsSnapshot

pytestmark = pytest.mark.integration

KEYS = KeySpace("lfp")
CUTOFF = 20_000 * DAY_MS


def _set_doc(client, version: int, group: str, entity: str, doc: object) -> None:
    """A (group, entity)'s batch document as a run of ``version`` leaves it."""
    client.set(KEYS.batch_doc(group, entity), stamped(version, orjson.dumps(doc)))


def _read(backend, parts: list[ViewsRequest]) -> ViewsSnapshot:
    async def read() -> ViewsSnapshot:
        reader = backend.reader()
        try:
            return await reader.read(parts)
        finally:
            await reader.close()

    return asyncio.run(read())


def test_views_come_back_entity_major_per_part_with_pointer_and_watermarks(backend):
    client = backend.direct
    client.set(KEYS.batch_pointer, orjson.dumps(BatchPointer(3, CUTOFF, DAY_MS).to_json()))
    client.hset(KEYS.speed_watermark, mapping={"g1": CUTOFF + 5, "g2": CUTOFF + 7})
    for group, entity in [("g1", "u1"), ("g2", "u1"), ("g1", "u2"), ("h", "i1")]:
        doc = {"lifetime": {"c": [f"{group}/{entity}"]}}
        _set_doc(client, 3, group, entity, doc)
        client.set(KEYS.batch_previous(group, entity), stamped(2, orjson.dumps({"old": "version"})))
        client.hset(KEYS.speed_tiles(group, entity), str(CUTOFF), orjson.dumps([entity]))
    # A tile from before the cutoff, still in Redis until its TTL: the batch view has it.
    client.hset(KEYS.speed_tiles("g1", "u1"), str(CUTOFF - SPEED_TILE_MS), orjson.dumps(["x"]))

    snapshot = _read(backend, [(("g1", "g2"), ["u1", "u2", "new"]), (("h",), ["i1"])])

    assert snapshot.pointer == BatchPointer(3, CUTOFF, DAY_MS)
    assert snapshot.speed_watermarks == {"g1": CUTOFF + 5, "g2": CUTOFF + 7}
    docs = [v.batch_doc and v.batch_doc["lifetime"]["c"][0] for v in snapshot.entities]
    assert docs == ["g1/u1", "g2/u1", "g1/u2", None, None, None, "h/i1"]
    assert snapshot.entities[0].speed_tiles == {CUTOFF: ["u1"]}  # the older tile left out
    assert snapshot.entities[4] == EntityViews(None, {})  # never seen: no views, no error


def test_without_a_batch_view_every_speed_tile_is_read(backend):
    client = backend.direct
    tiles = {str(CUTOFF - SPEED_TILE_MS): orjson.dumps([1]), str(CUTOFF): orjson.dumps([2])}
    client.hset(KEYS.speed_tiles("g1", "u1"), mapping=tiles)

    snapshot = _read(backend, [(("g1",), ["u1"])])

    assert snapshot.pointer is None and snapshot.speed_watermarks == {}
    assert snapshot.entities == [EntityViews(None, {CUTOFF - SPEED_TILE_MS: [1], CUTOFF: [2]})]


def test_cached_batch_views_are_not_read_again_until_the_pointer_moves(backend):
    """Proof of the skip: a view rewritten under the same pointer (which the batch job
    never does) still reads as cached, while speed tiles are always read fresh."""
    client = backend.direct
    client.set(KEYS.batch_pointer, orjson.dumps(BatchPointer(3, CUTOFF, DAY_MS).to_json()))
    _set_doc(client, 3, "g1", "u1", {"lifetime": {"c": ["v3"]}})
    client.hset(KEYS.speed_tiles("g1", "u1"), str(CUTOFF), orjson.dumps(["t1"]))
    parts: list[ViewsRequest] = [(("g1",), ["u1", "unknown"])]

    async def scenario() -> None:
        store = backend.reader(batch_cache_entries=10)
        try:
            first = await store.read(parts)
            assert [v.batch_doc for v in first.entities] == [{"lifetime": {"c": ["v3"]}}, None]
            assert len(store.batch_cache) == 2

            client.set(
                KEYS.batch_doc("g1", "u1"), stamped(3, orjson.dumps({"lifetime": {"c": ["x"]}}))
            )
            client.hset(KEYS.speed_tiles("g1", "u1"), str(CUTOFF), orjson.dumps(["t2"]))
            second = await store.read(parts)
            assert second.entities[0].batch_doc == {"lifetime": {"c": ["v3"]}}
            assert second.entities[0].speed_tiles == {CUTOFF: ["t2"]}
            assert second.entities[0].memo is first.entities[0].memo  # kept with the view
            assert store.batch_cache.hits == 2

            client.set(
                KEYS.batch_doc("g1", "u1"), stamped(4, orjson.dumps({"lifetime": {"c": ["v4"]}}))
            )
            client.set(KEYS.batch_pointer, orjson.dumps(BatchPointer(4, CUTOFF, DAY_MS).to_json()))
            third = await store.read(parts)
            assert third.pointer is not None and third.pointer.version == 4
            assert third.entities[0].batch_doc == {"lifetime": {"c": ["v4"]}}
            fourth = await store.read(parts)  # the new version's views, now cached
            assert fourth.entities[0].batch_doc == {"lifetime": {"c": ["v4"]}}
            assert fourth.entities[0].memo is third.entities[0].memo
        finally:
            await store.close()

    asyncio.run(scenario())


def test_a_burst_above_the_connection_limit_waits_instead_of_failing(backend):
    """LFP_API_REDIS_CONNECTIONS bounds the API's connections (per node on a cluster):
    more reads at once than that wait for one, as the setting promises; none fails."""
    from online_store import open_reader

    client = backend.direct
    client.set(KEYS.batch_pointer, orjson.dumps(BatchPointer(3, CUTOFF, DAY_MS).to_json()))
    entities = [f"u{n}" for n in range(30)]
    for entity in entities:
        client.set(
            KEYS.batch_doc("g1", entity), stamped(3, orjson.dumps({"lifetime": {"c": [entity]}}))
        )
        client.hset(KEYS.speed_tiles("g1", entity), str(CUTOFF), orjson.dumps([entity]))
    # Generous wait: 130 reads queue for 2 connections on a machine that may be busy.
    settings = backend.settings.model_copy(
        update={"api_redis_connections": 2, "redis_timeout_s": 30.0}
    )

    async def burst() -> list[ViewsSnapshot]:
        reader = open_reader(settings)
        try:
            reads = [reader.read([(["g1"], [entity])]) for entity in entities * 4]
            reads += [reader.batch_runs(5) for _ in range(10)]
            return await asyncio.gather(*reads)
        finally:
            await reader.close()

    results = asyncio.run(burst())
    snapshots = results[: len(entities) * 4]
    assert [s.entities[0].batch_doc for s in snapshots] == [
        {"lifetime": {"c": [entity]}} for entity in entities * 4
    ]
    assert [s.entities[0].speed_tiles for s in snapshots] == [
        {CUTOFF: [entity]} for entity in entities * 4
    ]
    assert results[len(snapshots) :] == [[]] * 10


def test_consumer_health_records_are_read_as_published(backend):
    store = backend.store()
    store.publish_health("lake-ingest", b'{"at_ms": 1}')
    store.close()

    async def read() -> dict[bytes, bytes]:
        reader = backend.reader()
        try:
            return await reader.consumer_health()
        finally:
            await reader.close()

    assert asyncio.run(read()) == {b"lake-ingest": b'{"at_ms": 1}'}


def test_correction_tiles_come_back_beside_the_speed_tiles_until_retired(backend):
    store = backend.store()
    old, new = CUTOFF - DAY_MS, CUTOFF - SPEED_TILE_MS
    store.write_corrections(
        "g1", "events", 4, {"u1": {(old, DAY_MS): [1]}, "u3": {(old, DAY_MS): [4]}}, 600
    )
    store.write_corrections(
        "g1", "events", 6, {"u1": {(new, SPEED_TILE_MS): [2]}, "u2": {(old, DAY_MS): [3]}}, 600
    )
    backend.direct.hset(KEYS.speed_tiles("g1", "u1"), str(CUTOFF), orjson.dumps([9]))
    pointer = BatchPointer(1, CUTOFF, DAY_MS, delta_versions={"events": 3})
    backend.direct.set(KEYS.batch_pointer, orjson.dumps(pointer.to_json()))

    first = _read(backend, [(("g1",), ["u1", "u2"])])
    assert first.entities[0].speed_tiles == {CUTOFF: [9]}
    assert sorted(first.entities[0].corrections) == [(old, 4, [1]), (new, 6, [2])]
    assert first.entities[1].corrections == ((old, 6, [3]),)
    assert 0 < backend.direct.ttl(KEYS.speed_tiles("g1", "u2")) <= 600

    # A view that read version 4: the keys written up to it drop their corrections;
    # u1, written at version 6 too, keeps its fields until a view reads 6.
    assert store.retire_corrections("events", 4) == 1
    second = _read(backend, [(("g1",), ["u1", "u2", "u3"])])
    assert sorted(second.entities[0].corrections) == [(old, 4, [1]), (new, 6, [2])]
    assert second.entities[1].corrections == ((old, 6, [3]),)
    assert second.entities[2].corrections == ()
    assert store.retire_corrections("events", 6) == 3
    third = _read(backend, [(("g1",), ["u1", "u2"])])
    assert [v.corrections for v in third.entities] == [(), ()]
    assert third.entities[0].speed_tiles == {CUTOFF: [9]}
    assert backend.direct.zcard(KEYS.corrections_index("events")) == 0
    store.set_corrections_written("events", 6)
    assert store.corrections_written("events") == 6
    store.close()


def test_a_commit_of_many_entities_writes_every_correction_tile_and_indexes_its_keys(backend):
    """More entities than one write script call takes, with one to three tiles each: all
    fields set, TTLs renewed, and each key indexed by the newest version it holds."""
    store = backend.store()
    tiles = {
        f"u{i}": {(CUTOFF - (j + 1) * DAY_MS, DAY_MS): [i, j] for j in range(1 + i % 3)}
        for i in range(1234)
    }
    assert store.write_corrections("g1", "events", 7, tiles, 600) == 1234 * 2 - 1
    # An older commit's tiles written again (a catch-up): the index keeps the newest.
    assert store.write_corrections("g1", "events", 5, {"u1": {(CUTOFF, DAY_MS): [0]}}, 600) == 1
    client = backend.direct
    for entity in ("u0", "u1", "u2", "u500", "u1233"):
        key = KEYS.speed_tiles("g1", entity)
        fields = {k.decode(): orjson.loads(v) for k, v in client.hgetall(key).items()}
        want = {f"[{start},7,{DAY_MS}]": p for (start, _), p in tiles[entity].items()}
        if entity == "u1":
            want[f"[{CUTOFF},5,{DAY_MS}]"] = [0]
        assert fields == want
        assert 0 < client.ttl(key) <= 600
    index = KEYS.corrections_index("events")
    assert client.zcard(index) == 1234
    assert client.zscore(index, KEYS.speed_tiles("g1", "u1")) == 7
    assert store.retire_corrections("events", 7) == 1234 * 2
    store.close()


def test_a_document_newer_than_the_pointer_reads_as_its_previous_one(backend):
    """A run not switched yet rewrote u1 (its previous document kept), created u2 and
    tombstoned u3: readers at the pointer see the pointer's documents; after the switch,
    the run's. A pointer of layout 1 reads its one-key-per-version documents."""
    client = backend.direct
    client.set(KEYS.batch_pointer, orjson.dumps(BatchPointer(3, CUTOFF, DAY_MS).to_json()))
    _set_doc(client, 4, "g1", "u1", {"lifetime": {"c": ["v4"]}})
    client.set(KEYS.batch_previous("g1", "u1"), stamped(3, b'{"lifetime":{"c":["v3"]}}'))
    _set_doc(client, 4, "g1", "u2", {"lifetime": {"c": ["new"]}})
    client.set(KEYS.batch_doc("g1", "u3"), tombstone(4))
    client.set(KEYS.batch_previous("g1", "u3"), stamped(2, b'{"lifetime":{"c":["v2"]}}'))
    _set_doc(client, 2, "g1", "u4", {"lifetime": {"c": ["v2"]}})
    parts: list[ViewsRequest] = [(("g1",), ["u1", "u2", "u3", "u4"])]

    def served(snapshot: ViewsSnapshot) -> list[object]:
        return [v.batch_doc and v.batch_doc["lifetime"]["c"][0] for v in snapshot.entities]

    async def scenario() -> None:
        reader = backend.reader(batch_cache_entries=10)
        try:
            assert served(await reader.read(parts)) == ["v3", None, "v2", "v2"]
            pointer = BatchPointer(4, CUTOFF, DAY_MS)
            client.set(KEYS.batch_pointer, orjson.dumps(pointer.to_json()))
            assert served(await reader.read(parts)) == ["v4", "new", None, "v2"]
            assert served(await reader.read(parts)) == ["v4", "new", None, "v2"]  # cached
            legacy = {**BatchPointer(1, CUTOFF, DAY_MS).to_json()}
            del legacy["layout"]
            client.set(KEYS.batch_pointer, orjson.dumps(legacy))
            client.set(KEYS.legacy_view(1, "g1", "u1"), b'{"lifetime":{"c":["old"]}}')
            assert served(await reader.read(parts)) == ["old", None, None, None]
            assert served(await reader.read(parts)) == ["old", None, None, None]
        finally:
            await reader.close()

    asyncio.run(scenario())
