"""Every console page through the API app over a private redis-server: empty-store pages
say what to do, and pages over recorded operations show what was recorded (tables and the
figures handed to Plotly.js)."""

from __future__ import annotations

import html
import re
import time

import pytest

from feature_core.definitions import FeatureRepo
from feature_core.runs import RunStatus
from serving_layer.console.render import CONTENT_SECURITY_POLICY, PLOTLY_PATH, json_text, plot_time
from tests.conftest import wait_for
from tests.serving_layer.console import records
from tests.serving_layer.console.conftest import REPO, figures

PAGES = [
    "/console",
    "/console/freshness",
    "/console/runs",
    "/console/consistency",
    "/console/dead-letters",
    "/console/lookup",
    "/console/drift",
    "/console/drift/user_purchases/spend_7d",
    "/console/features/user_activity/event_count_1h",
]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_answers_on_an_empty_store_with_its_headers(client, path):
    response = client.get(path)
    assert response.status_code == 200, response.text[:500]
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"
    # The shared layout: navigation to every page, and no logout without a token.
    for href in ("/console/freshness", "/console/runs", "/console/dead-letters", "/console/lookup"):
        assert f'href="{href}"' in response.text
    assert "Log out" not in response.text


def test_empty_store_pages_say_what_to_do(client):
    freshness = client.get("/console/freshness").text
    assert "No batch view is serving yet: run <code>lfp batch run</code>" in freshness
    assert "No consumer has published its lag" in freshness
    assert "No freshness sample in the last hour" in freshness
    assert figures(freshness) == {}
    runs = client.get("/console/runs").text
    assert "No batch run yet: run <code>lfp batch run</code>" in runs
    consistency = client.get("/console/consistency").text
    assert "No verification yet: run <code>lfp verify</code>" in consistency
    assert "No sampled verification recorded yet" in consistency
    lookup = client.get("/console/lookup").text
    assert "Type an entity's join key" in lookup


def test_the_catalog_lists_every_definition_and_searches_them(client):
    repo = FeatureRepo.from_module(REPO)
    page = client.get("/console").text
    for source in repo.sources:
        assert f'id="source-{source.name}"' in page
        assert f"<code>{source.dlq_topic}</code>" in page
    for group in repo.groups:
        assert f'id="group-{group.name}"' in page
        for feature in group.features:
            assert f'href="/console/features/{group.name}/{feature.name}"' in page
    for service in repo.services:
        assert f'id="service-{service.name}"' in page
    for view in repo.derived_views:
        assert f'id="derived-{view.name}"' in page
    # Constraints and filters as declared: the demo's event_type values, user_views' filter.
    assert (
        "one of &#39;view&#39;, &#39;click&#39;, &#39;add_to_cart&#39;, &#39;purchase&#39;" in page
    )
    assert "event_type in (&#39;view&#39;)" in page

    found = client.get("/console", params={"q": "CARD_SPEND"}).text
    assert 'id="group-card_spend"' in found
    assert 'id="group-user_activity"' not in found
    assert 'id="source-events"' not in found
    assert "match “CARD_SPEND”" in found
    nothing = client.get("/console", params={"q": "no-such-thing"}).text
    assert "No feature group matches “no-such-thing”" in nothing


def test_a_features_page_draws_its_lineage(client):
    page = client.get("/console/features/user_activity/event_count_1h").text
    for kind, name in [
        ("source", "events"),
        ("topic", "events"),
        ("lake table", "raw_events"),
        ("dead-letter topic", "events.dlq"),
        ("group", "user_activity"),
        ("feature", "user_activity:event_count_1h"),
        ("feast view", "user_activity"),
        ("service", "user_features"),
        ("feast service", "user_features"),
    ]:
        assert f'data-kind="{kind}" data-name="{name}"' in page, (kind, name)
    assert 'data-from="topic:events" data-to="lake table:raw_events"' in page
    assert 'data-from="lake table:raw_events" data-to="group:user_activity"' in page
    assert 'data-from="topic:events" data-to="group:user_activity"' in page
    derived = client.get("/console/features/shopper/category_affinity_score").text
    assert 'data-kind="feast on-demand view" data-name="shopper"' in derived
    assert (
        'data-from="feature:user_views:views_7d" data-to="derived:shopper:category_affinity_score"'
        in derived
    )
    missing = client.get("/console/features/user_activity/nope")
    assert missing.status_code == 404
    assert "No feature user_activity:nope" in missing.text


