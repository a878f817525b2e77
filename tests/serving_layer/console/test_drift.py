"""The statistics and drift pages over batch runs' records made by feature_core.stats:
the newest run's statistics per feature, drift over the threshold flagged, PSI plotted
over runs (overview and per feature), empty-journal messages."""

from __future__ import annotations

import pytest

from feature_core.journals import Journal
from serving_layer.console.render import plot_time, utc_time
from tests.serving_layer.console import records
from tests.serving_layer.console.conftest import figures


def test_without_statistics_the_pages_say_what_records_them(client):
    page = client.get("/console/drift")
    assert page.status_code == 200
    assert "No feature statistics yet" in page.text and "lfp batch run" in page.text
    assert "lfp training-set build" in page.text
    one = client.get("/console/drift/user_purchases/spend_7d").text
    assert "No batch run has recorded statistics of user_purchases:spend_7d yet" in one


def test_a_shifted_feature_is_flagged_and_its_psi_plotted(client, store):
    runs = records.feature_stats_runs(store, shift_at=3, runs=5)
    latest = runs[-1]
    page = client.get("/console/drift").text
    assert f"batch view v{latest.view_version}" in page
    spend = page[page.index('data-feature="user_purchases:spend_7d"') :]
    spend = spend[: spend.index("</tr>")]
    items = page[page.index('data-feature="user_browsing:last_item_1h"') :]
    items = items[: items.index("</tr>")]
    # The shift was at run 3: the newest run (4) compares with run 3, both shifted.
    shifted = runs[3].drift["user_purchases:spend_7d"].previous_run
    assert shifted is not None and shifted > latest.threshold
    assert latest.drift["user_purchases:spend_7d"].previous_run < latest.threshold
    assert "badge failed" not in spend  # not flagged in the newest run
    stats = latest.features["user_purchases:spend_7d"]
    assert f"{stats.null_rate * 100:.1f}%" in spend and f"{stats.mean:.4g}" in spend
    assert "i1 (" in items  # a categorical feature's top values

    (psi_plot,) = figures(page).values()
    traces = {t["name"]: t for t in psi_plot["data"]}
    assert set(traces) == {"user_purchases:spend_7d", "user_browsing:last_item_1h"}
    spend_trace = traces["user_purchases:spend_7d"]
    assert spend_trace["x"] == [plot_time(records.run_started_ms(r)) for r in runs[1:]]
    assert spend_trace["y"] == pytest.approx(
        [r.drift["user_purchases:spend_7d"].previous_run for r in runs[1:]]
    )
    assert psi_plot["layout"]["shapes"][0]["y0"] == latest.threshold

    filtered = client.get("/console/drift", params={"q": "spend"}).text
    assert 'data-feature="user_purchases:spend_7d"' in filtered
    assert 'data-feature="user_browsing:last_item_1h"' not in filtered


def test_the_run_that_shifted_is_flagged_when_newest(client, store):
    runs = records.feature_stats_runs(store, shift_at=4, runs=5)
    page = client.get("/console/drift").text
    assert "1 features drifted" in page
    spend = page[page.index('data-feature="user_purchases:spend_7d"') :]
    assert '<span class="badge failed">drift</span>' in spend[: spend.index("</tr>")]
    assert page.index("user_purchases:spend_7d") < page.index('data-feature="user_browsing')
    one = client.get("/console/drift/user_purchases/spend_7d").text
    assert "Drifted: PSI over 0.2" in one
    plots = figures(one)
    psi = {t["name"]: t["y"] for t in plots["feature-psi-plot"]["data"]}
    assert psi["against the previous run"] == pytest.approx(
        [r.drift["user_purchases:spend_7d"].previous_run for r in runs[1:]]
    )
    rates = {t["name"]: t["y"] for t in plots["rates-plot"]["data"]}
    assert rates["null rate"] == pytest.approx(
        [r.features["user_purchases:spend_7d"].null_rate for r in runs]
    )
    assert rates["mean"][-1] == pytest.approx(runs[-1].features["user_purchases:spend_7d"].mean)


def test_runs_sharing_a_cutoff_are_plotted_by_their_start_with_the_cutoff_in_the_hover(
    client, store
):
    """Reruns at one cutoff: each is a point of its own at its start, in start order, its
    cutoff in the hover text; a run whose run record is gone sits at its record's time."""
    cutoff = records.now_ms() - 6 * 3_600_000
    runs = records.feature_stats_runs(store, shift_at=2, runs=4, cutoffs=[cutoff] * 4)
    # A later rerun at the same cutoff whose run record was trimmed: its record's time.
    orphan = runs[-1].model_copy(
        update={"run_id": "trimmed", "view_version": 9, "at_ms": runs[-1].at_ms + 1_800_000}
    )
    store.append_journal(
        str(Journal.FEATURE_STATS), orphan.model_dump_json().encode(), orphan.at_ms, 500
    )
    starts = [plot_time(records.run_started_ms(r)) for r in runs] + [plot_time(orphan.at_ms)]
    hovers = [
        f"cutoff {utc_time(cutoff)} UTC, batch view v{r.view_version}, run {r.run_id}"
        for r in [*runs, orphan]
    ]

    (psi_plot,) = figures(client.get("/console/drift").text).values()
    assert psi_plot["layout"]["xaxis"]["title"]["text"] == "batch run started (UTC)"
    spend = next(t for t in psi_plot["data"] if t["name"] == "user_purchases:spend_7d")
    assert spend["x"] == starts[1:] and spend["text"] == hovers[1:]  # the first has no PSI
    assert len(set(spend["x"])) == 4

    one = figures(client.get("/console/drift/user_purchases/spend_7d").text)
    psi = {t["name"]: t for t in one["feature-psi-plot"]["data"]}
    assert psi["against the previous run"]["x"] == starts[1:]
    rates = {t["name"]: t for t in one["rates-plot"]["data"]}
    for name in ("null rate", "no-data rate", "mean"):
        assert rates[name]["x"] == starts and rates[name]["text"] == hovers, name
    assert rates["mean"]["y"][-1] == pytest.approx(orphan.features["user_purchases:spend_7d"].mean)
