"""The table helper every `lfp` table goes through: fits the width by wrapping, then by
leaving out low-priority columns, never by cutting a cell to an ellipsis."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.text import Text

from infra.cli.tables import (
    Column,
    compact_time,
    count,
    data_size,
    duration,
    fit_table,
    print_table,
    short_ids,
)
from tests.infra.cli.terminal import assert_readable, header_of

COLUMNS = [
    Column("id"),
    Column("name", priority=30),
    Column("note", wrap=True, min_width=10),
    Column("size", priority=10, justify="right"),
    Column("owner", priority=20),
]
ROWS = [
    ["a1b2c3d4e5f6", "the-first-name", "a note long enough to need several lines", "1,024", "ops"],
    ["b7c8d9e0f1a2", "second", "short", "12", "data-platform-team"],
]


def printed(columns, rows, width: int, **options) -> tuple[str, list[str]]:
    """As the CLI prints: its console soft-wraps messages (see infra.cli.common)."""
    console = Console(file=io.StringIO(), width=width, color_system=None, soft_wrap=True)
    hidden = print_table(console, columns, rows, **options)
    return console.file.getvalue(), hidden


@pytest.mark.parametrize("width", [80, 60, 40])
def test_the_table_fits_without_ellipses_leaving_out_the_lowest_priorities_first(width):
    text, hidden = printed(COLUMNS, ROWS, width, caption="times in UTC")
    assert_readable(text, width)  # the caption too, wrapped
    shown = header_of(text)
    assert shown[0] == "id" and "note" in shown  # columns without a priority always show
    order = ["size", "owner", "name"]  # lowest priority first
    assert hidden == [c for c in order if c in hidden][: len(hidden)]
    assert hidden == order[: len(hidden)]
    for row in ROWS:
        assert row[0] in text  # whole, never cut
    if hidden:
        assert f"--wide adds {', '.join(hidden)}" in " ".join(text.split())


def test_wide_enough_shows_every_column_on_one_line_per_row():
    text, hidden = printed(COLUMNS, ROWS, 200)
    assert hidden == []
    assert header_of(text) == ["id", "name", "note", "size", "owner"]
    assert "a note long enough to need several lines" in text  # on one line


def test_a_wrapping_column_wraps_between_words_when_narrow():
    text, _ = printed(COLUMNS, ROWS, 40)
    assert_readable(text, 40)
    words = " ".join(line for line in text.splitlines())
    for word in ROWS[0][2].split():
        assert word in words


def test_wide_keeps_every_column_however_wide_and_does_not_crop():
    text, hidden = printed(COLUMNS, ROWS, 40, wide=True)
    assert hidden == []
    assert header_of(text) == ["id", "name", "note", "size", "owner"]
    assert "data-platform-team" in text and "…" not in text
    assert max(len(line) for line in text.splitlines()) > 40


def test_kept_columns_too_wide_for_the_terminal_fold_rather_than_cut():
    columns = [Column("key"), Column("value")]
    rows = [["k" * 30, "v" * 30]]
    text, hidden = printed(columns, rows, 40)
    assert hidden == []
    assert_readable(text, 40)
    assert "".join(text.split()).count("k") == 30 + 1  # every character, folded ("key")


def test_a_column_left_out_before_a_wider_one_comes_back_when_it_fits():
    columns = [
        Column("id"),
        Column("small", priority=10),
        Column("big", priority=20),
    ]
    rows = [["x" * 10, "s" * 5, "b" * 60]]
    text, hidden = printed(columns, rows, 40)
    assert hidden == ["big"]
    assert header_of(text) == ["id", "small"]


def test_cells_are_data_never_markup():
    rows = [["[red]x[/red]", Text("styled", style="green")]]
    text, _ = printed([Column("raw"), Column("styled")], rows, 80)
    assert "[red]x[/red]" in text and "styled" in text


def test_a_row_of_the_wrong_length_is_refused():
    with pytest.raises(ValueError, match="a row of 1 cells for 2 columns"):
        fit_table([Column("a"), Column("b")], [["only one"]], 80)


def test_short_ids_are_unique_prefixes_of_at_least_seven_characters():
    ids = ["3fa2b1c90d11", "3fa2b1c7ee00", "9b00aa11ccdd", "abc"]
    shown = short_ids(ids)
    assert shown == {
        "3fa2b1c90d11": "3fa2b1c9",
        "3fa2b1c7ee00": "3fa2b1c7",
        "9b00aa11ccdd": "9b00aa1",
        "abc": "abc",
    }
    assert short_ids(ids, wide=True) == {one: one for one in ids}


def test_times_durations_and_counts_are_compact():
    assert compact_time(1_765_025_280_000) == "12-06 12:48"
    assert compact_time(None) == "-"
    assert duration(123.4) == "123 s" and duration(4.25) == "4.2 s" and duration(None) == "-"
    assert duration(12_345.6) == "12,346 s"
    assert count(1_234_567) == "1,234,567" and count(None) == "-" and count(0) == "0"


def test_data_sizes_are_decimal_with_two_significant_digits_under_ten():
    assert [data_size(n) for n in (None, 0, 999, 1_000, 9_949, 9_950)] == [
        "-",
        "0 B",
        "999 B",
        "1.0 kB",
        "9.9 kB",
        "10 kB",
    ]
    assert data_size(48_123_456) == "48 MB" and data_size(999_499) == "999 kB"
    assert data_size(999_500) == "1.0 MB"  # never "1,000 kB"
    assert data_size(1_234_567_890) == "1.2 GB" and data_size(12 * 10**15) == "12,000 TB"


def test_a_caption_longer_than_the_width_wraps_at_it():
    caption = "times in UTC; every count is of records, every duration in seconds"
    text, _ = printed(COLUMNS, ROWS, 40, caption=caption)
    assert_readable(text, 40)
    assert caption in " ".join(text.split())
