"""The ``lfp`` command line: one entry point for every operation of the platform.

Configuration comes from ``LFP_*`` environment variables (see ``feature_core.settings``).
"""

from __future__ import annotations

import functools
import logging
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from feature_core.definitions import DefinitionError, FeatureRepo
from feature_core.settings import Settings, get_settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
stack_app = typer.Typer(no_args_is_help=True, help="Run the embedded local stack.")
batch_app = typer.Typer(no_args_is_help=True, help="Batch layer: recompute views from the lake.")
ingest_app = typer.Typer(no_args_is_help=True, help="Lake ingest: Kafka -> Delta, exactly once.")
speed_app = typer.Typer(no_args_is_help=True, help="Speed layer: the PyFlink job.")
topics_app = typer.Typer(no_args_is_help=True, help="Kafka topics.")
features_app = typer.Typer(no_args_is_help=True, help="Inspect feature definitions.")
demo_app = typer.Typer(no_args_is_help=True, help="The demo workload.")
probe_app = typer.Typer(no_args_is_help=True, help="Health probes (Compose healthchecks).")
training_app = typer.Typer(no_args_is_help=True, help="Point-in-time correct training sets.")
for sub, name in (
    (training_app, "training-set"),
    (probe_app, "probe"),
    (stack_app, "stack"),
    (batch_app, "batch"),
    (ingest_app, "ingest"),
    (speed_app, "speed"),
    (topics_app, "topics"),
    (features_app, "features"),
    (demo_app, "demo"),
):
    app.add_typer(sub, name=name)

console = Console()
StatusFile = Annotated[
    Path | None, typer.Option(help="Write a heartbeat/status JSON here (used by the stack).")
]
F = TypeVar("F", bound=Callable[..., Any])


def friendly_errors(func: F) -> F:
    """Known operational failures print one line saying how to fix them, not a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import redis
        from pydantic import ValidationError

        from infra.broker import BrokerUnavailable
        from infra.kafka_admin import KafkaUnavailable

        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort):  # click's exits subclass RuntimeError
            raise
        except (KafkaUnavailable, BrokerUnavailable, DefinitionError, RuntimeError) as error:
            console.print(f"[red]error:[/red] {error}")
            raise typer.Exit(1) from None
        except redis.ConnectionError as error:
            console.print(
                f"[red]error:[/red] Redis unreachable ({error}): start the stack with "
                "`make up` or set LFP_REDIS_URL"
            )
            raise typer.Exit(1) from None
        except ValidationError as error:
            console.print(f"[red]error:[/red] invalid settings: {error}")
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def _setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def _repo(settings: Settings) -> FeatureRepo:
    return FeatureRepo.from_module(settings.feature_repo)


# --- checks -----------------------------------------------------------------------


@app.command()
def doctor() -> None:
    """Check that Java 17, redis-server, the broker binary and the engines are usable."""
    problems: list[str] = []
    java = shutil.which("java")
    if not java:
        problems.append("java not found: install Java 17 (apt-get install openjdk-17-jre-headless)")
    else:
        out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
        if '"17' not in out and '"21' not in out:
            problems.append(
                f"Java 17 needed by Spark 4.1 and Flink 2.0, found: {out.splitlines()[0]}"
            )
    if not shutil.which("redis-server"):
        problems.append("redis-server not found: apt-get install redis-server")
    for module in ("pyspark", "pyflink", "deltalake", "kafka", "redis", "fastapi"):
        try:
            __import__(module)
        except ImportError as error:
            problems.append(f"python module {module} missing ({error}): run make install")
    try:
        from infra.broker import broker_binary

        broker_binary()
    except Exception as error:
        problems.append(str(error))
    for problem in problems:
        console.print(f"[red]✗[/red] {problem}")
    if problems:
        raise typer.Exit(1)
    console.print("[green]✓[/green] Java, redis-server, broker binary and engines are ready")


@app.command()
def config() -> None:
    """Every setting: its environment variable, current value and meaning."""
    from feature_core.settings import ENV_PREFIX

    settings = get_settings()
    table = Table("environment variable", "value", "meaning")
    for name, field in Settings.model_fields.items():
        table.add_row(
            f"{ENV_PREFIX}{name.upper()}", str(getattr(settings, name)), field.description
        )
    console.print(table)


# --- probes -----------------------------------------------------------------------


@probe_app.command("status")
def probe_status(
    path: Path,
    max_age_s: Annotated[float, typer.Option(help="Heartbeat must be newer than this.")] = 15.0,
    require: Annotated[
        list[str] | None, typer.Option(help="key=value the status must hold.")
    ] = None,
) -> None:
    """Exit 0 if a service's status file has a fresh heartbeat (and required values)."""
    from infra.status import status_problem

    required = dict(item.partition("=")[::2] for item in require or [])
    problem = status_problem(path, max_age_s, required)
    if problem:
        console.print(f"unhealthy: {problem}")
        raise typer.Exit(1)
    console.print("healthy")


