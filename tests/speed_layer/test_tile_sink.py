"""The JVM tile sink (lfp.speed.TileSink) finishes each tile column into the algebra's
partial as speed_layer/sink.py's to_partial does, and names entities as
feature_core/keys.py's entity_id does, byte for byte."""

from __future__ import annotations

import base64
import socket
import threading
from collections.abc import Iterator

import orjson
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.cluster import RedisCluster
from redis.crc import key_slot

from feature_core import sketches
from feature_core.aggregations import Primitive
from feature_core.keys import entity_id
from speed_layer.functions import udf_jar
from speed_layer.sink import to_partial
from tests.speed_layer.jvm_harness import JavaHarness


def ask(harness: JavaHarness, request: list) -> bytes:
    return harness.ask(orjson.dumps(request))


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JavaHarness]:
    running = JavaHarness(udf_jar(tmp_path_factory.mktemp("jvm")), "lfp.speed.TileSink")
    yield running
    running.close()


_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(["last", "last_k"]),
    k=st.integers(1, 5),
    pairs=st.data(),
)
def test_latest_pairs_finish_as_the_algebra(harness, kind, k, pairs):
    scalar = pairs.draw(st.sampled_from(["text", "int", "float", "bool"]))
    strategy = {
        "text": _TEXT,
        "int": st.integers(-(2**63), 2**63 - 1),
        "float": st.floats(allow_nan=False, allow_infinity=False),
        "bool": st.booleans(),
    }[scalar]
    drawn = pairs.draw(st.lists(st.tuples(st.integers(0, 2**50), strategy), max_size=8))
    k = 1 if kind == "last" else k
    primitive = Primitive(kind, None if kind == "last" else k)
    # What LatestPairs emits: the k largest pairs, largest first (None for none).
    kept = sorted(drawn, key=lambda p: (p[0], p[1]), reverse=True)[:k] or None
    jvm = orjson.loads(ask(harness, [kind, k, None if kept is None else [list(p) for p in kept]]))
    expected = to_partial(primitive, kept)
    assert jvm == expected

    def types(partial: list | None) -> list[type]:
        pairs = [partial] if kind == "last" and partial else partial or []
        return [type(v) for pair in pairs for v in pair]

    assert types(jvm) == types(expected)  # 1 == 1.0 == True in Python


@settings(max_examples=200, deadline=None)
@given(
    precision=st.sampled_from([4, 6, 10]),
    values=st.lists(st.text(max_size=6), max_size=300),
)
def test_sketch_registers_encode_as_the_algebra(harness, precision, values):
    registers = bytearray(1 << precision)
    for index, rank in sketches.registers_of(values, precision).items():
        registers[index] = rank
    raw = bytes(registers) if values else None
    jvm = ask(harness, ["hll", precision, None if raw is None else base64.b64encode(raw).decode()])
    assert orjson.loads(jvm) == to_partial(Primitive("hll", precision), raw)


@settings(max_examples=100, deadline=None)
@given(raw=st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1), st.floats()))
def test_native_values_and_the_latest_event_time(harness, raw):
    count = Primitive.COUNT
    expected = orjson.loads(orjson.dumps(to_partial(count, raw)))  # non-finite -> null
    assert orjson.loads(ask(harness, ["native", 0, raw])) == expected
    if isinstance(raw, int):
        assert orjson.loads(ask(harness, ["last_time", 0, raw])) == to_partial(Primitive.LAST, raw)
    assert orjson.loads(ask(harness, ["last_time", 0, None])) is None


@settings(max_examples=200, deadline=None)
@given(keys=st.lists(_TEXT, min_size=1, max_size=3))
def test_entity_ids_match_the_key_layout(harness, keys):
    jvm = orjson.loads(ask(harness, ["id", keys]))
    assert jvm.encode() == entity_id(keys).encode()


@settings(max_examples=300, deadline=None)
@given(
    key=st.one_of(
        _TEXT,
        st.builds(lambda before, tag, after: f"{before}{{{tag}}}{after}", _TEXT, _TEXT, _TEXT),
    )
)
def test_cluster_slots_match_redis(harness, key):
    """The sink routes each key as Redis Cluster hashes it (CRC16 of the hash tag)."""
    assert int(ask(harness, ["slot", key])) == key_slot(key.encode())


