"""Feature statistics of each batch run and training set (:mod:`feature_core.stats`).

A batch run summarizes the values its view serves at its cutoff: for a uniform sample of
at most ``LFP_FEATURE_STATS_SAMPLE`` entities per group, each entity's batch view merged
and finalized at t = cutoff by the serving merge (:func:`feature_core.merge.group_merger`),
statuses included. The sample is the entities with the smallest hashes of their ids
(:func:`entity_priority`): the same entities from run to run while they stay, so drift
between runs shows the values moving, not the sample. The hash is computed the same in
Spark SQL (:func:`priority_below`), so the candidates of a run that writes only some
documents are chosen without a Python task.

It is taken while the views are written, in the same pass (:class:`EntitySampler`): the
number of each group's entities in the previous run's record (or, without one, an
approximate count over the cached lake snapshot) sets a hash bound that lets about 1.1
times the sample through, each task merges the entities under it (at most the sample's
size per task) and hands them to the driver in an accumulator, and the driver keeps the
smallest hashes. The added work is linear in the sample; nothing is computed twice.

Drift is PSI against the previous run's record and the newest training set record holding
the feature. Nothing here may fail a batch run: the job logs what went wrong instead.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import math
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa
from pyspark.accumulators import Accumulator, AccumulatorParam
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from feature_core.definitions import FeatureGroup
from feature_core.journals import Journal
from feature_core.merge import BatchDoc, BatchPointer, group_merger
from feature_core.settings import Settings
from feature_core.stats import (
    Drift,
    FeatureStats,
    RunFeatureStats,
    TrainingFeatureStats,
    declared_kind,
    feature_stats,
    psi,
)
from online_store.base import OnlineStore

log = logging.getLogger(__name__)

#: Prefix hashed with an entity's id (any fixed value: the same entities run after run).
SAMPLE_PREFIX = "lfp-feature-stats:"
#: Training set records read when looking for a feature's newest one.
TRAINING_RECORDS_READ = 100

#: One sampled entity: (hash, entity id, each feature's value, each one's status).
Sampled = tuple[int, str, list[Any], list[str]]


def entity_priority(entity: str) -> int:
    """An entity's place in the sample order: the first 8 bytes of the SHA-256 of its id
    after :data:`SAMPLE_PREFIX`, the same in every process and run and in Spark SQL
    (:func:`priority_below`)."""
    digest = hashlib.sha256((SAMPLE_PREFIX + entity).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def priority_below(column: str, bound: int | None) -> Column:
    """Spark SQL: the entity id in ``column`` has an :func:`entity_priority` under
    ``bound`` (None: every entity), computed in the JVM (16 hex digits compare as the
    number they spell)."""
    if bound is None:
        return F.lit(True)
    digits = F.substring(F.sha2(F.concat(F.lit(SAMPLE_PREFIX), F.col(column)), 256), 1, 16)
    return digits < F.lit(f"{bound:016x}")


def sample_fraction(sample: int, population: int) -> float:
    """The share of ``population`` to let through so that, with high probability, at
    least ``sample`` remain to keep the smallest hashes of (10% and a few standard
    deviations of slack, for an estimated population); 1 when that is everyone."""
    if population <= sample:
        return 1.0
    return min(1.0, candidates_drawn(sample) / population)


def candidates_drawn(sample: int) -> float:
    """About how many candidates a hash bound lets through for a sample of ``sample``
    (:func:`sample_fraction`)."""
    return 1.1 * sample + 4 * math.sqrt(sample) + 16


def task_keep(sample: int) -> int:
    """How many candidates one task keeps: twice what a bound lets through for the whole
    sample. A task may see every candidate (a small lake's one partition); keeping only
    ``sample`` there would drop candidates under the bound, and a carried set's
    complete-below hash with them, so a run that then removed a few entities would be
    left with fewer than the sample under it. The cap only bites when the population
    was underestimated."""
    return math.ceil(2 * candidates_drawn(sample))


def priority_bound(sample: int, population: int) -> int | None:
    """Entities with a hash under this are candidates (None: every entity)."""
    fraction = sample_fraction(sample, population)
    return None if fraction >= 1.0 else int(fraction * 2**64)


def served_at_cutoff(
    group: FeatureGroup, pointer: BatchPointer, doc: BatchDoc
) -> tuple[list[Any], list[str]]:
    """An entity's feature values and statuses (``group.features`` order) from its batch
    view, merged and finalized at t = cutoff as the API serves them then. The speed job's
    lateness is left out: it marks windows that may miss events still to reach the speed
    tiles, not values of the view."""
    pointer = replace(pointer, speed_lateness_ms=None, speed_gap_before=None)
    values, statuses = group_merger(group).merge(pointer.cutoff, pointer, doc, {})
    return values, [str(s) for s in statuses]


class _SampleParam(AccumulatorParam):
    """Accumulates lists of sampled entities (each task's, concatenated)."""

    def zero(self, value: list[Sampled]) -> list[Sampled]:
        return []

    def addInPlace(self, value1: list[Sampled], value2: list[Sampled]) -> list[Sampled]:
        value1.extend(value2)
        return value1


@dataclass
class EntitySampler:
    """What the batch job's tasks need to sample one group's entities as they write
    them; pickled into each task. ``bound``: hashes under it are candidates (None:
    all); each task keeps at most :func:`task_keep` of its candidates, the smallest hashes. A
    task that cannot merge an entity stops sampling and says why in ``failures``: its
    write goes on."""

    group: FeatureGroup
    pointer: BatchPointer
    bound: int | None
    keep: int
    found: Accumulator
    failures: Accumulator
    seconds: Accumulator  # task time spent sampling (hashing, merging), summed
    #: The smallest hash a task dropped for want of room (every candidate under the
    #: smallest of them was kept): each task's, listed.
    dropped: Accumulator
    #: With ``carrying``, the written entities under the bound (tombstones included):
    #: their previous values are not carried (:mod:`batch_layer.carried_sample`).
    touched: Accumulator
    carrying: bool = False

    @classmethod
    def create(
        cls,
        spark_context: Any,
        group: FeatureGroup,
        pointer: BatchPointer,
        keep: int,
        estimate: int,
    ) -> EntitySampler:
        found = spark_context.accumulator([], _SampleParam())
        failures = spark_context.accumulator([], _SampleParam())
        seconds = spark_context.accumulator(0.0)
        dropped = spark_context.accumulator([], _SampleParam())
        touched = spark_context.accumulator([], _SampleParam())
        bound = priority_bound(keep, estimate)
        return cls(group, pointer, bound, keep, found, failures, seconds, dropped, touched)

    def carrying_under(self, bound: int | None) -> EntitySampler:
        """This sampler drawing under a carried candidate set's bound, its tasks
        reporting the entities they write."""
        return replace(self, bound=bound, carrying=True)

    def task(self) -> _TaskSample:
        return _TaskSample(self)

    def sample(self) -> list[Sampled]:
        """Driver side, after the write: the ``keep`` smallest hashes of all tasks'
        (a RuntimeError when a task could not sample)."""
        if self.failures.value:
            raise RuntimeError(f"sampling {self.group.name}: {self.failures.value[0]}")
        # Only candidates under the hash every one of them was kept below: a carried
        # set misses entities above it (when more than ``keep`` are under it, the
        # smallest ``keep`` are the same with or without the others).
        limit = self.complete_below()
        found = self.found.value
        if limit is not None:
            found = [entry for entry in found if entry[0] < limit]
        return heapq.nsmallest(self.keep, found)

    def candidates(self) -> list[Sampled]:
        """Driver side, after the write: every candidate the tasks kept (and those
        carried)."""
        return list(self.found.value)

    def complete_below(self) -> int | None:
        """Every entity under this hash is a candidate (None: the bound)."""
        drops = [d for d in self.dropped.value if self.bound is None or d < self.bound]
        return min(drops, default=self.bound)

    def carry(self, entries: list[Sampled], complete_below: int | None) -> None:
        """Driver side: add candidates of the previous run (entities this run did not
        write, their values unchanged)."""
        self.found.add(entries)
        if complete_below is not None and complete_below != self.bound:
            self.dropped.add([complete_below])


class _TaskSample:
    """One task's candidates: a heap of the :func:`task_keep` smallest hashes seen."""

    def __init__(self, sampler: EntitySampler) -> None:
        self.sampler = sampler
        self.room = task_keep(sampler.keep)
        self.heap: list[tuple[int, str, list[Any], list[str]]] = []  # max-heap on the hash
        self.failure: str | None = None
        self.seconds = 0.0
        self.dropped: int | None = None
        self.touched: list[str] = []

    def offer(self, entity: str, doc: BatchDoc | None) -> None:
        """A document written (None: a tombstone, the entity left the view) or read."""
        if self.failure is not None:
            return
        started = time.perf_counter()
        self._offer(entity, doc)
        self.seconds += time.perf_counter() - started

    def _offer(self, entity: str, doc: BatchDoc | None) -> None:
        sampler = self.sampler
        priority = entity_priority(entity)
        if sampler.bound is not None and priority >= sampler.bound:
            return
        if sampler.carrying:
            self.touched.append(entity)
        if doc is None:
            return
        if len(self.heap) >= self.room and -self.heap[0][0] < priority:
            self._drop(priority)
            return
        try:
            values, statuses = served_at_cutoff(sampler.group, sampler.pointer, doc)
        except Exception as error:  # statistics never fail the write
            self.failure = f"entity {entity!r}: {type(error).__name__}: {error}"
            return
        heapq.heappush(self.heap, (-priority, entity, values, statuses))
        if len(self.heap) > self.room:
            self._drop(-heapq.heappop(self.heap)[0])

    def _drop(self, priority: int) -> None:
        self.dropped = priority if self.dropped is None else min(self.dropped, priority)

    def publish(self) -> None:
        self.sampler.seconds.add(self.seconds)
        if self.failure is not None:
            self.sampler.failures.add([self.failure])
            return
        self.sampler.found.add([(-p, e, v, s) for p, e, v, s in self.heap])
        if self.dropped is not None:
            self.sampler.dropped.add([self.dropped])
        if self.touched:
            self.sampler.touched.add(self.touched)


def group_stats(
    group: FeatureGroup, sampled: Sequence[Sampled]
) -> dict[str, tuple[FeatureStats, list[Any] | None]]:
    """Per ``group:feature`` reference, its statistics over the sampled entities and the
    values they summarize, for drift. A time (a last event's, say) moves forward with
    every run by nature, so times are not compared (None): their statistics, null and
    no-data rates still show a broken upstream."""
    found: dict[str, tuple[FeatureStats, list[Any] | None]] = {}
    empty: list[list[Any]] = [[] for _ in group.features]
    # Feature by feature: one transposition of the sampled rows.
    values_of = [list(c) for c in zip(*(e[2] for e in sampled), strict=True)] or empty
    statuses_of = [list(c) for c in zip(*(e[3] for e in sampled), strict=True)] or empty
    for i, feature in enumerate(group.features):
        values, statuses = values_of[i], statuses_of[i]
        type_name, shape = feature.value_type(group.source)
        stats = feature_stats(values, statuses, *declared_kind(type_name, shape))
        compared = None if type_name == "timestamp" else values
        found[f"{group.name}:{feature.name}"] = (stats, compared)
    return found


def previous_run(store: OnlineStore) -> RunFeatureStats | None:
    """The newest batch run record in the journal (one it cannot read: none)."""
    for raw in reversed(store.journal(Journal.FEATURE_STATS, limit=1)):
        try:
            return RunFeatureStats.model_validate_json(raw)
        except ValueError as error:
            log.warning("feature statistics record not readable, not compared with: %s", error)
    return None


def training_baselines(store: OnlineStore) -> dict[str, tuple[str, FeatureStats]]:
    """Per feature, the newest training set record holding it: (training set, stats)."""
    found: dict[str, tuple[str, FeatureStats]] = {}
    for raw in reversed(store.journal(Journal.TRAINING_STATS, limit=TRAINING_RECORDS_READ)):
        try:
            record = TrainingFeatureStats.model_validate_json(raw)
        except ValueError as error:
            log.warning("training statistics record not readable, not compared with: %s", error)
            continue
        for reference, stats in record.features.items():
            found.setdefault(reference, (record.training_set, stats))
    return found


def run_record(
    store: OnlineStore,
    settings: Settings,
    pointer: BatchPointer,
    run_id: str | None,
    entities: Mapping[str, int],
    sampled: Mapping[str, int],
    summarized: Mapping[str, tuple[FeatureStats, list[Any] | None]],
) -> RunFeatureStats:
    """The run's record, with each feature's drift against the previous run's record and
    its newest training set record (from the current values themselves: exact)."""
    previous = previous_run(store)
    trained = training_baselines(store)
    drift: dict[str, Drift] = {}
    training_sets: dict[str, str] = {}
    for reference, (_, values) in summarized.items():
        if values is None:
            drift[reference] = Drift()
            continue
        before = previous.features.get(reference) if previous is not None else None
        baseline = trained.get(reference)
        if baseline is not None:
            training_sets[reference] = baseline[0]
        drift[reference] = Drift(
            previous_run=psi(before, values) if before is not None else None,
            training=psi(baseline[1], values) if baseline is not None else None,
        )
    return RunFeatureStats(
        at_ms=int(time.time() * 1000),
        run_id=run_id,
        view_version=pointer.version,
        cutoff=pointer.cutoff,
        entities=dict(entities),
        sampled=dict(sampled),
        features={reference: stats for reference, (stats, _) in summarized.items()},
        drift=drift,
        threshold=settings.drift_psi_threshold,
        previous_run_id=previous.run_id if previous is not None else None,
        training_sets=training_sets,
    )


def append(store: OnlineStore, kind: Journal, record: RunFeatureStats | TrainingFeatureStats):
    store.append_journal(kind, record.model_dump_json().encode(), record.at_ms, kind.keep)


def record_run_stats(
    store: OnlineStore,
    settings: Settings,
    pointer: BatchPointer,
    run_id: str | None,
    groups: Sequence[tuple[FeatureGroup, int, Sequence[Sampled]]],
) -> RunFeatureStats:
    """Summarize each group's sampled entities (group, entities in its view, the
    sample), compare with the baselines and append the record to Journal.FEATURE_STATS."""
    summarized: dict[str, tuple[FeatureStats, list[Any] | None]] = {}
    for group, _, sampled in groups:
        summarized.update(group_stats(group, sampled))
    record = run_record(
        store,
        settings,
        pointer,
        run_id,
        {group.name: population for group, population, _ in groups},
        {group.name: len(sampled) for group, _, sampled in groups},
        summarized,
    )
    append(store, Journal.FEATURE_STATS, record)
    return record


def sampled_rows(frame: DataFrame, columns: Sequence[str], sample: int, rows: int) -> pa.Table:
    """``columns`` of a uniform sample of at most ``sample`` of a frame's ``rows`` rows."""
    chosen = frame.select(*columns)
    if rows > sample:
        chosen = chosen.sample(fraction=sample_fraction(sample, rows), seed=17)
        chosen = chosen.orderBy(F.rand(seed=17)).limit(sample)
    return chosen.toArrow()


def sampled_table(table: pa.Table, columns: Sequence[str], sample: int) -> pa.Table:
    """``columns`` of a uniform sample of at most ``sample`` of an Arrow table's rows."""
    chosen = table.select(list(columns))
    if chosen.num_rows <= sample:
        return chosen
    return chosen.take(sorted(random.Random(17).sample(range(chosen.num_rows), sample)))


def record_training_stats(
    store: OnlineStore,
    data: pa.Table,
    columns: Mapping[str, tuple[str, str, str]],
    training_set: str,
    rows: int,
    service: str | None = None,
) -> TrainingFeatureStats:
    """Summarize a training set's feature columns over a sample of its rows (``data``),
    and append the record to Journal.TRAINING_STATS. ``columns``: column -> (feature
    reference, declared type name, shape)."""
    features = {}
    for column, (reference, type_name, shape) in columns.items():
        kind, of = declared_kind(type_name, shape)
        features[reference] = feature_stats(_python_values(data.column(column)), None, kind, of)
    record = TrainingFeatureStats(
        at_ms=int(time.time() * 1000),
        training_set=training_set,
        service=service,
        rows=rows,
        sampled=data.num_rows,
        features=features,
    )
    append(store, Journal.TRAINING_STATS, record)
    return record


def _python_values(column: pa.ChunkedArray) -> list[Any]:
    """An Arrow column's values as the serving layer has them: maps as dicts."""
    if pa.types.is_map(column.type):
        return [None if v is None else dict(v) for v in column.to_pylist()]
    return column.to_pylist()
