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
from collections.abc import Iterable, Sequence
from typing import Any

import httpx
import redis
from pydantic import BaseModel, Field
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from batch_layer.job import read_snapshot
from batch_layer.lake import open_table
from batch_layer.training import build_training_set
from feature_core.definitions import Entity, FeatureRepo, FeatureService
from feature_core.keys import KeySpace
from feature_core.merge import values_match
from feature_core.settings import Settings

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
    delta_version: int | None
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
    """Every feature of every group of one entity, as an ad hoc service."""
    features = [
        f.qualified_name
        for g in repo.groups
        if g.entity.join_key == entity.join_key
        for f in g.features
    ]
    return FeatureService(name=f"verify_{entity.name}", features=features)


def sample_entities(
    spark: SparkSession, settings: Settings, join_key: str, sample: int, seed: int
) -> list[str]:
    """A seeded random sample of the entity ids present in the lake."""
    events, _ = read_snapshot(spark, settings.raw_events_uri, None)
    ids = events.where(F.col(join_key).isNotNull()).select(join_key).distinct()
    return [row[0] for row in ids.orderBy(F.rand(seed)).limit(sample).collect()]


def _served(
    settings: Settings, service: FeatureService, entity_ids: Sequence[str]
) -> tuple[int, dict[str, dict[str, tuple[Any, str]]]]:
    response = httpx.post(
        f"{settings.api_url}/v1/features",
        json={"features": list(service.features), "entities": list(entity_ids)},
        headers=settings.api_headers,
        timeout=30,
    )
    if response.status_code != 200:
        raise RuntimeError(f"the API answered {response.status_code}: {response.text[:300]}")
    body = response.json()
    names = body["feature_names"]
    served = {
        vector["entity_id"]: {
            name: (value, status)
            for name, value, status in zip(names, vector["values"], vector["statuses"], strict=True)
        }
        for vector in body["vectors"]
    }
    return body["as_of"], served


def _recomputed(
    spark: SparkSession,
    settings: Settings,
    repo: FeatureRepo,
    service: FeatureService,
    join_key: str,
    entity_ids: Iterable[str],
    as_of: int,
    delta_version: int | None,
) -> dict[str, dict[str, Any]]:
    spine = spark.createDataFrame([(e, as_of) for e in entity_ids], f"{join_key} string, ts long")
    frame = build_training_set(spark, settings, repo, service, spine, join_key, "ts", delta_version)
    return {
        row[join_key]: {name: row[name.replace(":", "__", 1)] for name in service.features}
        for row in frame.collect()
    }


def _compare(
    served: dict[str, dict[str, tuple[Any, str]]],
    expected: dict[str, dict[str, Any]],
    tolerance: float,
) -> list[Mismatch]:
    found = []
    for entity_id, features in served.items():
        for name, (value, status) in features.items():
            want = expected[entity_id][name]
            if not values_match(value, want, tolerance):
                found.append(
                    Mismatch(
                        feature=name,
                        entity_id=entity_id,
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
    entities: dict[str, list[str]] | None = None,
    settle_s: float = 5.0,
) -> ConsistencyReport:
    """Check ``sample`` random entities of each entity type (or the ``entities`` given)."""
    compared_version: int | None = None  # the Delta version of the last recompute
    kinds = {g.entity.join_key: g.entity for g in repo.groups}
    counts = Counter[str]()
    examples: list[Mismatch] = []
    checked_entities = checked_values = 0
    for join_key, entity in kinds.items():
        service = _service_for(repo, entity)
        ids = (entities or {}).get(join_key)
        if ids is None:
            ids = sample_entities(spark, settings, join_key, sample, seed)
        if not ids:
            continue
        found: list[Mismatch] = []
        pending = list(ids)
        for attempt in range(2):
            as_of, served = _served(settings, service, pending)
            table = open_table(settings.raw_events_uri)
            version = table.version() if table is not None else None
            expected = _recomputed(
                spark, settings, repo, service, join_key, pending, as_of, version
            )
            compared_version = version
            found = _compare(served, expected, tolerance)
            if not found or attempt == 1:
                break
            pending = sorted({m.entity_id for m in found})
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
    by_feature = {
        f.qualified_name: counts.get(f.qualified_name, 0) for g in repo.groups for f in g.features
    }
    return ConsistencyReport(
        delta_version=compared_version,
        tolerance=tolerance,
        entities=checked_entities,
        values=checked_values,
        mismatches=sum(counts.values()),
        by_feature=by_feature,
        examples=examples,
    )


def publish(settings: Settings, report: ConsistencyReport) -> None:
    """Store the report where the API's ``/metrics`` reads it."""
    client = redis.Redis.from_url(settings.redis_url)
    try:
        client.set(KeySpace(settings.key_prefix).consistency, report.model_dump_json())
    finally:
        client.close()
