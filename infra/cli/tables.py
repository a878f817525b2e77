"""Every table the CLI prints, fitted to the terminal: readable at 80 columns.

rich alone, given a table wider than the terminal, shrinks every column and cuts each
cell to an ellipsis ("succeed…", "entit…"). :func:`print_table` decides the widths
itself instead: each column shows whole or wraps (at spaces; a word longer than its
column folds), and when the columns do not fit even so, the lowest-priority ones are left
out (the caption names them) until the rest do. ``--wide`` keeps every column, the table
as wide as they need. Ids are shown as short prefixes (:func:`short_ids`, as git shortens
hashes) unless ``--wide``; times, durations and counts in one compact form each.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

import typer
from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

#: Between two columns (no borders, one space of padding and the divider's space).
GAP = 2
#: A wrapping column is never narrower than its longest word, up to this many cells.
LONGEST_WORD_KEPT = 20
#: The fewest cells a column is squeezed to when even the kept columns do not fit.
NARROWEST = 4

WideOption = Annotated[
    bool,
    typer.Option(
        "--wide",
        help="Every column and full ids, however wide the table gets (without it, columns "
        "that do not fit the terminal are left out and ids are shortened).",
    ),
]

Cell = str | Text


@dataclass(frozen=True)
class Column:
    """One column of a fitted table.

    ``priority``: columns with the lowest are left out first when the table does not fit;
    ``None``: never left out (the columns a reader needs to make sense of a row).
    ``wrap``: long text wraps over several lines instead of keeping the column as wide as
    its longest cell (names, ids and numbers keep one line).
    """

    header: str
    priority: int | None = None
    wrap: bool = False
    justify: Literal["left", "right"] = "left"
    min_width: int = 8


@dataclass(frozen=True)
class Fitted:
    """A table ready to print and the headers of the columns left out of it."""

    table: Table
    hidden: list[str]
    width: int


def _lines(cell: Cell) -> list[str]:
    return (cell.plain if isinstance(cell, Text) else cell).splitlines() or [""]


def _natural(cells: Iterable[Cell]) -> int:
    """The cells' width on one line each (the widest line)."""
    return max((cell_len(line) for cell in cells for line in _lines(cell)), default=0)


def _longest_word(cells: Iterable[Cell]) -> int:
    return max(
        (cell_len(word) for cell in cells for line in _lines(cell) for word in line.split()),
        default=0,
    )


def fit_table(
    columns: Sequence[Column],
    rows: Sequence[Sequence[Cell]],
    width: int,
    *,
    wide: bool = False,
    title: str | None = None,
    caption: str | None = None,
    show_header: bool = True,
) -> Fitted:
    """``rows`` (plain strings, or :class:`Text` for styled cells: never markup, a cell is
    data) laid out in ``width`` cells: see the module's docstring."""
    for row in rows:
        if len(row) != len(columns):
            raise ValueError(f"a row of {len(row)} cells for {len(columns)} columns")
    cells = [
        [*([Text(c.header)] if show_header else []), *(row[i] for row in rows)]
        for i, c in enumerate(columns)
    ]
    natural = [max(1, _natural(column_cells)) for column_cells in cells]
    floor = [
        min(natural[i], max(c.min_width, min(_longest_word(cells[i]), LONGEST_WORD_KEPT)))
        if c.wrap
        else natural[i]
        for i, c in enumerate(columns)
    ]
    shown = list(range(len(columns)))

    def needed(indexes: list[int]) -> int:
        return sum(floor[i] for i in indexes) + GAP * (len(indexes) - 1)

    if not wide:
        droppable = sorted(
            (i for i, c in enumerate(columns) if c.priority is not None),
            key=lambda i: (columns[i].priority, -i),  # the rightmost of equals first
        )
        left_out = []
        while needed(shown) > width and droppable:
            left_out.append(droppable.pop(0))
            shown.remove(left_out[-1])
        for i in reversed(left_out):  # one left out before a wider one may fit again
            if needed(sorted([*shown, i])) <= width:
                shown = sorted([*shown, i])
    folded = set()
    budget = width if not wide else max(width, needed(shown))
    while needed(shown) > budget:  # the kept columns alone are too wide: squeeze the widest
        widest = max(shown, key=lambda i: floor[i])
        if floor[widest] <= NARROWEST:
            break
        floor[widest] -= 1
        folded.add(widest)
    widths = {i: floor[i] for i in shown}
    spare = budget - needed(shown)
    growing = [i for i in shown if columns[i].wrap or i in folded]
    while spare > 0:  # the narrowest wrapping column first, until each shows whole
        short = [i for i in growing if widths[i] < natural[i]]
        if not short:
            break
        narrowest = min(short, key=lambda i: widths[i])
        widths[narrowest] += 1
        spare -= 1
    table = Table(
        title=None if title is None else Text(title),
        caption=None if caption is None else Text(caption),
        show_header=show_header,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )
    for i in shown:
        c = columns[i]
        table.add_column(
            c.header,
            width=widths[i],
            justify=c.justify,
            no_wrap=not (c.wrap or i in folded),
            overflow="fold",
        )
    for row in rows:  # a plain string is text, never markup: cells are data
        table.add_row(*(row[i] if isinstance(row[i], Text) else Text(row[i]) for i in shown))
    total = sum(widths.values()) + GAP * (len(shown) - 1)
    table.width = total
    return Fitted(table, [columns[i].header for i in range(len(columns)) if i not in shown], total)


