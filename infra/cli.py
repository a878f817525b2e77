"""The ``lfp`` command line: one entry point for every operation of the platform."""

from __future__ import annotations

import shutil
import subprocess
import sys

import typer
from rich.console import Console

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
console = Console()


@app.command()
def doctor() -> None:
    """Check that Java 17, redis-server and the Python engines are usable."""
    problems: list[str] = []
    java = shutil.which("java")
    if not java:
        problems.append("java not found: install Java 17 (apt-get install openjdk-17-jre-headless)")
    else:
        out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
        if '"17' not in out and '"21' not in out:
            problems.append(f"Java 17 needed for Spark 4.1 and Flink 2.0, found: {out.splitlines()[0]}")
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
    except Exception as error:  # noqa: BLE001 - reported to the user, not raised
        problems.append(str(error))
    for problem in problems:
        console.print(f"[red]✗[/red] {problem}")
    if problems:
        raise typer.Exit(1)
    console.print("[green]✓[/green] Java, redis-server, broker binary and engines are ready")


def main() -> None:  # pragma: no cover - console script convenience
    sys.exit(app())
