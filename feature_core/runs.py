"""The batch run record: written by the batch layer, read by the CLI and the API.

In ``feature_core`` because both sides of Redis share it, like the key layout: the
serving layer reads run history without depending on the batch layer.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class RunStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    #: Its process was killed (or lost its store) before it could record an end.
    ABANDONED = "abandoned"


def this_process() -> str:
    """``host:pid``: who owns a run, so a reader can tell when its process is gone."""
    return f"{socket.gethostname()}:{os.getpid()}"


class RunRecord(BaseModel):
    """One batch run, from trigger to switch (or failure)."""

    model_config = ConfigDict(extra="forbid")

    run_id: str = Field(default_factory=lambda: uuid.uuid4().hex[:12])
    trigger: str = Field(
        description="schedule, startup, manual, view-missing, definitions-changed or speed-gap."
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
    rows_read: int | None = Field(
        None,
        description="Events the run aggregated (the new ones and their band in an "
        "incremental run; the whole snapshot before the cutoff when a group was rebuilt).",
    )
    entities_written: int | None = Field(None, description="Documents written.")
    mode: str | None = Field(
        None,
        description="incremental, reassemble (every group's documents assembled from its "
        "stored tiles), full or mixed (groups in different modes); unset in records of "
        "releases before run modes, which recomputed every group.",
    )
    group_modes: dict[str, str] | None = Field(
        None, description="Feature group -> incremental, reassemble, rebuild or full."
    )
    mode_reasons: dict[str, str] | None = Field(
        None, description="Feature group -> why it was not incremental."
    )
    lake_files_read: int | None = Field(None, description="Lake data files read.")
    lake_bytes_read: int | None = Field(None, description="Bytes of those files.")
    new_events: int | None = Field(
        None, description="Events in files added since the state the run started from."
    )
    tiles_written: int | None = Field(None, description="Tile rows written to the lake.")
    entities_changed: dict[str, int] | None = Field(
        None,
        description="Entities whose document can have changed, by cause: data (new events) "
        "and edge (a window edge moved past their tiles).",
    )
    keys_written: int | None = Field(None, description="Redis keys written.")
    keys_deleted: int | None = Field(
        None, description="Redis keys deleted or tombstoned (entities that left the view)."
    )
    view_version: int | None = Field(None, description="Batch view version written.")
    switched: bool | None = Field(None, description="Whether serving moved to this view.")
    garbage_collected: int | None = Field(None, description="Old view keys deleted after.")
    attempts: int = 0
    stages: int | None = Field(None, description="Spark stages run (last attempt).")
    tasks: int | None = Field(None, description="Spark tasks run (last attempt).")
    error: str | None = None
    owner: str | None = Field(None, description="host:pid of the process running it.")
    renewed_at: float | None = Field(
        None, description="When its process last said it is still running (epoch seconds)."
    )

    @property
    def duration_s(self) -> float | None:
        return None if self.finished_at is None else self.finished_at - self.started_at


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def abandoned_reason(record: RunRecord, lease_s: float, now: float | None = None) -> str | None:
    """Why a ``running`` record cannot still be running, or None if it may be.

    Its process is gone (checked when it ran on this host), or it was not renewed for
    ``lease_s`` (any host: the running process renews it every third of that)."""
    if record.status is not RunStatus.RUNNING:
        return None
    now = time.time() if now is None else now
    if record.owner:
        host, _, pid = record.owner.rpartition(":")
        if host == socket.gethostname() and pid.isdigit() and not _pid_alive(int(pid)):
            return f"abandoned: its process ({record.owner}) is gone; it was killed mid-run"
    renewed = record.renewed_at or record.started_at
    if now - renewed > lease_s:
        return (
            f"abandoned: not renewed for {now - renewed:.0f} s (lease {lease_s:g} s, "
            "LFP_BATCH_RUN_LEASE_S); its scheduler was killed or hung"
        )
    return None


def settled(record: RunRecord, lease_s: float, now: float | None = None) -> RunRecord:
    """``record``, or a copy marked abandoned (with the reason as its error) if its run
    cannot still be going: a killed run does not read as ``running`` forever."""
    reason = abandoned_reason(record, lease_s, now)
    if reason is None:
        return record
    error = f"{reason}; last error: {record.error}" if record.error else reason
    return record.model_copy(update={"status": RunStatus.ABANDONED, "error": error})
