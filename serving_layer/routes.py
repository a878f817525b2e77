"""The ``/v1`` endpoints: feature vectors, feature groups, batch runs, feature services.

Plain module-level handlers: they find the repo and its :class:`OnlineFeatures` in
``request.app.state`` (:mod:`serving_layer.deps`), so one set serves every app.
:func:`add_v1_routes` registers them on an app with what is its repo's own (the names of
its groups and services, its join keys) for the OpenAPI schema only.

Every feature endpoint answers through :class:`OnlineFeatures` (``selection``, ``serve``):
a group endpoint is the vector endpoint asked for the group's features, in one shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import FastAPI, Path, Query, Request
from fastapi.responses import Response

from feature_core.definitions import FeatureRepo
from feature_core.runs import RunRecord, settled
from serving_layer.bodies import documented_body, parse_body
from serving_layer.deps import Online, Store, online_of
from serving_layer.models import (
    MAX_KEY_LENGTH,
    BatchViewInfo,
    FeatureInfo,
    FeatureServiceInfo,
    FeaturesRequest,
    FeaturesResponse,
    GroupFeatures,
    Provenance,
    error_responses,
)
from serving_layer.online import OnlineFeatures, ServedVectors
from serving_layer.responses import json_response
from serving_layer.vectors import FeatureRef, RequestError, Selection

FEATURES_ENDPOINT = "/v1/features"
GROUP_ENDPOINT = "/v1/features/{group}/{entity_id}"
GROUP_BY_KEYS_ENDPOINT = "/v1/features/{group}"
PROVENANCE_ENDPOINT = "/v1/provenance/{group}"

# The names a repo has are added to these in the schema by add_v1_routes.
GroupName = Annotated[str, Path(description="A feature group.")]
ServiceName = Annotated[str, Path(description="A feature service.")]
EntityId = Annotated[
    str, Path(min_length=1, max_length=MAX_KEY_LENGTH, description="Entity join key.")
]


async def get_features(request: Request) -> Response:
    """Model input vectors for up to LFP_API_MAX_ENTITIES entities, by feature service
    (its ordered vector) or by a list of ``group:feature`` names.

    Each value has a status: ``present``; ``no_data`` (no event in the window: the
    aggregation's identity, e.g. 0 or null); ``default`` (a null replaced by the
    service's default); ``stale_batch_view`` (the batch view is older than its
    horizon, so the value is approximate). Unknown entities are not errors.
    """
    body = await parse_body(request, FeaturesRequest)
    online = online_of(request)
    online.check_entities(len(body.entities))
    selection = online.selection(body.feature_service, body.features)
    served = await online.serve(
        selection, selection.entity_ids(body.entities), FEATURES_ENDPOINT, body.context
    )
    pointer = served.snapshot.pointer
    return json_response(
        {
            "feature_service": body.feature_service,
            "feature_names": served.selection.feature_names,
            "as_of": served.as_of,
            "batch": pointer and BatchViewInfo.fields_of(pointer),
            "speed_watermarks": served.speed_watermarks,
            "vectors": [
                {"entity_id": entity, "values": v.values, "statuses": v.statuses}
                for entity, v in zip(body.entities, served.vectors, strict=True)
            ],
        }
    )


async def get_group_features(group: GroupName, entity_id: EntityId, request: Request) -> Response:
    """Every feature of one feature group (or derived view) for one entity (one join
    key), by name; a derived view's request fields come as query parameters."""
    return await _group_features(
        online_of(request), group, entity_id, GROUP_ENDPOINT, request.query_params
    )


async def get_group_features_by_keys(group: GroupName, request: Request) -> Response:
    """Every feature of one feature group for one entity named by its join keys as
    query parameters (``?card_id=c1&merchant_id=m9``): any entity, composite or not."""
    online = online_of(request)
    # Any join key of the repo is checked as the schema documents it, the group's own used.
    keys = _join_keys_of(online, request)
    return await _group_features(online, group, keys, GROUP_BY_KEYS_ENDPOINT, request.query_params)


async def get_provenance(group: GroupName, request: Request) -> Response:
    """One entity's values in a feature group (or derived view), named by its join keys as
    query parameters, with where each came from: the batch view (version, cutoff, Delta
    versions), the speed watermarks, and per window the batch buckets, speed tiles and
    correction tiles the merge combined. For operators (the console's entity lookup)."""
    online = online_of(request)
    keys = _join_keys_of(online, request)
    return json_response(await provenance(online, group, keys, request.query_params))


