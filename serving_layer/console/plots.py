"""Plot figures (Plotly's JSON: ``{"data": [traces], "layout": {...}}``) built from the
operations records; the browser draws them with the Plotly.js the API serves.

Built here, not in the page, so every figure is data a test can read: a plot with no
points is never sent (the page says why there is nothing to plot instead)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from serving_layer.console.render import plot_time

#: Every trace of a time series: lines with markers, hover text in UTC.
SERIES = {"type": "scatter", "mode": "lines+markers", "marker": {"size": 4}}


def layout(title: str, y_title: str, x_title: str = "time (UTC)") -> dict[str, Any]:
    return {
        "title": {"text": title, "font": {"size": 14}},
        "xaxis": {"title": {"text": x_title}, "type": "date"},
        "yaxis": {"title": {"text": y_title}, "rangemode": "tozero"},
        "margin": {"l": 60, "r": 20, "t": 40, "b": 50},
        "height": 320,
        "legend": {"orientation": "h", "y": -0.25},
        "hovermode": "x unified",
    }


def figure(traces: Sequence[Mapping[str, Any]], layout_: Mapping[str, Any]) -> dict | None:
    """The figure, or None when no trace has a point."""
    kept = [t for t in traces if t.get("x")]
    if not kept:
        return None
    return {"data": kept, "layout": dict(layout_)}


def time_series(
    name: str, points: Iterable[tuple[float, float | None]], **style: Any
) -> dict[str, Any]:
    """One line of (epoch ms, value) points, oldest first; ``None`` values are gaps."""
    ordered = sorted(points, key=lambda p: p[0])
    return {
        **SERIES,
        "name": name,
        "x": [plot_time(at) for at, _ in ordered],
        "y": [value for _, value in ordered],
        **style,
    }


def number(value: Any) -> float | None:
    """A plotted value: numbers only (a malformed record's field is a gap, not an error)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def by_series(
    records: Iterable[Mapping[str, Any]], field: str
) -> dict[str, list[tuple[float, float | None]]]:
    """``{series: [(at_ms, value)]}`` from each record's mapping ``field``
    (e.g. ``speed_age_s``: group -> seconds)."""
    series: dict[str, list[tuple[float, float | None]]] = {}
    for record in records:
        values = record.get(field)
        if not isinstance(values, Mapping):
            continue
        for name, value in values.items():
            series.setdefault(str(name), []).append((record["at_ms"], number(value)))
    return series
