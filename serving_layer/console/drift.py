"""Feature statistics and drift pages: each batch run's summary of the values it serves
(count, no-data and null rates, mean, quantiles, top values) and their PSI against the
previous run and the newest training set (:mod:`feature_core.stats`), from the
FEATURE_STATS and TRAINING_STATS journals. Features over the run's threshold are flagged;
PSI is plotted over runs, for the most drifted features and per feature, by each run's start
(several runs may share a cutoff: a rerun, a run started by hand), its cutoff in the hover
text."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from feature_core.journals import Journal
from feature_core.runs import RunRecord
from feature_core.stats import FeatureStats, RunFeatureStats, TrainingFeatureStats
from serving_layer.console import plots
from serving_layer.console.auth import LoggedIn
from serving_layer.console.data import store_guard
from serving_layer.console.lineage import feature_href
from serving_layer.console.render import page, utc_time

router = APIRouter(include_in_schema=False)

#: Batch runs' records read (the journal keeps 500).
RUNS_READ = 200
#: Batch run records read for the runs' start times (the scheduler keeps 500).
RUN_RECORDS_READ = 500
#: Training sets' records read.
TRAINING_READ = 50
#: Features drawn in the overview's PSI plot: the most drifted.
PLOTTED = 8
#: The x axis of plots over runs: runs may share a cutoff, never a start.
RUN_AXIS = "batch run started (UTC)"
#: The quantiles shown in the overview table.
SHOWN_QUANTILES = ("0.5", "0.99")


async def _records(store: Any, kind: Journal, limit: int, model: type) -> list[Any]:
    """A journal's records that parse as ``model``, oldest first (others are skipped: a
    record of another version of the platform is not an error here)."""
    found = []
    for raw in await store.journal(str(kind), 0, limit):
        try:
            found.append(model.model_validate_json(raw))
        except (ValidationError, ValueError):
            continue
    return found


def _flag(value: float | None, threshold: float) -> bool:
    return value is not None and value > threshold


def feature_row(reference: str, stats: FeatureStats, run: RunFeatureStats) -> dict[str, Any]:
    drift = run.drift.get(reference)
    previous = drift.previous_run if drift else None
    training = drift.training if drift else None
    quantiles = stats.quantiles or {}
    return {
        "name": reference,
        "href": feature_href(reference),
        "drift_href": "/console/drift/" + "/".join(reference.split(":", 1)),
        "stats": stats,
        "quantiles": [quantiles.get(level) for level in SHOWN_QUANTILES],
        "top": [f"{t.value} ({t.share:.0%})" for t in (stats.top or [])[:3]],
        "psi_previous": previous,
        "psi_training": training,
        "flagged": _flag(previous, run.threshold) or _flag(training, run.threshold),
        "training_set": run.training_sets.get(reference),
    }


async def run_starts(store: Any) -> dict[str, float]:
    """Batch run id -> when it started (epoch ms), from the run records (one of another
    version of the platform is left out)."""
    starts = {}
    for raw in await store.batch_runs(RUN_RECORDS_READ):
        try:
            record = RunRecord.model_validate_json(raw)
        except ValueError:
            continue
        starts[record.run_id] = record.started_at * 1000
    return starts


def run_time(run: RunFeatureStats, starts: Mapping[str, float]) -> float:
    """Where a run is plotted: when it started, or, without its run record (trimmed, or
    a run with no id), when its statistics were recorded, near its end."""
    if run.run_id is not None and run.run_id in starts:
        return starts[run.run_id]
    return run.at_ms


def run_series(
    name: str,
    runs: list[RunFeatureStats],
    starts: Mapping[str, float],
    value: Callable[[RunFeatureStats], float | None],
    gaps: bool = False,
    **style: Any,
) -> dict[str, Any]:
    """One line of ``value`` over runs by their start; a run without a value is left out
    (with ``gaps``, a gap). Each point's hover text names the run's cutoff and view."""
    points = [(run_time(run, starts), value(run), run) for run in runs]
    kept = sorted((p for p in points if gaps or p[1] is not None), key=lambda p: p[0])
    trace = plots.time_series(name, [(at, v) for at, v, _ in kept], **style)
    trace["text"] = [
        f"cutoff {utc_time(run.cutoff)} UTC, batch view v{run.view_version}"
        + (f", run {run.run_id}" if run.run_id else "")
        for _, _, run in kept
    ]
    return trace


def psi_of(reference: str, baseline: str) -> Callable[[RunFeatureStats], float | None]:
    """A run's PSI of ``reference`` against ``baseline`` (previous_run or training)."""

    def value(run: RunFeatureStats) -> float | None:
        drift = run.drift.get(reference)
        return getattr(drift, baseline) if drift is not None else None

    return value


