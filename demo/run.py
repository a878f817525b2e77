"""`make demo`: the whole story against the running stack, step by step.

1. back-dated history straight into the lake (days of sessions);
2. a batch run over it (Spark progress, run summary);
3. the ranking model trained on point-in-time vectors from the lake (its holdout AUC
   beside a baseline's on the same aggregates without the derived features);
4. live sessions through Kafka, picked up by the speed layer and the lake;
5. recommendations for a user, then a burst of interest in one category and the
   recommendations again, seconds later, with no batch run in between.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pyarrow.compute as pc
from pyspark.sql import SparkSession
from rich.console import Console
from rich.table import Table

from batch_layer.lake import BACKFILL, append_backfill, open_table
from demo.feature_repo import events as shop_events
from demo.generator import CATEGORIES, Shop, ShopConfig, burst_span_ms, encode
from demo.ranking import SERVICE
from feature_core.settings import Settings
from feature_core.windows import DAY_MS, align_cutoff
from online_store import open_store
from runtime.kafka import producer
from runtime.progress import progress_bars


@dataclass(frozen=True)
class DemoConfig:
    shop: ShopConfig = field(default_factory=ShopConfig)
    history_days: int = 7
    history_events: int = 30_000
    live_rate: float = 50.0  # events per second
    live_seconds: float = 20.0
    training_examples: int = 4000
    burst_views: int = 15


def wait_until(done: Callable[[], bool], what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout_s:.0f} s: {what} (see `make status`)")
        time.sleep(0.25)


def history_in_lake(settings: Settings, user_prefix: str) -> int:
    """Backfilled events of this shop already in the lake (a rerun does not add more)."""
    table = open_table(settings.table_uri(shop_events.table_name))
    if table is None:
        return 0
    dataset = table.to_pyarrow_dataset()
    backfilled = (pc.field("kafka_partition") == BACKFILL) & pc.starts_with(
        pc.field("user_id"), user_prefix
    )
    return dataset.count_rows(filter=backfilled)


def backfill(settings: Settings, shop: Shop, config: DemoConfig, cutoff: int, progress) -> int:
    existing = history_in_lake(settings, shop.config.user_prefix)
    task = progress.add_task("history -> lake (back-dated)", total=config.history_events)
    if existing:
        progress.update(task, completed=config.history_events, description="history in lake")
        return existing
    events = shop.history(config.history_events, cutoff - config.history_days * DAY_MS, cutoff)
    written = 0
    for start in range(0, len(events), 5000):
        chunk = events[start : start + 5000]
        written += append_backfill(
            settings.table_uri(shop_events.table_name),
            shop_events,
            (shop_events.parse(encode(e)) for e in chunk),
        )
        progress.update(task, completed=written)
    return written


def produce(settings: Settings, events, progress, label: str, total: int) -> tuple[int, int]:
    """Send events to Kafka (keyed by user); the latest event time sent, and how many."""
    out = producer(settings)
    task = progress.add_task(label, total=total)
    latest = sent = 0
    try:
        for event in events:
            out.send(shop_events.topic_name, key=event["user_id"].encode(), value=encode(event))
            latest = max(latest, event["event_time"])
            sent += 1
            progress.advance(task)
        out.flush()
    finally:
        out.close()
    return latest, sent


def speed_caught_up(settings: Settings, event_times: dict[str, int]) -> Callable[[], bool]:
    """Whether each group's speed watermark has reached its event time."""
    store = open_store(settings)

    def done() -> bool:
        marks = store.watermarks(list(event_times))
        return all(
            (mark := marks.get(group)) is not None and mark >= event_time
            for group, event_time in event_times.items()
        )

    return done


def recommendations(settings: Settings, user_id: str, k: int = 10) -> dict[str, Any]:
    response = httpx.get(
        f"{settings.api_url}/v1/recommendations/{user_id}",
        params={"k": k},
        headers=settings.api_headers,
        timeout=10,
    )
    if response.status_code != 200:
        raise RuntimeError(f"recommendations: {response.status_code} {response.text[:300]}")
    return response.json()


def category_share(recs: dict[str, Any], category: str) -> float:
    items = recs["items"]
    return sum(1 for item in items if item["category"] == category) / max(len(items), 1)


def _recs_table(title: str, recs: dict[str, Any], highlight: str) -> Table:
    table = Table("#", "item", "category", "score", title=title)
    for rank, item in enumerate(recs["items"], start=1):
        category = item["category"]
        shown = f"[bold magenta]{category}[/bold magenta]" if category == highlight else category
        table.add_row(str(rank), item["item_id"], shown, f"{item['score']:.3f}")
    return table


