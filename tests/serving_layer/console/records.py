"""Operations records as the platform's processes write them, through the online store's
own write API: batch runs (the scheduler's RunHistory), the serving pointer and speed
watermarks, consumer lag, the last verify report, and the journals' records in the shapes
their writers use (freshness samples, verify reports, sampled verifications).

The console tests write these to a private redis-server and read them back through the
pages: what the pages show must come from them."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from batch_layer.history import RunHistory
from feature_core.journals import Journal
from feature_core.merge import BatchPointer
from feature_core.runs import RunRecord, RunStatus
from feature_core.windows import DAY_MS, align_cutoff
from online_store.base import OnlineStore
from online_store.keys import KeySpace


def now_ms() -> int:
    return int(time.time() * 1000)


def append(store: OnlineStore, kind: Journal, record: Mapping[str, Any]) -> None:
    store.append_journal(str(kind), orjson.dumps(record), int(record["at_ms"]), kind.keep)


def serve_pointer(store: OnlineStore, version: int = 7, age_ms: int = 90_000) -> BatchPointer:
    cutoff = align_cutoff(now_ms() - age_ms)
    pointer = BatchPointer(version, cutoff, DAY_MS, None, now_ms(), {"raw_events": 12}, None)
    store.client.set(KeySpace().batch_pointer, orjson.dumps(pointer.to_json()))
    return pointer


def set_watermarks(store: OnlineStore, marks: Mapping[str, int]) -> None:
    store.client.hset(KeySpace().speed_watermark, mapping=dict(marks))


def save_runs(store: OnlineStore, records: Sequence[RunRecord]) -> None:
    history = RunHistory(store, keep=500)
    for record in records:
        history.save(record)


def run_record(
    status: RunStatus, started_ago_s: float, took_s: float | None, **fields: Any
) -> RunRecord:
    started = time.time() - started_ago_s
    finished = None if took_s is None else started + took_s
    return RunRecord(
        trigger=fields.pop("trigger", "schedule"),
        status=status,
        started_at=started,
        finished_at=finished,
        renewed_at=fields.pop("renewed_at", finished or started),
        **fields,
    )


def freshness_samples(
    store: OnlineStore, groups: Sequence[str], minutes: int = 30, every_s: int = 60
) -> list[dict[str, Any]]:
    """A freshness sample every ``every_s`` over the last ``minutes``: batch age growing,
    speed ages small, lag going down."""
    samples = []
    end = now_ms()
    count = minutes * 60 // every_s
    for i in range(count):
        at = end - (count - i) * every_s * 1000
        sample = {
            "at_ms": at,
            "batch_view": 7,
            "batch_age_s": 60.0 + i * every_s,
            "speed_age_s": {g: 1.5 + (i + n) % 3 for n, g in enumerate(groups)},
            "lag": {"lake-ingest/events": max(0, 50 - i), "speed-job/events": i % 4},
        }
        append(store, Journal.FRESHNESS, sample)
        samples.append(sample)
    return samples


def sampled_verifications(store: OnlineStore, count: int = 12) -> list[dict[str, Any]]:
    """Sampled verifications every 5 minutes; the newest found one mismatch."""
    records = []
    end = now_ms()
    for i in range(count):
        newest = i == count - 1
        record = {
            "at_ms": end - (count - i) * 300_000,
            "entities": 20,
            "values": 400 + i,
            "mismatches": 1 if newest else 0,
            "by_feature": {"user_activity:event_count_1h": 1} if newest else {},
            "examples": [
                {
                    "feature": "user_activity:event_count_1h",
                    "entity_id": "u-<mismatch>",
                    "served": 3,
                    "expected": 4,
                    "status": "present",
                }
            ]
            if newest
            else [],
            "duration_s": 1.25,
        }
        append(store, Journal.SAMPLED_VERIFY, record)
        records.append(record)
    return records


def verify_report(
    mismatches: Mapping[str, int], checked_ago_s: float = 600, values: int = 1200
) -> dict[str, Any]:
    """An `lfp verify` report (batch_layer.verify.ConsistencyReport's JSON)."""
    return {
        "checked_at": time.time() - checked_ago_s,
        "delta_version": 12,
        "delta_versions": {"raw_events": 12},
        "tolerance": 1e-9,
        "entities": 50,
        "values": values,
        "mismatches": sum(mismatches.values()),
        "by_feature": dict(mismatches),
        "examples": [
            {
                "feature": feature,
                "entity_id": "u1",
                "served": 1.0,
                "expected": 2.0,
                "status": "present",
            }
            for feature in mismatches
        ],
    }


def publish_verify(store: OnlineStore, report: Mapping[str, Any]) -> None:
    """As `lfp verify` does: the last report, and the report in the verify journal."""
    store.publish_report(orjson.dumps(report).decode())
    append(store, Journal.VERIFY, {"at_ms": int(report["checked_at"] * 1000), **report})


def feature_stats_runs(
    store: OnlineStore,
    shift_at: int = 3,
    runs: int = 5,
    threshold: float = 0.2,
    cutoffs: Sequence[int] | None = None,
    run_records: bool = True,
) -> list[Any]:
    """Batch runs' feature statistics as the batch job records them (feature_core.stats
    over sampled values, PSI against the previous run's record): user_purchases:spend_7d
    moves from ~10 to ~50 at run ``shift_at``; user_browsing:last_item_1h stays put.
    Runs are an hour apart, each recorded 10 minutes after it started; ``cutoffs``, one a
    run, replace a minute before its record (several runs may share one). With
    ``run_records``, each run's record (its start) is saved as the scheduler saves it."""
    import random

    from feature_core.stats import Drift, RunFeatureStats, feature_stats, psi

    rng = random.Random(7)
    records: list[RunFeatureStats] = []
    start = now_ms() - runs * 3_600_000
    for i in range(runs):
        centre = 50.0 if i >= shift_at else 10.0
        spend = [rng.gauss(centre, 2.0) for _ in range(400)] + [None] * 40
        items = [rng.choice(["i1", "i2", "i3"]) for _ in range(440)]
        statuses = ["present"] * 400 + ["no_data"] * 40
        values = {"user_purchases:spend_7d": spend, "user_browsing:last_item_1h": items}
        kinds = {
            "user_purchases:spend_7d": ("numeric", None),
            "user_browsing:last_item_1h": ("categorical", "values"),
        }
        stats = {ref: feature_stats(v, statuses, *kinds[ref]) for ref, v in values.items()}
        previous = records[-1] if records else None
        drift = {
            ref: Drift(previous_run=psi(previous.features[ref], v) if previous else None)
            for ref, v in values.items()
        }
        record = RunFeatureStats(
            at_ms=start + i * 3_600_000,
            run_id=f"run{i:02d}",
            view_version=i + 1,
            cutoff=cutoffs[i] if cutoffs is not None else start + i * 3_600_000 - 60_000,
            entities={"user_purchases": 440, "user_browsing": 440},
            sampled={"user_purchases": 440, "user_browsing": 440},
            features=stats,
            drift=drift,
            threshold=threshold,
            previous_run_id=previous.run_id if previous else None,
        )
        store.append_journal(
            str(Journal.FEATURE_STATS), record.model_dump_json().encode(), record.at_ms, 500
        )
        records.append(record)
    if run_records:
        save_runs(
            store,
            [
                RunRecord(
                    run_id=r.run_id,
                    trigger="schedule",
                    status=RunStatus.SUCCEEDED,
                    started_at=run_started_ms(r) / 1000,
                    finished_at=(r.at_ms + 5_000) / 1000,
                    cutoff=r.cutoff,
                    view_version=r.view_version,
                    switched=True,
                )
                for r in records
            ],
        )
    return records


def run_started_ms(record: Any) -> int:
    """When :func:`feature_stats_runs` says the run of a statistics record started."""
    return record.at_ms - 600_000
