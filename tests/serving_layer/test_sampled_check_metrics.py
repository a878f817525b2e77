"""The scheduler's newest sampled verification in /metrics, read from a private
redis-server's journal as the scheduler writes it (batch_layer.monitor)."""

from __future__ import annotations

import time

import orjson
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from batch_layer.consistency import Mismatch
from batch_layer.monitor import SampledVerification
from feature_core.journals import Journal
from feature_core.settings import Settings
from online_store import open_store
from serving_layer.app import create_app
from tests.conftest import wait_for
from tests.serving_layer.conftest import private_redis_settings

FAMILIES = {
    "lfp_consistency_sample_mismatches",
    "lfp_consistency_sample_values_checked",
    "lfp_consistency_sample_timestamp_seconds",
}


def exported(text: str) -> tuple[set[str], dict[str, float]]:
    """(families listed, their samples' values), by prometheus_client's own parser."""
    families = [f for f in text_string_to_metric_families(text) if f.name in FAMILIES]
    return {f.name for f in families}, {s.name: s.value for f in families for s in f.samples}


def check(at_ms: int, values: int, mismatches: int) -> SampledVerification:
    examples = [
        Mismatch(feature="g:f", entity_id="u1", served=3, expected=2, status="present")
    ] * min(mismatches, 5)
    return SampledVerification(
        at_ms=at_ms,
        entities=values // 10,
        values=values,
        mismatches=mismatches,
        by_feature={"g:f": mismatches} if mismatches else {},
        examples=examples,
        duration_s=1.5,
        events=1234,
        delta_versions={"raw_events": 3},
    )


@pytest.fixture
def settings(redis_process) -> Settings:
    return private_redis_settings(redis_process.port, api_ops_interval_s=0.2)


def test_metrics_export_the_newest_sampled_check(settings) -> None:
    store = open_store(settings)
    now = int(time.time() * 1000)
    with TestClient(create_app(settings)) as api:
        # Listed before any check, with no value no check produced.
        assert exported(api.get("/metrics").text) == (FAMILIES, {})
        for record in (check(now - 300_000, 600, 2), check(now, 580, 0)):
            store.append_journal(
                Journal.SAMPLED_VERIFY,
                orjson.dumps(record.model_dump(mode="json")),
                record.at_ms,
                Journal.SAMPLED_VERIFY.keep,
            )

        def newest() -> dict[str, float] | None:
            values = exported(api.get("/metrics").text)[1]
            return values if values.get("lfp_consistency_sample_values_checked") == 580 else None

        values = wait_for(newest, 10, "the newest sampled check in /metrics", 0.1)
    assert values == {
        "lfp_consistency_sample_mismatches": 0,
        "lfp_consistency_sample_values_checked": 580,
        "lfp_consistency_sample_timestamp_seconds": pytest.approx(now / 1000),
    }