def threshold_line(layout: dict[str, Any], threshold: float) -> dict[str, Any]:
    """The flagging threshold as a dashed horizontal line across the plot."""
    layout["shapes"] = [
        {
            "type": "line",
            "xref": "paper",
            "x0": 0,
            "x1": 1,
            "y0": threshold,
            "y1": threshold,
            "line": {"color": "#c62828", "dash": "dash", "width": 1},
        }
    ]
    layout["hovermode"] = "closest"
    return layout


@router.get("/console/drift")
@store_guard
async def drift(request: Request, _: LoggedIn, q: str = "") -> Response:
    """The newest run's statistics per feature, drift flagged, the most drifted plotted."""
    store = request.app.state.store
    runs = await _records(store, Journal.FEATURE_STATS, RUNS_READ, RunFeatureStats)
    trainings = await _records(store, Journal.TRAINING_STATS, TRAINING_READ, TrainingFeatureStats)
    starts = await run_starts(store)
    latest = runs[-1] if runs else None
    query = q.strip().lower()[:200]
    rows = []
    figure = None
    if latest is not None:
        rows = [
            feature_row(reference, stats, latest)
            for reference, stats in sorted(latest.features.items())
            if query in reference.lower()
        ]
        rows.sort(key=lambda r: (not r["flagged"], r["name"]))
        worst: dict[str, float] = {}
        for run in runs:
            for reference, one in run.drift.items():
                values = [v for v in (one.previous_run, one.training) if v is not None]
                if values and query in reference.lower():
                    worst[reference] = max(worst.get(reference, 0.0), *values)
        plotted = sorted(worst, key=lambda r: -worst[r])[:PLOTTED]
        traces = [
            run_series(reference, runs, starts, psi_of(reference, "previous_run"))
            for reference in plotted
        ]
        layout = plots.layout(
            "PSI against the previous run (most drifted features)", "PSI", RUN_AXIS
        )
        figure = plots.figure(traces, threshold_line(layout, latest.threshold))
    context = {
        "q": q[:200],
        "latest": latest,
        "runs": len(runs),
        "rows": rows,
        "flagged": sum(r["flagged"] for r in rows),
        "figure": figure,
        "trainings": trainings[::-1][:10],
        "levels": SHOWN_QUANTILES,
    }
    return page(request, "drift.html", context)


@router.get("/console/drift/{view}/{name}")
@store_guard
async def feature_drift(request: Request, view: str, name: str, _: LoggedIn) -> Response:
    """One feature's newest statistics in full and its PSI, rates and mean over runs."""
    store = request.app.state.store
    reference = f"{view}:{name}"
    runs = [
        r
        for r in await _records(store, Journal.FEATURE_STATS, RUNS_READ, RunFeatureStats)
        if reference in r.features
    ]
    latest = runs[-1] if runs else None
    psi_figure = rates_figure = None
    if latest is not None:
        starts = await run_starts(store)
        layout = plots.layout(f"PSI of {reference}", "PSI", RUN_AXIS)
        psi_figure = plots.figure(
            [
                run_series(
                    "against the previous run", runs, starts, psi_of(reference, "previous_run")
                ),
                run_series("against the training set", runs, starts, psi_of(reference, "training")),
            ],
            threshold_line(layout, latest.threshold),
        )

        def stat(name: str) -> Callable[[RunFeatureStats], float | None]:
            return lambda run: getattr(run.features[reference], name)

        rates_figure = plots.figure(
            [
                run_series("null rate", runs, starts, stat("null_rate"), gaps=True),
                run_series("no-data rate", runs, starts, stat("no_data_rate"), gaps=True),
            ],
            plots.layout(f"Null and no-data rates of {reference}", "share", RUN_AXIS),
        )
        if any(run.features[reference].mean is not None for run in runs):
            rates_figure = rates_figure and {
                **rates_figure,
                "data": [
                    *rates_figure["data"],
                    run_series(
                        "mean",
                        runs,
                        starts,
                        stat("mean"),
                        gaps=True,
                        yaxis="y2",
                        line={"dash": "dot"},
                    ),
                ],
                "layout": {
                    **rates_figure["layout"],
                    "margin": {**rates_figure["layout"]["margin"], "r": 60},
                    "yaxis2": {
                        "title": {"text": "mean"},
                        "overlaying": "y",
                        "side": "right",
                        "showgrid": False,
                    },
                },
            }
    context = {
        "reference": reference,
        "href": feature_href(reference),
        "row": feature_row(reference, latest.features[reference], latest) if latest else None,
        "latest": latest,
        "runs": len(runs),
        "psi_figure": psi_figure,
        "rates_figure": rates_figure,
    }
    return page(request, "feature_drift.html", context)
