"""The scheduler's monitor jobs without a stack: freshness samples against a real
redis-server, the jobs on their intervals, and the sampled check's lake read over a
Delta table written as ingest writes it. The sampled check end to end (API, lake,
reference) is in tests/integration/test_sampled_verify.py."""

from __future__ import annotations

import logging
import os
import time

import orjson
import pytest
from apscheduler.schedulers.background import BackgroundScheduler

from batch_layer.lake import append_with_offsets
from batch_layer.monitor import Monitor, _within_budget, columns_read, read_entity_events
from demo.feature_repo import events as shop
from feature_core.definitions import FeatureRepo
from feature_core.journals import Journal
from feature_core.merge import BatchPointer
from feature_core.settings import Settings
from fraud.feature_repo import transactions
from online_store import open_store
from online_store.keys import KeySpace
from tests.conftest import wait_for

REPO = FeatureRepo.from_module("demo.feature_repo")
DAY_MS = 86_400_000


def redis_settings(port: int, **more) -> Settings:
    return Settings(
        _env_file=None,
        redis_url=f"redis://127.0.0.1:{port}/0",
        redis_password_file=os.devnull,
        batch_redis_timeout_s=2,
        **more,
    )


def journal(store, kind: Journal) -> list[dict]:
    return [orjson.loads(r) for r in store.journal(kind)]


def test_a_freshness_sample_holds_the_view_watermark_ages_and_lags(redis_process) -> None:
    settings = redis_settings(redis_process.port)
    store = open_store(settings)
    keys = KeySpace(settings.key_prefix)
    now = int(time.time() * 1000)
    assert store.switch(BatchPointer(7, now - 600_000, DAY_MS)) == 0
    store.client.hset(keys.speed_watermark, mapping={"user_activity": now - 4_000})
    store.publish_lag("lake-ingest", {"raw-events": 12})
    store.publish_lag("speed-job", {"raw-events": 0})

    sample = Monitor(settings, REPO, store).record_freshness()

    assert sample is not None
    [record] = journal(store, Journal.FRESHNESS)
    assert record == sample.model_dump(mode="json")
    assert record["batch_view"] == 7
    assert 600 <= record["batch_age_s"] < 660
    # Only groups whose tiles hold an event have a watermark.
    assert list(record["speed_age_s"]) == ["user_activity"]
    assert 4 <= record["speed_age_s"]["user_activity"] < 64
    assert record["lag"] == {"lake-ingest/raw-events": 12, "speed-job/raw-events": 0}
    assert now <= record["at_ms"] <= int(time.time() * 1000)


def test_no_view_yet_is_null_and_a_redis_error_skips_one_sample(redis_process, caplog) -> None:
    settings = redis_settings(redis_process.port)
    store = open_store(settings)
    monitor = Monitor(settings, REPO, store)
    first = monitor.record_freshness()
    assert first is not None
    assert (first.batch_view, first.batch_age_s, first.speed_age_s, first.lag) == (
        None,
        None,
        {},
        {},
    )
    redis_process.stop()
    with caplog.at_level(logging.WARNING, logger="batch_layer.monitor"):
        assert monitor.record_freshness() is None
    [line] = [r for r in caplog.records if r.name == "batch_layer.monitor"]
    assert "freshness sample skipped" in line.getMessage()
    redis_process.start()  # the same port, empty: the next sample is recorded
    assert monitor.record_freshness() is not None
    assert len(journal(store, Journal.FRESHNESS)) == 1


def test_the_jobs_run_on_their_intervals_and_zero_turns_one_off(redis_process) -> None:
    settings = redis_settings(redis_process.port, monitor_interval_s=1, sampled_verify_interval_s=0)
    store = open_store(settings)
    scheduler = BackgroundScheduler(timezone="UTC")
    Monitor(settings, REPO, store).schedule(scheduler)
    assert [job.id for job in scheduler.get_jobs()] == ["monitor-freshness"]
    scheduler.start()
    try:
        wait_for(lambda: len(store.journal(Journal.FRESHNESS)) >= 3, 20, "three samples")
    finally:
        scheduler.shutdown()
    times = [r["at_ms"] for r in journal(store, Journal.FRESHNESS)]
    assert times == sorted(times) and len(set(times)) == len(times)

    both = BackgroundScheduler(timezone="UTC")
    Monitor(redis_settings(redis_process.port), REPO, store).schedule(both)
    jobs = {job.id: job.trigger.interval.total_seconds() for job in both.get_jobs()}
    assert jobs == {"monitor-freshness": 15, "monitor-sampled-verify": 300}
    off = BackgroundScheduler(timezone="UTC")
    quiet = redis_settings(redis_process.port, monitor_interval_s=0, sampled_verify_interval_s=0)
    Monitor(quiet, REPO, store).schedule(off)
    assert off.get_jobs() == []