@probe_app.command("http")
def probe_http(url: str) -> None:
    """Exit 0 if GET url answers 2xx."""
    import httpx

    try:
        httpx.get(url, timeout=3).raise_for_status()
    except httpx.HTTPError as error:
        console.print(f"unhealthy: {error}")
        raise typer.Exit(1) from None
    console.print("healthy")


# --- features ---------------------------------------------------------------------


@features_app.command("validate")
@friendly_errors
def features_validate() -> None:
    """Load and validate the feature repo (LFP_FEATURE_REPO)."""
    settings = get_settings()
    repo = _repo(settings)
    count = sum(len(g.features) for g in repo.groups)
    console.print(
        f"[green]✓[/green] {settings.feature_repo}: {len(repo.groups)} groups, {count} features"
    )


@features_app.command("describe")
@friendly_errors
def features_describe(name: str) -> None:
    """Describe a feature group or feature service by name."""
    repo = _repo(get_settings())
    try:
        group = repo.group(name)
    except KeyError:
        group = None
    if group is not None:
        console.print(f"[bold]{group.name}[/bold] (feature group) {group.description}")
        console.print(f"entity: {group.entity.name} (join key {group.entity.join_key})")
        console.print(f"source: topic {group.source.topic}, table {group.source.table}")
        console.print(f"filter: {group.filter_sql()}")
        console.print(f"tile columns: {', '.join(c.key for c in group.tile_columns)}")
        for f in group.features:
            console.print(
                f"  {f.name}: {f.aggregation.name}({f.column or '*'}) over {f.window.name}"
            )
        return
    try:
        service = repo.service(name)
    except KeyError as error:
        groups = ", ".join(g.name for g in repo.groups)
        raise RuntimeError(f"{error.args[0]}; feature groups: {groups}") from None
    console.print(f"[bold]{service.name}[/bold] (feature service) {service.description}")
    for i, ref in enumerate(service.features):
        default = service.defaults.get(ref)
        suffix = f" (default {default!r})" if default is not None else ""
        console.print(f"  {i:2d}. {ref}{suffix}")


@features_app.command("list")
@friendly_errors
def features_list() -> None:
    """List every feature with its group, aggregation and window."""
    table = Table("group", "entity", "feature", "aggregation", "column", "window", "hop")
    for group in _repo(get_settings()).groups:
        for f in group.features:
            table.add_row(
                group.name,
                group.entity.join_key,
                f.name,
                f.aggregation.name,
                f.column or "*",
                f.window.name,
                f"{f.window.hop_ms // 60000}m",
            )
    console.print(table)


# --- kafka ------------------------------------------------------------------------


@topics_app.command("create")
@friendly_errors
def topics_create() -> None:
    """Create the events and dead-letter topics if missing."""
    from infra.kafka_admin import ensure_topics

    settings = get_settings()
    ensure_topics(settings)
    console.print(f"topics ready: {settings.events_topic}, {settings.dlq_topic}")


@app.command()
@friendly_errors
def generate(
    events: Annotated[int, typer.Option(help="How many events.")] = 2000,
    users: Annotated[int, typer.Option(help="Distinct users.")] = 50,
    minutes: Annotated[int, typer.Option(help="Spread event times over the last N minutes.")] = 120,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same events).")] = 7,
) -> None:
    """Produce synthetic e-commerce events to the events topic."""
    from demo.generator import GeneratorConfig, encode
    from demo.generator import generate as make_events
    from infra.kafka_admin import producer

    settings = get_settings()
    now = int(time.time() * 1000)
    config = GeneratorConfig(
        users=users, events=events, start_ms=now - minutes * 60_000, end_ms=now, seed=seed
    )
    out = producer(settings)
    sent = 0
    for event in make_events(config):
        out.send(settings.events_topic, key=event["user_id"].encode(), value=encode(event))
        sent += 1
    out.flush()
    out.close()
    console.print(f"produced {sent} events to {settings.events_topic}")


# --- layers -----------------------------------------------------------------------


@ingest_app.command("run")
@friendly_errors
def ingest_run(status_file: StatusFile = None) -> None:
    """Consume events into the Delta raw events table until stopped."""
    from batch_layer.ingest import run_forever

    _setup_logging()
    run_forever(get_settings(), status_file)


@speed_app.command("run")
@friendly_errors
def speed_run(status_file: StatusFile = None) -> None:
    """Run the PyFlink speed job until stopped."""
    from speed_layer.job import run

    _setup_logging()
    settings = get_settings()
    run(settings, _repo(settings), status_file)


@batch_app.command("run")
@friendly_errors
def batch_run(
    cutoff_ms: Annotated[int | None, typer.Option(help="Cutoff B (epoch ms); default now.")] = None,
    delta_version: Annotated[int | None, typer.Option(help="Pin this Delta version.")] = None,
) -> None:
    """Recompute all batch views once and switch serving to them."""
    from batch_layer.job import run_batch
    from batch_layer.spark import spark_session

    _setup_logging()
    settings = get_settings()
    repo = _repo(settings)
    spark = spark_session(settings)
    try:
        result = run_batch(spark, settings, repo, cutoff_ms, delta_version)
    finally:
        spark.stop()
    console.print_json(data=result.to_json())


