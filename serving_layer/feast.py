"""Feast-compatible ``POST /get-online-features`` and ``GET /health``.

Feast's SDK with ``online_store: type: remote`` (see ``lfp feast export``), or any Feast
HTTP client, pointed at this server works unchanged. The values are the ones the ``/v1``
endpoints serve, mapped to Feast's meaning (tested against Feast's own feature server in
tests/serving_layer/test_feast_sdk.py):

- an entity with no data in a feature group's views is not found: null values, status
  ``NOT_FOUND``, event timestamp 1970-01-01T00:00:00Z; service defaults do not apply (Feast
  has none);
- lists are JSON arrays of their element type (Feast ``Array(...)``) and maps (``count_by``)
  JSON objects of counts (Feast ``Map``), as Feast's server prints those types;
- a null value of a found entity is ``NULL_VALUE``, and so is an empty list or map: Feast's
  SDK types each value from the JSON value itself (its remote store ignores the declared
  dtype) and fails on an empty one ("Couldn't infer value type from empty value");
- values of a stale batch view, or speed-only values, are ``OUTSIDE_MAX_AGE``;
- ``feature_service`` wins over ``features``; features of several entities may be asked
  together, each group reading its own join keys from ``entities``; entity values are
  converted to their join key's declared type and echoed, with every known join key sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from feature_core.definitions import FeatureRepo
from feature_core.keys import KeyValueError, entity_id, typed_key
from feature_core.merge import ValueStatus
from serving_layer.bodies import documented_body, parse_body
from serving_layer.deps import online_of
from serving_layer.models import FeastRequest, FeastResponse
from serving_layer.online import OnlineFeatures, ServedVectors
from serving_layer.ops_cache import shared_per_interval
from serving_layer.responses import json_response
from serving_layer.vectors import NotFoundError, RequestError, Selection

ENDPOINT = "/get-online-features"
EPOCH = "1970-01-01T00:00:00Z"  # Feast's timestamp for entity keys and values not found

# A found entity's value: Feast's FieldStatus name (a null one is NULL_VALUE).
FEAST_STATUS = {
    ValueStatus.PRESENT: "PRESENT",
    ValueStatus.NO_DATA: "PRESENT",  # e.g. a count of 0 over a window with no events
    ValueStatus.DEFAULT: "PRESENT",  # not reached: Feast selections carry no defaults
    ValueStatus.STALE_BATCH_VIEW: "OUTSIDE_MAX_AGE",
    ValueStatus.SPEED_ONLY: "OUTSIDE_MAX_AGE",  # partial: the history is missing
    ValueStatus.UNDEFINED: "NULL_VALUE",  # not reached: its value is null
}

router = APIRouter(tags=["feast"])
health_router = APIRouter(tags=["ops"])  # no token, as Feast's and our /healthz


def feast_timestamp(ms: int) -> str:
    """Epoch ms as protobuf's JSON Timestamp, as Feast's server prints it: no fraction
    for whole seconds, else milliseconds."""
    text = datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{ms % 1000:03d}Z" if ms % 1000 else f"{text}Z"


def requested_features(repo: FeatureRepo, body: FeastRequest) -> list[str]:
    """The references asked for: a feature service's (it wins, as in Feast) or the list."""
    if body.feature_service is not None:
        try:
            return list(repo.service(body.feature_service).features)
        except KeyError as error:
            raise NotFoundError(error.args[0]) from None
    if not body.features:
        raise RequestError("give 'feature_service' or a non-empty 'features'")
    return list(body.features)


def by_entity(online: OnlineFeatures, refs: Sequence[str]) -> list[Selection]:
    """One selection per entity type, in order of first use (Feast reads each feature
    view with its own join keys), then one of the derived features asked for (Feast's
    on-demand feature views: over any entity types, with request data)."""
    parts: dict[tuple[str, ...], list[str]] = {}
    keys_of = {g.name: g.join_keys for g in online.repo.groups}
    views = {v.name for v in online.repo.derived_views}
    derived = []
    for ref in refs:
        group = ref.partition(":")[0]
        if group in views:
            derived.append(ref)
            continue
        keys = keys_of.get(group)
        if keys is None:
            known = ", ".join([*keys_of, *sorted(views)])
            raise RequestError(f"unknown feature group {group!r}; known: {known}")
        parts.setdefault(keys, []).append(ref)
    selections = [online.selection(features=part) for part in parts.values()]
    if derived:
        selections.append(online.selection(features=derived))
    return selections


def request_data(selection: Selection, entities: dict[str, list[Any]], n: int) -> Any:
    """The request fields of a selection's derived features, from the ``entities``
    columns named after them (as Feast passes request data), one object per entity."""
    fields = selection.request_fields
    if not fields:
        return None
    missing = [f.name for f in fields if f.name not in entities]
    if missing:
        raise RequestError(
            f"entities lacks request data column(s) {missing} of the on-demand features"
        )
    if any(len(entities[f.name]) != n for f in fields):
        raise RequestError("every column in 'entities' must have the same length")
    return [{f.name: entities[f.name][i] for f in fields} for i in range(n)]


