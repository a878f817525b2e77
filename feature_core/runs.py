"""The batch run record: written by the batch layer, read by the CLI and the API.

In ``feature_core`` because both sides of Redis share it, like the key layout: the
serving layer reads run history without depending on the batch layer.
"""

from __future__ import annotations

import time
import uuid
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class RunStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class RunRecord(BaseModel):
    """One batch run, from trigger to switch (or failure)."""

    model_config = ConfigDict(extra="forbid")

    run_id: str = Field(default_factory=lambda: uuid.uuid4().hex[:12])
    trigger: str = Field(
        description="schedule, startup, manual, view-missing or definitions-changed."
    )
    status: RunStatus = RunStatus.RUNNING
    started_at: float = Field(default_factory=time.time, description="Epoch seconds.")
    finished_at: float | None = None
    cutoff: int | None = Field(None, description="Batch cutoff B (epoch ms).")
    delta_version: int | None = Field(
        None, description="Delta table version read (when the groups read one table)."
    )
    delta_versions: dict[str, int | None] | None = Field(
        None, description="Lake table -> Delta version read."
    )
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
