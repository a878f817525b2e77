"""Each reader reports every server's memory against its maxmemory: the one server, or
every master of a Redis Cluster."""

from __future__ import annotations

import asyncio

from online_store.memory import MemoryUse


def test_the_reader_reports_each_server_memory_and_limit(backend):
    nodes = [backend.direct] if backend.name == "redis" else [
        backend.direct.get_redis_connection(n) for n in backend.direct.get_primaries()
    ]  # fmt: skip
    for node in nodes:
        node.config_set("maxmemory", 64 << 20)

    async def memory() -> list[MemoryUse]:
        reader = backend.reader()
        try:
            return await reader.memory()
        finally:
            await reader.close()

    try:
        uses = asyncio.run(memory())
    finally:
        for node in nodes:
            node.config_set("maxmemory", 0)
    assert len(uses) == len(nodes)
    for use in uses:
        assert use.limit == 64 << 20 and 0 < use.used < use.limit
        assert use.ratio is not None and 0 < use.ratio < 1
    if backend.name == "redis-cluster":
        ports = {int(u.node.rsplit(":", 1)[1]) for u in uses}
        assert ports == {n.port for n in backend.direct.get_primaries()}
