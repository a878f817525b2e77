"""The online store: where the batch and speed views live, and the one way layers reach
them. A backend is a folder with a store (writers) and a reader (the API); the layers
call :func:`open_store` and :func:`open_reader`, never a client library.

- ``redis`` (:mod:`online_store.redis_standalone`): one Redis server, the default.
- ``redis-cluster`` (:mod:`online_store.redis_cluster`): Redis Cluster.

Picked by ``LFP_ONLINE_STORE``; both keep the views under :mod:`online_store.keys`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from redis.exceptions import RedisClusterException, RedisError

if TYPE_CHECKING:
    from feature_core.settings import Settings
    from online_store.base import OnlineStore, ViewReader

#: What a store raises when its backend does not answer or refuses a command.
STORE_ERRORS: tuple[type[Exception], ...] = (RedisError, RedisClusterException)


def open_store(settings: Settings, timeout_s: float | None = None) -> OnlineStore:
    """The writers' store (batch job and its executors, speed job, scheduler, CLI). Its
    connect and read timeout is ``timeout_s``, by default ``LFP_BATCH_REDIS_TIMEOUT_S``:
    never unbounded, so a hung Redis fails a writer instead of hanging it."""
    if timeout_s is None:
        timeout_s = settings.batch_redis_timeout_s
    if settings.online_store == "redis-cluster":
        from online_store.redis_cluster.store import RedisClusterStore

        return RedisClusterStore.from_settings(settings, timeout_s)
    from online_store.redis_standalone.store import RedisStore

    return RedisStore.from_settings(settings, timeout_s)


def open_reader(settings: Settings) -> ViewReader:
    """The API's asynchronous reader."""
    if settings.online_store == "redis-cluster":
        from online_store.redis_cluster.reader import RedisClusterViewReader

        return RedisClusterViewReader.from_settings(settings)
    from online_store.redis_standalone.reader import RedisViewReader

    return RedisViewReader.from_settings(settings)
