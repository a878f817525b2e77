"""A Feast repo that mirrors the platform's definitions: ``lfp feast export``.

Feast clients (the SDK with ``online_store: type: remote``) read features through a
registry of entities, feature views and feature services. This writes one whose names and
dtypes match what ``/get-online-features`` serves: one Feast entity per join key, one
feature view per feature group (its features, typed), one on-demand feature view per
derived feature view (its request fields a ``RequestSource``, the feature views it reads
its sources), one feature service per service. The platform computes the values; the
views' batch sources only satisfy Feast's schema (empty Parquet files: training sets come
from `lfp training-set build`).

An on-demand view's transformation calls the platform's evaluator
(:func:`on_demand_values`, through :class:`feature_core.derived.DerivedPlan`, as the API
and training sets do): no expression is written a second time in Feast's terms.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from feature_core.definitions import Feature, FeatureGroup, FeatureRepo
from feature_core.derived import DerivedPlan, RequestField

#: Platform field type -> Feast dtype (``feast.types``) and entity ``ValueType``.
FEAST_DTYPES = {
    "string": "String",
    "integer": "Int64",
    "timestamp": "Int64",  # epoch milliseconds, as the API serves them
    "float": "Float64",
    "boolean": "Bool",
}
ENTITY_VALUE_TYPES = {"string": "STRING", "integer": "INT64", "timestamp": "INT64"}


#: Feast dtypes -> the Arrow type of the (empty) batch source's column.
ARROW_TYPES = {
    "String": pa.string(),
    "Int64": pa.int64(),
    "Float64": pa.float64(),
    "Bool": pa.bool_(),
}


def feast_dtype(feature: Feature, group: FeatureGroup) -> str:
    """The feature's Feast dtype: the scalar's, an ``Array`` of it for a list, ``Map`` for a
    map (text keys). ``Map``, not ``Json``: Feast's server prints a ``Map`` as a JSON object,
    as the API serves it, but a ``Json`` value as a JSON text (a string); Feast's SDK reads
    either back as a dict. Feast's ``Map`` declares no value type: the counts are ints in it.
    """
    return value_dtype(*feature.value_type(group.source))


def value_dtype(name: str, shape: str) -> str:
    """The Feast dtype of values of a field type ``name`` and a ``shape``."""
    dtype = FEAST_DTYPES[name]
    if shape == "map":
        return "Map"
    return f"Array({dtype})" if shape == "list" else dtype


#: A value of each Feast dtype, as Python source: what an on-demand view answers when
#: `feast apply` checks its schema (:func:`on_demand_view`).
SAMPLES = {"String": "''", "Int64": "0", "Float64": "0.0", "Bool": "False", "Map": "{}"}


def sample(dtype: str) -> str:
    if dtype.startswith("Array("):
        return f"[{SAMPLES[dtype[len('Array(') : -1]]}]"
    return SAMPLES[dtype]


def arrow_type(feature: Feature, group: FeatureGroup) -> pa.DataType:
    """The batch source column of a feature: its values' own Arrow type (a map's values
    too, which Feast's ``Map`` leaves undeclared)."""
    name, shape = feature.value_type(group.source)
    scalar = ARROW_TYPES[FEAST_DTYPES[name]]
    if shape == "map":
        return pa.map_(pa.string(), scalar)
    return pa.list_(scalar) if shape == "list" else scalar


@dataclass(frozen=True)
class FeastEntity:
    """One Feast entity: Feast entities have exactly one join key."""

    name: str
    join_key: str
    value_type: str
    variable: str


def feast_entities(repo: FeatureRepo) -> dict[str, FeastEntity]:
    """Join key -> its Feast entity. A one-key entity keeps its name; a key used only in
    composite entities is named after the key."""
    names: dict[str, str] = {}
    for group in repo.groups:
        if len(group.join_keys) == 1:
            names.setdefault(group.join_keys[0], group.entity.name)
    types: dict[str, str] = {}
    for key, kind in repo.join_key_types.items():
        if kind.name not in ENTITY_VALUE_TYPES:
            raise ValueError(f"join key {key} of type {kind.name} has no Feast form")
        types[key] = ENTITY_VALUE_TYPES[kind.name]
    return {
        key: FeastEntity(names.get(key, key), key, value_type, f"entity_{key}")
        for key, value_type in types.items()
    }


def feature_store_yaml(project: str, online_store: Mapping[str, object]) -> str:
    store = "\n".join(f"  {key}: {json.dumps(value)}" for key, value in online_store.items())
    return (
        f"project: {project}\n"
        "provider: local\n"
        "registry: data/registry.db\n"
        f"online_store:\n{store}\n"
        "offline_store:\n  type: file\n"
        "entity_key_serialization_version: 3\n"
    )


# --- derived features: on-demand feature views -----------------------------------------


