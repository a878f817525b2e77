"""How console pages are rendered: one Jinja2 environment (autoescaped), its filters, the
navigation, and the headers every page carries.

Pages are server-rendered HTML; the only script is the console's own (``static/console.js``)
and Plotly's, both served by the API (no CDN: the machine may have no internet). A page's
plot data travels as JSON in a ``<script type="application/json">`` element, escaped so no
value (a hostile feature or entity name) can close it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

HERE = Path(__file__).resolve().parent
TEMPLATES_DIR = HERE / "templates"
STATIC_DIR = HERE / "static"

#: The URL of Plotly.js: versioned, so a browser may cache it for long.
PLOTLY_PATH = f"/console/vendor/plotly-{version('plotly')}.min.js"

#: (path, label) of the navigation, in order.
NAVIGATION = (
    ("/console", "Catalog"),
    ("/console/freshness", "Freshness"),
    ("/console/runs", "Batch runs"),
    ("/console/consistency", "Consistency"),
    ("/console/dead-letters", "Dead letters"),
    ("/console/drift", "Statistics & drift"),
    ("/console/lookup", "Entity lookup"),
)

#: Scripts only from the API itself; Plotly sets inline styles on its plots. No frames.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)

PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Pages show live state and may be behind a login: never cached.
    "Cache-Control": "no-store",
}


def now_ms() -> int:
    return int(time.time() * 1000)


def utc_time(ms: float | None) -> str:
    """Epoch milliseconds as ``2026-11-01 12:00:05`` (UTC); ``-`` for none."""
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def plot_time(ms: float) -> str:
    """Epoch milliseconds as the date text Plotly reads on a date axis (UTC)."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def duration(seconds: float | None) -> str:
    """A duration for people: ``850 ms``, ``12.5 s``, ``4 min 10 s``, ``3 h 5 min``, ``2 d 4 h``."""
    if seconds is None:
        return "-"
    negative, seconds = seconds < 0, abs(seconds)
    if seconds < 1:
        text = f"{seconds * 1000:.0f} ms"
    elif seconds < 60:
        text = f"{seconds:.1f} s"
    elif seconds < 3600:
        text = f"{int(seconds // 60)} min {int(seconds % 60)} s"
    elif seconds < 86400:
        text = f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"
    else:
        text = f"{int(seconds // 86400)} d {int(seconds % 86400 // 3600)} h"
    return f"-{text}" if negative else text


def json_text(value: Any) -> str:
    """A value as the API's JSON writes it (orjson): what the entity lookup shows."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def script_json(value: Any) -> str:
    """JSON safe inside a ``<script>`` element: ``<``, ``>`` and ``&`` as unicode escapes,
    so no string in it can end the element. Marked safe for the template."""
    from markupsafe import Markup

    text = json_text(value)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escape)
    return Markup(text)


def _templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=TEMPLATES_DIR)
    env = templates.env
    env.filters.update(
        utc_time=utc_time, duration=duration, json_text=json_text, script_json=script_json
    )
    env.globals.update(navigation=NAVIGATION, plotly_path=PLOTLY_PATH)
    env.trim_blocks = env.lstrip_blocks = True
    return templates


templates = _templates()


def page(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """A console page: ``template`` rendered with ``context``, the navigation state and the
    page headers (CSP, no caching)."""
    settings = request.app.state.settings
    values = {
        "auth_on": settings.api_token is not None,
        "path": request.url.path,
        "now_ms": now_ms(),
        **(context or {}),
    }
    response = templates.TemplateResponse(
        request, template, values, status_code=status_code, headers={**PAGE_HEADERS}
    )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response
