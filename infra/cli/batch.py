"""``lfp batch``: the batch layer, recomputing views from the lake; its runs' history."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from feature_core.runs import RunRecord
from feature_core.settings import get_settings
from infra.cli.common import (
    StatusFile,
    console,
    friendly_errors,
    load_repo,
    setup_logging,
    spark_task_bar,
)
from infra.cli.tables import (
    Column,
    WideOption,
    clipped,
    compact_time,
    count,
    data_size,
    duration,
    iso,
    or_dash,
    print_table,
    short_ids,
)

app = typer.Typer(no_args_is_help=True, help="Batch layer: recompute views from the lake.")


def lake_versions(record: RunRecord) -> str:
    """The lake tables a run read, each with its Delta version (``table:vN``)."""
    versions = record.delta_versions or {}
    if not versions:
        return or_dash(record.delta_version)
    return " ".join(f"{t}:v{or_dash(v)}" for t, v in sorted(versions.items()))


#: A run's mode as the history table shows it.
SHORT_MODES = {"incremental": "incr", "reassemble": "reasm", "full": "full", "mixed": "mixed"}


def run_mode(record: RunRecord) -> str:
    """``incr``, ``reasm`` (every document assembled from the stored tiles), ``full`` or
    ``mixed``, with ``*`` when a group was rebuilt from the raw events in a run that was
    not full; ``-`` in records from before run modes."""
    if record.mode is None:
        return "-"
    rebuilt = record.mode != "full" and "rebuild" in (record.group_modes or {}).values()
    return SHORT_MODES.get(record.mode, record.mode) + ("*" if rebuilt else "")


def group_modes(record: RunRecord) -> str:
    """Each group's mode and why it was not incremental, groups in the same mode and
    for the same reason together (``full (--full): every group``)."""
    modes = record.group_modes or {}
    if not modes:
        return "-"
    together: dict[tuple[str, str | None], list[str]] = {}
    for group, mode in sorted(modes.items()):
        together.setdefault((mode, (record.mode_reasons or {}).get(group)), []).append(group)
    parts = []
    for (mode, reason), groups in together.items():
        which = "every group" if len(together) == 1 else ", ".join(groups)
        parts.append(f"{mode} ({reason}): {which}" if reason else f"{mode}: {which}")
    return "; ".join(parts)


def lake_read(record: RunRecord, long: bool = False) -> str:
    """The lake data a run read: ``48 MB/63`` (bytes/files), ``48 MB in 63 files`` when
    ``long``; ``-`` when not recorded."""
    if record.lake_bytes_read is None and record.lake_files_read is None:
        return "-"
    size, files = data_size(record.lake_bytes_read), count(record.lake_files_read)
    return f"{size} in {files} files" if long else f"{size}/{files}"


def keys_changed(record: RunRecord, separator: str = "/") -> str:
    """Redis keys a run wrote and deleted: ``1,204/3``; ``-`` when not recorded."""
    if record.keys_written is None and record.keys_deleted is None:
        return "-"
    return f"{count(record.keys_written)}{separator}{count(record.keys_deleted)}"


def entities_changed(record: RunRecord) -> str:
    """The entities a run's view could change, by cause: ``1,200 data, 56 edge``."""
    changed = record.entities_changed
    if changed is None:
        return "-"
    return ", ".join(f"{count(n)} {cause}" for cause, n in sorted(changed.items())) or "0"