def on_demand_inputs(
    repo: FeatureRepo, view: str
) -> tuple[list[str], tuple[str, ...], tuple[RequestField, ...]]:
    """A derived view's features (qualified names), the aggregate features they read
    (directly or through other derived features, which the evaluator computes too) and
    the request fields they read."""
    wanted = [d.qualified_name for d in repo.derived.values() if d.view == view]
    base: dict[str, None] = {}

    def visit(reference: str) -> None:
        for one in repo.derived[reference].inputs:
            if one in repo.derived:
                visit(one)
            else:
                base.setdefault(one)

    for reference in wanted:
        visit(reference)
    plan = DerivedPlan(repo.derived, wanted, tuple(base))
    return wanted, tuple(base), plan.request_fields


@functools.cache
def _on_demand_plan(module: str, view: str) -> tuple[DerivedPlan, tuple[str, ...], list[str]]:
    repo = FeatureRepo.from_module(module)
    if view not in {v.name for v in repo.derived_views}:
        raise KeyError(f"{module} has no derived features {view!r}: export the Feast repo again")
    wanted, base, _ = on_demand_inputs(repo, view)
    return DerivedPlan(repo.derived, wanted, base), base, wanted


def on_demand_values(
    module: str, view: str, inputs: Mapping[str, Sequence[Any]], query_time: int | None = None
) -> dict[str, list[Any]]:
    """The transformation of the on-demand feature view ``view`` (Feast's python mode):
    the platform's evaluator over Feast's input columns.

    ``inputs`` holds a list per input feature (named ``feature`` or ``view__feature``) and
    per request field; the answer a list per derived feature, null where the value is (no
    data, or an undefined operation: Feast has no status ``undefined``). The query time is
    ``query_time`` (epoch ms), else now: Feast computes on-demand views at request time.
    """
    plan, base, wanted = _on_demand_plan(module, view)
    columns = []
    for reference in base:
        group, _, name = reference.partition(":")
        for key in (f"{group}__{name}", name):
            if key in inputs:
                columns.append(list(inputs[key]))
                break
        else:
            raise KeyError(f"{view}: Feast passed no input {name!r} ({reference})")
    for field_ in plan.request_fields:
        if field_.name not in inputs:
            raise KeyError(f"{view}: the request data lacks the request field {field_.name!r}")
        columns.append([field_.check(v) for v in inputs[field_.name]])
    lengths = [len(column) for column in (*columns, *inputs.values()) if column is not None]
    rows = lengths[0] if lengths else 1
    now = int(time.time() * 1000) if query_time is None else query_time
    positions = [(reference.partition(":")[2], plan.positions[reference]) for reference in wanted]
    answer: dict[str, list[Any]] = {name: [] for name, _ in positions}
    for i in range(rows):
        row = plan.compute([*(column[i] for column in columns), now])
        for name, position in positions:
            answer[name].append(DerivedPlan.served(row[position]))
    return answer


def on_demand_view(repo: FeatureRepo, module: str, view: str, description: str) -> list[str]:
    """The Python source of a derived view's on-demand feature view (and its request
    source): the transformation calls :func:`on_demand_values`.

    Feast stores the function's source text and runs it on its own (no module globals), so
    everything it needs is inside it. It runs where Feast computes the view itself: with
    ``online_store: remote`` (the API's export) Feast asks the API, which computes derived
    features like every other, and it runs only when `feast apply` checks the declared
    schema on sample inputs, in Feast's environment where the platform need not be
    installed: there it answers a sample of each declared type, not a value.
    """
    wanted, base, fields = on_demand_inputs(repo, view)
    features = [repo.derived[reference] for reference in wanted]
    sources: dict[str, list[str]] = {}
    for reference in base:
        group, _, name = reference.partition(":")
        sources.setdefault(group, []).append(name)
    source_names = [f"{group}[{names!r}]" for group, names in sources.items()]
    lines = []
    if fields or not sources:  # Feast needs a source: a view of query_time() has this one
        request = f"{view}_request"
        lines += [
            f"{request} = RequestSource(",
            f"    name={request!r},",
            "    schema=[",
            *(
                f"        Field(name={f.name!r}, dtype={value_dtype(f.type, 'scalar')}),"
                for f in fields
            ),
            "    ],",
            ")",
            "",
            "",
        ]
        source_names.append(request)
    dtypes = {f.name: value_dtype(f.value_type.name, f.value_type.shape) for f in features}
    samples = ", ".join(f"{name!r}: [{sample(dtype)}]" for name, dtype in dtypes.items())
    lines += [
        "@on_demand_feature_view(",
        f"    sources=[{', '.join(source_names)}],",
        "    schema=[",
        *(f"        Field(name={name!r}, dtype={dtype})," for name, dtype in dtypes.items()),
        "    ],",
        '    mode="python",',
        f"    description={description!r},",
        ")",
        f"def {view}(inputs: dict) -> dict:",
        "    # The platform's evaluator computes these values, as for its API and training",
        "    # sets; Feast runs this only where it computes the view itself, so the platform",
        "    # must be importable there (with `online_store: remote` the API computes them).",
        "    # The query time is now: Feast computes on-demand views at request time.",
        "    import sys",
        "",
        "    frame = sys._getframe(1)",
        '    while frame is not None and frame.f_code.co_name != "infer_features":',
        "        frame = frame.f_back",
        "    if frame is not None:  # `feast apply` checks the schema: one sample of each type",
        "        # (Feast passes the inputs on, and has no sample of a Map input: {} then)",
        "        maps = {key: [{}] for key, value in inputs.items() if value is None}",
        f"        return {{**maps, {samples}}}",
        "    from serving_layer.feast_repo import on_demand_values",
        "",
        f"    return on_demand_values({module!r}, {view!r}, inputs)",
        "",
        "",
    ]
    return lines


