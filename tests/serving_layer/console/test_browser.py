"""The console in a real browser: Debian's headless Chromium, driven by Playwright, loads
every page of the session's stack with the demo loaded, finds no console error, sees each
plot drawn by Plotly.js with data, finds the entity lookup's values equal to ``/v1``'s, and
sees a record the source rejected on the dead-letters page. Screenshots of every page are
kept under the test's temporary directory; with LFP_UPDATE_SCREENSHOTS=1, two replace the
README's in ``docs/`` (a plain run leaves the checkout as it was).

Never a downloaded browser: skipped, saying so, only where /usr/bin/chromium is absent
(``make install`` installs it as root)."""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from feature_core.definitions import FeatureRepo
from feature_core.journals import Journal
from feature_core.merge import values_match
from feature_core.windows import align_cutoff
from online_store import open_store
from tests.conftest import DEMO_SHOP_PREFIX, ROOT, wait_for
from tests.integration.helpers import produce

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
#: Without the background-networking flags Chromium reaches out on its own, and a closed
#: network refuses it (console errors that are not the page's).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: The two screenshots the README shows.
README_SHOTS = {
    "feature-lineage": "docs/console-lineage.png",
    "freshness": "docs/console-freshness.png",
}

PLOTS_DRAWN = """() => [...document.querySelectorAll('div.plot')]
    .every(e => e.dataset.rendered === 'true')"""
