"""The ``lfp`` command line: one entry point for every operation of the platform.

Configuration comes from ``LFP_*`` environment variables (see ``feature_core.settings``).
"""

from __future__ import annotations

import functools
import importlib
import logging
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from feature_core.definitions import DefinitionError, FeatureRepo
from feature_core.settings import Settings, get_settings
from feature_core.sources import EventSource
from runtime.progress import advancer, progress_bars

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
lake_app = typer.Typer(no_args_is_help=True, help="The lake: each source's Delta table.")
feast_app = typer.Typer(no_args_is_help=True, help="Feast interop: a Feast repo for the API.")
dead_letters_app = typer.Typer(
    no_args_is_help=True, help="Dead letters the dead-letter topics did not take (spilled)."
)
cluster_app = typer.Typer(
    no_args_is_help=True,
    help="A local Spark standalone cluster, Flink session cluster and Redis Cluster.",
)
for sub, name in (
    (lake_app, "lake"),
    (training_app, "training-set"),
    (probe_app, "probe"),
    (stack_app, "stack"),
    (cluster_app, "cluster"),
    (batch_app, "batch"),
    (ingest_app, "ingest"),
    (speed_app, "speed"),
    (topics_app, "topics"),
    (features_app, "features"),
    (demo_app, "demo"),
    (feast_app, "feast"),
    (dead_letters_app, "dead-letters"),
):
    app.add_typer(sub, name=name)

# soft_wrap: a message is one line the terminal wraps, so paths and commands in it stay
# whole when copied or grepped (rich would otherwise break them at 80 columns in pipes).
# No emoji codes: a reference such as `risk:x:` would print as `risk❌`.
console = Console(soft_wrap=True, emoji=False)
FEAST_TESTED = "0.67.0"  # the Feast release tests/serving_layer/test_feast_sdk.py drives
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
        from runtime.kafka import KafkaUnavailable

        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort):  # click's exits subclass RuntimeError
            raise
        except DefinitionError as error:  # one problem a line (derived features: several)
            for line in str(error).splitlines() or [""]:
                console.print(f"[red]error:[/red] {escape(line)}", highlight=False)
            raise typer.Exit(1) from None
        except (KafkaUnavailable, BrokerUnavailable, RuntimeError) as error:
            console.print(f"[red]error:[/red] {error}")
            raise typer.Exit(1) from None
        except redis.AuthenticationError as error:  # before ConnectionError: a subclass
            console.print(
                f"[red]error:[/red] Redis refused the password ({error}): it comes from "
                "LFP_REDIS_URL, else LFP_REDIS_PASSWORD_FILE (default "
                "<data_dir>/secrets/redis-password, the embedded Redis's); use the server's"
            )
            raise typer.Exit(1) from None
        except (redis.ConnectionError, redis.exceptions.RedisClusterException) as error:
            console.print(
                f"[red]error:[/red] Redis unreachable ({error}): start the stack with "
                "`make up` (or the cluster with `lfp cluster up`) or set LFP_REDIS_URL"
            )
            raise typer.Exit(1) from None
        except redis.TimeoutError as error:  # StoreTimeoutError's line names the setting
            from online_store.timeouts import StoreTimeoutError

            why = error if isinstance(error, StoreTimeoutError) else f"Redis timed out ({error})"
            console.print(f"[red]error:[/red] {why}", highlight=False)
            raise typer.Exit(1) from None
        except ValidationError as error:
            console.print(f"[red]error:[/red] invalid settings: {error}")
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def _setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per REST call otherwise


def _repo(settings: Settings) -> FeatureRepo:
    from feature_core.derived import ExpressionError

    try:
        return FeatureRepo.from_module(settings.feature_repo)
    except (ExpressionError, KeyError) as error:
        # An expression the repo module could not even build (``if`` on an expression, a
        # derived view's unknown feature): one line naming where, not a traceback.
        where = _declared_at(error)
        if where is None:
            raise
        message = error.args[0] if error.args else repr(error)
        raise DefinitionError(f"{where}: {message}") from None