def definitions_py(repo: FeatureRepo, module: str) -> str:
    entities = feast_entities(repo)
    lines = [
        f'"""Feast definitions of the feature repo {module}, written by `lfp feast export`.',
        "",
        "Regenerate them after changing the repo. The platform computes and serves the",
        "values (`online_store: remote`); the batch sources only satisfy Feast's schema.",
        '"""',
        "",
        "from datetime import timedelta",
        "",
        "from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType",
        "from feast.types import Array, Bool, Float64, Int64, Map, String  # noqa: F401",
        "",
    ]
    if repo.derived_views:
        lines[-1:-1] = [
            "from feast import RequestSource",
            "from feast.on_demand_feature_view import on_demand_feature_view",
        ]
    for entity in entities.values():
        lines.append(
            f"{entity.variable} = Entity(name={entity.name!r}, join_keys=[{entity.join_key!r}], "
            f"value_type=ValueType.{entity.value_type})"
        )
    lines.append("")
    for group in repo.groups:
        keys = group.join_keys
        schema = [
            f"        Field(name={k!r}, dtype={FEAST_DTYPES[group.source.by_name[k].kind.name]}),"
            for k in keys
        ]
        schema += [
            f"        Field(name={f.name!r}, dtype={feast_dtype(f, group)}),"
            for f in group.features
        ]
        lines += [
            f"{group.name} = FeatureView(",
            f"    name={group.name!r},",
            f"    entities=[{', '.join(entities[k].variable for k in keys)}],",
            "    ttl=timedelta(0),  # no expiry: the platform's windows say what a value covers",
            "    schema=[",
            *schema,
            "    ],",
            "    online=True,",
            "    source=FileSource(",
            f"        name={group.name + '_source'!r},",
            f"        path={f'data/{group.name}.parquet'!r},",
            f"        timestamp_field={group.event_time!r},",
            "    ),",
            f"    description={(group.description or '')!r},",
            ")",
            "",
        ]
    for view in repo.derived_views:
        lines += on_demand_view(repo, module, view.name, view.description)
    for service in repo.services:
        projections: dict[str, list[str]] = {}
        for group_name, feature_name in service.references():
            projections.setdefault(group_name, []).append(feature_name)
        features = ", ".join(f"{g}[{names!r}]" for g, names in projections.items())
        lines += [
            f"{service.name} = FeatureService(",
            f"    name={service.name!r},",
            f"    features=[{features}],",
            f"    description={(service.description or '')!r},",
            ")",
            "",
        ]
    return "\n".join(lines)


def empty_source(group: FeatureGroup) -> pa.Table:
    """The feature view's batch source: no rows, the view's columns and event time."""
    fields = [
        pa.field(k, ARROW_TYPES[FEAST_DTYPES[group.source.by_name[k].kind.name]])
        for k in group.join_keys
    ]
    fields.append(pa.field(group.event_time, pa.timestamp("ms", tz="UTC")))
    fields += [pa.field(f.name, arrow_type(f, group)) for f in group.features]
    return pa.schema(fields).empty_table()


def export(
    repo: FeatureRepo,
    module: str,
    out_dir: Path,
    project: str,
    online_store: Mapping[str, object],
) -> list[Path]:
    """Write ``feature_store.yaml`` and ``features.py`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "data").mkdir(exist_ok=True)
    written = []
    for group in repo.groups:
        path = out_dir / "data" / f"{group.name}.parquet"
        pq.write_table(empty_source(group), path)
        written.append(path)
    for name, text in (
        ("feature_store.yaml", feature_store_yaml(project, online_store)),
        ("features.py", definitions_py(repo, module)),
    ):
        path = out_dir / name
        path.write_text(text)
        written.append(path)
    return written
