"""FastAPI serving layer: merged batch + speed feature values over HTTP.

Routes: ``/v1/...`` (feature vectors, feature groups, service metadata:
:mod:`serving_layer.routes`), Feast's ``/get-online-features``, and the ops endpoints
``/healthz``, ``/readyz``, ``/metrics``.
Feature endpoints require a bearer token when ``LFP_API_TOKEN`` is set.
"""

from __future__ import annotations

import gc
import importlib
import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from feature_core.definitions import FeatureRepo
from feature_core.journals import Journal
from feature_core.runs import RunRecord, settled
from feature_core.settings import Settings, get_settings
from online_store import STORE_ERRORS, open_reader
from online_store.memory import memory_problems
from runtime.health import HealthLimits, judge_all
from runtime.lag import TopicLag
from serving_layer import feast
from serving_layer.console import add_console
from serving_layer.deps import Metrics, Repo, Store
from serving_layer.metrics import RequestTimer, ServingMetrics
from serving_layer.models import BatchViewInfo, ErrorResponse, Readiness, error_responses
from serving_layer.online import OnlineFeatures, speed_gap_message, stale_view_message
from serving_layer.ops_cache import shared_per_interval, shared_result
from serving_layer.responses import json_response
from serving_layer.routes import add_v1_routes
from serving_layer.security import BodySizeLimit, require_token
from serving_layer.vectors import NotFoundError, NotServing, RequestError

log = logging.getLogger(__name__)

#: Most validation problems a 422 names (the rest are counted).
MAX_PROBLEMS = 20


#: Young-generation threshold of the cyclic GC while the API runs (CPython's default: 700).
GC_YOUNG_THRESHOLD = 50_000


@contextmanager
def rare_garbage_collections() -> Iterator[None]:
    """Tune the cyclic GC for a process holding the batch view cache; restored after.

    30k cached views are about a million small objects, and a full collection scans them
    all: 0.2-0.5 s each, measured. With the default young threshold, temporaries of the
    requests in flight at a collection survive it and pile up in the old generation, so
    full collections came every few seconds under load. Collecting the young generation
    every 50,000 allocations lets them die by reference count first. Start-up objects
    (modules, routes, schemas) are frozen out of every scan.
    """
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 100)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    store = open_reader(settings)
    app.state.store = store
    app.state.metrics.watch_batch_cache(store.batch_cache)
    app.state.online = OnlineFeatures(
        app.state.repo,
        store,
        app.state.metrics,
        settings.api_max_entities,
        settings.api_serve_speed_only,
        settings.api_max_features,
    )
    with rare_garbage_collections():
        yield
    await store.close()


def _error(status: int, detail: str) -> Response:
    return json_response(status_code=status, content={"detail": detail})


def _install_error_handlers(app: FastAPI) -> None:
    async def redis_unavailable(request: Request, error: Exception) -> Response:
        request.app.state.metrics.redis_errors.inc()
        log.warning("redis error on %s: %r", request.url.path, error)
        return _error(
            503,
            f"feature views unavailable: Redis {type(error).__name__}; "
            "check that Redis is running (make status) and LFP_REDIS_URL",
        )

    for error_type in STORE_ERRORS:
        app.add_exception_handler(error_type, redis_unavailable)

    @app.exception_handler(NotServing)
    async def not_serving(request: Request, error: NotServing) -> Response:
        return _error(503, str(error))

    @app.exception_handler(NotFoundError)
    async def not_found(request: Request, error: NotFoundError) -> Response:
        return _error(404, str(error))

    @app.exception_handler(RequestError)
    async def bad_request(request: Request, error: RequestError) -> Response:
        return _error(422, str(error))

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, error: RequestValidationError) -> Response:
        # Name each problem by where it is; never echo the (possibly large) input back.
        # At most MAX_PROBLEMS named: a 1 MB body of wrong items must not answer 10 MB.
        errors = error.errors()
        problems = [
            f"request body is not valid JSON ({e['ctx']['error']})"
            if e["type"] == "json_invalid"
            else f"{'.'.join(_short(p) for p in e['loc'])}: {e['msg']}"
            for e in errors[:MAX_PROBLEMS]
        ]
        if len(errors) > MAX_PROBLEMS:
            problems.append(f"and {len(errors) - MAX_PROBLEMS} more problems")
        return _error(422, "; ".join(problems))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception) -> Response:
        log.exception("unhandled error on %s", request.url.path)
        return _error(500, "internal error; the server log has the details")


