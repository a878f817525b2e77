"""``lfp lake``: each source's Delta table (loading history, optimizing)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from feature_core.settings import get_settings
from infra.cli.common import SourceOption, console, friendly_errors, load_repo, pick_source
from infra.cli.tables import Column, WideOption, count, data_size, duration, print_table
from runtime.progress import advancer, progress_bars

app = typer.Typer(no_args_is_help=True, help="The lake: each source's Delta table.")


@app.command("load")
@friendly_errors
def lake_load(
    files: Annotated[list[Path], typer.Argument(help="JSON Lines (.jsonl), CSV or Parquet.")],
    source: SourceOption = None,
    chunk: Annotated[int, typer.Option(help="Records per Delta commit.")] = 50_000,
    fresh: Annotated[
        bool,
        typer.Option(
            help="The file is new content, though a file at its path was loaded before: "
            "load it whole instead of refusing it as an edit."
        ),
    ] = False,
) -> None:
    """Load history into a source's lake table: each record validated as ingest does,
    good ones appended in bounded commits, rejects (unreadable or oversized records too)
    written beside the file with their line and reason. Loading the same content again
    appends nothing; a load cut short, or a file that grew, resumes where it stopped."""
    import csv

    from batch_layer.load import count_records, load_file

    settings = get_settings()
    chosen = pick_source(settings, source)
    for path in files:
        if not path.exists():
            raise RuntimeError(f"{path} not found")
    for path in files:
        try:
            with progress_bars(console) as progress:
                label = f"{path.name} -> {chosen.table_name}"
                result = load_file(
                    settings,
                    chosen,
                    path,
                    chunk,
                    advancer(progress, label, count_records(path)),
                    fresh=fresh,
                )
        except (ValueError, UnicodeDecodeError, csv.Error, OSError) as error:
            raise RuntimeError(f"{path}: cannot load it: {error}") from None
        note = f", {result.skipped} loaded before" if result.skipped else ""
        rejects = f" (see {result.rejects_path})" if result.rejects_path else ""
        console.print(
            f"{path}: {result.records} records, {result.appended} appended, "
            f"{result.rejected} rejected{rejects}{note}; {result.commits} commits"
        )
        for line in result.first_rejects:
            console.print(f"  rejected: {line}", markup=False)


@app.command("optimize")
@friendly_errors
def lake_optimize(
    table: Annotated[
        list[str] | None,
        typer.Option(
            help="Lake table to optimize (repeat; _lfp_tiles: the tile table); default: all."
        ),
    ] = None,
    wide: WideOption = False,
) -> None:
    """Cluster each lake table by its entities' join keys (Z-order, per date partition
    with more than one file and new files since the last run) and delete files
    unreferenced for LFP_LAKE_RETENTION_HOURS; then compact the tile table (_lfp_tiles:
    one file per partition) and delete its replaced files, and the files of runs that
    never committed, as long unreferenced. Prints each table's size after. The scheduler
    runs this on LFP_LAKE_OPTIMIZE_SCHEDULE."""
    from batch_layer.lake import optimize_lake

    settings = get_settings()
    with console.status("optimizing the lake"):
        done = optimize_lake(settings, load_repo(settings), table)
    if not done:
        console.print("no lake table yet: nothing to optimize")
        return
    columns = [
        Column("table"),
        Column("clustered by", priority=10, wrap=True, min_width=10),
        Column("rewritten", priority=30, justify="right"),
        Column("files", justify="right"),
        Column("size", justify="right"),
        Column("deleted", priority=40, justify="right"),
        Column("took", priority=20, justify="right"),
    ]
    rows = [
        [
            result.table.rstrip("/").rsplit("/", 1)[-1],
            ", ".join(result.columns) or "(compacted)",
            count(result.partitions),
            f"{count(result.files_before)} -> {count(result.files_after)}",
            data_size(result.bytes_after),
            count(result.vacuumed),
            duration(result.seconds),
        ]
        for result in done
    ]
    print_table(
        console,
        columns,
        rows,
        wide=wide,
        caption="rewritten: partitions; deleted: old files; lake: " + settings.lake_root,
    )
    for result in done:
        name = result.table.rstrip("/").rsplit("/", 1)[-1]
        for note in result.notes:
            console.print(f"{name}: {note}", markup=False, highlight=False)
