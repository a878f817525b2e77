"""``lfp feast``: Feast interop, a Feast repo that reads the API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from feature_core.settings import get_settings
from infra.cli.common import console, friendly_errors, load_repo

app = typer.Typer(no_args_is_help=True, help="Feast interop: a Feast repo for the API.")
FEAST_TESTED = "0.67.0"  # the Feast release tests/serving_layer/test_feast_sdk.py drives


@app.command("export")
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
    written = export(load_repo(settings), settings.feature_repo, out, project, online_store)
    for path in written:
        console.print(f"wrote {path}")
    console.print(f"next: cd {out} && feast apply   (Feast {FEAST_TESTED} is the tested release)")