def _short(part: object, most: int = 64) -> str:
    """A problem location's part (a key the body chose) cut short: no echo of the body."""
    text = str(part)
    return text if len(text) <= most else f"{text[:most]}..."


def _finish_openapi(app: FastAPI) -> None:
    """The OpenAPI schema as the API answers: FastAPI's, with each route's 422 as the body
    the handlers send (``{"detail": "<text>"}``), not its default list of validation
    errors, and each parameter once (:func:`_merge_parameters`); routes of
    ``LFP_API_ROUTERS`` included."""
    generate = app.openapi
    error_ref = {"$ref": "#/components/schemas/ErrorResponse"}

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                responses = operation.get("responses", {})
                if "422" in responses:
                    content = {"application/json": {"schema": error_ref}}
                    responses["422"] = {"description": "Invalid request.", "content": content}
                if "parameters" in operation:
                    operation["parameters"] = _merge_parameters(operation["parameters"])
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.setdefault(
            "ErrorResponse",
            ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}"),
        )
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _merge_parameters(parameters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """FastAPI appends the parameters of a route's ``openapi_extra`` to those it generates
    from the handler: one naming a generated parameter (same name and place) adds its
    fields to it instead, in its place (the enums of names of the repo on ``/v1`` paths,
    :func:`serving_layer.routes.add_v1_routes`)."""
    merged: dict[Any, dict[str, Any]] = {}
    for parameter in parameters:
        place = (parameter["in"], parameter["name"]) if "name" in parameter else id(parameter)
        first = merged.setdefault(place, parameter)
        if first is not parameter:
            schema = {**first.get("schema", {}), **parameter.get("schema", {})}
            merged[place] = {**first, **parameter, "schema": schema}
    return list(merged.values())


def _ops_router() -> APIRouter:
    router = APIRouter(tags=["ops"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process is alive (no dependencies checked)."""
        return {"status": "ok"}

    @router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
    @shared_per_interval("readyz")  # no token: a flood costs one Redis read per interval
    async def readyz(request: Request, store: Store, repo: Repo, metrics: Metrics) -> Response:
        """Ready to serve complete values: Redis answers, a batch view is serving and within
        its horizon, no consumer is past LFP_API_MAX_LAG_RECORDS behind, and every consumer
        is consuming (not crash-looping, stalled or falling behind: LFP_CONSUMER_*, judged
        from the health records the consumers publish). Reports the batch view's age, the
        speed watermarks and each consumer's lag."""
        problems: list[str] = []
        pointer, watermarks, age, recomputing, gap = None, {}, None, False, None
        lags: list[TopicLag] = []
        health_records: dict[bytes, bytes] = {}
        try:
            snapshot = await store.read()
            pointer, watermarks = snapshot.pointer, snapshot.speed_watermarks
            recomputing, gap = snapshot.speed_recomputing, snapshot.speed_gap()
            lags = await store.consumer_lag()
            health_records = await store.consumer_health()
            memory = await store.memory()
            metrics.observe_memory(memory)
            problems += memory_problems(memory, request.app.state.settings.redis_memory_ready_ratio)
        except STORE_ERRORS as error:
            metrics.redis_errors.inc()
            problems.append(f"Redis unreachable ({type(error).__name__}): is it running?")
        if pointer is None and not problems:
            problems.append("no batch view yet: run `lfp batch run` or wait for the scheduler")
        if recomputing:
            problems.append("the speed layer is writing its tiles again after Redis lost them")
        if gap is not None:
            problems.append(speed_gap_message(gap))
        if pointer is not None and (stale := pointer.stale_groups(repo.groups)):
            problems.append(stale_view_message(pointer, stale))
        if pointer is not None:
            now = int(time.time() * 1000)
            age = (now - pointer.cutoff) / 1000
            metrics.observe_freshness((g.name for g in repo.groups), pointer, watermarks, now)
            if now - pointer.cutoff > pointer.horizon_ms:
                problems.append(
                    f"batch view is {age:.0f} s old, past its {pointer.horizon_ms // 1000} s "
                    "horizon: sliding-window values are approximate (is the scheduler running?)"
                )
        limit = request.app.state.settings.api_max_lag_records
        for one in lags:
            if limit and one.behind > limit:
                problems.append(
                    f"{one.consumer} is {one.behind} records behind on topic {one.topic} "
                    f"(LFP_API_MAX_LAG_RECORDS {limit}): it cannot keep up with the event rate"
                )
        limits = HealthLimits.from_settings(request.app.state.settings)
        verdicts = judge_all(health_records, int(time.time() * 1000), limits)
        problems += [why for why in verdicts.values() if why]
        body = Readiness(
            ready=not problems,
            problems=problems,
            batch=BatchViewInfo.of(pointer),
            batch_age_s=age,
            speed_watermarks=watermarks,
            consumer_lag={f"{one.consumer}/{one.topic}": one.behind for one in lags},
        )
        return json_response(body.model_dump(), status_code=200 if body.ready else 503)

    @router.get("/metrics", response_class=Response)
    async def metrics_endpoint(
        request: Request, store: Store, repo: Repo, metrics: Metrics
    ) -> Response:
        """Prometheus metrics; what comes from Redis (feature freshness, lag, memory, the
        last verify and sampled verification, the batch run history, the newest feature
        statistics and drift) is refreshed at most once per LFP_API_OPS_INTERVAL_S, the
        API's own counters at every scrape."""

        async def from_redis() -> None:
            try:
                snapshot = await store.read()
                metrics.observe_freshness(
                    (g.name for g in repo.groups), snapshot.pointer, snapshot.speed_watermarks
                )
                metrics.observe_lag(await store.consumer_lag())
                metrics.observe_memory(await store.memory())
                report = await store.consistency_report()
                if report is not None:
                    metrics.observe_consistency(orjson.loads(report))
                sampled = await store.journal(Journal.SAMPLED_VERIFY, limit=1)
                if sampled:
                    metrics.observe_sampled_check(orjson.loads(sampled[-1]))
                settings = request.app.state.settings
                metrics.observe_feature_stats(
                    await store.journal(Journal.FEATURE_STATS, limit=1),
                    settings.drift_psi_threshold,
                )
                runs = await store.batch_runs(settings.batch_run_history)
                metrics.observe_runs(
                    settled(RunRecord.model_validate_json(run), settings.batch_run_lease_s)
                    for run in runs
                )
            except STORE_ERRORS:
                metrics.redis_errors.inc()

        await shared_result(request, "metrics").get(from_redis)  # no token: see ops_cache
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return router


def _load_router(spec: str) -> APIRouter:
    """``module:attribute`` -> the router it names (LFP_API_ROUTERS)."""
    module_name, _, attribute = spec.partition(":")
    try:
        router = getattr(importlib.import_module(module_name), attribute or "router")
    except (ImportError, AttributeError) as error:
        raise RuntimeError(f"LFP_API_ROUTERS: cannot load {spec!r} ({error})") from None
    if not isinstance(router, APIRouter):
        raise RuntimeError(f"LFP_API_ROUTERS: {spec!r} is not a FastAPI APIRouter")
    return router


def create_app(settings: Settings | None = None, repo: FeatureRepo | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="Lambda Feature Platform",
        summary="Batch + speed feature views merged into model input vectors.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.repo = repo or FeatureRepo.from_module(settings.feature_repo)
    app.state.metrics = ServingMetrics()
    _install_error_handlers(app)
    # Auth is wired in only when a token is set: no per-request cost when it is off.
    auth = [Depends(require_token)] if settings.api_token is not None else []
    # Routes match in order: the feature endpoints first, as they take the most traffic.
    auth_errors = (401,) if auth else ()
    add_v1_routes(app, auth, auth_errors, app.state.repo)
    feast_errors = (404, 413, 415, 422, 503, *auth_errors)
    app.include_router(feast.router, dependencies=auth, responses=error_responses(*feast_errors))
    app.include_router(feast.health_router)
    app.include_router(_ops_router())
    add_console(app)  # the operator console at /console: its own login (same token)
    for spec in settings.api_routers:
        app.include_router(
            _load_router(spec), dependencies=auth, responses=error_responses(*auth_errors)
        )
    _finish_openapi(app)
    if settings.api_cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.api_cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(BodySizeLimit, max_bytes=settings.api_max_body_bytes)
    app.add_middleware(RequestTimer, metrics=app.state.metrics)
    return app
