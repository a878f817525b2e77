"""What console pages read from the online store, read defensively: a journal record
another process wrote in an older or newer shape is skipped, never a 500, and a store that
does not answer is a page that says so."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ParamSpec

import orjson
from fastapi import Request
from fastapi.responses import Response

from feature_core.journals import Journal
from online_store import STORE_ERRORS
from online_store.base import ViewReader
from serving_layer.console.render import page

log = logging.getLogger(__name__)

P = ParamSpec("P")


def parse_records(raws: list[bytes]) -> list[dict[str, Any]]:
    """JSON objects with a numeric ``at_ms``, oldest first; anything else skipped."""
    found = []
    for raw in raws:
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(record, dict):
            continue
        at = record.get("at_ms")
        if at is None and isinstance(record.get("checked_at"), (int, float)):
            at = record["checked_at"] * 1000  # an `lfp verify` report dates itself in s
        if isinstance(at, bool) or not isinstance(at, (int, float)):
            continue
        record["at_ms"] = at
        found.append(record)
    return sorted(found, key=lambda r: r["at_ms"])


async def journal(
    store: ViewReader, kind: Journal, since_ms: int = 0, limit: int = 1000
) -> list[dict[str, Any]]:
    """The newest ``limit`` records of a journal since ``since_ms``, parsed, oldest first."""
    return parse_records(await store.journal(str(kind), since_ms, limit))


def loads_object(raw: bytes | None) -> dict[str, Any] | None:
    """A stored JSON object, or None (none stored, or not an object)."""
    if raw is None:
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def store_guard(
    handler: Callable[P, Awaitable[Response]],
) -> Callable[P, Awaitable[Response]]:
    """A console page whose store read fails answers a 503 page naming the failure (the
    API's JSON handler is for API clients)."""

    @functools.wraps(handler)
    async def guarded(*args: P.args, **kwargs: P.kwargs) -> Response:
        try:
            return await handler(*args, **kwargs)
        except STORE_ERRORS as error:
            request = kwargs.get("request")
            assert isinstance(request, Request), "console handlers take request by name"
            request.app.state.metrics.redis_errors.inc()
            log.warning("console %s: Redis %r", request.url.path, error)
            context = {"problem": f"Redis {type(error).__name__}"}
            return page(request, "unavailable.html", context, status_code=503)

    return guarded


def mapping(value: Any) -> Mapping[str, Any]:
    """``value`` if it is a mapping, else an empty one (a record field of another shape)."""
    return value if isinstance(value, Mapping) else {}
