"""Batch run history in Redis: what each run did, for the CLI, the API and the on-call.

Kept next to the views it describes (one hash of records, one index by start time), so
every reader that can reach the views can see how they were made.
"""

from __future__ import annotations

import time
import uuid
from enum import StrEnum

import redis
from pydantic import BaseModel, ConfigDict, Field

from feature_core.keys import KeySpace


class RunStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class RunRecord(BaseModel):
    """One batch run, from trigger to switch (or failure)."""

    model_config = ConfigDict(extra="forbid")

    run_id: str = Field(default_factory=lambda: uuid.uuid4().hex[:12])
    trigger: str = Field(description="schedule, startup or manual.")
    status: RunStatus = RunStatus.RUNNING
    started_at: float = Field(default_factory=time.time, description="Epoch seconds.")
    finished_at: float | None = None
    cutoff: int | None = Field(None, description="Batch cutoff B (epoch ms).")
    delta_version: int | None = Field(None, description="Delta table version read.")
    rows_read: int | None = None
    entities_written: int | None = None
    view_version: int | None = Field(None, description="Batch view version written.")
    switched: bool | None = Field(None, description="Whether serving moved to this view.")
    garbage_collected: int | None = Field(None, description="Old view keys deleted after.")
    attempts: int = 0
    stages: int | None = Field(None, description="Spark stages run (last attempt).")
    tasks: int | None = Field(None, description="Spark tasks run (last attempt).")
    error: str | None = None

    @property
    def duration_s(self) -> float | None:
        return None if self.finished_at is None else self.finished_at - self.started_at


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
