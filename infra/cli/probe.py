"""``lfp probe``: health probes (Compose healthchecks)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from infra.cli.common import console

app = typer.Typer(no_args_is_help=True, help="Health probes (Compose healthchecks).")


@app.command("status")
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


@app.command("http")
def probe_http(url: str) -> None:
    """Exit 0 if GET url answers 2xx."""
    import httpx

    try:
        httpx.get(url, timeout=3).raise_for_status()
    except httpx.HTTPError as error:
        console.print(f"unhealthy: {error}")
        raise typer.Exit(1) from None
    console.print("healthy")
