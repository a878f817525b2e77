"""``lfp speed``: the PyFlink speed job."""

from __future__ import annotations

from typing import Annotated

import typer

from feature_core.settings import get_settings
from infra.cli.common import StatusFile, friendly_errors, load_repo, setup_logging

app = typer.Typer(no_args_is_help=True, help="Speed layer: the PyFlink job.")


@app.command("run")
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

    setup_logging()
    settings = get_settings()
    if target is not None:
        if target not in ("local", "remote"):
            raise RuntimeError(f"--target must be local or remote, not {target!r}")
        settings = settings.model_copy(update={"speed_target": target})
    run(settings, load_repo(settings), status_file)