@pytest.mark.parametrize(
    ("address", "authority"),
    [("10.0.0.7:7001", "10.0.0.7:7001"), ("::1:7001", "[::1]:7001"), ("[::1]:7001", "[::1]:7001")],
)
def test_node_addresses_from_the_cluster_become_url_authorities(harness, address, authority):
    """CLUSTER SLOTS and ASK name nodes as ip:port, IPv6 without brackets."""
    assert orjson.loads(ask(harness, ["authority", address])) == authority


@pytest.mark.integration
def test_writes_to_a_slot_being_migrated_follow_ask_to_the_importing_node(harness, redis_cluster):
    """Mid-migration, the slot's master answers ASK for keys not on it; the sink sends
    those commands to the importing node after ASKING, and the rest as usual."""
    redis_cluster.flush()
    cluster = RedisCluster(host="127.0.0.1", port=redis_cluster.ports[0])
    key, other = "lfp:st:{migrating}:u1", "lfp:st:{staying}:u1"
    slot = key_slot(key.encode())
    port = cluster.get_node_from_key(key).port
    target_port = next(p for p in redis_cluster.ports if p != port)
    source = redis.Redis(host="127.0.0.1", port=port)
    target = redis.Redis(host="127.0.0.1", port=target_port)
    source_id, target_id = (node.execute_command("CLUSTER MYID") for node in (source, target))
    target.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
    source.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
    try:
        commands = [["HSET", key, "0", "[1]"], ["HSET", other, "0", "[2]"]]
        assert orjson.loads(ask(harness, ["write", redis_cluster.url, commands, 3000])) == "ok"
        # A new key of a migrating slot lives on the importing node.
        assert source.execute_command("CLUSTER COUNTKEYSINSLOT", slot) == 0
        assert target.execute_command("CLUSTER COUNTKEYSINSLOT", slot) == 1
        with target.pipeline(transaction=False) as pipe:
            pipe.execute_command("ASKING").hget(key, "0")
            assert pipe.execute()[1] == b"[1]"
        assert cluster.hget(other, "0") == b"[2]"
    finally:
        for node in (source, target):
            node.execute_command("CLUSTER", "SETSLOT", slot, "STABLE")
        redis_cluster.flush()


class LoadingRedis:
    """A stand-in for a Redis just restarted: it answers LOADING to its first ``loading``
    commands (as Redis does until its append-only file is read), then +OK, or ``error``
    to every command when one is given; ``taken`` lists the commands it accepted."""

    def __init__(self, loading: int, error: bytes | None = None) -> None:
        self.loading = loading
        self.error = error
        self.taken: list[list[bytes]] = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._talk, args=(connection,), daemon=True).start()

    def _talk(self, connection: socket.socket) -> None:
        with connection, connection.makefile("rb") as stream:
            while header := stream.readline():
                args = []
                for _ in range(int(header[1:])):
                    size = int(stream.readline()[1:])
                    args.append(stream.read(size + 2)[:-2])
                if self.error is not None:
                    reply = self.error
                elif self.loading > 0:
                    self.loading -= 1
                    reply = b"-LOADING Redis is loading the dataset in memory\r\n"
                else:
                    self.taken.append(args)
                    reply = b"+OK\r\n"
                connection.sendall(reply)

    def close(self) -> None:
        self.server.close()


def test_a_restarted_redis_still_loading_its_file_gets_the_writes_once_it_has(harness):
    """LOADING is retried (the whole batch: every command is idempotent) until Redis takes
    it: failing the sink made Flink restart the job from its last checkpoint, whose
    replay wrote tiles older than Redis held."""
    server = LoadingRedis(loading=6)
    try:
        commands = [["HSET", "lfp:st:g:{u1}", "0", "[1]"], ["EXPIRE", "lfp:st:g:{u1}", "60"]]
        url = f"redis://127.0.0.1:{server.port}/0"
        assert orjson.loads(ask(harness, ["write-one", url, commands, 10_000])) == "ok"
        # Sent whole until every command was taken (Redis takes all once loaded).
        assert server.taken[-2:] == [[part.encode() for part in c] for c in commands]
    finally:
        server.close()


def test_an_error_reply_that_will_not_change_fails_the_write_at_once(harness):
    server = LoadingRedis(loading=0, error=b"-ERR wrong number of arguments\r\n")
    try:
        url = f"redis://127.0.0.1:{server.port}/0"
        answer = orjson.loads(ask(harness, ["write-one", url, [["HSET", "k"]], 10_000]))
        assert "wrong number of arguments" in answer
    finally:
        server.close()