async def provenance(
    online: OnlineFeatures,
    group: str,
    keys: Mapping[str, str],
    parameters: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The body of ``GET /v1/provenance/{group}`` (``parameters``: the request fields a
    derived view needs)."""
    served, body = await _serve_group(online, group, keys, PROVENANCE_ENDPOINT, parameters or {})
    pointer, views = served.snapshot.pointer, served.snapshot.entities
    mergers = served.selection.mergers_in_read_order
    watermarks = served.snapshot.speed_watermarks
    body["batch"] = pointer and BatchViewInfo.fields_of(pointer)
    body["speed_watermarks"] = {
        g: watermarks[g] for g in served.selection.group_names if g in watermarks
    }
    body["windows"] = [
        {"group": merger.group.name, **window._asdict()}
        for merger, view in zip(mergers, views, strict=True)
        for window in merger.inputs(
            served.as_of, pointer, view.batch_doc, view.speed_tiles, view.corrections
        )
    ]
    return body


def _join_keys_of(online: OnlineFeatures, request: Request) -> dict[str, str]:
    """The repo's join keys among the query parameters, each checked as the schema says."""
    kinds = online.repo.join_key_types
    keys = {k: v for k, v in request.query_params.items() if k in kinds}
    invalid = sorted(k for k, v in keys.items() if not 0 < len(v) <= MAX_KEY_LENGTH)
    if invalid:
        raise RequestError(f"join key values must be 1 to {MAX_KEY_LENGTH} characters: {invalid}")
    return keys


def _entity_of(
    selection: Selection, group: str, keys: Mapping[str, str] | str
) -> str | Mapping[str, str]:
    """The entity these join keys name for the group: a one-key group's value, or a
    mapping of every one of its join keys."""
    join_keys = selection.join_keys
    if isinstance(keys, str):
        if len(join_keys) > 1:
            raise RequestError(
                f"{group} is keyed by {list(join_keys)}: use "
                f"GET /v1/features/{group}?{'&'.join(f'{k}=...' for k in join_keys)}"
            )
        entity: str | Mapping[str, str] = keys
    else:
        missing = [k for k in join_keys if not keys.get(k)]
        if missing:
            raise RequestError(f"{group} is keyed by {list(join_keys)}; missing {missing}")
        entity = {k: keys[k] for k in join_keys}
    return entity


async def _group_features(
    online: OnlineFeatures,
    group: str,
    keys: Mapping[str, str] | str,
    endpoint: str,
    parameters: Mapping[str, str],
) -> Response:
    """The vector of the group's features (one cached selection) for the entity these
    join keys name (a one-key group's value, or a mapping of the group's join keys), in
    the group endpoints' shape."""
    _, body = await _serve_group(online, group, keys, endpoint, parameters)
    return json_response(body)


async def _serve_group(
    online: OnlineFeatures,
    group: str,
    keys: Mapping[str, str] | str,
    endpoint: str,
    parameters: Mapping[str, str],
) -> tuple[ServedVectors, dict[str, Any]]:
    """What the group endpoints serve, and the body they answer with."""
    selection = online.group_selection(group)
    entity = _entity_of(selection, group, keys)
    try:
        ids = selection.entity_ids([entity])
    except RequestError as error:
        # The URL names the key: there is no body whose entities[0] it would be.
        raise RequestError(str(error).removeprefix("entities[0].")) from None
    context = selection.context_of_text(parameters) if selection.request_fields else None
    served = await online.serve(selection, ids, endpoint, context)
    (vector,) = served.vectors
    pointer = served.snapshot.pointer
    names = [ref.name for ref in selection.refs]
    return served, {
        "group": group,
        "entity_id": vector.entity_id,
        "as_of": served.as_of,
        "batch_cutoff": pointer and pointer.cutoff,
        "batch_version": pointer and pointer.version,
        "speed_watermark": served.snapshot.speed_watermarks.get(group),
        "features": dict(zip(names, vector.values, strict=True)),
        "statuses": dict(zip(names, vector.statuses, strict=True)),
    }


async def batch_runs(
    request: Request,
    store: Store,
    limit: Annotated[int, Query(ge=1, le=200, description="How many, newest first.")] = 20,
) -> Response:
    """The batch run history: cutoff, Delta version, rows, entities, status, error. A
    run whose scheduler was killed reads as ``abandoned`` (LFP_BATCH_RUN_LEASE_S)."""
    lease_s = request.app.state.settings.batch_run_lease_s
    runs = [RunRecord.model_validate_json(raw) for raw in await store.batch_runs(limit)]
    return json_response([settled(run, lease_s).model_dump(mode="json") for run in runs])


async def list_feature_services(online: Online) -> list[FeatureServiceInfo]:
    """Every feature service: its ordered features, their types and defaults."""
    return [service_info(online, s.name) for s in online.repo.services]


async def describe_feature_service(name: ServiceName, online: Online) -> FeatureServiceInfo:
    """One feature service: the vector layout a model trained on it expects."""
    return service_info(online, name)


def service_info(online: OnlineFeatures, name: str) -> FeatureServiceInfo:
    selection = online.selection(feature_service=name)
    service = online.repo.service(name)
    return FeatureServiceInfo(
        name=name,
        description=service.description,
        entity_key=", ".join(selection.join_keys),
        join_keys=list(selection.join_keys),
        request_fields={f.name: f.type for f in selection.request_fields},
        features=[feature_info(ref) for ref in selection.refs],
    )


def feature_info(ref: FeatureRef) -> FeatureInfo:
    if ref.derived is not None:
        return FeatureInfo(
            name=ref.qualified_name,
            function="derived",
            column=None,
            window=None,
            expression=repr(ref.derived.expression),
            value_type=ref.derived.json_type(),
            default=ref.default,
        )
    assert ref.feature is not None and ref.group is not None
    return FeatureInfo(
        name=ref.qualified_name,
        function=ref.feature.aggregation.name,
        column=ref.feature.column,
        window=ref.feature.window.name,
        value_type=ref.feature.json_type(ref.group.source),
        default=ref.default,
    )


def add_v1_routes(
    app: FastAPI, auth: list[Any], auth_errors: tuple[int, ...], repo: FeatureRepo
) -> None:
    """The ``/v1`` endpoints, on the app itself: FastAPI dispatches an included router
    through a second routing layer, measured at 63k instructions (~30 us) per request.

    The schema names what ``repo`` has: its groups and services as the enums of the path
    parameters (a client sees what exists; another name is a 404 naming them), and every
    join key as a query parameter of the by-keys endpoint (each group needs its own).
    These are ``openapi_extra`` parameters naming the generated ones, which the app's
    schema merges into them (``serving_layer.app``: FastAPI would list them twice).
    """
    groups = sorted(g.name for g in repo.groups)
    services = sorted(s.name for s in repo.services)
    join_keys = sorted({k for g in repo.groups for k in g.join_keys})

    def add(
        path: str,
        endpoint: Any,
        response_model: Any,
        errors: tuple[int, ...],
        *,
        method: str = "GET",
        tags: tuple[str, ...] = ("features",),
        openapi_extra: dict[str, Any] | None = None,
    ) -> None:
        app.add_api_route(
            path,
            endpoint,
            methods=[method],
            response_model=response_model,
            tags=list(tags),
            dependencies=auth,
            responses=error_responses(*errors, *auth_errors),
            openapi_extra=openapi_extra,
        )

    # Routes match in order: the vector endpoint first, as it takes the most traffic.
    add(
        FEATURES_ENDPOINT,
        get_features,
        FeaturesResponse,
        (404, 413, 415, 422, 503),
        method="POST",
        openapi_extra=documented_body(FeaturesRequest),
    )
    add(
        GROUP_ENDPOINT,
        get_group_features,
        GroupFeatures,
        (404, 422, 503),
        openapi_extra={"parameters": [_enum("group", groups)]},
    )
    add(
        GROUP_BY_KEYS_ENDPOINT,
        get_group_features_by_keys,
        GroupFeatures,
        (404, 422, 503),
        openapi_extra={"parameters": [_enum("group", groups), *map(_join_key, join_keys)]},
    )
    add(
        PROVENANCE_ENDPOINT,
        get_provenance,
        Provenance,
        (404, 422, 503),
        tags=("ops",),
        openapi_extra={"parameters": [_enum("group", groups), *map(_join_key, join_keys)]},
    )
    add("/v1/batch/runs", batch_runs, list[RunRecord], (422, 503), tags=("batch",))
    add("/v1/feature-services", list_feature_services, list[FeatureServiceInfo], ())
    add(
        "/v1/feature-services/{name}",
        describe_feature_service,
        FeatureServiceInfo,
        (404,),
        openapi_extra={"parameters": [_enum("name", services)]},
    )


def _enum(name: str, values: list[str]) -> dict[str, Any]:
    """The values a path parameter takes, added to its generated schema."""
    return {"name": name, "in": "path", "schema": {"enum": values}}


def _join_key(key: str) -> dict[str, Any]:
    """A join key as a query parameter of the by-keys endpoint (read from the query
    string by the handler, as the group needs them)."""
    return {
        "name": key,
        "in": "query",
        "required": False,
        "description": f"Join key {key} (every join key of the group is needed).",
        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH},
    }
