"""The newest batch run's feature statistics and drift in /metrics, read from a private
redis-server's journal as the batch job writes it (batch_layer.feature_stats)."""

from __future__ import annotations

import random
import time

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from feature_core.journals import Journal
from feature_core.settings import Settings
from feature_core.stats import Drift, RunFeatureStats, feature_stats, psi
from feature_core.statuses import ValueStatus
from online_store import open_store
from serving_layer.app import create_app
from tests.conftest import wait_for
from tests.serving_layer.conftest import private_redis_settings

FAMILIES = {
    "lfp_feature_drift_psi",
    "lfp_feature_drift_flagged",
    "lfp_feature_null_rate",
    "lfp_feature_no_data_rate",
    "lfp_feature_stats_timestamp_seconds",
}


def exported(text: str) -> tuple[set[str], dict[tuple, float]]:
    """(families listed, each sample's value by (name, labels)), by prometheus_client's
    own parser."""
    families = [f for f in text_string_to_metric_families(text) if f.name in FAMILIES]
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples
    }
    return {f.name for f in families}, samples


def run(at_ms: int, shift: float, baseline: RunFeatureStats | None) -> RunFeatureStats:
    """A run's record over generated values: amounts shifted by ``shift``, a fifth null,
    a quarter no_data; drift against ``baseline`` as the batch job computes it."""
    rng = random.Random(at_ms)
    amounts = [None if rng.random() < 0.2 else rng.gauss(50 + shift, 10) for _ in range(2000)]
    statuses = [ValueStatus.NO_DATA if i % 4 == 0 else ValueStatus.PRESENT for i in range(2000)]
    counts = [rng.randrange(10) for _ in range(2000)]
    values = {"g:amount_mean_7d": amounts, "g:count_7d": counts}
    features = {
        "g:amount_mean_7d": feature_stats(amounts, statuses, "numeric"),
        "g:count_7d": feature_stats(counts, None, "numeric"),
    }
    drift = {
        reference: Drift(
            previous_run=psi(baseline.features[reference], values[reference]) if baseline else None
        )
        for reference in features
    }
    return RunFeatureStats(
        at_ms=at_ms,
        run_id=f"run-{at_ms}",
        view_version=1,
        cutoff=at_ms - 60_000,
        entities={"g": 5000},
        sampled={"g": 2000},
        features=features,
        drift=drift,
        threshold=0.2,
    )


@pytest.fixture
def settings(redis_process) -> Settings:
    return private_redis_settings(
        redis_process.port, api_ops_interval_s=0.2, drift_psi_threshold=0.25
    )


def test_metrics_export_the_newest_runs_statistics_and_flag_drift(settings) -> None:
    store = open_store(settings)
    now = int(time.time() * 1000)
    first = run(now - 900_000, 0.0, None)
    second = run(now, 15.0, first)  # amounts moved by 1.5 standard deviations
    with TestClient(create_app(settings)) as api:
        # Listed before any record, without a value no run produced.
        assert exported(api.get("/metrics").text) == (FAMILIES, {})
        for record in (first, second):
            store.append_journal(
                Journal.FEATURE_STATS,
                record.model_dump_json().encode(),
                record.at_ms,
                Journal.FEATURE_STATS.keep,
            )

        def newest() -> dict[tuple, float] | None:
            samples = exported(api.get("/metrics").text)[1]
            at = samples.get(("lfp_feature_stats_timestamp_seconds", ()))
            return samples if at == second.at_ms / 1000 else None

        samples = wait_for(newest, 10, "the newest record in /metrics")
    amount = (("feature", "amount_mean_7d"), ("group", "g"))
    count = (("feature", "count_7d"), ("group", "g"))

    def labelled(name: str, labels: tuple, baseline: str | None = None) -> float | None:
        if baseline is not None:
            labels = tuple(sorted((*labels, ("baseline", baseline))))
        return samples.get((name, labels))

    moved = second.drift["g:amount_mean_7d"].previous_run
    still = second.drift["g:count_7d"].previous_run
    assert moved is not None and moved > 0.25 and still is not None and still < 0.25
    assert labelled("lfp_feature_drift_psi", amount, "previous_run") == pytest.approx(moved)
    assert labelled("lfp_feature_drift_flagged", amount, "previous_run") == 1.0
    assert labelled("lfp_feature_drift_psi", count, "previous_run") == pytest.approx(still)
    assert labelled("lfp_feature_drift_flagged", count, "previous_run") == 0.0
    # No training set: no training sample (not a 0 no training set produced).
    assert labelled("lfp_feature_drift_psi", amount, "training") is None
    null_rate = second.features["g:amount_mean_7d"].null_rate
    assert 0.1 < null_rate < 0.3
    assert labelled("lfp_feature_null_rate", amount) == pytest.approx(null_rate)
    assert labelled("lfp_feature_no_data_rate", amount) == 0.25
    # A feature summarized without statuses has no no-data rate to export.
    assert labelled("lfp_feature_no_data_rate", count) is None


def test_a_record_it_cannot_read_leaves_the_last_one_exported() -> None:
    from prometheus_client import generate_latest

    from serving_layer.metrics import ServingMetrics

    metrics = ServingMetrics()
    metrics.observe_feature_stats([b'{"at_ms": 1, "surprise": true}'], 0.2)
    assert exported(generate_latest(metrics.registry).decode()) == (FAMILIES, {})
    now = int(time.time() * 1000)
    good = run(now, 0.0, None)
    metrics.observe_feature_stats([good.model_dump_json().encode()], 0.2)
    metrics.observe_feature_stats([b"not json"], 0.2)
    metrics.observe_feature_stats([], 0.2)
    samples = exported(generate_latest(metrics.registry).decode())[1]
    assert samples[("lfp_feature_stats_timestamp_seconds", ())] == now / 1000
