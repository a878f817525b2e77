"""``lfp batch``: the batch layer, recomputing views from the lake; its runs' history."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from feature_core.settings import get_settings
from infra.cli.common import (
    StatusFile,
    console,
    friendly_errors,
    load_repo,
    setup_logging,
    spark_task_bar,
)
from infra.cli.tables import iso, or_dash

app = typer.Typer(no_args_is_help=True, help="Batch layer: recompute views from the lake.")


def lake_versions(record: Any) -> str:
    """The lake tables a run read, each with its Delta version (``table:vN``)."""
    versions = record.delta_versions or {}
    if not versions:
        return or_dash(record.delta_version)
    return " ".join(f"{t}:v{or_dash(v)}" for t, v in sorted(versions.items()))


def run_summary(record: Any) -> Table:
    table = Table("run", "value", title=f"batch run {record.run_id}", show_header=False)
    color = "green" if record.status == "succeeded" else "red"
    rows = {
        "status": f"[{color}]{record.status}[/{color}]",
        "trigger": record.trigger,
        "cutoff": f"{record.cutoff} ({iso(record.cutoff)})",
        "lake versions read": lake_versions(record),
        "events read": str(record.rows_read),
        "entities written": str(record.entities_written),
        "view version": f"v{record.view_version}" + ("" if record.switched else " (not serving)"),
        "old view keys removed": str(record.garbage_collected),
        "Spark stages / tasks": f"{record.stages} / {record.tasks}",
        "attempts": str(record.attempts),
        "duration": f"{record.duration_s or 0:.1f} s",
    }
    if record.error:
        rows["error"] = record.error
    for name, value in rows.items():
        table.add_row(name, value)
    return table


@app.command("run")
@friendly_errors
def batch_run(
    cutoff_ms: Annotated[
        int | None,
        typer.Option(
            help="Cutoff B (epoch ms), at most the run's start (late events need it); "
            "default now - LFP_BATCH_SETTLE_S."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run record as JSON.")] = False,
) -> None:
    """Recompute all batch views once (with retries), switch serving, record the run."""
    from batch_layer.scheduler import BatchScheduler
    from batch_layer.spark import spark_session

    settings = get_settings()
    repo = load_repo(settings)
    spark = spark_session(settings)
    try:
        with spark_task_bar() as show:
            scheduler = BatchScheduler(spark, settings, repo, lambda _, snapshot: show(snapshot))
            record = scheduler.run_once("manual", cutoff_ms)
    finally:
        spark.stop()
    assert record is not None  # a fresh scheduler holds no lock
    if as_json:
        console.print_json(record.model_dump_json())
    else:
        console.print(run_summary(record))
    if record.status != "succeeded":
        raise typer.Exit(1)


@app.command("history")
@friendly_errors
def batch_history(
    limit: Annotated[int, typer.Option(help="How many runs, newest first.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
) -> None:
    """Recent batch runs: when, cutoff, Delta version, rows, entities, status, error."""
    from batch_layer.history import RUNS_TABLE, RunHistory
    from online_store import open_store

    settings = get_settings()
    store = open_store(settings, timeout_s=2)
    lake = settings.table_uri(RUNS_TABLE)
    history = RunHistory(store, settings.batch_run_history, lake, settings.batch_run_lease_s)
    runs = history.recent(limit)
    store.close()
    if as_json:
        for run in runs:
            console.print_json(run.model_dump_json())
        return
    if not runs:
        console.print("no batch runs recorded yet (`lfp batch run`, or wait for the schedule)")
        return
    table = Table(
        caption="times in UTC", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True
    )
    for name in ("run", "trigger", "status", "started", "took", "cutoff"):
        table.add_column(name, no_wrap=True)
    table.add_column("lake versions", overflow="fold", min_width=12)
    for name in ("events", "entities", "view"):
        table.add_column(name, justify="right", no_wrap=True)
    errors = any(run.error for run in runs)
    if errors:
        table.add_column("error", overflow="fold", min_width=20)
    for run in runs:
        color = {"succeeded": "green", "failed": "red", "abandoned": "red"}.get(
            run.status, "yellow"
        )
        tries = f" ({run.attempts} tries)" if run.attempts > 1 else ""
        table.add_row(
            run.run_id,
            run.trigger,
            f"[{color}]{run.status}[/{color}]{tries}",
            iso(int(run.started_at * 1000), "%m-%d %H:%M"),
            f"{run.duration_s:.0f} s" if run.duration_s is not None else "-",
            iso(run.cutoff, "%m-%d %H:%M"),
            lake_versions(run),
            or_dash(run.rows_read),
            or_dash(run.entities_written),
            f"v{run.view_version}" if run.view_version else "-",
            *([(run.error or "")[:200]] if errors else []),
        )
    console.print(table)


@app.command("schedule")
@friendly_errors
def batch_schedule(status_file: StatusFile = None) -> None:
    """Run the batch job on LFP_BATCH_SCHEDULE until stopped."""
    from batch_layer.scheduler import run_scheduler

    setup_logging()
    settings = get_settings()
    run_scheduler(settings, load_repo(settings), status_file)
