"""Hostile text anywhere the console shows it (definitions' descriptions and allowed
values, entity ids typed into the lookup, a run's error, verify examples, journal keys
inside plot data, dead-letter reasons and records) is shown as text, never markup or
script."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from feature_core.definitions import Aggregation, Entity, FeatureGroup, FeatureRepo, FeatureService
from feature_core.journals import Journal
from feature_core.runs import RunStatus
from feature_core.sources import EventSource, Field
from runtime.dead_letters import append_spilled, envelope, spill_path
from serving_layer.app import create_app
from tests.serving_layer.console import records
from tests.serving_layer.console.conftest import console_settings, figures

SCRIPT = '<script>alert("x")</script>'
IMAGE = "<img src=x onerror=alert(1)>"
CLOSER = "</script><script>alert(2)</script>"
MARKERS = ("<script>alert", "<img src=x", "</script><script>")


def hostile_repo() -> FeatureRepo:
    source = EventSource(
        "clicks",
        description=SCRIPT,
        fields=[
            Field("user_id", "string", required=True, description=IMAGE),
            Field("event_time", "timestamp", required=True),
            Field("kind", "string", values=[IMAGE, "ok"], description=SCRIPT),
        ],
    )
    user = Entity("user", join_key="user_id", description=SCRIPT)
    group = FeatureGroup(
        name="clicks_by_user",
        entity=user,
        source=source,
        description=IMAGE,
        filter={"kind": IMAGE},
        aggregations=[Aggregation("count", windows=["1h"], name="clicks")],
    )
    service = FeatureService(
        "scores", ["clicks_by_user:clicks_1h"], defaults={}, description=SCRIPT
    )
    return FeatureRepo((group,), (service,))


@pytest.fixture
def hostile(redis_process, tmp_path: Path):
    settings = console_settings(redis_process.port, tmp_path)
    with TestClient(create_app(settings, hostile_repo())) as api:
        yield api, settings


def assert_inert(text: str) -> None:
    for marker in MARKERS:
        assert marker not in text, f"{marker!r} reached the page unescaped"


def test_hostile_definitions_are_text(hostile):
    api, _ = hostile
    catalog = api.get("/console").text
    assert_inert(catalog)
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in catalog
    assert "&lt;img src=x onerror=alert(1)&gt;" in catalog
    feature = api.get("/console/features/clicks_by_user/clicks_1h").text
    assert_inert(feature)
    assert "&lt;img src=x onerror=alert(1)&gt;" in feature  # the group's filter
    search = api.get("/console", params={"q": SCRIPT}).text
    assert_inert(search)


def test_hostile_records_are_text(hostile):
    api, settings = hostile
    from online_store import open_store

    store = open_store(settings)
    try:
        records.serve_pointer(store)
        records.save_runs(
            store, [records.run_record(RunStatus.FAILED, 60, 3.0, error=SCRIPT, trigger=IMAGE)]
        )
        (run_id,) = [r for r in api.get("/console/runs").text.split('href="/console/runs/')[1:2]]
        run_id = run_id.split('"')[0]
        records.append(
            store,
            Journal.FRESHNESS,
            {
                "at_ms": records.now_ms() - 1000,
                "batch_age_s": 5.0,
                "speed_age_s": {CLOSER: 1.0},
                "lag": {f"{SCRIPT}/t": 3},
            },
        )
        report = records.verify_report({CLOSER: 1})
        report["examples"][0]["entity_id"] = IMAGE
        report["examples"][0]["served"] = SCRIPT
        records.publish_verify(store, report)
        store.publish_lag(IMAGE, {CLOSER: 5})
    finally:
        store.close()
    append_spilled(
        spill_path(settings.data_dir, "clicks.dlq"),
        [envelope(CLOSER.encode(), f"kind: {SCRIPT} is not one of", "clicks", 0, 7, 65536)],
    )
    for path in (
        "/console/runs",
        f"/console/runs/{run_id}",
        "/console/freshness",
        "/console/consistency",
        "/console/dead-letters",
    ):
        page = api.get(path).text
        assert_inert(page)
    freshness = api.get("/console/freshness").text
    names = {t["name"] for f in figures(freshness).values() for t in f["data"]}
    assert f"speed: {CLOSER}" in names and f"{SCRIPT}/t" in names  # escaped, not dropped
    assert (
        "&lt;/script&gt;&lt;script&gt;alert(2)&lt;/script&gt;"
        in api.get("/console/dead-letters").text
    )
    lookup = api.get("/console/lookup", params={"user_id": SCRIPT})
    assert_inert(lookup.text)
    assert 'value="&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"' in lookup.text
    login = api.get("/console/login", params={"next": f'/console/"{SCRIPT}'}).text
    assert_inert(login)
