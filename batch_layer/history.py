"""Batch run history in Redis: what each run did, for the CLI, the API and the on-call.

Kept next to the views it describes (one hash of records, one index by start time), so
every reader that can reach the views can see how they were made.
"""

from __future__ import annotations

import redis

from feature_core.keys import KeySpace
from feature_core.runs import RunRecord


class RunHistory:
    """The newest ``keep`` run records."""

    def __init__(self, client: redis.Redis, key_prefix: str, keep: int = 200) -> None:
        self.client = client
        self.keys = KeySpace(key_prefix)
        self.keep = keep

    def save(self, record: RunRecord) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self.keys.batch_runs, record.run_id, record.model_dump_json())
        pipe.zadd(self.keys.batch_runs_index, {record.run_id: record.started_at})
        pipe.execute()
        surplus = self.client.zrange(self.keys.batch_runs_index, 0, -self.keep - 1)
        if surplus:
            pipe = self.client.pipeline(transaction=True)
            pipe.zrem(self.keys.batch_runs_index, *surplus)
            pipe.hdel(self.keys.batch_runs, *surplus)
            pipe.execute()

    def recent(self, limit: int = 20) -> list[RunRecord]:
        """Newest first."""
        ids = self.client.zrevrange(self.keys.batch_runs_index, 0, limit - 1)
        if not ids:
            return []
        raw = self.client.hmget(self.keys.batch_runs, ids)
        return [RunRecord.model_validate_json(r) for r in raw if r is not None]
