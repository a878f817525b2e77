"""Operations pages: freshness and lag (now and over the last hour), the batch run history
and one run's detail, and consistency (the last `lfp verify` per feature, the scheduler's
sampled verification over time)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from feature_core.definitions import FeatureRepo
from feature_core.journals import Journal
from feature_core.runs import RunRecord, RunStatus, settled
from serving_layer.console import plots
from serving_layer.console.auth import LoggedIn
from serving_layer.console.data import journal, loads_object, mapping, store_guard
from serving_layer.console.lineage import feature_href
from serving_layer.console.render import now_ms, page

router = APIRouter(include_in_schema=False)

HOUR_MS = 3_600_000
#: Batch runs listed and plotted (the newest; the history keeps LFP_BATCH_RUN_HISTORY).
RUNS_SHOWN = 200
#: Verification records plotted (the journals keep 500 of each).
VERIFY_SHOWN = 500

STATUS_COLORS = {
    RunStatus.SUCCEEDED: "#2e7d32",
    RunStatus.FAILED: "#c62828",
    RunStatus.ABANDONED: "#ef6c00",
    RunStatus.RUNNING: "#1565c0",
}


@router.get("/console/freshness")
@store_guard
async def freshness(request: Request, _: LoggedIn) -> Response:
    """Per group the speed watermark's and the batch view's age, per consumer and topic
    the lag: now, and over the last hour from the scheduler's freshness samples."""
    repo: FeatureRepo = request.app.state.repo
    store = request.app.state.store
    snapshot = await store.read()
    lags = await store.consumer_lag()
    now = now_ms()
    pointer = snapshot.pointer
    stale = set(pointer.stale_groups(repo.groups)) if pointer is not None else set()
    groups = []
    for group in repo.groups:
        watermark = snapshot.speed_watermarks.get(group.name)
        groups.append(
            {
                "name": group.name,
                "watermark": watermark,
                "speed_age_s": None if watermark is None else (now - watermark) / 1000,
                "batch_age_s": None if pointer is None else (now - pointer.cutoff) / 1000,
                "stale": group.name in stale,
            }
        )
    samples = await journal(store, Journal.FRESHNESS, now - HOUR_MS, 2000)
    ages = [
        plots.time_series(
            "batch view", [(r["at_ms"], plots.number(r.get("batch_age_s"))) for r in samples]
        ),
        *(
            plots.time_series(f"speed: {name}", points)
            for name, points in sorted(plots.by_series(samples, "speed_age_s").items())
        ),
    ]
    lag_series = [
        plots.time_series(name, points)
        for name, points in sorted(plots.by_series(samples, "lag").items())
    ]
    context = {
        "pointer": pointer,
        "batch_age_s": None if pointer is None else (now - pointer.cutoff) / 1000,
        "groups": groups,
        "lags": lags,
        "samples": len(samples),
        "gap": snapshot.speed_gap(),
        "recomputing": snapshot.speed_recomputing,
        "age_figure": plots.figure(ages, _log_scale(plots.layout(AGE_TITLE, "age (s, log scale)"))),
        "lag_figure": plots.figure(
            lag_series, plots.layout("Consumer lag, last hour", "records behind")
        ),
    }
    return page(request, "freshness.html", context)


AGE_TITLE = "Age of the served data, last hour"


def _log_scale(layout: dict[str, Any]) -> dict[str, Any]:
    """Speed ages (seconds) and the batch view's (hours) on one axis."""
    layout["yaxis"] = {"title": layout["yaxis"]["title"], "type": "log"}
    return layout


async def _runs(request: Request, limit: int) -> list[RunRecord]:
    settings = request.app.state.settings
    raws = await request.app.state.store.batch_runs(limit)
    runs = []
    for raw in raws:
        try:
            runs.append(settled(RunRecord.model_validate_json(raw), settings.batch_run_lease_s))
        except ValueError:  # a record of another version of the platform: not shown
            continue
    return runs


def run_row(run: RunRecord) -> dict[str, Any]:
    return {
        "run": run,
        "started_ms": run.started_at * 1000,
        "events": run.rows_read,
        "versions": run.delta_versions
        or ({"": run.delta_version} if run.delta_version is not None else {}),
    }


@router.get("/console/runs")
@store_guard
async def runs(request: Request, _: LoggedIn) -> Response:
    """The batch run history, newest first, and its durations plotted."""
    history = await _runs(request, RUNS_SHOWN)
    traces = []
    for status in RunStatus:
        mine = [r for r in history if r.status is status and r.duration_s is not None]
        if not mine:
            continue
        points = [(r.started_at * 1000, r.duration_s) for r in mine]
        trace = plots.time_series(
            status.value, points, mode="markers", marker={"size": 9, "color": STATUS_COLORS[status]}
        )
        ordered = sorted(mine, key=lambda r: r.started_at)
        trace["text"] = [f"{r.run_id} ({r.trigger})" for r in ordered]
        traces.append(trace)
    layout = plots.layout("Batch run durations", "duration (s)", "started (UTC)")
    layout["hovermode"] = "closest"
    context = {
        "rows": [run_row(r) for r in history],
        "figure": plots.figure(traces, layout),
        "counts": {s.value: sum(r.status is s for r in history) for s in RunStatus},
    }
    return page(request, "runs.html", context)


