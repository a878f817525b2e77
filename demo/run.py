"""`make demo`: drive the running stack end to end and show the merged features."""

from __future__ import annotations

import time

import httpx
import redis
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from batch_layer.lake import count_rows
from demo.generator import GeneratorConfig, encode, generate
from feature_core.keys import KeySpace
from feature_core.settings import Settings
from feature_core.windows import MINUTE_MS, align_cutoff
from infra.kafka_admin import producer


def _wait(progress: Progress, label: str, done, timeout_s: float) -> None:
    task = progress.add_task(label, total=None)
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out: {label} (see `make status` and the logs)")
        time.sleep(0.5)
    progress.update(task, total=1, completed=1)


def run_demo(settings: Settings, events: int, users: int, console: Console) -> None:
    try:
        httpx.get(f"{settings.api_url}/healthz", timeout=2).raise_for_status()
    except httpx.HTTPError:
        raise RuntimeError(
            f"no API at {settings.api_url}: start the stack with `make up`"
        ) from None
    keys = KeySpace(settings.key_prefix)
    client = redis.Redis.from_url(settings.redis_url)
    out = producer(settings)
    now = int(time.time() * 1000)
    cutoff = align_cutoff(now)
    history = GeneratorConfig(
        users=users, events=events, start_ms=cutoff - 120 * MINUTE_MS, end_ms=cutoff, seed=int(now)
    )
    live = GeneratorConfig(
        users=users, events=max(events // 10, 1), start_ms=cutoff, end_ms=now, seed=int(now) + 1
    )
    before = count_rows(settings.raw_events_uri)
    with Progress(console=console) as progress:
        task = progress.add_task("producing history (before the batch cutoff)", total=events)
        for event in generate(history):
            out.send(settings.events_topic, key=event["user_id"].encode(), value=encode(event))
            progress.advance(task)
        out.flush()
        _wait(
            progress,
            "lake ingest writing history to Delta",
            lambda: count_rows(settings.raw_events_uri) >= before + events,
            180,
        )

        task = progress.add_task("batch run (Spark over the pinned Delta version)", total=None)
        from batch_layer.job import run_batch
        from batch_layer.spark import spark_session
        from feature_core.definitions import FeatureRepo

        spark = spark_session(settings, "lfp-demo-batch")
        try:
            result = run_batch(
                spark, settings, FeatureRepo.from_module(settings.feature_repo), cutoff
            )
        finally:
            spark.stop()
        progress.update(task, total=1, completed=1)

        latest = 0
        task = progress.add_task("producing live events (after the cutoff)", total=live.events)
        for event in generate(live):
            latest = max(latest, event["event_time"])
            out.send(settings.events_topic, key=event["user_id"].encode(), value=encode(event))
            progress.advance(task)
        out.flush()
        _wait(
            progress,
            "speed layer catching up",
            lambda: int(client.hget(keys.speed_watermark, "user_activity") or 0) >= latest,
            120,
        )
    out.close()

    console.print(
        f"batch view v{result.version}: cutoff {result.cutoff}, Delta v{result.delta_version}, "
        f"{result.rows_read} events, {result.entities_written} entities"
    )
    table = Table(title="user_activity (batch + speed, merged)")
    shown = [f"user_{i}" for i in range(min(5, users))]
    rows = [
        httpx.get(
            f"{settings.api_url}/v1/features/user_activity/{u}",
            headers=settings.api_headers,
            timeout=5,
        ).json()
        for u in shown
    ]
    names = list(rows[0]["features"])
    for name in ["user", *names]:
        table.add_column(name)
    for user, row in zip(shown, rows, strict=True):
        table.add_row(user, *(str(row["features"][n]) for n in names))
    console.print(table)
    console.print(f"try: curl {settings.api_url}/v1/features/user_activity/user_1")
    console.print(f"API docs: {settings.api_url}/docs   stack: make status   stop: make down")
