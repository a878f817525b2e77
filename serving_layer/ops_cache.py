"""Ops endpoints that read Redis without a token cost at most one read per interval.

``/readyz``, ``/metrics`` and Feast's ``/health`` answer anyone: if each call read Redis, a
flood of them would hold the API's Redis connections (LFP_API_REDIS_CONNECTIONS) and
authenticated feature reads would wait for one, then fail. Each of them computes its
Redis-derived part through a :class:`SharedResult`: the first caller of an interval runs
the computation, callers meanwhile wait for that same run, and later callers within
LFP_API_OPS_INTERVAL_S get its result (or its failure) without touching Redis.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from fastapi import Request
from fastapi.responses import Response

T = TypeVar("T")
Endpoint = Callable[..., Awaitable[Response]]


class SharedResult(Generic[T]):
    """One computation's result shared by every caller of a short interval (single
    flight: concurrent callers await the run under way instead of starting their own)."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.runs = 0  # computations started, for tests and curiosity
        self._task: asyncio.Future[T] | None = None
        self._done_at = -float("inf")

    async def get(self, compute: Callable[[], Awaitable[T]]) -> T:
        """The result of the current interval's run of ``compute``, starting one when the
        last finished more than ``interval_s`` ago. A failure is shared the same way: a
        flood during a Redis outage does not retry it per call."""
        task = self._task
        if task is not None and task.get_loop() is not asyncio.get_running_loop():
            task = None  # another event loop's (a test client restarted the app)
        fresh = time.monotonic() - self._done_at < self.interval_s
        if task is None or (task.done() and not fresh):
            task = self._task = asyncio.ensure_future(self._run(compute))
        # Shielded: a caller that gives up (client gone) does not cancel the others' run.
        return await asyncio.shield(task)

    async def _run(self, compute: Callable[[], Awaitable[T]]) -> T:
        self.runs += 1
        try:
            return await compute()
        finally:
            self._done_at = time.monotonic()


def shared_per_interval(name: str) -> Callable[[Endpoint], Endpoint]:
    """Decorate an ops endpoint (under its route decorator) so that its Redis-reading
    body runs at most once per LFP_API_OPS_INTERVAL_S per app, callers of the interval
    sharing the response. The endpoint itself is left as written; the wrapper asks for
    the request to find its app when the endpoint does not."""

    def decorate(endpoint: Endpoint) -> Endpoint:
        signature = inspect.signature(endpoint, eval_str=True)
        own_request = "request" in signature.parameters

        @functools.wraps(endpoint)
        async def wrapper(**values: Any) -> Response:
            request: Request = values["request"] if own_request else values.pop("ops_request")
            shared = shared_result(request, name)
            response = await shared.get(lambda: endpoint(**values))
            # A response per caller (one object is not sent twice); the body is shared.
            return Response(response.body, response.status_code, media_type=response.media_type)

        parameters = list(signature.parameters.values())
        if not own_request:
            parameters.append(
                inspect.Parameter("ops_request", inspect.Parameter.KEYWORD_ONLY, annotation=Request)
            )
        wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        return wrapper

    return decorate


def shared_result(request: Request, name: str) -> SharedResult[Any]:
    """The app's shared result called ``name`` (one per endpoint), made on first use."""
    state = request.app.state
    try:
        results: dict[str, SharedResult[Any]] = state.ops_results
    except AttributeError:
        results = state.ops_results = {}
    shared = results.get(name)
    if shared is None:
        shared = results[name] = SharedResult(state.settings.api_ops_interval_s)
    return shared