@router.get("/console/runs/{run_id}")
@store_guard
async def run_detail(request: Request, run_id: str, _: LoggedIn) -> Response:
    """One run: every field of its record, and its error when it failed."""
    settings = request.app.state.settings
    for run in await _runs(request, settings.batch_run_history):
        if run.run_id == run_id:
            fields = run.model_dump(mode="json", exclude={"error"})
            return page(request, "run.html", {"row": run_row(run), "fields": fields})
    return page(request, "run_missing.html", {"run_id": run_id[:100]}, status_code=404)


def verified_features(repo: FeatureRepo) -> tuple[list[str], list[str]]:
    """The features `lfp verify` compares (every group's, and derived features of one
    entity type needing no request field: batch_layer.verify), and those it cannot."""
    checked = [f.qualified_name for g in repo.groups for f in g.features]
    unchecked = []
    for name, derived in repo.derived.items():
        keys = {repo.group(g).join_keys for g in derived.groups}
        (checked if not derived.request_fields and len(keys) == 1 else unchecked).append(name)
    return checked, unchecked


@router.get("/console/consistency")
@store_guard
async def consistency(request: Request, _: LoggedIn) -> Response:
    """The last `lfp verify` per feature, every verify's mismatches over time, and the
    scheduler's sampled verification (mismatches and values checked over time)."""
    repo: FeatureRepo = request.app.state.repo
    store = request.app.state.store
    report = loads_object(await store.consistency_report())
    per_feature: list[dict[str, Any]] = []
    unchecked: list[str] = []
    if report is not None:
        counts = mapping(report.get("by_feature"))
        names, unchecked = verified_features(repo)
        per_feature = [
            {"name": n, "href": feature_href(n), "mismatches": counts.get(n, 0)} for n in names
        ]
        per_feature += [
            {"name": str(n), "href": None, "mismatches": c}
            for n, c in counts.items()
            if n not in names
        ]
        per_feature.sort(key=lambda f: (-(plots.number(f["mismatches"]) or 0), f["name"]))
    verifies = await journal(store, Journal.VERIFY, 0, VERIFY_SHOWN)
    sampled = await journal(store, Journal.SAMPLED_VERIFY, 0, VERIFY_SHOWN)

    def series(records: list[dict[str, Any]], field: str, name: str, **style: Any) -> dict:
        return plots.time_series(
            name, [(r["at_ms"], plots.number(r.get(field))) for r in records], **style
        )

    verify_figure = plots.figure(
        [
            series(verifies, "mismatches", "mismatches", marker={"color": "#c62828", "size": 7}),
            series(verifies, "values", "values checked", yaxis="y2", line={"dash": "dot"}),
        ],
        _two_axes(plots.layout("lfp verify runs", "mismatches"), "values checked"),
    )
    sampled_figure = plots.figure(
        [
            series(sampled, "mismatches", "mismatches", marker={"color": "#c62828", "size": 5}),
            series(sampled, "values", "values checked", yaxis="y2", line={"dash": "dot"}),
        ],
        _two_axes(plots.layout("Sampled verification (scheduler)", "mismatches"), "values checked"),
    )
    latest_sampled = sampled[-1] if sampled else None
    context = {
        "report": report,
        "per_feature": per_feature,
        "unchecked": [{"name": n, "href": feature_href(n)} for n in unchecked],
        "examples": _examples(report),
        "verifies": len(verifies),
        "verify_figure": verify_figure,
        "sampled": len(sampled),
        "sampled_mismatches": sum(plots.number(r.get("mismatches")) or 0 for r in sampled),
        "latest_sampled": latest_sampled,
        "latest_sampled_examples": _examples(latest_sampled),
        "sampled_figure": sampled_figure,
    }
    return page(request, "consistency.html", context)


def _two_axes(layout: dict[str, Any], right_title: str) -> dict[str, Any]:
    layout["yaxis2"] = {
        "title": {"text": right_title},
        "overlaying": "y",
        "side": "right",
        "rangemode": "tozero",
        "showgrid": False,
    }
    layout["margin"]["r"] = 60
    return layout


def _examples(record: dict[str, Any] | None) -> list[dict[str, Any]]:
    """A report's mismatch examples (each a mapping), at most 20."""
    examples = record.get("examples") if record else None
    if not isinstance(examples, list):
        return []
    return [dict(e) for e in examples[:20] if isinstance(e, dict)]
