"""The ``lfp`` command line: one entry point for every operation of the platform.

Configuration comes from ``LFP_*`` environment variables (see ``feature_core.settings``).
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.text import Text

from feature_core.settings import Settings, get_settings
from infra.cli import (
    batch,
    cluster,
    dead_letters,
    demo,
    feast,
    features,
    ingest,
    lake,
    probe,
    speed,
    stack,
    topics,
    training,
)
from infra.cli.common import SourceOption, console, friendly_errors, load_repo, pick_source
from infra.cli.tables import Column, count, print_table
from runtime.progress import advancer, progress_bars

if TYPE_CHECKING:
    from batch_layer.verify import ConsistencyReport

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
for group, name in (
    (lake.app, "lake"),
    (training.app, "training-set"),
    (probe.app, "probe"),
    (stack.app, "stack"),
    (cluster.app, "cluster"),
    (batch.app, "batch"),
    (ingest.app, "ingest"),
    (speed.app, "speed"),
    (topics.app, "topics"),
    (features.app, "features"),
    (demo.app, "demo"),
    (feast.app, "feast"),
    (dead_letters.app, "dead-letters"),
):
    app.add_typer(group, name=name)


@app.command()
def doctor() -> None:
    """Check that Java 17 (with javac), redis-server, the broker binary and the engines are
    usable."""
    checks: list[tuple[str, str | None, str]] = []  # (what, problem or None, what was found)
    java = shutil.which("java")
    if not java:
        problem = "java not found: install Java 17 (apt-get install openjdk-17-jdk-headless)"
        checks.append(("java", problem, ""))
    else:
        out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
        found = (out.splitlines() or [""])[0]
        wrong = '"17' not in out and '"21' not in out
        problem = f"Java 17 needed by Spark 4.1 and Flink 2.0, found: {found}" if wrong else None
        checks.append(("java", problem, found))
    javac = shutil.which("javac")
    problem = (
        "javac not found: the speed job compiles its aggregate functions with the JDK "
        "(apt-get install openjdk-17-jdk-headless)"
    )
    checks.append(("javac", None if javac else problem, javac or ""))
    redis_server = shutil.which("redis-server")
    problem = "redis-server not found: apt-get install redis-server"
    checks.append(("redis-server", None if redis_server else problem, redis_server or ""))
    for module in ("pyspark", "pyflink", "deltalake", "kafka", "redis", "fastapi"):
        try:
            imported = __import__(module)
        except ImportError as error:
            problem = f"python module {module} missing ({error}): run make install"
            checks.append((module, problem, ""))
        else:
            checks.append((module, None, getattr(imported, "__version__", "importable")))
    try:
        from infra.broker import broker_binary

        checks.append(("broker binary", None, broker_binary()))
    except Exception as error:
        checks.append(("broker binary", str(error), ""))
    rows = [
        [what, Text("✗", style="red") if problem else Text("✓", style="green"), problem or found]
        for what, problem, found in checks
    ]
    columns = [Column("check"), Column("ok"), Column("found, or how to fix it", wrap=True)]
    print_table(console, columns, rows)
    if any(problem for _, problem, _ in checks):
        raise typer.Exit(1)
    console.print("[green]✓[/green] Java, redis-server, broker binary and engines are ready")


@app.command()
@friendly_errors
def config() -> None:
    """Every setting: its environment variable, current value and meaning."""
    from feature_core.settings import ENV_PREFIX

    settings = get_settings()
    columns = [
        Column("environment variable"),
        Column("value", wrap=True, min_width=20),
        Column("meaning", wrap=True, min_width=20),
    ]
    rows = [
        [f"{ENV_PREFIX}{name.upper()}", shown_setting(settings, name), field.description or ""]
        for name, field in Settings.model_fields.items()
    ]
    print_table(console, columns, rows)


def shown_setting(settings: Settings, name: str) -> str:
    """A setting's value as `lfp config` prints it: secrets masked (SecretStr prints
    stars; a URL's password, even one read from the password file, becomes ***)."""
    from feature_core.credentials import redact_url

    return redact_url(str(getattr(settings, name)))