@batch_app.command("schedule")
@friendly_errors
def batch_schedule(status_file: StatusFile = None) -> None:
    """Run the batch job on LFP_BATCH_SCHEDULE until stopped."""
    from batch_layer.scheduler import run_scheduler

    _setup_logging()
    settings = get_settings()
    run_scheduler(settings, _repo(settings), status_file)


@app.command()
@friendly_errors
def serve() -> None:
    """Serve features over HTTP (LFP_API_HOST:LFP_API_PORT)."""
    import uvicorn

    from serving_layer.app import create_app

    settings = get_settings()
    uvicorn.run(
        create_app(settings), host=settings.api_host, port=settings.api_port, log_level="info"
    )


@training_app.command("build")
@friendly_errors
def training_set_build(
    service: Annotated[str, typer.Option(help="Feature service (the model input vector).")],
    spine: Annotated[Path, typer.Option(help="Parquet or CSV: entity key, timestamp, labels.")],
    output: Annotated[Path, typer.Option(help="Where to write the training set.")],
    output_format: Annotated[str, typer.Option("--format", help="parquet or delta.")] = "parquet",
    entity_column: Annotated[
        str | None, typer.Option(help="Default: the entity's join key.")
    ] = None,
    timestamp_column: Annotated[str, typer.Option(help="Epoch-ms column.")] = "timestamp",
    delta_version: Annotated[int | None, typer.Option(help="Pin this lake version.")] = None,
) -> None:
    """Each spine row + the features the API would have served at its timestamp."""
    from batch_layer.spark import spark_session
    from batch_layer.training import build_training_set, write_training_set

    _setup_logging()
    settings = get_settings()
    repo = _repo(settings)
    try:
        feature_service = repo.service(service)
    except KeyError as error:
        raise RuntimeError(str(error.args[0])) from None
    if not spine.exists():
        raise RuntimeError(f"spine file {spine} not found")
    spark = spark_session(settings, "lfp-training-set")
    try:
        reader = spark.read.option("header", True).option("inferSchema", True)
        frame = reader.csv(str(spine)) if spine.suffix == ".csv" else reader.parquet(str(spine))
        result = build_training_set(
            spark,
            settings,
            repo,
            feature_service,
            frame,
            entity_column,
            timestamp_column,
            delta_version,
        )
        write_training_set(result, str(output), output_format)
        rows = result.count()
    except ValueError as error:
        raise RuntimeError(str(error)) from None
    finally:
        spark.stop()
    console.print(f"wrote {rows} rows x {len(feature_service.features)} features to {output}")


# --- the embedded stack -------------------------------------------------------------


def _status_table(state: dict) -> Table:
    table = Table("service", "state", "pid", "port", "restarts")
    for name, info in state["services"].items():
        color = {"healthy": "green", "done": "green", "failed": "red"}.get(info["state"], "yellow")
        table.add_row(
            name,
            f"[{color}]{info['state']}[/{color}]",
            str(info.get("pid") or "-"),
            str(info.get("port") or "-"),
            str(info.get("restarts", 0)),
        )
    return table


@stack_app.command("up")
@friendly_errors
def stack_up() -> None:
    """Start broker, Redis, lake ingest, speed job, batch scheduler and API."""
    from infra import stack

    settings = get_settings()
    with console.status("starting the stack (the speed job takes a minute)..."):
        state = stack.up(settings)
    console.print(_status_table(state))
    console.print(f"API: {settings.api_url}/docs   logs: {settings.data_dir.resolve() / 'logs'}")


@stack_app.command("down")
@friendly_errors
def stack_down() -> None:
    """Stop everything `stack up` started."""
    from infra import stack

    settings = get_settings()
    console.print("stack stopped" if stack.down(settings) else "no stack was running")


@stack_app.command("status")
@friendly_errors
def stack_status() -> None:
    """Each service's state, pid and port."""
    from infra import stack

    settings = get_settings()
    state = stack.read_state(settings)
    if not state or stack.supervisor_pid(settings) is None:
        console.print("no stack running (start it with `make up`)")
        raise typer.Exit(1)
    console.print(_status_table(state))


@stack_app.command("supervise", hidden=True)
def stack_supervise() -> None:
    """(internal) The supervisor process `stack up` spawns."""
    from infra.stack import Supervisor

    _setup_logging()
    raise typer.Exit(Supervisor(get_settings()).run())


@demo_app.command("run")
@friendly_errors
def demo_run(
    events: Annotated[int, typer.Option(help="Events to produce.")] = 5000,
    users: Annotated[int, typer.Option(help="Distinct users.")] = 50,
) -> None:
    """Produce events, run a batch, wait for the speed layer, print some users' features."""
    from demo.run import run_demo

    run_demo(get_settings(), events=events, users=users, console=console)
