"""``lfp stack``: the embedded local stack (up, down, status), and the status table the
cluster's commands print too."""

from __future__ import annotations

import time
from collections.abc import Iterable

import typer
from rich.console import Console
from rich.text import Text

from feature_core.settings import Settings, get_settings
from infra.cli.common import console, friendly_errors, load_repo, setup_logging
from infra.cli.tables import Column, WideOption, count, print_table

app = typer.Typer(no_args_is_help=True, help="Run the embedded local stack.")


def print_status(
    out: Console,
    state: dict,
    lags: dict[str, dict[str, int]] | None = None,
    problems: dict[str, str] | None = None,
    wide: bool = False,
    wide_hint: str = "lfp stack status --wide",
) -> None:
    """The services; ``lags``: records behind per topic, by service (the table shows their
    sum, :func:`lag_lines` each topic's; no column without them); ``problems``: why a
    consumer is not consuming (its state is marked, red, with "!")."""
    columns = [
        Column("service"),
        Column("state"),
        Column("pid", priority=10, justify="right"),
        Column("port", priority=20, justify="right"),
        Column("restarts", priority=30, justify="right"),
        *([Column("records behind", priority=40, justify="right")] if lags is not None else []),
    ]
    rows = []
    for name, info in state["services"].items():
        color = {"healthy": "green", "done": "green", "failed": "red"}.get(info["state"], "yellow")
        mark = ""
        if name in (problems or {}):
            color, mark = "red", " !"
        behind = (lags or {}).get(name)
        rows.append(
            [
                name,
                Text(f"{info['state']}{mark}", style=color),
                str(info.get("pid") or "-"),
                str(info.get("port") or "-"),
                str(info.get("restarts", 0)),
                *([count(sum(behind.values())) if behind else ""] if lags is not None else []),
            ]
        )
    print_table(out, columns, rows, wide=wide, wide_hint=wide_hint)


def lag_lines(lags: dict[str, dict[str, int]]) -> list[str]:
    """Each consumer's records behind per topic, one line each (under the table: topic
    names are too long for a cell at 80 columns)."""
    return [
        f"{name} behind: " + "; ".join(f"{topic} {n:,}" for topic, n in sorted(behind.items()))
        for name, behind in lags.items()
        if behind
    ]


def service_lags(settings: Settings, services: Iterable[str]) -> dict[str, dict[str, int]]:
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


def consumer_health(settings: Settings) -> tuple[dict[str, dict[str, int]], dict[str, str]]:
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


@app.command("up")
@friendly_errors
def stack_up() -> None:
    """Start broker, Redis, lake ingest, speed job, batch scheduler and API."""
    from infra import stack

    settings = get_settings()
    load_repo(settings)  # no or a broken LFP_FEATURE_REPO: one line now, not crash-looping services
    with console.status("starting the stack (the speed job takes a minute)..."):
        state = stack.up(settings)
    print_status(console, state)
    console.print(f"API: {settings.api_url}/docs   logs: {settings.data_dir.resolve() / 'logs'}")


@app.command("down")
@friendly_errors
def stack_down() -> None:
    """Stop everything `stack up` started."""
    from infra import stack

    settings = get_settings()
    console.print("stack stopped" if stack.down(settings) else "no stack was running")


@app.command("status")
@friendly_errors
def stack_status(wide: WideOption = False) -> None:
    """Each service's state, pid and port, how far lake ingest and the speed job are
    behind on each topic, and why a consumer is not consuming (as /readyz says)."""
    from infra import stack

    settings = get_settings()
    state = stack.read_state(settings)
    if not state or stack.supervisor_pid(settings) is None:
        console.print("no stack running (start it with `make up`)")
        raise typer.Exit(1)
    lags = service_lags(settings, state["services"])
    published, problems = consumer_health(settings)
    for name, behind in published.items():
        if name in state["services"] and behind:
            lags.setdefault(name, behind)  # a restarting service has no status file yet
    print_status(console, state, lags, problems, wide)
    for line in lag_lines(lags):
        console.print(line, soft_wrap=False, markup=False, highlight=False)
    for why in problems.values():
        console.print(f"[red]![/red] {why}", soft_wrap=False)  # wrapped at the width
    if (running := current_batch_run(settings)) is not None:
        console.print(running, soft_wrap=False, markup=False, highlight=False)


def current_batch_run(settings: Settings) -> str | None:
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


@app.command("supervise", hidden=True)
def stack_supervise() -> None:
    """(internal) The supervisor process `stack up` spawns."""
    from infra.stack import Paths, Supervisor, services

    setup_logging()
    settings = get_settings()
    raise typer.Exit(Supervisor(Paths(settings.data_dir), services(settings)).run())