def _declared_at(error: BaseException) -> str | None:
    """``file:line`` of the declaration that raised ``error`` from feature_core.derived,
    or ``None`` when it did not come from there (a bug of the module itself)."""
    import traceback

    import feature_core.derived

    frames = traceback.extract_tb(error.__traceback__)
    if not frames or frames[-1].filename != feature_core.derived.__file__:
        return None
    core = str(Path(feature_core.derived.__file__).parent)
    user = [f for f in frames if not f.filename.startswith(core)]
    if not user:
        return None
    return f"{user[-1].filename}:{user[-1].lineno}"


# --- checks -----------------------------------------------------------------------


@app.command()
def doctor() -> None:
    """Check that Java 17 (with javac), redis-server, the broker binary and the engines are
    usable."""
    problems: list[str] = []
    java = shutil.which("java")
    if not java:
        problems.append("java not found: install Java 17 (apt-get install openjdk-17-jdk-headless)")
    else:
        out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
        if '"17' not in out and '"21' not in out:
            problems.append(
                f"Java 17 needed by Spark 4.1 and Flink 2.0, found: {out.splitlines()[0]}"
            )
    if not shutil.which("javac"):
        problems.append(
            "javac not found: the speed job compiles its aggregate functions with the JDK "
            "(apt-get install openjdk-17-jdk-headless)"
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
@friendly_errors
def config() -> None:
    """Every setting: its environment variable, current value and meaning."""
    from feature_core.settings import ENV_PREFIX

    settings = get_settings()
    table = Table("environment variable", "value", "meaning")
    for name, field in Settings.model_fields.items():
        table.add_row(
            f"{ENV_PREFIX}{name.upper()}", shown_setting(settings, name), field.description
        )
    console.print(table)


def shown_setting(settings: Settings, name: str) -> str:
    """A setting's value as `lfp config` prints it: secrets masked (SecretStr prints
    stars; a URL's password, even one read from the password file, becomes ***)."""
    from feature_core.credentials import redact_url

    return redact_url(str(getattr(settings, name)))


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
    from runtime.status import status_problem

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
    """Load and validate the feature repo (LFP_FEATURE_REPO), and check each source's
    fields against its lake table: a field removed or retyped would break history."""
    from batch_layer.lake import schema_problems

    settings = get_settings()
    repo = _repo(settings)
    problems = [
        problem
        for source in repo.sources
        for problem in schema_problems(settings.table_uri(source.table_name), source)
    ]
    if problems:
        for problem in problems:
            console.print(f"[red]error:[/red] {problem}")
        raise typer.Exit(1)
    count = sum(len(g.features) for g in repo.groups)
    derived = (
        f", {len(repo.derived)} derived features, {len(repo.request_fields)} request fields"
        if repo.derived or repo.request_fields
        else ""
    )
    console.print(
        f"[green]✓[/green] {settings.feature_repo}: {len(repo.sources)} sources, "
        f"{len(repo.groups)} groups, {count} features{derived}; lake tables compatible"
    )


@features_app.command("describe")
@friendly_errors
def features_describe(name: str) -> None:
    """Describe a feature group, derived feature view or feature service by name."""
    repo = _repo(get_settings())
    try:
        group = repo.group(name)
    except KeyError:
        group = None
    if group is not None:
        console.print(f"[bold]{group.name}[/bold] (feature group) {group.description}")
        console.print(f"entity: {group.entity.name} (join keys {group.entity.key_label})")
        source = group.source
        console.print(
            f"source: {source.name} (topic {source.topic_name}, table {source.table_name}, "
            f"event time {source.event_time})"
        )
        console.print(f"filter: {group.filter_sql()}")
        console.print(f"tile columns: {', '.join(c.key for c in group.tile_columns)}")
        for f in group.features:
            console.print(
                f"  {f.name}: {f.aggregation.name}({f.column or '*'}) over {f.window.name}"
            )
        return
    view = next((v for v in repo.derived_views if v.name == name), None)
    if view is not None:
        _describe_derived(repo, view.name, view.description)
        return
    try:
        service = repo.service(name)
    except KeyError as error:
        groups = ", ".join(g.name for g in repo.groups)
        views = ", ".join(v.name for v in repo.derived_views)
        known = f"; feature groups: {groups}" + (f"; derived features: {views}" if views else "")
        raise RuntimeError(f"{error.args[0]}{known}") from None
    console.print(f"[bold]{service.name}[/bold] (feature service) {service.description}")
    console.print(f"join keys: {', '.join(repo.join_keys_of(service.features)) or 'none'}")
    fields = {
        f.name: f
        for ref in service.features
        if ref in repo.derived
        for f in repo.derived[ref].request_fields
    }
    if fields:
        console.print(f"request fields: {_fields_text(fields.values())}", highlight=False)
    for i, ref in enumerate(service.features):
        default = service.defaults.get(ref)
        suffix = f" (default {default!r})" if default is not None else ""
        console.print(f"  {i:2d}. {ref}{suffix}")


def _fields_text(fields: Iterable[Any]) -> str:
    return ", ".join(f"{f.name} ({f.type})" for f in fields)


def _describe_derived(repo: FeatureRepo, view: str, description: str) -> None:
    """A derived feature view: each feature's expression, type, inputs and request fields."""
    features = [d for d in repo.derived.values() if d.view == view]
    console.print(f"[bold]{view}[/bold] (derived features) {escape(description)}")
    keys = repo.join_keys_of(d.qualified_name for d in features)
    console.print(f"join keys: {', '.join(keys) or 'none (request fields only)'}")
    fields = {f.name: f for d in features for f in d.request_fields}
    for field_ in fields.values():
        about = f": {field_.description}" if field_.description else ""
        console.print(
            f"request field {field_.name} ({field_.type}){escape(about)}", highlight=False
        )
    for one in features:
        console.print(f"  [bold]{one.name}[/bold] ({one.value_type})")
        console.print(f"    = {escape(repr(one.expression))}", highlight=False)
        console.print(f"    inputs: {', '.join(one.inputs) or '-'}", highlight=False)
        if one.request_fields:
            console.print(
                f"    request fields: {_fields_text(one.request_fields)}", highlight=False
            )


@features_app.command("list")
@friendly_errors
def features_list() -> None:
    """List every feature with its group, aggregation and window."""
    table = Table("group", "entity", "feature", "aggregation", "column", "window", "hop")
    for group in _repo(get_settings()).groups:
        for f in group.features:
            table.add_row(
                group.name,
                group.entity.key_label,
                f.name,
                f.aggregation.name,
                f.column or "*",
                f.window.name,
                f"{f.window.hop_ms // 60000}m",
            )
    console.print(table)


# --- kafka ------------------------------------------------------------------------


@features_app.command("sources")
@friendly_errors
def features_sources() -> None:
    """List every declared source with its topic, lake table and fields."""
    for source in _repo(get_settings()).sources:
        console.print(
            f"[bold]{source.name}[/bold]: topic {source.topic_name}, dead letters "
            f"{source.dlq_topic}, lake table {source.table_name}, event time {source.event_time}"
        )
        table = Table("field", "type", "required", "constraints", box=box.SIMPLE)
        for f in source.fields:
            constraints = [
                text
                for text, present in (
                    (f"one of {list(f.values or ())}", f.values is not None),
                    (f">= {f.min}", f.min is not None),
                    (f"<= {f.max}", f.max is not None),
                    (f"length >= {f.min_length}", f.min_length is not None),
                    (f"length <= {f.max_length}", f.max_length is not None),
                )
                if present
            ]
            table.add_row(f.name, f.type, "yes" if f.required else "", ", ".join(constraints))
        console.print(table)


def _source(settings: Settings, name: str | None) -> EventSource:
    repo = _repo(settings)
    if name is None:
        if len(repo.sources) != 1:
            known = ", ".join(s.name for s in repo.sources)
            raise RuntimeError(
                f"the repo declares several sources ({known}): pick one with --source"
            )
        return repo.sources[0]
    try:
        return repo.source(name)
    except KeyError as error:
        raise RuntimeError(str(error.args[0])) from None


SourceOption = Annotated[
    str | None, typer.Option("--source", help="A declared source (default: the only one).")
]


@topics_app.command("create")
@friendly_errors
def topics_create() -> None:
    """Create every source's topic and dead-letter topic if missing."""
    from runtime.kafka import ensure_topics

    settings = get_settings()
    names = ensure_topics(settings, _repo(settings).sources)
    console.print(f"topics ready: {', '.join(names)}")


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
    repo = _repo(settings)
    sources = [_source(settings, source)] if source else list(repo.sources)
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
    chosen = _source(settings, source)
    if file == "-":
        sent = send_lines(settings, chosen, sys.stdin.buffer)
    else:
        path = Path(file)
        if not path.exists():
            raise RuntimeError(f"{path} not found")
        with path.open("rb") as lines:
            sent = send_lines(settings, chosen, lines)
    console.print(f"sent {sent} records to {chosen.topic_name}")


@lake_app.command("load")
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
    chosen = _source(settings, source)
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


@lake_app.command("optimize")
@friendly_errors
def lake_optimize(
    table: Annotated[
        list[str] | None, typer.Option(help="Lake table to optimize (repeat); default: all.")
    ] = None,
) -> None:
    """Cluster each lake table by its entities' join keys (Z-order, per date partition
    with more than one file and new files since the last run) and delete files
    unreferenced for LFP_LAKE_RETENTION_HOURS. The scheduler runs this on
    LFP_LAKE_OPTIMIZE_SCHEDULE."""
    from batch_layer.lake import optimize_lake

    settings = get_settings()
    with console.status("optimizing the lake"):
        done = optimize_lake(settings, _repo(settings), table)
    if not done:
        console.print("no lake table yet: nothing to optimize")
    for result in done:
        console.print(
            f"{result.table}: by {', '.join(result.columns)}; {result.partitions} partitions "
            f"rewritten, {result.files_before} -> {result.files_after} files, "
            f"{result.vacuumed} old files deleted, {result.seconds:.1f} s"
        )


# --- layers -----------------------------------------------------------------------


@ingest_app.command("run")
@friendly_errors
def ingest_run(status_file: StatusFile = None) -> None:
    """Consume events into the Delta raw events table until stopped."""
    from batch_layer.ingest import run_forever

    _setup_logging()
    settings = get_settings()
    repo = _repo(settings)
    run_forever(settings, repo.sources, status_file, repo.groups)


@dead_letters_app.command("spilled")
@friendly_errors
def dead_letters_spilled(
    as_json: Annotated[
        bool, typer.Option("--json", help="Every envelope in full, as JSON lines.")
    ] = False,
) -> None:
    """Rejected records whose dead letter the broker refused or did not acknowledge in
    time: lake ingest spilled them to <data_dir>/dead-letters/ instead (oldest first)."""
    import sys

    import orjson
    from rich.text import Text

    from runtime.dead_letters import read_spilled, spill_dir

    settings = get_settings()
    letters = list(read_spilled(settings.data_dir))
    if as_json:
        for letter in letters:
            sys.stdout.write(orjson.dumps(letter).decode() + "\n")
        return
    if not letters:
        console.print(f"no spilled dead letters in {spill_dir(settings.data_dir)}")
        return
    table = Table(
        caption="times in UTC; --json: every field",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column("spilled", no_wrap=True)
    table.add_column("record", overflow="fold", min_width=12)
    table.add_column("bytes", justify="right", no_wrap=True)
    table.add_column("reason", overflow="fold", min_width=12)
    table.add_column("send error", overflow="fold", min_width=10)
    for letter in letters:
        size = "-" if letter.get("size") is None else f"{letter['size']:,}"
        table.add_row(  # Text: a record's reason is data, never rich markup
            _iso(letter.get("spilled_at"), "%m-%d %H:%M:%S"),
            Text(f"{letter.get('topic')}:{letter.get('partition')}@{letter.get('offset')}"),
            size + (" cut" if letter.get("truncated") else ""),
            Text(str(letter.get("reason", ""))[:120]),
            Text(str(letter.get("send_error", ""))[:80]),
        )
    console.print(table, highlight=False)
    console.print(f"{len(letters)} spilled, in {spill_dir(settings.data_dir)}", highlight=False)


@speed_app.command("run")
@friendly_errors
def speed_run(
    status_file: StatusFile = None,
    target: Annotated[
        str | None,
        typer.Option(
            help="local (a mini-cluster in this process) or remote (the Flink session "
            "cluster at LFP_SPEED_FLINK_ADDRESS); default LFP_SPEED_TARGET."
        ),
    ] = None,
) -> None:
    """Run the PyFlink speed job until stopped."""
    from speed_layer.job import run

    _setup_logging()
    settings = get_settings()
    if target is not None:
        if target not in ("local", "remote"):
            raise RuntimeError(f"--target must be local or remote, not {target!r}")
        settings = settings.model_copy(update={"speed_target": target})
    run(settings, _repo(settings), status_file)


def _iso(ms: int | None, layout: str = "%Y-%m-%d %H:%M:%SZ") -> str:
    from datetime import UTC, datetime

    return "-" if ms is None else datetime.fromtimestamp(ms / 1000, UTC).strftime(layout)


def _versions(record: Any) -> str:
    """The lake tables a run read, each with its Delta version (``table:vN``)."""
    versions = record.delta_versions or {}
    if not versions:
        return _or_dash(record.delta_version)
    return " ".join(f"{t}:v{_or_dash(v)}" for t, v in sorted(versions.items()))


def _or_dash(value: int | None) -> str:
    return "-" if value is None else str(value)


def _run_summary(record: Any) -> Table:
    table = Table("run", "value", title=f"batch run {record.run_id}", show_header=False)
    color = "green" if record.status == "succeeded" else "red"
    rows = {
        "status": f"[{color}]{record.status}[/{color}]",
        "trigger": record.trigger,
        "cutoff": f"{record.cutoff} ({_iso(record.cutoff)})",
        "lake versions read": _versions(record),
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


@batch_app.command("run")
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
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from batch_layer.scheduler import BatchScheduler
    from batch_layer.spark import spark_session

    settings = get_settings()
    repo = _repo(settings)
    spark = spark_session(settings)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    try:
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task("Spark tasks", total=None)

            def show(record: Any, snapshot: Any) -> None:
                progress.update(
                    task,
                    total=max(snapshot.tasks, 1),
                    completed=snapshot.tasks_done,
                    description=f"stages {snapshot.stages_done}/{snapshot.stages}, tasks",
                )

            record = BatchScheduler(spark, settings, repo, show).run_once("manual", cutoff_ms)
    finally:
        spark.stop()
    assert record is not None  # a fresh scheduler holds no lock
    if as_json:
        console.print_json(record.model_dump_json())
    else:
        console.print(_run_summary(record))
    if record.status != "succeeded":
        raise typer.Exit(1)


@batch_app.command("history")
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
            _iso(int(run.started_at * 1000), "%m-%d %H:%M"),
            f"{run.duration_s:.0f} s" if run.duration_s is not None else "-",
            _iso(run.cutoff, "%m-%d %H:%M"),
            _versions(run),
            _or_dash(run.rows_read),
            _or_dash(run.entities_written),
            f"v{run.view_version}" if run.view_version else "-",
            *([(run.error or "")[:200]] if errors else []),
        )
    console.print(table)


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


@feast_app.command("export")
@friendly_errors
def feast_export(
    out: Annotated[Path, typer.Option(help="Directory to write the Feast repo into.")],
    project: Annotated[str, typer.Option(help="The Feast project name.")] = "lfp",
    api_url: Annotated[
        str | None, typer.Option(help="The platform API the SDK reads; default LFP_API_URL.")
    ] = None,
) -> None:
    """Write a Feast repo (feature_store.yaml with `online_store: remote` pointed at the
    API, entities, feature views with dtypes, feature services) mirroring the feature
    repo, for `feast apply` and Feast's SDK."""
    from serving_layer.feast_repo import export

    settings = get_settings()
    online_store = {"type": "remote", "path": api_url or settings.api_url}
    written = export(_repo(settings), settings.feature_repo, out, project, online_store)
    for path in written:
        console.print(f"wrote {path}")
    console.print(f"next: cd {out} && feast apply   (Feast {FEAST_TESTED} is the tested release)")


@training_app.command("build")
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

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from batch_layer.progress import SparkProgress
    from batch_layer.spark import spark_session
    from batch_layer.training import (
        build_training_set,
        lake_versions,
        output_conflict,
        read_spine,
        write_training_set,
    )

    _setup_logging()
    settings = get_settings()
    repo = _repo(settings)
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
    versions = lake_versions(settings, repo, feature_service, _pins(delta_version))
    started = time.monotonic()
    spark = spark_session(settings, "lfp-training-set")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    try:
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task("Spark tasks", total=None)

            def show(snapshot: Any) -> None:
                progress.update(
                    task,
                    total=max(snapshot.tasks, 1),
                    completed=snapshot.tasks_done,
                    description=f"stages {snapshot.stages_done}/{snapshot.stages}, tasks",
                )

            with SparkProgress(spark, f"training-{uuid.uuid4().hex[:8]}", show):
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
                rows = write_training_set(result, str(output), output_format)
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


# --- the embedded stack -------------------------------------------------------------


def _status_table(
    state: dict,
    lags: dict[str, dict[str, int]] | None = None,
    problems: dict[str, str] | None = None,
) -> Table:
    """The services; ``lags``: records behind per topic, by service (the table shows their
    sum, :func:`_lag_lines` each topic's); ``problems``: why a consumer is not consuming
    (its state is marked, red, with "!")."""
    table = Table("service", "state", "pid", "port", "restarts", "records behind")
    for name, info in state["services"].items():
        color = {"healthy": "green", "done": "green", "failed": "red"}.get(info["state"], "yellow")
        mark = ""
        if name in (problems or {}):
            color, mark = "red", " !"
        behind = (lags or {}).get(name)
        table.add_row(
            name,
            f"[{color}]{info['state']}{mark}[/{color}]",
            str(info.get("pid") or "-"),
            str(info.get("port") or "-"),
            str(info.get("restarts", 0)),
            str(sum(behind.values())) if behind else "",
        )
    return table


def _lag_lines(lags: dict[str, dict[str, int]]) -> list[str]:
    """Each consumer's records behind per topic, one line each (under the table: topic
    names are too long for a cell at 80 columns)."""
    return [
        f"{name} behind: " + ", ".join(f"{topic} {n}" for topic, n in sorted(behind.items()))
        for name, behind in lags.items()
        if behind
    ]


def _service_lags(settings: Settings, services: Iterable[str]) -> dict[str, dict[str, int]]:
    """The lag each service last wrote in its status file (lake ingest, speed job)."""
    import json

    from infra.stack import Paths

    found = {}
    for name in services:
        try:
            status = json.loads(Paths(settings.data_dir).status_file(name).read_text())
        except (OSError, ValueError):
            continue
        if status.get("lag"):
            found[name] = status["lag"]
    return found


def _consumer_health(settings: Settings) -> tuple[dict[str, dict[str, int]], dict[str, str]]:
    """Each consumer's last published lag, and why it is not consuming (judged as /readyz
    judges it, from the health records in the online store); empty if the store does not
    answer."""
    from online_store import STORE_ERRORS, open_store
    from runtime.health import ConsumerHealth, HealthLimits, judge_all

    try:
        store = open_store(settings, timeout_s=2)
        try:
            raw = store.consumer_health()
        finally:
            store.close()
    except STORE_ERRORS:
        return {}, {}
    verdicts = judge_all(raw, int(time.time() * 1000), HealthLimits.from_settings(settings))
    lags = {}
    for key, value in raw.items():
        name = key.decode()
        try:
            lags[name] = dict(ConsumerHealth.from_json(name, value).lag)
        except (ValueError, KeyError, TypeError):
            continue
    return lags, {name: why for name, why in verdicts.items() if why}


@stack_app.command("up")
@friendly_errors
def stack_up() -> None:
    """Start broker, Redis, lake ingest, speed job, batch scheduler and API."""
    from infra import stack

    settings = get_settings()
    _repo(settings)  # no or a broken LFP_FEATURE_REPO: one line now, not crash-looping services
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
    """Each service's state, pid and port, how far lake ingest and the speed job are
    behind on each topic, and why a consumer is not consuming (as /readyz says)."""
    from infra import stack

    settings = get_settings()
    state = stack.read_state(settings)
    if not state or stack.supervisor_pid(settings) is None:
        console.print("no stack running (start it with `make up`)")
        raise typer.Exit(1)
    lags = _service_lags(settings, state["services"])
    published, problems = _consumer_health(settings)
    for name, behind in published.items():
        if name in state["services"] and behind:
            lags.setdefault(name, behind)  # a restarting service has no status file yet
    console.print(_status_table(state, lags, problems))
    for line in _lag_lines(lags):
        console.print(line, soft_wrap=False, markup=False, highlight=False)
    for why in problems.values():
        console.print(f"[red]![/red] {why}", soft_wrap=False)  # wrapped at the width
    if (running := _current_batch_run(settings)) is not None:
        console.print(running, markup=False, highlight=False)


def _current_batch_run(settings: Settings) -> str | None:
    """The batch run in progress, from the scheduler's heartbeat: a hung run shows its age."""
    import json

    from infra.stack import Paths

    try:
        status = json.loads(Paths(settings.data_dir).status_file("batch-scheduler").read_text())
    except (OSError, ValueError):
        return None
    run = status.get("current_run")
    if not run:
        return None
    line = (
        f"batch run {run['run_id']} ({run['trigger']}) running for {run['age_s']:.0f} s, "
        f"attempt {max(1, run.get('attempts') or 1)}"
    )
    return f"{line}; last error: {run['error']}" if run.get("error") else line


@stack_app.command("supervise", hidden=True)
def stack_supervise() -> None:
    """(internal) The supervisor process `stack up` spawns."""
    from infra.stack import Paths, Supervisor, services

    _setup_logging()
    settings = get_settings()
    raise typer.Exit(Supervisor(Paths(settings.data_dir), services(settings)).run())


@cluster_app.command("up")
@friendly_errors
def cluster_up() -> None:
    """Start a Redis Cluster (three masters), a Spark master and worker, and a Flink
    JobManager and TaskManagers, supervised under <data_dir>/cluster; print the settings
    that run the stack on them."""
    from infra import cluster

    settings = get_settings()
    with console.status("starting the cluster (Spark and Flink take a minute)..."):
        state = cluster.up(settings)
    console.print(_status_table(state))
    console.print("Run the stack on it (then `make up`):")
    for name, value in cluster.cluster_settings(settings).items():
        console.print(f"  export {name}={value}")


@cluster_app.command("down")
@friendly_errors
def cluster_down() -> None:
    """Stop everything `cluster up` started (data stays under <data_dir>/cluster)."""
    from infra import cluster

    stopped = cluster.down(get_settings())
    console.print("cluster stopped" if stopped else "no cluster was running")


@cluster_app.command("status")
@friendly_errors
def cluster_status() -> None:
    """Each part of the local cluster: state, pid, port."""
    from infra import cluster
    from infra.stack import running_supervisor

    settings = get_settings()
    state = cluster.state(settings)
    if not state or running_supervisor(cluster.cluster_paths(settings)) is None:
        console.print("no cluster running (start it with `lfp cluster up`)")
        raise typer.Exit(1)
    console.print(_status_table(state))


@cluster_app.command("supervise", hidden=True)
def cluster_supervise() -> None:
    """(internal) The supervisor process `cluster up` spawns."""
    from infra import cluster
    from infra.stack import Supervisor

    _setup_logging()
    settings = get_settings()
    supervisor = Supervisor(cluster.cluster_paths(settings), cluster.cluster_services(settings))
    raise typer.Exit(supervisor.run())


@cluster_app.command("run")
@friendly_errors
def cluster_run(
    part: Annotated[
        str,
        typer.Argument(help="spark-master, spark-worker, flink-jobmanager or flink-taskmanager."),
    ],
) -> None:
    """Run one part of the cluster in the foreground (what `cluster up` supervises, and
    what Compose's cluster services run): Spark from the pyspark package's spark-class,
    Flink from the apache-flink package's scripts."""
    from infra import cluster

    if part not in cluster.PARTS:
        raise RuntimeError(f"no cluster part {part!r}; parts: {', '.join(cluster.PARTS)}")
    cluster.run_part(get_settings(), part)


@cluster_app.command("form-redis", hidden=True)
@friendly_errors
def cluster_form_redis() -> None:
    """(internal) Join the local Redis nodes into one cluster, once."""
    from infra import cluster

    console.print(cluster.form_redis_cluster(get_settings()))


@demo_app.command("run")
@friendly_errors
def demo_run(
    users: Annotated[int, typer.Option(help="Shoppers.")] = 200,
    items: Annotated[int, typer.Option(help="Catalog size.")] = 300,
    history_days: Annotated[int, typer.Option(help="Days of back-dated history.")] = 7,
    history_events: Annotated[int, typer.Option(help="Events in that history.")] = 30_000,
    rate: Annotated[float, typer.Option(help="Live events per second.")] = 50.0,
    seconds: Annotated[float, typer.Option(help="Seconds of live events.")] = 20.0,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
) -> None:
    """History to the lake, batch run, model training, live events, recommendations."""
    from demo.generator import ShopConfig
    from demo.run import DemoConfig, run_demo

    config = DemoConfig(
        shop=ShopConfig(users=users, items=items, seed=seed),
        history_days=history_days,
        history_events=history_events,
        live_rate=rate,
        live_seconds=seconds,
    )
    run_demo(get_settings(), console, config)


@demo_app.command("train")
@friendly_errors
def demo_train(
    examples: Annotated[int, typer.Option(help="Views sampled as training examples.")] = 4000,
) -> None:
    """Retrain the ranking model on PIT vectors from the lake; the API picks it up."""
    from batch_layer.spark import spark_session
    from demo.train import TrainingConfig, train_model

    settings = get_settings()
    spark = spark_session(settings, "lfp-demo-train")
    try:
        model = train_model(
            spark, settings, _repo(settings), int(time.time() * 1000), TrainingConfig(examples)
        )
    finally:
        spark.stop()
    path = model.save(settings.models_path)
    console.print(f"model saved to {path}: {model.training_rows} examples, {model.metrics}")


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
    repo = _repo(settings)
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
    table = Table(
        "feature", "mismatches", title=f"consistency: lake ({report.delta_versions}) vs API"
    )
    for feature, count in report.by_feature.items():
        table.add_row(feature, f"[red]{count}[/red]" if count else "0")
    console.print(table)
    for example in report.examples:
        console.print(
            f"  {example.feature} {example.entity_id}: served {example.served!r} "
            f"({example.status}), lake says {example.expected!r}"
        )
    verdict = "[green]consistent[/green]" if report.passed else "[red]INCONSISTENT[/red]"
    console.print(
        f"{verdict}: {report.mismatches} of {report.values} values differ "
        f"({report.entities} entities, tolerance {tolerance:g})"
    )
    if not report.passed:
        raise typer.Exit(1)