def run_summary(out: Console, record: RunRecord) -> None:
    """One run's record, a line per field (`lfp batch run`)."""
    color = "green" if record.status == "succeeded" else "red"
    rows = {
        "status": Text(record.status, style=color),
        "trigger": record.trigger,
        "mode": record.mode or "-",
        "group modes": group_modes(record),
        "cutoff": f"{record.cutoff} ({iso(record.cutoff)})",
        "lake versions read": lake_versions(record),
        "lake data read": lake_read(record, long=True),
        "new events": count(record.new_events),
        "events read": count(record.rows_read),
        "tiles written": count(record.tiles_written),
        "entities changed": entities_changed(record),
        "entities written": count(record.entities_written),
        "keys written / deleted": keys_changed(record, " / "),
        "view version": f"v{record.view_version}" + ("" if record.switched else " (not serving)"),
        "old view keys removed": count(record.garbage_collected),
        "Spark stages / tasks": f"{count(record.stages)} / {count(record.tasks)}",
        "attempts": str(record.attempts),
        "duration": duration(record.duration_s or 0),
    }
    if record.error:
        rows["error"] = record.error
    columns = [Column("run"), Column("value", wrap=True)]
    lines = [[name, value] for name, value in rows.items()]
    print_table(out, columns, lines, title=f"batch run {record.run_id}", show_header=False)


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
    full: Annotated[
        bool,
        typer.Option("--full", help="Recompute every group from the raw events in the lake."),
    ] = False,
    reassemble: Annotated[
        bool,
        typer.Option(
            "--reassemble",
            help="Operators: advance each group's stored tiles with the new events and "
            "rewrite every one of its documents from them, reading no older raw events "
            "(after restoring Redis, say); a group without usable tiles (none stored, "
            "another tile spec, LFP_BATCH_INCREMENTAL=false) is recomputed from the raw events.",
        ),
    ] = False,
) -> None:
    """Recompute the batch views once (with retries), switch serving, record the run."""
    from batch_layer.scheduler import BatchScheduler
    from batch_layer.spark import spark_session

    if full and reassemble:
        raise typer.BadParameter("--full and --reassemble are two different runs: pick one")
    mode = "full" if full else "reassemble" if reassemble else None
    settings = get_settings()
    repo = load_repo(settings)
    spark = spark_session(settings)
    try:
        with spark_task_bar() as show:
            scheduler = BatchScheduler(spark, settings, repo, lambda _, snapshot: show(snapshot))
            record = scheduler.run_once("manual", cutoff_ms, mode)
    finally:
        spark.stop()
    assert record is not None  # a fresh scheduler holds no lock
    if as_json:
        console.print_json(record.model_dump_json())
    else:
        run_summary(console, record)
    if record.status != "succeeded":
        raise typer.Exit(1)


@app.command("history")
@friendly_errors
def batch_history(
    limit: Annotated[int, typer.Option(help="How many runs, newest first.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table.")] = False,
    wide: WideOption = False,
) -> None:
    """Recent batch runs: when, mode, lake data read, events, entities, keys, status, error."""
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
    ids = short_ids((run.run_id for run in runs), wide)
    tried = any(run.attempts > 1 for run in runs)
    failed = any(run.error for run in runs)
    columns = [
        Column("run"),
        Column("trigger"),
        Column("status"),
        Column("started", priority=60),
        Column("took", justify="right"),
        Column("mode", priority=65),
        Column("cutoff", priority=20),
        Column("lake versions", priority=10, wrap=True, min_width=12),
        Column("read", priority=52, justify="right"),
        Column("events", priority=50, justify="right"),
        Column("tiles", priority=38, justify="right"),
        Column("entities", priority=40, justify="right"),
        Column("keys", priority=42, justify="right"),
        *([Column("tries", priority=45, justify="right")] if tried else []),
        Column("view", justify="right"),
        *([Column("error", priority=55, wrap=True, min_width=40)] if failed else []),
        Column("group modes", priority=0, wrap=True, min_width=24),
        Column("changed", priority=0, justify="right"),
    ]
    rows = []
    for run in runs:
        color = {"succeeded": "green", "failed": "red", "abandoned": "red"}.get(
            run.status, "yellow"
        )
        rows.append(
            [
                ids[run.run_id],
                run.trigger,
                Text(run.status, style=color),
                compact_time(run.started_at * 1000),
                duration(run.duration_s),
                run_mode(run),
                compact_time(run.cutoff),
                lake_versions(run),
                lake_read(run),
                count(run.rows_read),
                count(run.tiles_written),
                count(run.entities_written),
                keys_changed(run),
                *([str(run.attempts)] if tried else []),
                f"v{run.view_version}" if run.view_version else "-",
                *([_error_text(run.error, wide)] if failed else []),
                group_modes(run),
                entities_changed(run),
            ]
        )
    hidden = print_table(console, columns, rows, wide=wide, caption="times in UTC")
    if "error" in hidden:  # under the table, as wide as the terminal
        for run in runs:
            if run.error:
                line = Text(f"{ids[run.run_id]} {run.status}: ", style="bold")
                console.print(line + _error_text(run.error, wide), soft_wrap=False)


def _error_text(error: str | None, wide: bool) -> str:
    """A run's error: its first 200 characters unless ``--wide`` (`--json`: all)."""
    return clipped(error or "", 200, wide)


@app.command("schedule")
@friendly_errors
def batch_schedule(status_file: StatusFile = None) -> None:
    """Run the batch job on LFP_BATCH_SCHEDULE until stopped."""
    from batch_layer.scheduler import run_scheduler

    setup_logging()
    settings = get_settings()
    run_scheduler(settings, load_repo(settings), status_file)
