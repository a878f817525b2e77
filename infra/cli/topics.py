"""``lfp topics``: Kafka topics."""

from __future__ import annotations

import typer

from feature_core.settings import get_settings
from infra.cli.common import console, friendly_errors, load_repo

app = typer.Typer(no_args_is_help=True, help="Kafka topics.")


@app.command("create")
@friendly_errors
def topics_create() -> None:
    """Create every source's topic and dead-letter topic if missing."""
    from runtime.kafka import ensure_topics

    settings = get_settings()
    names = ensure_topics(settings, load_repo(settings).sources)
    console.print(f"topics ready: {', '.join(names)}")
