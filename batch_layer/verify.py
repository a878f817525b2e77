"""The consistency verifier: what the API serves now == Spark's recompute from the lake.

For a sample of entities, read every feature over HTTP, note the instant the API used
(``as_of``), and recompute the same features at that instant from the lake with the
point-in-time engine (same definitions, same finalize). Any value that differs beyond the
tolerance is a mismatch. A value can differ for a moment while an event is in the lake but
not yet in the speed view (or the reverse), so mismatched entities are checked once more
after ``settle_s``; only what persists is reported.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import httpx
from pydantic import BaseModel, Field
from pyspark.sql import SparkSession

from batch_layer.job import single_version
from batch_layer.lake import open_table
from batch_layer.training import build_training_set
from feature_core.definitions import Entity, FeatureRepo, FeatureService
from feature_core.keys import entity_id
from feature_core.merge import values_match
from feature_core.settings import Settings
from feature_core.sources import quoted
from online_store import open_store

log = logging.getLogger(__name__)


class Mismatch(BaseModel):
    feature: str
    entity_id: str
    served: Any
    expected: Any
    status: str


class ConsistencyReport(BaseModel):
    """The outcome of one verification; also stored in Redis for ``/metrics``."""

    checked_at: float = Field(default_factory=time.time)
    delta_version: int | None = Field(description="Delta version read, when one table was.")
    delta_versions: dict[str, int] = Field(
        default_factory=dict, description="Lake table -> Delta version read."
    )
    tolerance: float
    entities: int
    values: int
    mismatches: int
    by_feature: dict[str, int] = Field(description="Mismatches per group:feature (all listed).")
    examples: list[Mismatch] = Field(description="Up to 20 mismatched values.")

    @property
    def passed(self) -> bool:
        return self.mismatches == 0


def _service_for(repo: FeatureRepo, entity: Entity) -> FeatureService:
    """Every feature of every group of one entity, and every derived feature of it alone
    that needs no request field (the query time is the API's ``as_of``), as an ad hoc
    service. A derived feature over a request field has no value to check without a
    request; one over several entity types is checked by the training-set tests."""
    features = [
        f.qualified_name
        for g in repo.groups
        if g.entity.join_keys == entity.join_keys
        for f in g.features
    ]
    features += [
        name
        for name, derived in repo.derived.items()
        if not derived.request_fields
        and all(repo.group(g).join_keys == entity.join_keys for g in derived.groups)
    ]
    return FeatureService(name=f"verify_{entity.name}", features=features)


EntityKey = tuple[str, ...]  # join key values, in the entity's order


def sample_entities(
    settings: Settings, repo: FeatureRepo, entity: Entity, sample: int, seed: int
) -> list[EntityKey]:
    """A seeded random sample of the entities present in the lake, in any table a group
    of theirs reads.

    Drawn from the key columns of randomly chosen data files, read until there are four
    candidates per entity wanted, so the cost follows the sample, not the lake. An
    entity's chance grows with the number of files holding its events: active entities
    come up more often than in a uniform draw over all of them."""
    keys = list(entity.join_keys)
    tables = sorted(
        {g.source.table_name for g in repo.groups if g.entity.join_keys == entity.join_keys}
    )
    fragments = []
    for table_name in tables:
        table = open_table(settings.table_uri(table_name))
        if table is not None:
            fragments.extend(table.to_pyarrow_dataset().get_fragments())
    rng = random.Random(seed)
    rng.shuffle(fragments)
    found: set[EntityKey] = set()
    for fragment in fragments:
        if len(found) >= 4 * sample:
            break
        present = fragment.to_table(columns=keys).drop_null()
        columns = [present.column(k).to_pylist() for k in keys]
        found.update(tuple(str(v) for v in values) for values in zip(*columns, strict=True))
    return rng.sample(sorted(found), min(sample, len(found)))


def _served(
    settings: Settings, entity: Entity, service: FeatureService, keys: Sequence[EntityKey]
) -> tuple[int, dict[str, dict[str, tuple[Any, str]]]]:
    response = httpx.post(
        f"{settings.api_url}/v1/features",
        json={
            "features": list(service.features),
            "entities": [dict(zip(entity.join_keys, k, strict=True)) for k in keys],
        },
        headers=settings.api_headers,
        timeout=30,
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


def _recomputed(
    spark: SparkSession,
    settings: Settings,
    repo: FeatureRepo,
    service: FeatureService,
    join_keys: Sequence[str],
    keys: Sequence[EntityKey],
    as_of: int,
    delta_versions: dict[str, int],
) -> dict[str, dict[str, Any]]:
    columns = ", ".join(f"{quoted(k)} string" for k in join_keys)
    spine = spark.createDataFrame([(*k, as_of) for k in keys], f"{columns}, ts long")
    frame = build_training_set(
        spark, settings, repo, service, spine, join_keys, "ts", delta_versions, entities=keys
    )
    return {
        entity_id([row[k] for k in join_keys]): {
            name: row[name.replace(":", "__", 1)] for name in service.features
        }
        for row in frame.collect()
    }


def _compare(
    served: dict[str, dict[str, tuple[Any, str]]],
    expected: dict[str, dict[str, Any]],
    tolerance: float,
) -> list[Mismatch]:
    found = []
    for entity, features in served.items():
        for name, (value, status) in features.items():
            want = expected[entity][name]
            if not values_match(value, want, tolerance):
                found.append(
                    Mismatch(
                        feature=name,
                        entity_id=entity,
                        served=value,
                        expected=want,
                        status=status,
                    )
                )
    return found


def verify(
    spark: SparkSession,
    settings: Settings,
    repo: FeatureRepo,
    sample: int = 50,
    seed: int = 0,
    tolerance: float = 1e-9,
    entities: dict[str, list[Any]] | None = None,
    settle_s: float = 5.0,
) -> ConsistencyReport:
    """Check ``sample`` random entities of each entity type, or the ``entities`` given
    (by entity name: join key values, a tuple per entity with several join keys)."""
    compared: dict[str, int] = {}  # lake table -> the Delta version of the last recompute
    kinds = {g.entity.join_keys: g.entity for g in repo.groups}
    counts = Counter[str]()
    examples: list[Mismatch] = []
    checked_entities = checked_values = 0
    for join_keys, entity in kinds.items():
        service = _service_for(repo, entity)
        given = (entities or {}).get(entity.name)
        if given is None:
            ids = sample_entities(settings, repo, entity, sample, seed)
        else:
            ids = [tuple(map(str, k)) if isinstance(k, (tuple, list)) else (str(k),) for k in given]
        if not ids:
            continue
        tables = {g.source.table_name for g in repo.groups if g.entity.join_keys == join_keys}
        found: list[Mismatch] = []
        pending = list(ids)
        for attempt in range(2):
            as_of, served = _served(settings, entity, service, pending)
            versions = {}
            for table_name in sorted(tables):
                table = open_table(settings.table_uri(table_name))
                if table is not None:
                    versions[table_name] = table.version()
            expected = _recomputed(
                spark, settings, repo, service, join_keys, pending, as_of, versions
            )
            compared.update(versions)
            found = _compare(served, expected, tolerance)
            if not found or attempt == 1:
                break
            wrong = {m.entity_id for m in found}
            pending = [k for k in pending if entity_id(k) in wrong]
            log.info(
                "%d values differ; checking %d entities again in %.0f s",
                len(found),
                len(pending),
                settle_s,
            )
            time.sleep(settle_s)
        checked_entities += len(ids)
        checked_values += len(ids) * len(service.features)
        for mismatch in found:
            counts[mismatch.feature] += 1
        examples.extend(found[: 20 - len(examples)])
    checked = [name for entity in kinds.values() for name in _service_for(repo, entity).features]
    by_feature = {name: counts.get(name, 0) for name in checked}
    return ConsistencyReport(
        delta_version=single_version(compared),
        delta_versions=compared,
        tolerance=tolerance,
        entities=checked_entities,
        values=checked_values,
        mismatches=sum(counts.values()),
        by_feature=by_feature,
        examples=examples,
    )


def publish(settings: Settings, report: ConsistencyReport) -> None:
    """Store the report where the API's ``/metrics`` reads it."""
    store = open_store(settings)
    try:
        store.publish_report(report.model_dump_json())
    finally:
        store.close()
