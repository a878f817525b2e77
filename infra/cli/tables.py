"""How the CLI prints values in its tables: times, versions, missing values."""

from __future__ import annotations


def iso(ms: int | None, layout: str = "%Y-%m-%d %H:%M:%SZ") -> str:
    """An epoch-ms time in UTC, ``-`` when there is none."""
    from datetime import UTC, datetime

    return "-" if ms is None else datetime.fromtimestamp(ms / 1000, UTC).strftime(layout)


def or_dash(value: int | None) -> str:
    return "-" if value is None else str(value)
