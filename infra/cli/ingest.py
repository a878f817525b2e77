"""``lfp ingest``: lake ingest, Kafka -> Delta, exactly once."""

from __future__ import annotations

import typer

from feature_core.settings import get_settings
from infra.cli.common import StatusFile, friendly_errors, load_repo, setup_logging

app = typer.Typer(no_args_is_help=True, help="Lake ingest: Kafka -> Delta, exactly once.")


@app.command("run")
@friendly_errors
def ingest_run(status_file: StatusFile = None) -> None:
    """Consume events into the Delta raw events table until stopped."""
    from batch_layer.ingest import run_forever

    setup_logging()
    settings = get_settings()
    repo = load_repo(settings)
    run_forever(settings, repo.sources, status_file, repo.groups)
