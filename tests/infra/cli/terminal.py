"""Running `lfp` as a terminal of a given width would, and what readable output is."""

from __future__ import annotations

from click.testing import Result
from typer.testing import CliRunner

from infra.cli import app


def lfp(*args: str, columns: int = 80, env: dict[str, str] | None = None) -> Result:
    """``lfp args`` in a terminal ``columns`` wide (rich reads COLUMNS when it prints)."""
    return CliRunner().invoke(app, list(args), env={"COLUMNS": str(columns), **(env or {})})


def assert_readable(output: str, columns: int = 80) -> None:
    """Every line fits ``columns`` and no cell was cut to an ellipsis."""
    long = [line for line in output.splitlines() if len(line) > columns]
    assert long == [], output
    assert "…" not in output, output


def row_of(output: str, first_cell: str) -> str:
    """The first line of the table row that starts with ``first_cell``."""
    rows = [line for line in output.splitlines() if line.split()[:1] == [first_cell]]
    assert rows, f"no row starting with {first_cell!r}:\n{output}"
    return rows[0]


def header_of(output: str) -> list[str]:
    """The header line's words (the line above the rule under it)."""
    lines = output.splitlines()
    rule = next(i for i, line in enumerate(lines) if line.startswith("──"))
    return lines[rule - 1].split()
