"""Catalog pages: what the feature repo declares (sources, entities, groups, services,
derived features), searchable, and one page per feature with its lineage graph."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from feature_core.definitions import Aggregation, FeatureRepo
from feature_core.sources import EventSource, Field
from serving_layer.console.auth import LoggedIn
from serving_layer.console.lineage import feature_href, feature_lineage, layout
from serving_layer.console.render import page

router = APIRouter(include_in_schema=False)


def constraints(one: Field) -> list[str]:
    """A field's declared constraints, as text."""
    found = ["required"] if one.required else []
    if one.values is not None:
        found.append("one of " + ", ".join(repr(v) for v in one.values))
    for what, value in (
        ("min", one.min),
        ("max", one.max),
        ("min length", one.min_length),
        ("max length", one.max_length),
    ):
        if value is not None:
            found.append(f"{what} {value!r}")
    return found


def aggregation_options(aggregation: Aggregation) -> str:
    """The options an aggregation was declared with beyond function, column and windows."""
    options = {
        "k": aggregation.k,
        "precision": aggregation.precision,
        "population": aggregation.population or None,
        "percentiles": list(aggregation.percentiles) if aggregation.percentiles else None,
        "half_life": aggregation.half_life,
        "max_keys": aggregation.max_keys,
    }
    return ", ".join(f"{k}={v!r}" for k, v in options.items() if v is not None)


@dataclass
class Matcher:
    """Case-insensitive search over each item's names and descriptions (empty: all)."""

    query: str
    matched: int = 0
    total: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    def keep(self, kind: str, *texts: Any) -> bool:
        self.total += 1
        hit = not self.query or any(self.query in str(t).lower() for t in texts if t)
        if hit:
            self.matched += 1
            self.counts[kind] = self.counts.get(kind, 0) + 1
        return hit


def _sources(repo: FeatureRepo, match: Matcher) -> list[dict[str, Any]]:
    found = []
    for source in repo.sources:
        fields = [
            {"name": f.name, "type": f.type, "constraints": constraints(f), "about": f.description}
            for f in source.fields
        ]
        if match.keep(
            "sources",
            source.name,
            source.description,
            source.topic_name,
            source.table_name,
            *(f.name for f in source.fields),
        ):
            found.append(
                {
                    "name": source.name,
                    "description": source.description,
                    "topic": source.topic_name,
                    "dead_letter_topic": source.dlq_topic,
                    "table": source.table_name,
                    "event_time": source.event_time,
                    "fields": fields,
                    "rules": [repr(rule) for rule in source.rules],
                    "groups": [g.name for g in repo.groups if g.source.name == source.name],
                }
            )
    return found


def _entities(repo: FeatureRepo, match: Matcher) -> list[dict[str, Any]]:
    entities: dict[str, dict[str, Any]] = {}
    for group in repo.groups:
        entity = entities.setdefault(
            group.entity.name,
            {
                "name": group.entity.name,
                "join_keys": list(group.entity.join_keys),
                "description": group.entity.description,
                "groups": [],
            },
        )
        entity["groups"].append(group.name)
    return [
        e
        for e in entities.values()
        if match.keep("entities", e["name"], e["description"], *e["join_keys"], *e["groups"])
    ]


def _groups(repo: FeatureRepo, match: Matcher) -> list[dict[str, Any]]:
    found = []
    for group in repo.groups:
        features = [
            {
                "name": f.name,
                "href": feature_href(f.qualified_name),
                "aggregation": f.aggregation.name,
                "column": f.column,
                "window": f.window.name,
                "type": f.json_type(group.source),
            }
            for f in group.features
        ]
        if not match.keep(
            "groups",
            group.name,
            group.description,
            group.source.name,
            group.entity.name,
            *(f["name"] for f in features),
        ):
            continue
        found.append(
            {
                "name": group.name,
                "description": group.description,
                "entity": group.entity.name,
                "join_keys": list(group.join_keys),
                "source": group.source.name,
                "filters": [
                    f"{f.column} in ({', '.join(repr(v) for v in f.values)})" for f in group.filters
                ],
                "aggregations": [
                    {
                        "function": a.function,
                        "column": a.column,
                        "windows": list(a.windows),
                        "name": a.base_name,
                        "options": aggregation_options(a),
                    }
                    for a in group.aggregations
                ],
                "features": features,
            }
        )
    return found


