"""The operator console: server-rendered pages at ``/console`` (catalog and lineage,
freshness, batch runs, consistency, dead letters, feature statistics and drift, entity
lookup), behind the API's token when one is set (:mod:`serving_layer.console.auth`).

Jinja2 templates; plots drawn in the browser by Plotly.js, served from the ``plotly``
package's own copy (no CDN). :func:`add_console` puts it on an app.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles

from serving_layer.console import auth, catalog, dead_letters, drift, lookup, operations
from serving_layer.console.render import PLOTLY_PATH, STATIC_DIR


def plotly_js() -> str:
    """The path of the minified Plotly.js the ``plotly`` package ships."""
    return str(files("plotly") / "package_data" / "plotly.min.js")


async def serve_plotly(request: Request) -> Response:
    """Plotly.js, from the installed package (public code: no login needed)."""
    return FileResponse(
        plotly_js(),
        media_type="text/javascript",
        headers={
            "Cache-Control": "public, max-age=604800, immutable",
            "X-Content-Type-Options": "nosniff",
        },
    )


def add_console(app: FastAPI) -> None:
    """Mount the console's pages, static files and login on ``app``."""
    app.state.console_rejects = dead_letters.RejectsCache()
    app.state.console_logins = auth.LoginThrottle()
    app.add_exception_handler(auth.LoginRequired, auth.login_redirect)  # type: ignore[arg-type]
    for module in (auth, catalog, operations, dead_letters, drift, lookup):
        app.include_router(module.router)
    app.add_api_route(PLOTLY_PATH, serve_plotly, include_in_schema=False)
    app.mount("/console/static", StaticFiles(directory=STATIC_DIR), name="console-static")