def run_demo(
    settings: Settings,
    console: Console,
    config: DemoConfig | None = None,
    spark: SparkSession | None = None,
) -> dict:
    """Run every step; returns what a test (or a curious user) wants to check.

    Uses ``spark`` if given (and leaves it running), else a session of its own.
    """
    from batch_layer.scheduler import BatchScheduler
    from batch_layer.spark import spark_session
    from demo.train import TrainingConfig, holdout_report, train_model, training_set_path
    from feature_core.definitions import FeatureRepo

    config = config or DemoConfig()
    try:
        httpx.get(f"{settings.api_url}/healthz", timeout=2).raise_for_status()
    except httpx.HTTPError:
        raise RuntimeError(
            f"no API at {settings.api_url}: start the stack with `make up`"
        ) from None
    repo = FeatureRepo.from_module(settings.feature_repo)
    shop = Shop(config.shop)
    cutoff = align_cutoff(int(time.time() * 1000))
    own_session = spark is None
    spark = spark or spark_session(settings, "lfp-demo")
    try:
        with progress_bars(console) as progress:
            backfilled = backfill(settings, shop, config, cutoff, progress)
            task = progress.add_task("batch run (Spark tasks)", total=None)

            def show(_record: Any, snapshot: Any) -> None:
                progress.update(task, total=max(snapshot.tasks, 1), completed=snapshot.tasks_done)

            run = BatchScheduler(spark, settings, repo, show).run_once("demo", cutoff)
            if run is None or run.status != "succeeded":
                raise RuntimeError(f"the batch run failed: {run.error if run else 'busy'}")
            task = progress.add_task("training the ranking model on PIT vectors", total=None)
            training = TrainingConfig(
                examples=config.training_examples,
                seed=config.shop.seed,
                user_prefix=config.shop.user_prefix,
                item_prefix=config.shop.item_prefix,
            )
            model = train_model(spark, settings, repo, cutoff, training)
            model.save(settings.models_path)
            progress.update(task, total=1, completed=1)
    finally:
        if own_session:
            spark.stop()
    console.print(
        f"batch view v{run.view_version}: cutoff {run.cutoff}, Delta v{run.delta_version}, "
        f"{run.rows_read} events, {run.entities_written} entities, {run.duration_s:.0f} s"
    )
    console.print(
        f"model: {model.training_rows} PIT examples, trained on "
        + ", ".join(f"{name} {version}" for name, version in model.services.items())
        + f"\n  {holdout_report(model.metrics, model.training_rows)}"
        + f"\n  training set (the drift baseline): {training_set_path(settings)}"
    )

    with progress_bars(console) as progress:
        total = int(config.live_rate * config.live_seconds)
        live = shop.live(config.live_rate, config.live_seconds)
        latest, live_sent = produce(settings, live, progress, "live sessions -> Kafka", total)
        task = progress.add_task("speed layer catching up", total=None)
        groups = [g.name for g in repo.groups]
        wait_until(speed_caught_up(settings, {groups[0]: latest}), "speed layer catching up", 120)
        progress.update(task, total=1, completed=1)

    user = shop.users[0].user_id
    before = recommendations(settings, user)
    counts = Counter(item["category"] for item in before["items"])
    burst_category = min(CATEGORIES, key=lambda c: (counts.get(c, 0), CATEGORIES.index(c)))
    console.print(_recs_table(f"recommendations for {user}", before, burst_category))

    # The burst is dated after the last live event, so that the user's latest views are
    # the burst's: wait out the part of its span that would reach back into the live ones.
    span_ms = burst_span_ms(config.burst_views)
    time.sleep(max(0.0, (latest + span_ms + 1) / 1000 - time.time()))
    burst = shop.burst(user, burst_category, config.burst_views, int(time.time() * 1000))
    # The recommender's groups that take some of the burst's events (views, clicks), with
    # the last one each takes: its watermark reaches it once its tiles hold the burst.
    burst_groups: dict[str, int] = {}
    for name in dict.fromkeys(
        g for f in repo.service(SERVICE).features for g in repo.feature_groups(f)
    ):
        taken = [e["event_time"] for e in burst if repo.group(name).accepts(e)]
        if taken:
            burst_groups[name] = max(taken)
    with progress_bars(console) as progress:
        sent_at = time.monotonic()
        _, burst_sent = produce(
            settings, burst, progress, f"{user} browses {burst_category}", len(burst)
        )
        wait_until(speed_caught_up(settings, burst_groups), "speed layer picking up the burst", 60)
        visible_s = time.monotonic() - sent_at
    after = recommendations(settings, user)
    console.print(_recs_table(f"{user} after the burst", after, burst_category))
    shares = [category_share(recs, burst_category) for recs in (before, after)]
    console.print(
        f"{burst_category} in the top {len(after['items'])}: {shares[0]:.0%} -> {shares[1]:.0%}, "
        f"served {visible_s:.1f} s after the burst, with no batch run"
    )
    console.print(
        "\n[bold]where to look[/bold]\n"
        f"  recommendations  curl {settings.api_url}/v1/recommendations/{user}\n"
        f"  features         curl {settings.api_url}/v1/features/user_browsing/{user}\n"
        f"  derived          curl '{settings.api_url}/v1/features/shopper/{user}"
        f"?candidate_category={burst_category}'\n"
        f"  API docs         {settings.api_url}/docs\n"
        f"  metrics          {settings.api_url}/metrics\n"
        f"  batch runs       lfp batch history   (or {settings.api_url}/v1/batch/runs)\n"
        f"  consistency      LFP_FEATURE_REPO={settings.feature_repo} lfp verify\n"
        f"  stack            make status   |   stop: make down"
    )
    return {
        "user": user,
        "burst_category": burst_category,
        "before": before,
        "after": after,
        "run": run,
        "model": model,
        "backfilled": backfilled,
        "produced": live_sent + burst_sent,  # live and burst events sent to Kafka
    }
