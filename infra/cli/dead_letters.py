"""``lfp dead-letters``: dead letters the dead-letter topics did not take (spilled)."""

from __future__ import annotations

from typing import Annotated

import typer

from feature_core.settings import get_settings
from infra.cli.common import console, friendly_errors
from infra.cli.tables import Column, WideOption, clipped, count, iso, print_table

app = typer.Typer(
    no_args_is_help=True, help="Dead letters the dead-letter topics did not take (spilled)."
)


@app.command("spilled")
@friendly_errors
def dead_letters_spilled(
    as_json: Annotated[
        bool, typer.Option("--json", help="Every envelope in full, as JSON lines.")
    ] = False,
    wide: WideOption = False,
) -> None:
    """Rejected records whose dead letter the broker refused or did not acknowledge in
    time: lake ingest spilled them to <data_dir>/dead-letters/ instead (oldest first)."""
    import sys

    import orjson

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
    columns = [
        Column("spilled", priority=30),
        Column("record"),
        Column("bytes", priority=25, justify="right"),
        Column("reason", wrap=True, min_width=16),
        Column("send error", priority=20, wrap=True, min_width=16),
    ]
    rows = []
    for letter in letters:
        size = count(letter.get("size")) + (" cut" if letter.get("truncated") else "")
        reason, send_error = str(letter.get("reason", "")), str(letter.get("send_error", ""))
        rows.append(
            [
                iso(letter.get("spilled_at"), "%m-%d %H:%M:%S"),
                f"{letter.get('topic')}:{letter.get('partition')}@{letter.get('offset')}",
                size,
                clipped(reason, 120, wide),
                clipped(send_error, 80, wide),
            ]
        )
    print_table(console, columns, rows, wide=wide, caption="times in UTC; --json: every field")
    console.print(f"{len(letters)} spilled, in {spill_dir(settings.data_dir)}", highlight=False)
