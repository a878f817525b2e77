"""What both consistency checks share: drawing entities from the lake, reading their
values from the API, comparing them with a recompute.

``lfp verify`` (:mod:`batch_layer.verify`) recomputes with Spark's point-in-time engine;
the scheduler's sampled check (:mod:`batch_layer.monitor`) with the reference evaluator,
without Spark. Both ask the API over HTTP, as a model would, so what they compare is what
is served.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import httpx
from pydantic import BaseModel

from batch_layer.lake import open_table, parquet_dataset
from feature_core.definitions import Entity, FeatureRepo
from feature_core.keys import entity_id
from feature_core.merge import values_match
from feature_core.settings import Settings

EntityKey = tuple[str, ...]  # join key values as text, in the entity's order
#: Served values by entity id, then by feature: (value, status).
Served = dict[str, dict[str, tuple[Any, str]]]

#: Seconds an API request of a check may take (connect, read) before the check fails.
API_TIMEOUT_S = 30.0


class Mismatch(BaseModel):
    feature: str
    entity_id: str
    served: Any
    expected: Any
    status: str


def entity_kinds(repo: FeatureRepo) -> dict[tuple[str, ...], Entity]:
    """Each entity type the repo's groups describe, by its join keys."""
    return {g.entity.join_keys: g.entity for g in repo.groups}


def sample_keys(
    settings: Settings, tables: Iterable[str], join_keys: Sequence[str], sample: int, seed: int
) -> list[EntityKey]:
    """A seeded random sample of the entities present in the lake tables.

    Drawn from the key columns of randomly chosen data files, read until there are four
    candidates per entity wanted, so the cost follows the sample, not the lake. An
    entity's chance grows with the number of files holding its events: active entities
    come up more often than in a uniform draw over all of them."""
    keys = list(join_keys)
    files = []
    for table_name in sorted(tables):
        table = open_table(settings.table_uri(table_name))
        if table is not None:
            files.extend(table.file_uris())
    rng = random.Random(seed)
    rng.shuffle(files)
    found: set[EntityKey] = set()
    for file in files:
        if len(found) >= 4 * sample:
            break
        present = parquet_dataset([file]).to_table(columns=keys).drop_null()
        columns = [present.column(k).to_pylist() for k in keys]
        found.update(tuple(str(v) for v in values) for values in zip(*columns, strict=True))
    return rng.sample(sorted(found), min(sample, len(found)))


def served_values(
    settings: Settings,
    entity: Entity,
    features: Sequence[str],
    keys: Sequence[EntityKey],
    timeout_s: float = API_TIMEOUT_S,
) -> tuple[int, Served]:
    """The API's values of ``features`` for the entities (with its token, when one is
    set), and the instant it computed them at (``as_of``)."""
    response = httpx.post(
        f"{settings.api_url}/v1/features",
        json={
            "features": list(features),
            "entities": [dict(zip(entity.join_keys, k, strict=True)) for k in keys],
        },
        headers=settings.api_headers,
        timeout=timeout_s,
    )
    if response.status_code != 200:
        raise RuntimeError(f"the API answered {response.status_code}: {response.text[:300]}")
    body = response.json()
    names = body["feature_names"]
    served = {
        entity_id(k): {
            name: (value, status)
            for name, value, status in zip(names, vector["values"], vector["statuses"], strict=True)
        }
        for k, vector in zip(keys, body["vectors"], strict=True)
    }
    return body["as_of"], served


def compare(
    served: Served, expected: Mapping[str, Mapping[str, Any]], tolerance: float
) -> list[Mismatch]:
    """Every served value that differs from the expected one (``values_match``)."""
    found = []
    for entity, features in served.items():
        for name, (value, status) in features.items():
            want = expected[entity][name]
            if not values_match(value, want, tolerance):
                found.append(
                    Mismatch(
                        feature=name, entity_id=entity, served=value, expected=want, status=status
                    )
                )
    return found
