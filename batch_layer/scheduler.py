"""Scheduled batch recompute: one warm Spark session, a cron schedule, never two at once.

Each run is recorded in the run history (see :mod:`batch_layer.history`), retried with
exponential backoff, and shows its Spark progress. A failed run leaves the previous view
serving: the pointer only moves at the end of a run that wrote everything.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from pyspark.sql import SparkSession
from tenacity import RetryCallState, Retrying, stop_after_attempt, wait_exponential

from batch_layer.history import RUNS_TABLE, RunHistory
from batch_layer.job import REQUESTED_MODES, run_batch
from batch_layer.lake import optimize_lake
from batch_layer.monitor import Monitor
from batch_layer.progress import ProgressSnapshot, SparkProgress
from feature_core.definitions import FeatureRepo
from feature_core.runs import RunRecord, RunStatus, this_process
from feature_core.settings import Settings
from feature_core.windows import align_cutoff
from online_store import STORE_ERRORS, open_store
from runtime.status import write_status

log = logging.getLogger(__name__)

#: What a run did, by :class:`~batch_layer.job.BatchResult` and
#: :class:`~feature_core.runs.RunRecord` alike (same names): copied to the record as is.
RUN_FIGURES = (
    "mode",
    "group_modes",
    "mode_reasons",
    "lake_files_read",
    "lake_bytes_read",
    "new_events",
    "tiles_written",
    "entities_changed",
    "keys_written",
    "keys_deleted",
)


def settled_cutoff(settings: Settings, now_ms: int | None = None) -> int:
    """Cutoff B for a run starting now: aligned, and ``batch_settle_s`` in the past.

    Events reach the lake a moment after Kafka; a cutoff right at "now" would leave the
    last of them out of the batch view and, being before B, out of the speed range too.
    """
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    return align_cutoff(now_ms - settings.batch_settle_s * 1000)


class ViewProblem(NamedTuple):
    trigger: str  # the run's trigger: view-missing, definitions-changed or speed-gap
    reason: str


class BatchScheduler:
    """Runs the batch job once per trigger, under a lock, with retries and a record."""

    def __init__(
        self,
        spark: SparkSession,
        settings: Settings,
        repo: FeatureRepo,
        on_progress: Callable[[RunRecord, ProgressSnapshot], None] | None = None,
    ) -> None:
        self.spark = spark
        self.settings = settings
        self.repo = repo
        self.on_progress = on_progress
        self.store = open_store(settings)
        self.history = RunHistory(
            self.store,
            keep=settings.batch_run_history,
            lake_uri=settings.table_uri(RUNS_TABLE),
            lease_s=settings.batch_run_lease_s,
        )
        self.last: RunRecord | None = None
        self.current: RunRecord | None = None
        self._running = threading.Lock()
        self.monitor = Monitor(settings, repo, self.store)

    def run_once(
        self, trigger: str = "manual", cutoff_ms: int | None = None, mode: str | None = None
    ) -> RunRecord | None:
        """One run, or None if another is still going (the trigger is skipped). ``mode``:
        one the run is asked for (:data:`batch_layer.job.REQUESTED_MODES`), None for the
        job's choice per group."""
        if mode is not None and mode not in REQUESTED_MODES:  # not worth a retry
            raise ValueError(f"unknown batch run mode {mode!r}: one of {REQUESTED_MODES}")
        if not self._running.acquire(blocking=False):
            log.warning("a batch run is still in progress; skipping the %s trigger", trigger)
            return None
        try:
            return self._run(trigger, cutoff_ms, mode)
        finally:
            self._running.release()

    def _run(self, trigger: str, cutoff_ms: int | None, mode: str | None = None) -> RunRecord:
        cutoff = align_cutoff(cutoff_ms) if cutoff_ms is not None else settled_cutoff(self.settings)
        record = RunRecord(trigger=trigger, cutoff=cutoff, owner=this_process())
        record.renewed_at = record.started_at
        self.current = record
        renewing = threading.Event()
        try:
            self.history.save(record)
            log.info("batch run %s started (%s, cutoff %s)", record.run_id, trigger, cutoff)
            threading.Thread(
                target=self._renew, args=(record, renewing), name="batch-run-lease", daemon=True
            ).start()
            return self._attempts(record, cutoff, mode)
        finally:
            renewing.set()
            self.current = None

    def _renew(self, record: RunRecord, done: threading.Event) -> None:
        """Renew the running record's lease until the run ends: a reader tells a run
        still going from one whose scheduler was killed."""
        while not done.wait(self.settings.batch_run_lease_s / 3):
            record.renewed_at = time.time()
            self.history.renew(record)

    def current_run(self) -> dict | None:
        """The run in progress (id, trigger, start, age, attempts, last error), for the
        heartbeat: a hung run shows its age there."""
        record = self.current
        if record is None:
            return None
        return {
            "run_id": record.run_id,
            "trigger": record.trigger,
            "started_at": record.started_at,
            "age_s": round(time.time() - record.started_at, 1),
            "attempts": record.attempts,
            "error": record.error,
        }

    def _attempts(self, record: RunRecord, cutoff: int, mode: str | None = None) -> RunRecord:
        """Run the job with retries (a Redis timeout included) and record how it ended."""

        def show(snapshot: ProgressSnapshot) -> None:
            if self.on_progress is not None:
                self.on_progress(record, snapshot)

        def count_attempt(state: RetryCallState) -> None:
            record.attempts = state.attempt_number
            outcome = state.outcome
            error = outcome.exception() if outcome is not None else None
            record.error = f"{type(error).__name__}: {error}" if error else None
            self.history.save(record)
            log.warning(
                "batch run %s attempt %d failed (%s); retrying in %.1f s",
                record.run_id,
                state.attempt_number,
                record.error,
                state.next_action.sleep if state.next_action else 0.0,
            )

        retrying = Retrying(
            stop=stop_after_attempt(self.settings.batch_retries + 1),
            wait=wait_exponential(multiplier=self.settings.batch_retry_backoff_s, max=300),
            before_sleep=count_attempt,
            reraise=True,
        )
        progress: SparkProgress | None = None
        try:
            for attempt in retrying:
                with attempt:
                    record.attempts = attempt.retry_state.attempt_number
                    group = f"{record.run_id}-{record.attempts}"
                    with SparkProgress(self.spark, group, show) as progress:
                        result = run_batch(
                            self.spark,
                            self.settings,
                            self.repo,
                            cutoff,
                            run_id=record.run_id,
                            mode=mode,
                        )
        except Exception as error:
            record.status = RunStatus.FAILED
            record.error = f"{type(error).__name__}: {error}"
            log.exception("batch run %s failed; the previous view keeps serving", record.run_id)
        else:
            record.status = RunStatus.SUCCEEDED
            record.error = None
            record.cutoff = result.cutoff  # the job never passes the run's start
            record.delta_version = result.delta_version
            record.delta_versions = result.delta_versions
            record.rows_read = result.rows_read
            record.entities_written = result.entities_written
            record.view_version = result.version
            record.switched = result.switched
            record.garbage_collected = result.garbage_collected
            for name in RUN_FIGURES:
                setattr(record, name, getattr(result, name))
        if progress is not None:
            record.stages = progress.last.stages_done
            record.tasks = progress.last.tasks_done
        record.finished_at = time.time()
        self.history.save(record)
        self.last = record
        log.info(
            "batch run %s %s in %.1f s (mode %s): view v%s, %s rows, %s entities, "
            "%s old keys removed",
            record.run_id,
            record.status.value,
            record.duration_s or 0.0,
            record.mode or "-",
            record.view_version,
            record.rows_read,
            record.entities_written,
            record.garbage_collected,
        )
        return record

    def view_problem(self) -> ViewProblem | None:
        """Why the serving batch view cannot serve this repo's groups, or None if it can."""
        pointer = self.store.pointer()
        if pointer is None:
            return ViewProblem("view-missing", "no batch view is serving")
        if pointer.view_fingerprints is None:
            reason = f"batch view v{pointer.version} does not say which definitions it holds"
            return ViewProblem("definitions-changed", reason)
        stale = pointer.stale_groups(self.repo.groups)
        if stale:
            reason = (
                f"batch view v{pointer.version} was computed from other definitions of "
                f"{', '.join(stale)} (the feature repo changed)"
            )
            return ViewProblem("definitions-changed", reason)
        epoch = self.store.speed_epoch() or {}
        gap = epoch.get("gap_before")
        # Once a settled cutoff can pass the gap (tiles before it may miss events the
        # broker lost; the lake has them), a run closes it.
        if gap is not None and pointer.cutoff < gap <= settled_cutoff(self.settings):
            reason = (
                f"the speed tiles before {gap} may miss events the broker lost (the lake "
                f"holds them) and batch view v{pointer.version} covers only up to "
                f"{pointer.cutoff}"
            )
            return ViewProblem("speed-gap", reason)
        return None

    def view_serving(self) -> bool:
        return self.view_problem() is None

    def recompute_if_view_missing(self) -> RunRecord | None:
        """A run now if no batch view serves this repo's definitions (Redis lost its data,
        the pointer was deleted, or the definitions changed): the API answers 503 for the
        groups it cannot serve until one does, so this cannot wait for the cron tick.
        After a failed run it waits ``batch_retry_backoff_s`` before trying again."""
        if self._running.locked():  # a run is going: it ends with a view or a failure
            return None
        try:
            problem = self.view_problem()
        except STORE_ERRORS as error:
            log.debug("view check skipped: %r", error)
            return None
        if problem is None:
            return None
        last = self.last
        if (
            last is not None
            and last.status is RunStatus.FAILED
            and time.time() - (last.finished_at or 0) < self.settings.batch_retry_backoff_s
        ):
            return None
        log.warning("%s: recomputing now", problem.reason)
        if problem.trigger == "view-missing":
            self.history.restore()  # Redis lost its data: the history too
        return self.run_once(problem.trigger)

    def optimize_lake(self) -> None:
        """Cluster the lake by entity keys (see :func:`batch_layer.lake.optimize_table`)
        and compact the tile table; a failure is logged and the next tick tries again: the
        lake stays as it was. While a run of this scheduler goes, the tile table is only
        vacuumed: the run read it before, and its commit would fail on a compaction."""
        try:
            compact_tiles = not self._running.locked()
            for result in optimize_lake(self.settings, self.repo, compact_tiles=compact_tiles):
                log.info(
                    "lake %s optimized: %d partitions, %d -> %d files (%d bytes), %d old "
                    "files deleted in %.1f s",
                    result.table,
                    result.partitions,
                    result.files_before,
                    result.files_after,
                    result.bytes_after,
                    result.vacuumed,
                    result.seconds,
                )
                for note in result.notes:
                    log.info("lake %s: %s", result.table, note)
        except Exception:
            log.exception("lake optimization failed; the next scheduled one tries again")

    def schedule(self, scheduler: BaseScheduler, run_now: bool = False) -> None:
        """Add the cron job (and, if asked, an immediate run), the lake optimization, the
        view watch and the monitor's jobs (:mod:`batch_layer.monitor`) to an APScheduler
        scheduler."""
        trigger = CronTrigger.from_crontab(self.settings.batch_schedule, timezone="UTC")
        scheduler.add_job(
            self.run_once, trigger, args=["schedule"], max_instances=1, coalesce=True, id="batch"
        )
        if run_now:
            scheduler.add_job(self.run_once, args=["startup"], id="batch-now")
        scheduler.add_job(
            self.optimize_lake,
            CronTrigger.from_crontab(self.settings.lake_optimize_schedule, timezone="UTC"),
            max_instances=1,
            coalesce=True,
            id="lake-optimize",
        )
        scheduler.add_job(
            self.recompute_if_view_missing,
            "interval",
            seconds=self.settings.batch_watch_s,
            max_instances=1,
            coalesce=True,
            id="view-watch",
        )
        self.monitor.schedule(scheduler)

    def start_background(self) -> BackgroundScheduler:
        """The schedule in a background thread (tests, embedding); stop with ``shutdown()``."""
        scheduler = BackgroundScheduler(timezone="UTC")
        self.schedule(scheduler)
        scheduler.start()
        return scheduler


