"""Progress of a Spark run, from the status tracker: jobs, stages and tasks so far.

Spark's own console bar is off (it garbles logs and rich output); this polls the same
numbers for one job group and hands them to whoever shows them: a rich progress bar in
the CLI, periodic log lines in the scheduler.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from pyspark.sql import SparkSession


@dataclass(frozen=True)
class ProgressSnapshot:
    jobs: int
    stages_done: int
    stages: int
    tasks_done: int
    tasks: int
    tasks_failed: int
    current_stage: str


class SparkProgress:
    """Context manager: runs in the caller's thread's job group, polls every ``interval_s``."""

    def __init__(
        self,
        spark: SparkSession,
        group: str,
        on_update: Callable[[ProgressSnapshot], None] | None = None,
        interval_s: float = 0.5,
    ) -> None:
        self.context = spark.sparkContext
        self.group = group
        self.on_update = on_update
        self.interval_s = interval_s
        self.last = ProgressSnapshot(0, 0, 0, 0, 0, 0, "")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True, name="spark-progress")

    def snapshot(self) -> ProgressSnapshot:
        tracker = self.context.statusTracker()
        job_ids = tracker.getJobIdsForGroup(self.group)
        stage_ids: set[int] = set()
        running: set[int] = set()  # stages of jobs still running
        for job_id in job_ids:
            job = tracker.getJobInfo(job_id)
            if job is not None:
                stage_ids.update(job.stageIds)
                if job.status in ("RUNNING", "UNKNOWN"):
                    running.update(job.stageIds)
        active = set(tracker.getActiveStageIds())
        stages = stages_done = tasks_done = tasks = failed = 0
        current = ""
        for stage_id in sorted(stage_ids):
            info = tracker.getStageInfo(stage_id)
            if info is None:  # already forgotten
                continue
            if info.numCompletedTasks == 0 and stage_id not in active and stage_id not in running:
                continue  # skipped: its job reused an earlier stage's output
            stages += 1
            tasks += info.numTasks
            tasks_done += info.numCompletedTasks
            failed += info.numFailedTasks
            if stage_id in active:
                current = info.name
            elif info.numCompletedTasks >= info.numTasks:
                stages_done += 1
        return ProgressSnapshot(
            len(job_ids), stages_done, stages, tasks_done, tasks, failed, current
        )

    def _poll(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._update()

    def _update(self) -> None:
        try:
            self.last = self.snapshot()
        except Exception:  # the JVM may be going away at shutdown; progress is best effort
            return
        if self.on_update is not None:
            self.on_update(self.last)

    def __enter__(self) -> SparkProgress:
        self.context.setJobGroup(self.group, f"lfp batch run {self.group}")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._update()
        self.context.setLocalProperty("spark.jobGroup.id", None)  # type: ignore[arg-type]
