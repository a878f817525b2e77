"""``lfp dead-letters``: dead letters the dead-letter topics did not take (spilled)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich import box
from rich.table import Table

from feature_core.settings import get_settings
from infra.cli.common import console, friendly_errors
from infra.cli.tables import iso

app = typer.Typer(
    no_args_is_help=True, help="Dead letters the dead-letter topics did not take (spilled)."
)


@app.command("spilled")
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
            iso(letter.get("spilled_at"), "%m-%d %H:%M:%S"),
            Text(f"{letter.get('topic')}:{letter.get('partition')}@{letter.get('offset')}"),
            size + (" cut" if letter.get("truncated") else ""),
            Text(str(letter.get("reason", ""))[:120]),
            Text(str(letter.get("send_error", ""))[:80]),
        )
    console.print(table, highlight=False)
    console.print(f"{len(letters)} spilled, in {spill_dir(settings.data_dir)}", highlight=False)
