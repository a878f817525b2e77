"""Serving metrics that need no Redis: the batch view cache's counters."""

from __future__ import annotations

from prometheus_client import generate_latest

from online_store.batch_cache import BatchViewCache
from serving_layer.metrics import ServingMetrics


def test_batch_cache_counters_follow_the_watched_cache_and_appear_once():
    metrics = ServingMetrics()
    assert b"lfp_api_batch_cache" not in generate_latest(metrics.registry)  # none yet

    first, second = BatchViewCache(10), BatchViewCache(10)
    metrics.watch_batch_cache(first)
    first.get("g", "u1")
    # An app started again (a second lifespan) watches its new store's cache instead.
    metrics.watch_batch_cache(second)
    second.put('{"version":1}', "g", "u1", None)
    second.get("g", "u1")
    lines = generate_latest(metrics.registry).decode().splitlines()
    samples = [line.split()[0] for line in lines if line.startswith("lfp_api_batch_cache")]
    assert sorted(samples) == [
        "lfp_api_batch_cache_entries",
        "lfp_api_batch_cache_hits_total",
        "lfp_api_batch_cache_misses_total",
    ]
    assert lines.count("lfp_api_batch_cache_hits_total 1.0") == 1
    assert lines.count("lfp_api_batch_cache_misses_total 0.0") == 1
    assert lines.count("lfp_api_batch_cache_entries 1.0") == 1