def lake_settings(tmp_path) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path, lake_uri=str(tmp_path / "lake"))


def write_shop_events(settings: Settings, per_file: list[list[tuple[str, int]]]) -> None:
    """One Delta commit (and file) per list of (user, event time)."""
    uri = settings.table_uri(shop.table_name)
    for n, events in enumerate(per_file):
        records = []
        for i, (user, at) in enumerate(events):
            raw = {"event_id": f"e{n}-{i}", "user_id": user, "event_type": "view", "event_time": at}
            records.append((shop.parse(orjson.dumps(raw)), 0, i))
        append_with_offsets(uri, shop, records, "id", {0: n + len(events)})


def test_the_lake_read_returns_only_the_entities_events(tmp_path) -> None:
    settings = lake_settings(tmp_path)
    columns = columns_read([g for g in REPO.groups if g.join_keys == ("user_id",)])
    # What the user groups aggregate and filter on, keyed and timed by: not event_id.
    assert columns == {
        "user_id",
        "event_time",
        "event_type",
        "amount",
        "price",
        "item_id",
        "category",
    }
    assert read_entity_events(settings, shop, ["user_id"], [("u1",)], columns)[1] is None
    t = 1_700_000_000_000
    write_shop_events(
        settings,
        [
            [("a1", t), ("a2", t + 1), ("a1", t + 2)],
            [("b1", t + 3), ("b2", t + 4)],
            [("c1", t + 5), ("a1", t + 6)],
        ],
    )
    events, version = read_entity_events(settings, shop, ["user_id"], [("a1",), ("b2",)], columns)
    assert version == 2
    rows = sorted((r["user_id"], r["event_time"]) for r in events.to_pylist())
    assert rows == [("a1", t), ("a1", t + 2), ("a1", t + 6), ("b2", t + 4)]
    # Only the columns asked for, in the source's order.
    assert events.column_names == [f.name for f in shop.fields if f.name in columns]
    none, _ = read_entity_events(settings, shop, ["user_id"], [("zz",)], columns)
    assert none.num_rows == 0


def test_a_composite_key_reads_each_pair_s_events(tmp_path) -> None:
    settings = lake_settings(tmp_path)
    uri = settings.table_uri(transactions.table_name)
    records = []
    pairs = [("c1", "m1"), ("c1", "m2"), ("c2", "m1"), ("c3", "m3")]
    for i, (card, merchant) in enumerate(pairs):
        raw = {
            "transaction_id": f"t{i}",
            "card_id": card,
            "account_id": "a1",
            "merchant_id": merchant,
            "amount": 10.0 + i,
            "currency": "EUR",
            "channel": "pos",
            "ts": 1_700_000_000_000 + i,
        }
        records.append((transactions.parse(orjson.dumps(raw)), 0, i))
    append_with_offsets(uri, transactions, records, "id", {0: len(records)})
    keys = ["card_id", "merchant_id"]
    wanted = [("c1", "m1"), ("c2", "m1")]
    events, _ = read_entity_events(settings, transactions, keys, wanted, {*keys, "ts"})
    found = sorted((r["card_id"], r["merchant_id"]) for r in events.to_pylist())
    # Filtered column by column: c1/m2 is not wanted, c3/m3 matches neither column.
    assert ("c3", "m3") not in found
    assert {("c1", "m1"), ("c2", "m1")} <= set(found) <= {("c1", "m1"), ("c2", "m1"), ("c1", "m2")}


@pytest.mark.parametrize(
    ("budget", "kept"),
    [(100, {"a", "b", "c"}), (60, {"b", "c"}), (15, {"c"}), (4, set())],
)
def test_the_events_budget_leaves_out_the_busiest_entities_first(budget, kept) -> None:
    from collections import Counter

    counts = Counter({"a": 50, "b": 40, "c": 10, "other": 1000})
    assert _within_budget(counts, ["a", "b", "c"], budget) == kept


def test_a_check_that_cannot_reach_the_api_skips_its_turn_with_a_log_line(
    redis_process, tmp_path, caplog
) -> None:
    from infra.stack import free_port

    settings = redis_settings(
        redis_process.port,
        data_dir=tmp_path,
        lake_uri=str(tmp_path / "lake"),
        feature_repo="demo.feature_repo",
        api_port=free_port(),  # nothing listens there
    )
    write_shop_events(settings, [[("a1", 1_700_000_000_000)]])
    store = open_store(settings)
    with caplog.at_level(logging.WARNING, logger="batch_layer.monitor"):
        assert Monitor(settings, REPO, store).verify_sample(seed=1) is None
    [line] = [r.getMessage() for r in caplog.records if r.name == "batch_layer.monitor"]
    # The child process named what failed: connecting to the API.
    assert line.startswith("sampled verification skipped: CheckFailed: ConnectError"), line
    assert store.journal(Journal.SAMPLED_VERIFY) == []
