"""Scheduled batch recompute: one warm Spark session, cron schedule, never two at once."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger

from feature_core.definitions import FeatureRepo
from feature_core.settings import Settings
from infra.status import write_status

log = logging.getLogger(__name__)


def _view_serving(settings: Settings) -> bool:
    import redis

    from feature_core.keys import KeySpace

    client = redis.Redis.from_url(settings.redis_url)
    try:
        return bool(client.exists(KeySpace(settings.key_prefix).batch_pointer))
    finally:
        client.close()


def run_scheduler(settings: Settings, repo: FeatureRepo, status_path: Path | None = None) -> None:
    from batch_layer.job import run_batch
    from batch_layer.spark import spark_session

    spark = spark_session(settings, "lfp-batch-scheduler")
    last: dict = {}

    def heartbeat() -> None:
        while True:
            write_status(status_path, last_run=last)
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

    running = threading.Lock()

    def one_at_a_time() -> None:
        if not running.acquire(blocking=False):
            log.warning("a batch run is still in progress; skipping this trigger")
            return
        try:
            job()
        finally:
            running.release()

    scheduler = BlockingScheduler(timezone="UTC")
    trigger = CronTrigger.from_crontab(settings.batch_schedule, timezone="UTC")
    scheduler.add_job(one_at_a_time, trigger, max_instances=1, coalesce=True, id="batch")
    if not _view_serving(settings):
        # Redis lost its views (or never had one) while the lake may hold history: serve
        # batch values now rather than speed-only values until the next cron tick.
        scheduler.add_job(one_at_a_time, id="batch-now")
    log.info("batch scheduler started: %r (UTC)", settings.batch_schedule)
    try:
        scheduler.start()
    finally:
        spark.stop()