@app.command()
@friendly_errors
def generate(
    source: Annotated[
        str | None,
        typer.Option(
            "--source",
            help="Random valid events for this source, from its schema. Default: the repo's "
            "own live generator (the demo's shop sessions), or every source from its schema.",
        ),
    ] = None,
    rate: Annotated[float, typer.Option(help="Events per second.")] = 50.0,
    duration: Annotated[float, typer.Option(help="Seconds to keep producing.")] = 60.0,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
) -> None:
    """Produce live events to the sources' topics, at a rate, for a while."""
    from runtime.produce import live_events, produce_records

    settings = get_settings()
    repo = load_repo(settings)
    sources = [pick_source(settings, source)] if source else list(repo.sources)
    module = importlib.import_module(settings.feature_repo)
    own = getattr(module, "live_events", None) if source is None else None
    events = (
        own(rate, duration, seed) if own is not None else live_events(sources, rate, duration, seed)
    )
    total = int(rate * duration)
    with progress_bars(console) as progress:
        sent = produce_records(settings, events, advancer(progress, "events -> Kafka", total))
    topics = ", ".join(sorted({s.topic_name for s in sources}))
    console.print(f"produced {sent} events to {topics}")


@app.command()
@friendly_errors
def send(
    file: Annotated[str, typer.Argument(help="A JSON Lines file, or - for standard input.")],
    source: SourceOption = None,
) -> None:
    """Produce JSON Lines, as they are, to a source's topic (invalid lines end up in its
    dead-letter topic with the reason, as any producer's would)."""
    import sys

    from runtime.produce import send_lines

    settings = get_settings()
    chosen = pick_source(settings, source)
    if file == "-":
        sent = send_lines(settings, chosen, sys.stdin.buffer)
    else:
        path = Path(file)
        if not path.exists():
            raise RuntimeError(f"{path} not found")
        with path.open("rb") as lines:
            sent = send_lines(settings, chosen, lines)
    console.print(f"sent {sent} records to {chosen.topic_name}")


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


@app.command()
@friendly_errors
def verify(
    sample: Annotated[int, typer.Option(help="Random entities per entity type.")] = 50,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    tolerance: Annotated[float, typer.Option(help="Relative tolerance of float values.")] = 1e-9,
    entity: Annotated[
        list[str] | None,
        typer.Option(help="key=value[,key=value] of an entity to check (repeatable) instead."),
    ] = None,
    settle: Annotated[float, typer.Option(help="Seconds before re-checking a mismatch.")] = 5.0,
) -> None:
    """Compare what the API serves now with Spark's recompute from the lake, per feature."""
    from batch_layer.spark import spark_session
    from batch_layer.verify import publish
    from batch_layer.verify import verify as run_verify

    settings = get_settings()
    repo = load_repo(settings)
    chosen: dict[str, list[tuple[str, ...]]] | None = None
    if entity:
        chosen = {}
        entities = {g.entity.join_keys: g.entity for g in repo.groups}
        for spec in entity:
            pairs = dict(part.partition("=")[::2] for part in spec.split(","))
            match = next((e for keys, e in entities.items() if set(keys) == set(pairs)), None)
            if match is None or not all(pairs.values()):
                known = "; ".join(",".join(f"{k}=..." for k in keys) for keys in entities)
                raise RuntimeError(f"--entity {spec!r}: name every join key of an entity: {known}")
            chosen.setdefault(match.name, []).append(tuple(pairs[k] for k in match.join_keys))
    spark = spark_session(settings, "lfp-verify")
    try:
        with console.status("reading the API and recomputing from the lake..."):
            report = run_verify(spark, settings, repo, sample, seed, tolerance, chosen, settle)
    finally:
        spark.stop()
    publish(settings, report)
    print_report(console, report)
    if not report.passed:
        raise typer.Exit(1)


def print_report(out: Console, report: ConsistencyReport) -> None:
    """A verification's mismatches per feature, the examples, the verdict."""
    read = ", ".join(f"{table} v{v}" for table, v in sorted(report.delta_versions.items()))
    out.print(f"consistency: lake ({read or 'no table'}) vs API", soft_wrap=False)
    rows = [
        [feature, Text(count(n), style="red") if n else "0"]
        for feature, n in report.by_feature.items()
    ]
    print_table(out, [Column("feature"), Column("mismatches", justify="right")], rows)
    for e in report.examples:  # a sentence each, wrapped at the width between words
        out.print(
            Text(
                f"  {e.feature} {e.entity_id}: served {e.served!r} ({e.status}), "
                f"lake says {e.expected!r}"
            ),
            soft_wrap=False,
        )
    verdict = "[green]consistent[/green]" if report.passed else "[red]INCONSISTENT[/red]"
    out.print(
        f"{verdict}: {count(report.mismatches)} of {count(report.values)} values differ "
        f"({count(report.entities)} entities, tolerance {report.tolerance:g})",
        soft_wrap=False,
    )
