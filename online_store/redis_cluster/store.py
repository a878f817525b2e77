"""The online store on Redis Cluster: the standalone store's commands, sent by a
cluster client that routes each key to its slot's node.

Every command the writers send names one key, or keys of one slot (the ``{meta}`` tag):
batch view writes and garbage collection are pipelines the client splits per node, so
a batch view's keys spread over every master.
"""

from __future__ import annotations

from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from feature_core.credentials import redis_tls_options
from feature_core.settings import Settings
from online_store.base import TileTarget
from online_store.redis_standalone.store import RedisStore, fsyncs_each_write


class RedisClusterStore(RedisStore):
    scripted_corrections = False  # the tiles' hashes are in every slot
    multi_slot_scripts = False  # batch documents too
    atomic_reads = False  # the pointer and the documents are read from different masters

    @classmethod
    def from_settings(cls, settings: Settings, timeout_s: float | None = None) -> RedisClusterStore:
        client = RedisCluster.from_url(
            settings.redis_url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            **redis_tls_options(settings.redis_url),
        )
        return cls(client, settings.key_prefix, settings.redis_url)

    def server_identity(self) -> str | None:
        """Every master's run id: any of them restarting changes it."""
        try:
            replies = self.client.info("server", target_nodes=RedisCluster.PRIMARIES)
        except (RedisError, RedisClusterException):
            return None
        if "run_id" in replies:  # a single master answered as one node
            return str(replies["run_id"])
        return ",".join(sorted(str(info["run_id"]) for info in replies.values()))

    def keeps_acknowledged_writes(self) -> bool:
        """Every master fsyncs each write."""
        try:
            replies = self.client.config_get("append*", target_nodes=RedisCluster.PRIMARIES)
        except (RedisError, RedisClusterException):
            return False
        if "appendonly" in replies:  # a single master answered as one node
            return fsyncs_each_write(replies)
        return bool(replies) and all(fsyncs_each_write(r) for r in replies.values())

    def tile_target(self) -> TileTarget:
        return TileTarget(self.url, cluster=True)