def typed_keys(repo: FeatureRepo, entities: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Each known join key's values in its declared type (Feast converts them to the
    entity's type and echoes them); keys no entity has are dropped, as Feast does."""
    kinds = repo.join_key_types
    typed: dict[str, list[Any]] = {}
    for key, values in entities.items():
        kind = kinds.get(key)
        if kind is None:
            continue
        python = kind.python
        if any(isinstance(v, (bool, float)) for v in values):
            raise RequestError(f"entities.{key}: join key values are text or integers")
        try:
            typed[key] = [typed_key(key, python, v) for v in values]
        except KeyValueError as error:
            raise RequestError(f"entities.{error}") from None
    return typed


@router.post(ENDPOINT, response_model=FeastResponse, openapi_extra=documented_body(FeastRequest))
async def get_online_features(request: Request) -> Response:
    """Feature values in Feast's column-oriented shape: the join key columns first, then
    one column per feature with a value, status and event timestamp per entity."""
    body = await parse_body(request, FeastRequest)
    online = online_of(request)
    if body.features:  # capped even when feature_service wins over it: it was parsed
        online.check_features(len(body.features))
    for values in body.entities.values():
        online.check_entities(len(values))
    refs = requested_features(online.repo, body)
    selections = by_entity(online, refs)
    keys = typed_keys(online.repo, body.entities)
    lengths = {len(values) for values in keys.values()}
    if len(lengths) > 1:
        raise RequestError("every join key's list in 'entities' must have the same length")
    n = lengths.pop() if lengths else 0
    parts = []
    for selection in selections:
        missing = [k for k in selection.join_keys if k not in keys]
        if missing:
            raise RequestError(
                f"entities lacks join key(s) {missing} of {', '.join(selection.group_names)}"
            )
        columns = [keys[k] for k in selection.join_keys]
        if len(selection.key_sets) == 1:
            ids: Any = [entity_id(v) for v in zip(*columns, strict=True)]
        else:
            rows = [
                dict(zip(selection.join_keys, v, strict=True)) for v in zip(*columns, strict=True)
            ]
            ids = selection.entity_ids(rows)
        parts.append((selection, ids, request_data(selection, body.entities, n)))
    served = await online.serve_together(parts, ENDPOINT)
    names: list[str] = list(keys)
    results: list[dict[str, Any]] = [
        {"values": values, "statuses": ["PRESENT"] * n, "event_timestamps": [EPOCH] * n}
        for values in keys.values()
    ]
    for one in served:
        names += feature_names(one.selection, body.full_feature_names)
        results += feature_columns(one)
    if not body.full_feature_names and len(set(names)) != len(names):
        raise RequestError("feature names collide across groups; set full_feature_names to true")
    metadata: dict[str, Any] = {"feature_names": names}
    if body.include_feature_view_version_metadata:
        groups = dict.fromkeys(g for one in served for g in one.selection.group_names)
        metadata["feature_view_metadata"] = [{"name": g} for g in groups]
    return json_response({"metadata": metadata, "results": results})


def feature_names(selection: Selection, full: bool) -> list[str]:
    if full:
        return [f"{r.view_name}__{r.name}" for r in selection.refs]
    return [r.name for r in selection.refs]


def feast_value(value: Any, status: ValueStatus) -> tuple[Any, str]:
    """A found entity's value as Feast's JSON carries it, and its Feast status."""
    if value is None or (isinstance(value, (list, dict)) and not value):
        return None, "NULL_VALUE"
    return value, FEAST_STATUS[status]


def feature_columns(served: ServedVectors) -> list[dict[str, Any]]:
    """One Feast result per feature of the selection, entity by entity."""
    selection, snapshot = served.selection, served.snapshot
    if selection.plan is not None:
        return derived_columns(served)
    n_groups = len(selection.groups)
    # The newest event time each group's views cover (the same for all its entities).
    covered = []
    for group in selection.groups:
        times = [snapshot.speed_watermarks.get(group.name)]
        if snapshot.pointer is not None:
            times.append(snapshot.pointer.cutoff)
        known = [t for t in times if t]
        covered.append(feast_timestamp(max(known)) if known else EPOCH)
    # An entity is found in a group when the group's views hold anything for it.
    found = [
        [
            not (v.batch_doc is None and not v.speed_tiles and not v.corrections)
            for v in snapshot.entities[i : i + n_groups]
        ]
        for i in range(0, len(snapshot.entities), n_groups)
    ]
    columns = []
    for position, ref in enumerate(selection.refs):
        g = ref.group_index
        values, statuses, stamps = [], [], []
        for vector, entity_found in zip(served.vectors, found, strict=True):
            value = vector.values[position]
            if not entity_found[g]:
                values.append(None)
                statuses.append("NOT_FOUND")
                stamps.append(EPOCH)
                continue
            value, status = feast_value(value, vector.statuses[position])
            values.append(value)
            statuses.append(status)
            stamps.append(covered[g])
        columns.append({"values": values, "statuses": statuses, "event_timestamps": stamps})
    return columns


def derived_columns(served: ServedVectors) -> list[dict[str, Any]]:
    """On-demand features as Feast's server gives them: a timestamp of the epoch (they
    are computed at the request), a value's status as the other features' (null:
    ``NULL_VALUE``; a stale or speed-only input: ``OUTSIDE_MAX_AGE``)."""
    columns = []
    for position in range(len(served.selection.refs)):
        pairs = [feast_value(v.values[position], v.statuses[position]) for v in served.vectors]
        columns.append(
            {
                "values": [value for value, _ in pairs],
                "statuses": [status for _, status in pairs],
                "event_timestamps": [EPOCH] * len(pairs),
            }
        )
    return columns


@health_router.get(
    "/health",
    response_class=Response,
    responses={
        200: {"description": "The online store answers (empty body)", "content": None},
        503: {"description": "Redis does not answer (empty body)"},
    },
)
@shared_per_interval("health")  # no token: a flood costs one Redis read per interval
async def health(request: Request) -> Response:
    """Feast's health check: 200 with an empty body while the online store answers."""
    try:
        await online_of(request).store.read()
    except Exception:  # any failure to read means not healthy, as Feast's check
        return Response(status_code=503)
    return Response(status_code=200)