def print_table(
    console: Console,
    columns: Sequence[Column],
    rows: Sequence[Sequence[Cell]],
    *,
    wide: bool = False,
    title: str | None = None,
    caption: str | None = None,
    show_header: bool = True,
    wide_hint: str = "--wide",
) -> list[str]:
    """Print ``rows`` fitted to ``console``'s width (the caption then names the columns
    left out, and ``wide_hint``: the option that adds them); the headers left out."""
    fitted = fit_table(
        columns,
        rows,
        console.width,
        wide=wide,
        title=title,
        caption=caption,
        show_header=show_header,
    )
    if fitted.hidden:
        more = f"{wide_hint} adds {', '.join(fitted.hidden)}"
        fitted.table.caption = Text(f"{caption}; {more}" if caption else more)
    # Not soft-wrapped: the title and caption wrap at the table's width (the cells do
    # anyway); not cropped: a --wide table may be wider than the terminal.
    console.print(fitted.table, highlight=False, soft_wrap=False, crop=False)
    return fitted.hidden


def short_ids(ids: Iterable[str], wide: bool = False, length: int = 7) -> dict[str, str]:
    """Each id -> its shortest prefix of at least ``length`` characters that no other of
    ``ids`` starts with (git's short hashes); every id whole when ``wide``."""
    unique = set(ids)
    if wide:
        return {one: one for one in unique}
    shown = {}
    for one in unique:
        n = min(length, len(one))
        while n < len(one) and any(o != one and o.startswith(one[:n]) for o in unique):
            n += 1
        shown[one] = one[:n]
    return shown


def clipped(text: str, limit: int, wide: bool = False) -> str:
    """``text``, or its words up to ``limit`` characters and how many more there are (a
    reason, an error: the table shows the start of each; ``--wide`` all of it)."""
    if wide or len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit + 1)
    cut = cut if cut > limit // 2 else limit
    return f"{text[:cut].rstrip()} (+{len(text) - cut:,} characters: --wide)"


def iso(ms: int | None, layout: str = "%Y-%m-%d %H:%M:%SZ") -> str:
    """An epoch-ms time in UTC, ``-`` when there is none."""
    from datetime import UTC, datetime

    return "-" if ms is None else datetime.fromtimestamp(ms / 1000, UTC).strftime(layout)


def compact_time(ms: int | float | None) -> str:
    """An epoch-ms time in UTC as the tables show it: ``12-06 12:48``."""
    return iso(None if ms is None else int(ms), "%m-%d %H:%M")


def duration(seconds: float | None) -> str:
    """``123 s``; a tenth of a second under 10 s; ``-`` when unknown."""
    if seconds is None:
        return "-"
    return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:,.0f} s"


def count(value: int | None) -> str:
    """A count with thousands separators, ``-`` when unknown."""
    return "-" if value is None else f"{value:,}"


def data_size(size: int | None) -> str:
    """Bytes in decimal units as the tables show them: ``512 B``, ``4.8 MB``, ``48 MB``;
    ``-`` when unknown."""
    if size is None:
        return "-"
    value, unit = float(size), "B"
    for bigger in ("kB", "MB", "GB", "TB"):
        if value < 999.5:
            break
        value, unit = value / 1000, bigger
    if unit == "B":
        return f"{size} B"
    return f"{value:.1f} {unit}" if value < 9.95 else f"{value:,.0f} {unit}"


def or_dash(value: int | None) -> str:
    return "-" if value is None else str(value)
