"""Each online store backend, empty, with a sync client to arrange keys and its reader."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

from feature_core.settings import Settings
from online_store import open_store
from online_store.base import OnlineStore, ViewReader
from online_store.redis_cluster.reader import RedisClusterViewReader
from online_store.redis_standalone.reader import RedisViewReader


@dataclass
class Backend:
    name: str
    url: str
    direct: Any  # a sync redis-py client of the backend, for arranging keys

    @property
    def settings(self) -> Settings:
        # The test's own Redis has no password: none from any data dir's password file.
        return Settings(
            _env_file=None,
            redis_url=self.url,
            online_store=self.name,
            redis_password_file=os.devnull,
        )

    def store(self) -> OnlineStore:
        return open_store(self.settings)

    def reader(self, prefix: str = "lfp", batch_cache_entries: int = 0) -> ViewReader:
        """Call inside the event loop that uses it."""
        if self.name == "redis-cluster":
            client = AsyncRedisCluster.from_url(self.url)
            return RedisClusterViewReader(client, prefix, batch_cache_entries)
        return RedisViewReader(aioredis.Redis.from_url(self.url), prefix, batch_cache_entries)


@pytest.fixture(params=["redis", "redis-cluster"])
def backend(request) -> Iterator[Backend]:
    if request.param == "redis":
        server = request.getfixturevalue("redis_process")
        url = f"redis://127.0.0.1:{server.port}/0"
        yield Backend("redis", url, redis.Redis.from_url(url))
    else:
        cluster = request.getfixturevalue("redis_cluster")
        cluster.flush()
        yield Backend("redis-cluster", cluster.url, RedisCluster.from_url(cluster.url))