def _services(repo: FeatureRepo, match: Matcher) -> list[dict[str, Any]]:
    return [
        {
            "name": s.name,
            "description": s.description,
            "version": repo.service_version(s.name),
            "features": [
                {"name": f, "href": feature_href(f), "default": s.defaults.get(f)}
                for f in s.features
            ],
            "has_defaults": bool(s.defaults),
        }
        for s in repo.services
        if match.keep("services", s.name, s.description, *s.features)
    ]


def _derived(repo: FeatureRepo, match: Matcher) -> list[dict[str, Any]]:
    found = []
    for view in repo.derived_views:
        features = [d for d in repo.derived.values() if d.view == view.name]
        if not match.keep(
            "derived", view.name, view.description, *(d.qualified_name for d in features)
        ):
            continue
        found.append(
            {
                "name": view.name,
                "description": view.description,
                "features": [
                    {
                        "name": d.name,
                        "href": feature_href(d.qualified_name),
                        "expression": repr(d.expression),
                        "type": str(d.value_type),
                        "inputs": [{"name": i, "href": feature_href(i)} for i in d.inputs],
                        "request_fields": [f"{f.name}: {f.type}" for f in d.request_fields],
                    }
                    for d in features
                ],
            }
        )
    return found


@router.get("/console")
async def catalog(request: Request, _: LoggedIn, q: str = "") -> Response:
    """Every definition of the repo, or those whose names or descriptions hold ``q``."""
    repo: FeatureRepo = request.app.state.repo
    match = Matcher(q.strip().lower()[:200])
    context = {
        "q": q[:200],
        "sources": _sources(repo, match),
        "entities": _entities(repo, match),
        "groups": _groups(repo, match),
        "services": _services(repo, match),
        "derived_views": _derived(repo, match),
        "match": match,
    }
    return page(request, "catalog.html", context)


def _source_of(repo: FeatureRepo, reference: str) -> EventSource | None:
    if reference in repo.derived:
        return None
    return repo.group(reference.partition(":")[0]).source


@router.get("/console/features/{view}/{name}")
async def feature_page(request: Request, view: str, name: str, _: LoggedIn) -> Response:
    """One feature: what it computes, where its data comes from and where it goes."""
    repo: FeatureRepo = request.app.state.repo
    reference = f"{view}:{name}"
    try:
        graph = feature_lineage(repo, reference)
    except KeyError:
        context = {"reference": reference}
        return page(request, "feature_missing.html", context, status_code=404)
    about: dict[str, Any] = {"reference": reference, "view": view, "name": name}
    derived = repo.derived.get(reference)
    if derived is not None:
        about.update(
            kind="derived",
            expression=repr(derived.expression),
            type=str(derived.value_type),
            inputs=[{"name": i, "href": feature_href(i)} for i in derived.inputs],
            request_fields=[f"{f.name}: {f.type}" for f in derived.request_fields],
            groups=list(derived.groups),
            description=derived.description,
        )
    else:
        group = repo.group(view)
        feature = next(f for f in group.features if f.name == name)
        source = _source_of(repo, reference)
        assert source is not None
        about.update(
            kind="aggregate",
            aggregation=feature.aggregation.name,
            column=feature.column,
            window=feature.window.name,
            type=feature.json_type(source),
            group=group.name,
            entity=group.entity.name,
            join_keys=list(group.join_keys),
            filters=[
                f"{f.column} in ({', '.join(repr(v) for v in f.values)})" for f in group.filters
            ],
            source=source.name,
            description=group.description,
        )
    about["services"] = [s.name for s in repo.services if reference in s.features]
    return page(request, "feature.html", {"feature": about, "lineage": layout(graph)})
