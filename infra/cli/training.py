"""``lfp training-set``: point-in-time correct training sets."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from feature_core.settings import get_settings
from infra.cli.common import console, friendly_errors, load_repo, setup_logging, spark_task_bar

if TYPE_CHECKING:
    from feature_core.definitions import FeatureRepo, FeatureService

app = typer.Typer(no_args_is_help=True, help="Point-in-time correct training sets.")


@app.command("build")
@friendly_errors
def training_set_build(
    service: Annotated[str, typer.Option(help="Feature service (the model input vector).")],
    spine: Annotated[Path, typer.Option(help="Parquet or CSV: entity key, timestamp, labels.")],
    output: Annotated[Path, typer.Option(help="Where to write the training set.")],
    output_format: Annotated[str, typer.Option("--format", help="parquet or delta.")] = "parquet",
    entity_column: Annotated[
        list[str] | None,
        typer.Option(
            help="Spine column of a join key: KEY=COLUMN (repeatable), or one COLUMN per join "
            "key in the join keys' order; default: columns named as the join keys."
        ),
    ] = None,
    timestamp_column: Annotated[str, typer.Option(help="Epoch-ms column.")] = "timestamp",
    delta_version: Annotated[
        list[str] | None, typer.Option(help="Pin a lake table's version: TABLE=N (repeatable).")
    ] = None,
    column_type: Annotated[
        list[str] | None,
        typer.Option(
            help="Type of another spine column (a label): NAME=TYPE, TYPE one of string, "
            "integer, float, boolean, timestamp (repeatable); others stay text."
        ),
    ] = None,
) -> None:
    """Each spine row + the features the API would have served at its timestamp. The
    spine's join key columns are read as the keys are declared (never guessed)."""
    import uuid

    from batch_layer.progress import SparkProgress
    from batch_layer.spark import spark_session
    from batch_layer.training import (
        build_training_set,
        lake_versions,
        output_conflict,
        read_spine,
        write_training_set,
    )

    setup_logging()
    settings = get_settings()
    repo = load_repo(settings)
    try:
        feature_service = repo.service(service)
    except KeyError as error:
        raise RuntimeError(str(error.args[0])) from None
    if not spine.exists():
        raise RuntimeError(f"spine file {spine} not found")
    conflict = output_conflict(str(output), str(spine), settings.lake_root, str(settings.data_dir))
    if conflict:
        raise RuntimeError(f"refusing --output: {conflict}; choose another path")
    column_types = {}
    for spec in column_type or []:
        name, sep, kind = spec.partition("=")
        if not sep or not name or not kind:
            raise RuntimeError(f"--column-type {spec!r}: give NAME=TYPE, e.g. label=float")
        column_types[name] = kind
    entity_columns = _entity_columns(entity_column)
    _check_csv_header(spine, repo, feature_service, entity_columns, timestamp_column, column_types)
    versions = lake_versions(settings, repo, feature_service, _pins(delta_version))
    started = time.monotonic()
    spark = spark_session(settings, "lfp-training-set")
    try:
        with (
            spark_task_bar() as show,
            SparkProgress(spark, f"training-{uuid.uuid4().hex[:8]}", show),
        ):
            frame = read_spine(
                spark,
                spine,
                repo,
                feature_service,
                entity_columns,
                timestamp_column,
                column_types,
            )
            result = build_training_set(
                spark,
                settings,
                repo,
                feature_service,
                frame,
                entity_columns,
                timestamp_column,
                versions,
            )
            rows = write_training_set(
                result, str(output), output_format, settings, service=feature_service.name
            )
    except ValueError as error:
        raise RuntimeError(str(error)) from None
    except Exception as error:
        if _out_of_spark_memory(error):
            raise RuntimeError(
                "the training set ran out of Spark memory (LFP_SPARK_DRIVER_MEMORY="
                f"{settings.spark_driver_memory}): give Spark more, e.g. "
                "LFP_SPARK_DRIVER_MEMORY=8g, or build from fewer spine rows at a time. Each "
                "spine row is joined to its entity's events within the service's longest "
                "window, so entities with many events and long windows cost the most"
            ) from None
        raise
    finally:
        spark.stop()
    read = ", ".join(
        f"{table} v{v}" if v is not None else f"{table} (none)" for table, v in versions.items()
    )
    console.print(
        f"wrote {rows:,} rows x {len(feature_service.features)} features to {output} in "
        f"{time.monotonic() - started:.1f} s; lake read: {read}"
    )


def _check_csv_header(
    spine: Path,
    repo: FeatureRepo,
    service: FeatureService,
    entity_columns: list[str] | dict[str, str] | None,
    timestamp_column: str,
    column_types: dict[str, str],
) -> None:
    """A CSV spine lacking a column it must have is refused from its header, before a
    Spark session starts (seconds) only for read_spine to find the same."""
    from batch_layer.training import csv_header, spine_key_columns

    if spine.suffix.lower() != ".csv":
        return
    try:
        names = csv_header(spine)
        keys = spine_key_columns(repo.join_keys_of(service.features), entity_columns)
    except ValueError as error:
        raise RuntimeError(str(error)) from None
    for column in (*keys.values(), *column_types, timestamp_column):
        if column not in names:
            raise RuntimeError(f"spine has no column {column!r}; it has {names}")


def _entity_columns(given: list[str] | None) -> list[str] | dict[str, str] | None:
    """--entity-column values: KEY=COLUMN pairs as a mapping, plain columns as a list."""
    if not given or not any("=" in one for one in given):
        return given or None
    pairs = [one.partition("=") for one in given]
    if not all(key and sep and column for key, sep, column in pairs):
        raise RuntimeError(
            f"--entity-column {given}: give every one as KEY=COLUMN, or every one as COLUMN "
            "in the join keys' order"
        )
    return {key: column for key, _, column in pairs}


def _out_of_spark_memory(error: BaseException) -> bool:
    text = str(error)
    signs = (
        "SparkOutOfMemoryError",
        "UNABLE_TO_ACQUIRE_MEMORY",
        "OutOfMemoryError",
        "Java heap space",
    )
    return any(sign in text for sign in signs)


def _pins(specs: list[str] | None) -> dict[str, int] | None:
    if not specs:
        return None
    pins = {}
    for spec in specs:
        table, sep, version = spec.partition("=")
        if not sep or not version.isdigit():
            raise RuntimeError(f"--delta-version {spec!r}: use TABLE=N, e.g. raw_events=12")
        pins[table] = int(version)
    return pins
