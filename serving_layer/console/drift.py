"""Feature statistics and drift pages: each batch run's summary of the values it serves
(count, no-data and null rates, mean, quantiles, top values) and their PSI against the
previous run and the newest training set (:mod:`feature_core.stats`), from the
FEATURE_STATS and TRAINING_STATS journals. Features over the run's threshold are flagged;
PSI is plotted over runs, for the most drifted features and per feature."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from feature_core.journals import Journal
from feature_core.stats import FeatureStats, RunFeatureStats, TrainingFeatureStats
from serving_layer.console import plots
from serving_layer.console.auth import LoggedIn
from serving_layer.console.data import store_guard
from serving_layer.console.lineage import feature_href
from serving_layer.console.render import page

router = APIRouter(include_in_schema=False)

#: Batch runs' records read (the journal keeps 500).
RUNS_READ = 200
#: Training sets' records read.
TRAINING_READ = 50
#: Features drawn in the overview's PSI plot: the most drifted.
PLOTTED = 8
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


def psi_series(
    runs: list[RunFeatureStats], reference: str, baseline: str
) -> list[tuple[float, float | None]]:
    points = []
    for run in runs:
        drift = run.drift.get(reference)
        if drift is not None and getattr(drift, baseline) is not None:
            points.append((run.cutoff, getattr(drift, baseline)))
    return points


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
            plots.time_series(reference, psi_series(runs, reference, "previous_run"))
            for reference in plotted
        ]
        layout = plots.layout(
            "PSI against the previous run (most drifted features)", "PSI", "batch cutoff (UTC)"
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
        layout = plots.layout(f"PSI of {reference}", "PSI", "batch cutoff (UTC)")
        psi_figure = plots.figure(
            [
                plots.time_series(
                    "against the previous run", psi_series(runs, reference, "previous_run")
                ),
                plots.time_series(
                    "against the training set", psi_series(runs, reference, "training")
                ),
            ],
            threshold_line(layout, latest.threshold),
        )
        rates_figure = plots.figure(
            [
                plots.time_series(
                    "null rate", [(r.cutoff, r.features[reference].null_rate) for r in runs]
                ),
                plots.time_series(
                    "no-data rate",
                    [(r.cutoff, r.features[reference].no_data_rate) for r in runs],
                ),
            ],
            plots.layout(f"Null and no-data rates of {reference}", "share", "batch cutoff (UTC)"),
        )
        means = [(r.cutoff, r.features[reference].mean) for r in runs]
        if any(mean is not None for _, mean in means):
            rates_figure = rates_figure and {
                **rates_figure,
                "data": [
                    *rates_figure["data"],
                    plots.time_series("mean", means, yaxis="y2", line={"dash": "dot"}),
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