def log_progress(every_s: float = 10.0) -> Callable[[RunRecord, ProgressSnapshot], None]:
    """A progress callback writing a log line at most every ``every_s`` seconds."""
    last = [0.0]

    def show(record: RunRecord, snapshot: ProgressSnapshot) -> None:
        if time.monotonic() - last[0] >= every_s:
            last[0] = time.monotonic()
            log.info(
                "batch run %s: %d/%d stages, %d/%d tasks %s",
                record.run_id,
                snapshot.stages_done,
                snapshot.stages,
                snapshot.tasks_done,
                snapshot.tasks,
                snapshot.current_stage,
            )

    return show


def run_scheduler(settings: Settings, repo: FeatureRepo, status_path: Path | None = None) -> None:
    """The stack's scheduler service: blocks until stopped."""
    from batch_layer.spark import spark_session

    spark = spark_session(settings, "lfp-batch-scheduler")
    batch = BatchScheduler(spark, settings, repo, log_progress())

    def heartbeat() -> None:
        while True:
            last = batch.last.model_dump(mode="json") if batch.last else {}
            write_status(status_path, last_run=last, current_run=batch.current_run())
            time.sleep(2)

    threading.Thread(target=heartbeat, daemon=True).start()
    batch.history.restore()
    batch.history.settle_abandoned()  # runs a killed scheduler left "running"
    scheduler = BlockingScheduler(timezone="UTC")
    # Redis lost its views (or never had one) while the lake may hold history: serve batch
    # values now rather than speed-only values until the next cron tick.
    batch.schedule(scheduler, run_now=not batch.view_serving())
    log.info("batch scheduler started: %r (UTC)", settings.batch_schedule)
    try:
        scheduler.start()
    finally:
        spark.stop()
