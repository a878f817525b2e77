"""Entity lookup: type an entity's join keys (and pick a group, or take every group they
name), see each group's values and statuses as the API serves them, and where they came
from: the batch view (version, cutoff, Delta versions), the speed watermark, and per window
what the merge combined.

Served in process by the same code as ``/v1`` (no HTTP hop, the same merge)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from feature_core.definitions import FeatureRepo
from serving_layer.console.auth import LoggedIn
from serving_layer.console.data import store_guard
from serving_layer.console.lineage import feature_href
from serving_layer.console.render import page
from serving_layer.models import MAX_KEY_LENGTH
from serving_layer.online import OnlineFeatures
from serving_layer.routes import provenance
from serving_layer.vectors import NotServing, RequestError

router = APIRouter(include_in_schema=False)

LOOKUP_ENDPOINT = "/console/lookup"


def lookup_targets(repo: FeatureRepo, keys: dict[str, str], chosen: str) -> list[str]:
    """The groups (and derived views needing no request field) to show: the one chosen,
    or every one whose join keys are all given."""
    if chosen:
        return [chosen]
    names = [g.name for g in repo.groups if set(g.join_keys) <= set(keys)]
    for view in repo.derived_views:
        features = [d for d in repo.derived.values() if d.view == view.name]
        needs = {k for d in features for g in d.groups for k in repo.group(g).join_keys}
        if features and needs <= set(keys) and not any(d.request_fields for d in features):
            names.append(view.name)
    return names


async def serve_one(app: Any, name: str, keys: dict[str, str]) -> dict[str, Any]:
    """One group's values for the entity and their provenance (the body of
    ``/v1/provenance/{group}``, rows in the group's feature order); a problem (missing
    key, no batch view) is the group's ``error``."""
    found: dict[str, Any] = {"group": name, "error": None}
    online: OnlineFeatures = app.state.online
    try:
        selection = online.group_selection(name)
        wanted = {k: keys[k] for k in selection.join_keys if keys.get(k)}
        body = await provenance(online, name, wanted)
    except (RequestError, NotServing) as error:
        found["error"] = str(error)
        return found
    names = [ref.name for ref in selection.refs]
    found.update(
        body,
        rows=[
            {
                "name": n,
                "href": feature_href(ref.qualified_name),
                "value": body["features"][n],
                "status": body["statuses"][n],
            }
            for n, ref in zip(names, selection.refs, strict=True)
        ],
    )
    return found


@router.get(LOOKUP_ENDPOINT)
@store_guard
async def lookup(request: Request, _: LoggedIn, group: str = "") -> Response:
    """The form, and for the join keys given, every group's values with their provenance."""
    online: OnlineFeatures = request.app.state.online
    repo = online.repo
    join_keys = sorted(repo.join_key_types)
    keys = {
        k: v.strip()
        for k, v in request.query_params.items()
        if k in repo.join_key_types and v.strip()
    }
    problems = [
        f"{k}: 1 to {MAX_KEY_LENGTH} characters" for k, v in keys.items() if len(v) > MAX_KEY_LENGTH
    ]
    names = [g.name for g in repo.groups] + [v.name for v in repo.derived_views]
    chosen = group if group in names else ""
    if group and not chosen:
        problems.append(f"unknown group {group[:100]!r}")
    results = []
    if keys and not problems:
        targets = lookup_targets(repo, keys, chosen)
        if not targets:
            problems.append(
                "no group is keyed by "
                + ", ".join(sorted(keys))
                + " alone: give every join key of a group, or pick one"
            )
        results = [await serve_one(request.app, name, keys) for name in targets]
    context = {
        "join_keys": join_keys,
        "keys": keys,
        "groups": names,
        "chosen": chosen,
        "problems": problems,
        "results": results,
    }
    return page(request, "lookup.html", context, status_code=422 if problems else 200)