def test_freshness_shows_now_and_plots_the_last_hours_samples(client, store):
    repo = FeatureRepo.from_module(REPO)
    pointer = records.serve_pointer(store, version=7, age_ms=120_000)
    records.set_watermarks(store, {"user_activity": records.now_ms() - 3000})
    store.publish_lag("lake-ingest", {"events": 42})
    groups = [g.name for g in repo.groups[:3]]
    samples = records.freshness_samples(store, groups, minutes=30)
    # A sample older than an hour is not plotted.
    records.append(
        store,
        records.Journal.FRESHNESS,
        {**samples[0], "at_ms": records.now_ms() - 2 * 3_600_000, "batch_age_s": 99_999.0},
    )
    page = client.get("/console/freshness").text
    assert f"Batch view v{pointer.version}" in page
    no_watermark = "no event of this group since the speed job started (or it is not running"
    assert no_watermark in page  # groups without a watermark
    assert '<td>lake-ingest</td><td>events</td><td class="num">42</td>' in page
    plots = figures(page)
    ages = {t["name"]: t for t in plots["age-plot"]["data"]}
    assert set(ages) == {"batch view", *(f"speed: {g}" for g in groups)}
    assert ages["batch view"]["y"] == [s["batch_age_s"] for s in samples]
    assert ages["batch view"]["x"] == [plot_time(s["at_ms"]) for s in samples]
    assert ages[f"speed: {groups[1]}"]["y"] == [s["speed_age_s"][groups[1]] for s in samples]
    lags = {t["name"]: t["y"] for t in plots["lag-plot"]["data"]}
    assert lags["lake-ingest/events"] == [s["lag"]["lake-ingest/events"] for s in samples]
    assert plots["age-plot"]["layout"]["yaxis"]["type"] == "log"


def test_batch_runs_list_plot_and_detail(client, store):
    ok = records.run_record(
        RunStatus.SUCCEEDED,
        900,
        42.5,
        rows_read=5000,
        entities_written=90,
        view_version=5,
        delta_versions={"raw_events": 10, "card_transactions": 3},
        switched=True,
    )
    failed = records.run_record(
        RunStatus.FAILED,
        600,
        12.0,
        trigger="manual",
        error="AnalysisException: no table\nat line 2",
    )
    running = records.run_record(RunStatus.RUNNING, 5, None, trigger="definitions-changed")
    records.save_runs(store, [ok, failed, running])
    page = client.get("/console/runs").text
    for run in (ok, failed, running):
        assert f'href="/console/runs/{run.run_id}"' in page
    assert "raw_events@10, card_transactions@3" in page
    assert '<td class="num">5000</td>' in page
    traces = {t["name"]: t for t in figures(page)["duration-plot"]["data"]}
    assert set(traces) == {"succeeded", "failed"}  # a running run has no duration yet
    assert traces["succeeded"]["y"] == [pytest.approx(42.5)]
    assert traces["failed"]["y"] == [pytest.approx(12.0)]
    assert traces["failed"]["text"] == [f"{failed.run_id} (manual)"]

    detail = client.get(f"/console/runs/{failed.run_id}").text
    assert (
        '<pre class="error" id="run-error">AnalysisException: no table\nat line 2</pre>' in detail
    )
    assert client.get(f"/console/runs/{ok.run_id}").text.count('id="run-error"') == 0
    missing = client.get("/console/runs/0123456789ab")
    assert missing.status_code == 404
    assert "No run 0123456789ab" in missing.text


def test_a_run_whose_scheduler_died_reads_as_abandoned(client, store):
    dead = records.run_record(
        RunStatus.RUNNING, 4000, None, renewed_at=time.time() - 4000, owner="elsewhere:1"
    )
    records.save_runs(store, [dead])
    detail = client.get(f"/console/runs/{dead.run_id}").text
    assert '<span class="badge abandoned">abandoned</span>' in detail
    assert "abandoned: not renewed for" in detail


