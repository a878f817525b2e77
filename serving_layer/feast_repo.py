"""A Feast repo that mirrors the platform's definitions: ``lfp feast export``.

Feast clients (the SDK with ``online_store: type: remote``) read features through a
registry of entities, feature views and feature services. This writes one whose names and
dtypes match what ``/get-online-features`` serves: one Feast entity per join key, one
feature view per feature group (its features, typed), one feature service per service.
The platform computes the values; the views' batch sources only satisfy Feast's schema
(empty Parquet files: training sets come from `lfp training-set build`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from feature_core.definitions import Feature, FeatureGroup, FeatureRepo

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
    name, shape = feature.value_type(group.source)
    dtype = FEAST_DTYPES[name]
    if shape == "map":
        return "Map"
    return f"Array({dtype})" if shape == "list" else dtype


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