PLOT_CONTENT = """() => [...document.querySelectorAll('div.plot')].map(gd => ({
    id: gd.id,
    points: gd.data.map(t => (t.x || []).filter(x => x !== null).length),
    svgs: gd.querySelectorAll('.main-svg').length,
    traces: gd.querySelectorAll('g.trace').length,
}))"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"Debian's chromium is not installed ({CHROMIUM}): `make install` as root")
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("console-screenshots")


@pytest.fixture(scope="module")
def console(stack, demo_result, browser, spark_factory) -> str:
    """The stack's console URL, logged in when the stack has a token, once every journal
    the pages plot holds records: the scheduler's freshness samples (every 15 s), a
    sampled verification (the scheduler's own check, run now if it has not yet) and an
    `lfp verify` report (run here, as an operator does)."""
    settings = stack.settings
    store = open_store(settings)
    repo = FeatureRepo.from_module(settings.feature_repo)
    try:
        wait_for(
            lambda: store.journal(Journal.FRESHNESS, int(time.time() * 1000) - 60_000),
            60,
            "the scheduler's freshness samples",
        )
        if not store.journal(Journal.SAMPLED_VERIFY, limit=1):
            from batch_layer.monitor import Monitor

            assert Monitor(settings, repo, store).verify_sample(seed=5) is not None
        if not any(drift_measured(raw) for raw in store.journal(Journal.FEATURE_STATS)):
            # PSI needs a run after one that summarized values (the demo's) or after a
            # training set (the demo's): one more batch run, as the schedule would.
            stack.run_batch(align_cutoff(int(time.time() * 1000)))
            assert any(drift_measured(raw) for raw in store.journal(Journal.FEATURE_STATS))
        if not store.journal(Journal.VERIFY, limit=1):
            from batch_layer.verify import publish, verify

            publish(settings, verify(spark_factory(settings), settings, repo, sample=5))
    finally:
        store.close()
    if settings.api_token is not None:
        page = browser.new_page()
        page.goto(f"{settings.api_url}/console/login")
        page.fill("#token", settings.api_token.get_secret_value())
        page.click("button[type=submit]")
        page.wait_for_url("**/console")
        page.close()
    return settings.api_url


def drift_measured(raw: bytes) -> bool:
    """Whether a batch run's statistics record holds a PSI."""
    drift = orjson.loads(raw).get("drift", {})
    return any(v is not None for one in drift.values() for v in one.values())


def visit(browser: Any, url: str, shots: Path, name: str) -> tuple[Any, list[str]]:
    """Open ``url``, wait until its plots are drawn, screenshot it; the page and every
    console error and uncaught exception it had."""
    page = browser.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
    response = page.goto(url, wait_until="load")
    assert response is not None and response.status == 200, f"{url}: {response and response.status}"
    page.wait_for_function(PLOTS_DRAWN, timeout=30_000)
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    return page, errors


def demo_user(demo_result: dict) -> str:
    return f"{DEMO_SHOP_PREFIX}3"


def test_every_page_loads_without_console_errors(console, browser, shots, stack, demo_result):
    runs = httpx.get(f"{console}/v1/batch/runs", headers=stack.settings.api_headers, timeout=10)
    run_id = runs.json()[0]["run_id"]
    pages = {
        "catalog": "/console",
        "catalog-search": "/console?q=purchase",
        "feature-lineage": "/console/features/user_purchases/spend_7d",
        "derived-lineage": "/console/features/shopper/category_affinity_score",
        "freshness": "/console/freshness",
        "runs": "/console/runs",
        "run": f"/console/runs/{run_id}",
        "consistency": "/console/consistency",
        "dead-letters": "/console/dead-letters",
        "drift": "/console/drift",
        "feature-drift": "/console/drift/user_purchases/spend_7d",
        "lookup": f"/console/lookup?user_id={demo_user(demo_result)}",
    }
    found = {}
    for name, path in pages.items():
        page, errors = visit(browser, f"{console}{path}", shots, name)
        found[name] = errors
        assert page.locator("header.top nav a").count() >= 7
        page.close()
    assert found == {name: [] for name in pages}
    if os.environ.get("LFP_UPDATE_SCREENSHOTS") == "1":
        for name, target in README_SHOTS.items():
            (ROOT / target).parent.mkdir(exist_ok=True)
            shutil.copyfile(shots / f"{name}.png", ROOT / target)


@pytest.mark.parametrize(
    ("path", "plots"),
    [
        ("/console/freshness", {"age-plot", "lag-plot"}),
        ("/console/runs", {"duration-plot"}),
        ("/console/consistency", {"sampled-plot", "verify-plot"}),
        ("/console/drift", {"psi-plot"}),
        ("/console/drift/user_purchases/spend_7d", {"feature-psi-plot", "rates-plot"}),
    ],
)
def test_each_plot_is_drawn_with_data(console, browser, shots, path, plots):
    page, errors = visit(browser, f"{console}{path}", shots, "plot" + path.replace("/", "-"))
    drawn = {p["id"]: p for p in page.evaluate(PLOT_CONTENT)}
    page.close()
    assert set(drawn) == plots, f"{path}: plots drawn {sorted(drawn)}"
    for plot in drawn.values():
        assert sum(plot["points"]) > 0, plot
        assert plot["svgs"] >= 1 and plot["traces"] >= 1, plot
    assert errors == []


def lookup_values(page: Any) -> dict[str, dict[str, tuple[Any, str]]]:
    """Each group's values and statuses as the lookup page shows them."""
    return page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('section.result')].map(s => [
            s.dataset.group,
            Object.fromEntries([...s.querySelectorAll('table.values tr[data-feature]')].map(
                r => [r.dataset.feature, [r.querySelector('td.value').innerText,
                                         r.querySelector('td.status').innerText]])),
        ]))"""
    )


def test_the_entity_lookup_shows_what_v1_serves(console, browser, shots, stack, demo_result):
    user = demo_user(demo_result)
    headers = stack.settings.api_headers

    def equal() -> dict | None:
        page, errors = visit(browser, f"{console}/console/lookup?user_id={user}", shots, "lookup")
        shown = lookup_values(page)
        page.close()
        assert errors == []
        groups = [g.name for g in FeatureRepo.from_module(stack.settings.feature_repo).groups]
        assert {g for g in groups if g.startswith("user_")} <= set(shown)
        for group, rows in shown.items():
            body = httpx.get(
                f"{console}/v1/features/{group}",
                params={"user_id": user},
                headers=headers,
                timeout=10,
            ).json()
            for feature, (text, status) in rows.items():
                served = body["features"][feature]
                # The windows move on between the two reads: retried until they agree.
                if (
                    not values_match(json.loads(text), served)
                    or status != body["statuses"][feature]
                ):
                    return None
        return shown

    shown = wait_for(equal, 90, "the lookup page's values to equal /v1's", interval_s=2)
    purchases = shown["user_purchases"]
    assert any(status == "present" for _, status in purchases.values()), purchases


def test_a_rejected_record_shows_on_the_dead_letters_page(console, browser, shots, stack):
    marker = f"console-reject-{uuid.uuid4().hex[:8]}"
    # A record with no user_id: lake ingest rejects it to events.dlq with the reason.
    produce(stack.settings, [orjson.dumps({"event_id": marker, "event_type": "view"})])

    def listed() -> str | None:
        page, errors = visit(browser, f"{console}/console/dead-letters", shots, "dead-letters")
        section = page.locator("#rejects-events").inner_text()
        page.close()
        assert errors == []
        return section if marker in section else None

    section = wait_for(listed, 90, "the rejected record on the dead-letters page", interval_s=3)
    assert "from the topic" in section and "no Kafka broker answered" not in section
