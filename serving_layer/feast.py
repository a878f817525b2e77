"""Feast-compatible ``POST /get-online-features``: Feast's request and response shapes.

A Feast HTTP client (or Feast's remote online store) pointed at this server works
unchanged. Values and statuses are the same ones the ``/v1`` endpoints serve.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import Response

from feature_core.keys import entity_id
from feature_core.merge import ValueStatus
from serving_layer.bodies import documented_body, parse_body
from serving_layer.deps import online_of
from serving_layer.models import FeastRequest, FeastResponse
from serving_layer.responses import json_response
from serving_layer.vectors import RequestError

ENDPOINT = "/get-online-features"
EPOCH = "1970-01-01T00:00:00Z"  # Feast's timestamp for entity key columns

# Feast's FieldStatus names. A null filled by a service default still had no data.
FEAST_STATUS = {
    ValueStatus.PRESENT: "PRESENT",
    ValueStatus.NO_DATA: "NOT_FOUND",
    ValueStatus.DEFAULT: "NOT_FOUND",
    ValueStatus.STALE_BATCH_VIEW: "OUTSIDE_MAX_AGE",
    ValueStatus.SPEED_ONLY: "OUTSIDE_MAX_AGE",  # partial: the history is missing
}

router = APIRouter(tags=["feast"])


def _iso(ms: int | None) -> str:
    if ms is None:
        return EPOCH
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


@router.post(ENDPOINT, response_model=FeastResponse, openapi_extra=documented_body(FeastRequest))
async def get_online_features(request: Request) -> Response:
    """Feature values in Feast's column-oriented shape: the join key column first, then
    one column per feature with a value, status and event timestamp per entity."""
    body = await parse_body(request, FeastRequest)
    online = online_of(request)
    selection = online.selection(body.feature_service, body.features)
    join_keys = selection.join_keys
    if set(body.entities) != set(join_keys):
        raise RequestError(
            f"entities must have one list per join key of the requested features, "
            f"{list(join_keys)}; got {sorted(body.entities)}"
        )
    columns = [body.entities[k] for k in join_keys]
    n = len(columns[0])
    if any(len(column) != n for column in columns):
        raise RequestError("every join key's list must have the same length")
    ids = [entity_id(values) for values in zip(*columns, strict=True)]
    served = await online.serve(selection, ids, ENDPOINT)
    if body.full_feature_names:
        names = [f"{r.group.name}__{r.feature.name}" for r in selection.refs]
    else:
        names = [r.feature.name for r in selection.refs]
        if len(set(names)) != len(names):
            raise RequestError(
                "feature names collide across groups; set full_feature_names to true"
            )
    pointer = served.snapshot.pointer
    watermarks = served.snapshot.speed_watermarks
    results = [
        {"values": column, "statuses": ["PRESENT"] * n, "event_timestamps": [EPOCH] * n}
        for column in columns
    ]
    for i, ref in enumerate(selection.refs):
        # The newest event time the views cover for this feature's group.
        times = [t for t in (watermarks.get(ref.group.name), pointer and pointer.cutoff) if t]
        stamp = _iso(max(times) if times else None)
        results.append(
            {
                "values": [v.values[i] for v in served.vectors],
                "statuses": [FEAST_STATUS[v.statuses[i]] for v in served.vectors],
                "event_timestamps": [stamp] * n,
            }
        )
    return json_response({"metadata": {"feature_names": [*join_keys, *names]}, "results": results})
