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
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import orjson
from pydantic import BaseModel, Field
from pyspark.sql import SparkSession

from batch_layer.consistency import (
    EntityKey,
    Mismatch,
    compare,
    entity_kinds,
    sample_keys,
    served_values,
)
from batch_layer.job import single_version
from batch_layer.lake import open_table
from batch_layer.training import build_training_set
from feature_core.definitions import Entity, FeatureRepo, FeatureService
from feature_core.journals import Journal
from feature_core.keys import entity_id
from feature_core.settings import Settings
from feature_core.sources import quoted
from online_store import open_store

log = logging.getLogger(__name__)


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


def sample_entities(
    settings: Settings, repo: FeatureRepo, entity: Entity, sample: int, seed: int
) -> list[EntityKey]:
    """A seeded random sample of the entities present in the lake, in any table a group
    of theirs reads (:func:`batch_layer.consistency.sample_keys`)."""
    tables = {g.source.table_name for g in repo.groups if g.entity.join_keys == entity.join_keys}
    return sample_keys(settings, tables, entity.join_keys, sample, seed)


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
    kinds = entity_kinds(repo)
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
            as_of, served = served_values(settings, entity, service.features, pending)
            versions = {}
            for table_name in sorted(tables):
                table = open_table(settings.table_uri(table_name))
                if table is not None:
                    versions[table_name] = table.version()
            expected = _recomputed(
                spark, settings, repo, service, join_keys, pending, as_of, versions
            )
            compared.update(versions)
            found = compare(served, expected, tolerance)
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
    """Store the report where the API's ``/metrics`` reads it, and add it to the verify
    journal (the console shows the reports over time)."""
    store = open_store(settings)
    try:
        store.publish_report(report.model_dump_json())
        at_ms = int(report.checked_at * 1000)
        record = orjson.dumps({"at_ms": at_ms, **report.model_dump(mode="json")})
        store.append_journal(Journal.VERIFY, record, at_ms, Journal.VERIFY.keep)
    finally:
        store.close()