def test_consistency_shows_the_last_verify_per_feature_and_plots_both_checks(client, store):
    older = records.verify_report({"user_activity:event_count_1h": 2}, checked_ago_s=3600)
    last = records.verify_report({"user_purchases:spend_7d": 3}, checked_ago_s=60)
    records.publish_verify(store, older)
    records.publish_verify(store, last)
    sampled = records.sampled_verifications(store, count=6)
    page = client.get("/console/consistency").text
    assert "3 mismatches" in page
    assert (
        '<tr class="bad"><td><a href="/console/features/user_purchases/spend_7d">'
        'user_purchases:spend_7d</a></td><td class="num">3</td></tr>'
    ) in page
    assert 'user_activity:event_count_1h</a></td><td class="num">2' not in page  # older report
    assert "features without a mismatch" in page
    # shopper:category_affinity_score reads a request field: verify cannot compare it.
    unchecked = page[page.index('id="unchecked-features"') :]
    unchecked = unchecked[: unchecked.index("</details>")]
    assert ">shopper:category_affinity_score</a>" in unchecked
    assert ">shopper:lifetime_value</a>" not in unchecked
    plots = figures(page)
    verify = {t["name"]: t["y"] for t in plots["verify-plot"]["data"]}
    assert verify["mismatches"] == [2, 3]
    sampled_plot = {t["name"]: t["y"] for t in plots["sampled-plot"]["data"]}
    assert sampled_plot["mismatches"] == [r["mismatches"] for r in sampled]
    assert sampled_plot["values checked"] == [r["values"] for r in sampled]
    assert "Latest sampled mismatches" in page
    assert "<code>u-&lt;mismatch&gt;</code>" in page


def test_entity_lookup_serves_what_v1_serves(client, store):
    records.serve_pointer(store)
    page = client.get("/console/lookup", params={"user_id": "u-lookup"}).text
    v1 = client.get("/v1/features/user_purchases", params={"user_id": "u-lookup"}).json()
    section = page[page.index('id="result-user_purchases"') :]
    section = section[: section.index("</section>")]
    for name, value in v1["features"].items():
        row = section[section.index(f'<tr data-feature="{name}">') :]
        shown = html.unescape(row[row.index("<code>") + 6 : row.index("</code>")])
        assert shown == json_text(value), name
        assert f'status-{v1["statuses"][name]}"' in row[: row.index("</tr>")]
    # The provenance part is /v1/provenance's: the batch view and every window's inputs.
    provenance = client.get("/v1/provenance/user_purchases", params={"user_id": "u-lookup"})
    body = provenance.json()
    assert f"v{body['batch']['version']}, cutoff" in section
    windows = section[section.index('<table class="windows">') :]
    assert [w["window"] for w in body["windows"]] == re.findall(r"<tr><td>([^<]+)</td>", windows)
    # Every group keyed by user_id alone is shown; the card groups are not.
    assert 'id="result-user_activity"' in page and 'id="result-card_spend"' not in page
    one = client.get("/console/lookup", params={"user_id": "u1", "group": "user_clicks"}).text
    assert 'id="result-user_clicks"' in one and 'id="result-user_activity"' not in one
    composite = client.get(
        "/console/lookup", params={"card_id": "c1", "group": "card_merchant_history"}
    ).text
    assert (
        "card_merchant_history is keyed by" in composite
        and "missing [&#39;merchant_id&#39;]" in composite
    )
    unknown = client.get("/console/lookup", params={"user_id": "u1", "group": "nope"})
    assert unknown.status_code == 422 and "unknown group &#39;nope&#39;" in unknown.text


def test_entity_lookup_without_a_batch_view_says_why_per_group(client):
    page = client.get("/console/lookup", params={"user_id": "u1", "group": "user_activity"}).text
    assert "no batch view is serving yet" in page


def test_plotly_js_is_served_by_the_api(client):
    response = client.get(PLOTLY_PATH)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert "immutable" in response.headers["cache-control"]
    assert len(response.content) > 1_000_000 and b"plotly.js" in response.content[:2000]
    page = client.get("/console/freshness").text
    assert f'<script src="{PLOTLY_PATH}" defer></script>' in page
    assert client.get("/console/static/console.js").status_code == 200
    assert client.get("/console/static/console.css").status_code == 200


def test_a_store_that_does_not_answer_is_a_page_that_says_so(client, redis_process):
    redis_process.stop()

    def unavailable():
        response = client.get("/console/runs")
        return response if response.status_code == 503 else None

    response = wait_for(unavailable, 30, "the console to answer 503 with Redis stopped")
    assert "The online store does not answer" in response.text
    assert response.headers["content-type"].startswith("text/html")
    assert client.get("/console").status_code == 200  # the catalog reads no store
