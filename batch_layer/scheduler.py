"""Scheduled batch recompute: one warm Spark session, cron schedule, never two at once."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger

from feature_core.definitions import FeatureRepo
from feature_core.settings import Settings

log = logging.getLogger(__name__)


def run_scheduler(settings: Settings, repo: FeatureRepo, status_path: Path | None = None) -> None:
    from batch_layer.job import run_batch
    from batch_layer.spark import spark_session

    spark = spark_session(settings, "lfp-batch-scheduler")
    last: dict = {}

    def heartbeat() -> None:
        while True:
            if status_path is not None:
                status_path.write_text(json.dumps({"heartbeat": time.time(), "last_run": last}))
            time.sleep(2)

    threading.Thread(target=heartbeat, daemon=True).start()

    def job() -> None:
        try:
            result = run_batch(spark, settings, repo)
            last.clear()
            last.update(status="succeeded", **result.to_json())
            log.info("batch run succeeded: %s", result)
        except Exception as error:  # the previous view keeps serving
            last.clear()
            last.update(status="failed", error=str(error), finished_at=time.time())
            log.exception("batch run failed; previous view still serving")

    scheduler = BlockingScheduler(timezone="UTC")
    scheduler.add_job(
        job,
        CronTrigger.from_crontab(settings.batch_schedule, timezone="UTC"),
        max_instances=1,
        coalesce=True,
        id="batch",
    )
    log.info("batch scheduler started: %r (UTC)", settings.batch_schedule)
    try:
        scheduler.start()
    finally:
        spark.stop()
