"""The scheduler's monitor jobs: freshness samples and continuous sampled verification,
written to the operations journals (:mod:`feature_core.journals`) the console plots and
``/metrics`` exports.

- Every ``LFP_MONITOR_INTERVAL_S``: the batch view's age, each group's speed watermark
  age and each consumer's lag, as the store holds them (:class:`FreshnessSample`).
- Every ``LFP_SAMPLED_VERIFY_INTERVAL_S``: a few random entities per entity type and lake
  table, their served values (over HTTP, as a model reads them) against the reference
  evaluator (:mod:`feature_core.reference`) over their events read from the lake with
  delta-rs and pyarrow, no Spark (:class:`SampledVerification`). ``lfp verify`` is the
  thorough, on-demand check (Spark's point-in-time engine, derived features too); this one
  is cheap enough to run all the time, and independent of both engines.

The sampled verification runs in a child process (:func:`check_in_child`): its memory
goes back to the system when it ends. A failing job logs one line and skips its turn: it
never stops the scheduler.
"""

from __future__ import annotations

import logging
import multiprocessing
import random
import time
from collections import Counter
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from typing import Any

import httpx
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from apscheduler.schedulers.base import BaseScheduler
from deltalake.exceptions import DeltaError
from pydantic import BaseModel, ConfigDict, Field

from batch_layer.consistency import (
    EntityKey,
    Mismatch,
    compare,
    entity_kinds,
    sample_keys,
    served_values,
)
from batch_layer.lake import files_matching, open_table, parquet_dataset
from feature_core.definitions import Entity, FeatureGroup, FeatureRepo
from feature_core.journals import Journal
from feature_core.keys import entity_id
from feature_core.reference import default_values, evaluate
from feature_core.settings import Settings
from feature_core.sources import EventSource
from online_store import STORE_ERRORS
from online_store.base import OnlineStore

log = logging.getLogger(__name__)

#: Relative tolerance of float values (as ``lfp verify``'s default).
TOLERANCE = 1e-9
#: Mismatched values a sampled verification record shows.
EXAMPLES = 5


def now_ms() -> int:
    return int(time.time() * 1000)


# --- freshness ---------------------------------------------------------------------


class FreshnessSample(BaseModel):
    """How fresh the views are at ``at_ms`` (a ``Journal.FRESHNESS`` record)."""

    model_config = ConfigDict(extra="forbid")

    at_ms: int
    batch_view: int | None = Field(description="The serving batch view's version (none: null).")
    batch_age_s: float | None = Field(description="Seconds since the serving view's cutoff.")
    speed_age_s: dict[str, float] = Field(
        description="Per group with a speed watermark, seconds since it (the newest event "
        "time its tiles hold)."
    )
    lag: dict[str, int] = Field(description="Records behind, per 'consumer/topic'.")


def freshness_sample(store: OnlineStore, groups: Sequence[str], at_ms: int) -> FreshnessSample:
    """Read the pointer, the watermarks and the published lags (``/readyz`` reads the
    same) and measure them at ``at_ms``."""
    pointer = store.pointer()
    marks = store.watermarks(groups)
    lags = store.consumer_lag()
    return FreshnessSample(
        at_ms=at_ms,
        batch_view=pointer.version if pointer is not None else None,
        batch_age_s=(at_ms - pointer.cutoff) / 1000 if pointer is not None else None,
        speed_age_s={g: (at_ms - m) / 1000 for g, m in marks.items() if m is not None},
        lag={f"{one.consumer}/{one.topic}": one.behind for one in lags},
    )


# --- sampled verification -----------------------------------------------------------


class SampledVerification(BaseModel):
    """One sampled verification (a ``Journal.SAMPLED_VERIFY`` record)."""

    model_config = ConfigDict(extra="forbid")

    at_ms: int = Field(description="When the check started.")
    entities: int = Field(description="Entities compared.")
    values: int = Field(description="Values compared (entities x their groups' features).")
    mismatches: int = Field(description="Values still different after the re-check.")
    by_feature: dict[str, int] = Field(description="Mismatches per group:feature (none: absent).")
    examples: list[Mismatch] = Field(
        description=f"Up to {EXAMPLES} mismatched values, as `lfp verify` reports them."
    )
    duration_s: float
    events: int = Field(description="Lake events of the sampled entities read (first pass).")
    skipped: int = Field(
        0, description="Entities left out: their events would pass LFP_SAMPLED_VERIFY_MAX_EVENTS."
    )
    delta_versions: dict[str, int] = Field(description="Lake table -> Delta version read.")


#: Entity name -> the sampled entities' join key values (text, in the entity's order).
Sample = dict[str, list[EntityKey]]


def draw_sample(settings: Settings, repo: FeatureRepo, per_table: int, seed: int) -> Sample:
    """``per_table`` random entities with events in each lake table an entity type's
    groups read (:func:`batch_layer.consistency.sample_keys`), per entity type."""
    sample: Sample = {}
    for join_keys, entity in entity_kinds(repo).items():
        tables = sorted({g.source.table_name for g in repo.groups if g.join_keys == join_keys})
        keys: set[EntityKey] = set()
        for i, table in enumerate(tables):
            keys.update(sample_keys(settings, [table], join_keys, per_table, seed + i))
        sample[entity.name] = sorted(keys)
    return sample


def read_entity_events(
    settings: Settings,
    source: EventSource,
    join_keys: Sequence[str],
    keys: Sequence[EntityKey],
    columns: Collection[str],
) -> tuple[pa.Table, int | None]:
    """The source's lake events of these entities (the declared fields among
    ``columns``) and the Delta version read, with delta-rs and pyarrow.

    Files whose Delta statistics hold none of the keys are skipped, the key filter goes
    into the Parquet scan (row groups without them are skipped too), and the scan runs
    on one thread: the scheduler's Spark shares the machine. A composite key's columns
    are filtered one by one: a few other entities may come along (the caller ignores
    them)."""
    table = open_table(settings.table_uri(source.table_name))
    if table is None or not keys:
        return source.lake_schema.empty_table(), None
    schema = source.lake_schema
    wanted: dict[str, list[Any]] = {}
    condition: pc.Expression | None = None
    for i, key in enumerate(join_keys):
        values = pa.array(sorted({k[i] for k in keys}), pa.string()).cast(schema.field(key).type)
        wanted[key] = values.to_pylist()
        term = pc.field(key).isin(values)
        condition = term if condition is None else condition & term
    files = files_matching(table, wanted)
    fields = [f.name for f in source.fields if f.name in columns]
    if not files:
        return schema.empty_table().select(fields), table.version()
    events = parquet_dataset(files, schema).to_table(
        columns=fields, filter=condition, use_threads=False, batch_readahead=1, fragment_readahead=1
    )
    return events, table.version()


def columns_read(groups: Sequence[FeatureGroup]) -> set[str]:
    """The event fields the reference evaluator reads for these groups: join keys, event
    time, the features' columns and the filters' columns."""
    columns: set[str] = set()
    for group in groups:
        columns.update(group.join_keys, [group.event_time])
        columns.update(f.column for f in group.features if f.column)
        columns.update(f.column for f in group.filters)
    return columns


def _event_counts(events: pa.Table, join_keys: Sequence[str]) -> Counter[str]:
    counts = events.group_by(list(join_keys)).aggregate([([], "count_all")])
    columns = [counts.column(k).to_pylist() for k in join_keys]
    totals = counts.column("count_all").to_pylist()
    return Counter({entity_id(values): n for *values, n in zip(*columns, totals, strict=True)})


def _within_budget(counts: Counter[str], wanted: Sequence[str], budget: int) -> set[str]:
    """The wanted entities kept when their events may add up to ``budget``: the ones with
    the most events are left out first."""
    kept = set(wanted)
    total = sum(counts[e] for e in kept)
    for entity in sorted(kept, key=lambda e: (-counts[e], e)):
        if total <= budget:
            break
        kept.discard(entity)
        total -= counts[entity]
    return kept


def _only(events: pa.Table, join_keys: Sequence[str], keys: Sequence[EntityKey]) -> pa.Table:
    """The rows whose key columns each hold one of the entities' values."""
    for i, key in enumerate(join_keys):
        values = pa.array(sorted({k[i] for k in keys}), pa.string())
        events = events.filter(
            pc.is_in(events.column(key), values.cast(events.schema.field(key).type))
        )
    return events


class _EntityCheck:
    """One entity type's comparison: served values, then lake events, then reference."""

    def __init__(self, settings: Settings, repo: FeatureRepo, entity: Entity) -> None:
        self.settings = settings
        self.entity = entity
        self.groups: list[FeatureGroup] = [
            g for g in repo.groups if g.join_keys == entity.join_keys
        ]
        self.features = [f.qualified_name for g in self.groups for f in g.features]
        self.sources = {g.source.name: g.source for g in self.groups}

    def run(
        self, keys: Sequence[EntityKey], budget: int | None
    ) -> tuple[list[Mismatch], list[EntityKey], int, dict[str, int]]:
        """(mismatches, entities compared, events read, Delta versions). The API first,
        then the lake: an event the API counted is in the lake by then, unless ingest
        lags (the re-check covers that)."""
        as_of, served = served_values(self.settings, self.entity, self.features, keys)
        join_keys = self.entity.join_keys
        read: dict[str, pa.Table] = {}
        versions: dict[str, int] = {}
        for name, source in self.sources.items():
            own = [g for g in self.groups if g.source.name == name]
            read[name], version = read_entity_events(
                self.settings, source, join_keys, keys, columns_read(own)
            )
            if version is not None:
                versions[source.table_name] = version
        ids = [entity_id(k) for k in keys]
        kept = set(ids)
        if budget is not None:
            counts = sum((_event_counts(t, join_keys) for t in read.values()), Counter[str]())
            kept = _within_budget(counts, ids, budget)
        checked = [k for k in keys if entity_id(k) in kept]
        defaults = {g.name: default_values(g) for g in self.groups}
        expected: dict[str, dict[str, Any]] = {}
        for key in checked:  # one entity's events as Python objects at a time
            entity = entity_id(key)
            events = {name: _only(t, join_keys, [key]).to_pylist() for name, t in read.items()}
            expected[entity] = {}
            for group in self.groups:
                values = evaluate(group, events[group.source.name], as_of)
                got = values.get(entity, defaults[group.name])
                for feature in group.features:
                    expected[entity][feature.qualified_name] = got[feature.name]
        compared = {e: v for e, v in served.items() if e in kept}
        found = compare(compared, expected, TOLERANCE)
        return found, checked, sum(t.num_rows for t in read.values()), versions


def sampled_verification(
    settings: Settings, repo: FeatureRepo, sample: Sample, settle_s: float, max_events: int
) -> SampledVerification:
    """Compare the sampled entities' served values with the reference evaluator over
    their lake events; mismatched entities are compared once more after ``settle_s``
    (an event may be in the API and not yet in the lake, or the reverse) and only what
    persists counts. Each entity type may recompute ``max_events`` over the number of
    types: beyond, its entities with the most events are left out (``skipped``)."""
    started, at_ms = time.monotonic(), now_ms()
    entities = values = events = skipped = 0
    counts = Counter[str]()
    examples: list[Mismatch] = []
    versions: dict[str, int] = {}
    kinds = [e for e in entity_kinds(repo).values() if sample.get(e.name)]
    share = max_events // max(len(kinds), 1)  # the budget, spread over the entity types
    for entity in kinds:
        keys = sample[entity.name]
        check = _EntityCheck(settings, repo, entity)
        found, checked, read, versions_read = check.run(keys, share)
        events += read
        versions.update(versions_read)
        skipped += len(keys) - len(checked)
        if found:
            wrong = {m.entity_id for m in found}
            log.info(
                "sampled verification: %d values of %d %s entities differ; checking them "
                "again in %.0f s",
                len(found),
                len(wrong),
                entity.name,
                settle_s,
            )
            time.sleep(settle_s)
            again = [k for k in checked if entity_id(k) in wrong]
            found = check.run(again, None)[0]
        entities += len(checked)
        values += len(checked) * len(check.features)
        counts.update(m.feature for m in found)
        examples.extend(found[: EXAMPLES - len(examples)])
    return SampledVerification(
        at_ms=at_ms,
        entities=entities,
        values=values,
        mismatches=sum(counts.values()),
        by_feature=dict(sorted(counts.items())),
        examples=examples,
        duration_s=round(time.monotonic() - started, 3),
        events=events,
        skipped=skipped,
        delta_versions=versions,
    )


# --- the jobs ----------------------------------------------------------------------

#: What a sampled verification may meet that is not a bug of the check: the API or the
#: store unreachable or refusing, the lake unreadable. Logged in one line, turn skipped.
CHECK_ERRORS: tuple[type[Exception], ...] = (
    *STORE_ERRORS,
    httpx.HTTPError,
    RuntimeError,  # the API answered other than 200 (e.g. 503: no batch view yet)
    DeltaError,
    OSError,
)


class CheckFailed(RuntimeError):
    """The sampled verification's process failed, hung or was killed (the message says)."""


def check_in_child(settings: Settings, seed: int, timeout_s: float) -> SampledVerification:
    """Draw a sample and verify it (:func:`draw_sample`, :func:`sampled_verification`) in a
    child process, over the repo LFP_FEATURE_REPO names.

    A check's lake read and recompute take memory the allocators keep once freed (a few
    hundred MB on a lake of thousands of files, measured) and native code (Arrow, delta-rs)
    that could abort: in its own process, neither stays with nor stops the scheduler. A
    child still running after ``timeout_s`` is killed."""
    context = multiprocessing.get_context("spawn")  # not fork: the scheduler has threads
    receive, send = context.Pipe(duplex=False)
    child = context.Process(
        target=_check, args=(settings, seed, send), name="lfp-sampled-verify", daemon=True
    )
    child.start()
    send.close()
    try:
        if not receive.poll(timeout_s):
            raise CheckFailed(f"no result after {timeout_s:.0f} s: the check was stopped")
        record, error = receive.recv()
    except EOFError:
        child.join(5)
        raise CheckFailed(f"the check's process exited with {child.exitcode}") from None
    finally:
        if child.is_alive():
            child.kill()
        child.join(5)
        receive.close()
    if error is not None:
        raise CheckFailed(error)
    return SampledVerification.model_validate_json(record)


def _check(settings: Settings, seed: int, results: Connection) -> None:
    """The child's side of :func:`check_in_child`: sends (record JSON, None) or (None,
    what went wrong)."""
    try:
        repo = FeatureRepo.from_module(settings.feature_repo_module)
        sample = draw_sample(settings, repo, settings.sampled_verify_entities, seed)
        result = sampled_verification(
            settings,
            repo,
            sample,
            settings.sampled_verify_settle_s,
            settings.sampled_verify_max_events,
        )
        results.send((result.model_dump_json(), None))
    except Exception as error:  # named to the parent, which logs it
        results.send((None, f"{type(error).__name__}: {error}"))
    finally:
        results.close()


class Monitor:
    """The scheduler's monitor jobs over one store."""

    def __init__(self, settings: Settings, repo: FeatureRepo, store: OnlineStore) -> None:
        self.settings = settings
        self.repo = repo
        self.store = store
        self._rng = random.Random()

    def record_freshness(self) -> FreshnessSample | None:
        """Append a freshness sample; a store error skips this one (None)."""
        at_ms = now_ms()
        try:
            sample = freshness_sample(self.store, [g.name for g in self.repo.groups], at_ms)
            record = orjson.dumps(sample.model_dump(mode="json"))
            self.store.append_journal(Journal.FRESHNESS, record, at_ms, Journal.FRESHNESS.keep)
        except STORE_ERRORS as error:
            log.warning("freshness sample skipped: the store failed (%r)", error)
            return None
        return sample

    def verify_sample(self, seed: int | None = None) -> SampledVerification | None:
        """Run a sampled verification in a child process (:func:`check_in_child`) and
        append its result; a failure skips this turn with a log line."""
        settings = self.settings
        seed = self._rng.randrange(2**31) if seed is None else seed
        timeout_s = max(settings.sampled_verify_interval_s, 60)
        try:
            result = check_in_child(settings, seed, timeout_s)
            record = orjson.dumps(result.model_dump(mode="json"))
            journal = Journal.SAMPLED_VERIFY
            self.store.append_journal(journal, record, result.at_ms, journal.keep)
        except CHECK_ERRORS as error:
            log.warning("sampled verification skipped: %s: %s", type(error).__name__, error)
            return None
        level = logging.WARNING if result.mismatches else logging.INFO
        log.log(
            level,
            "sampled verification: %d of %d values differ (%d entities, %d events, %.1f s)",
            result.mismatches,
            result.values,
            result.entities,
            result.events,
            result.duration_s,
        )
        return result

    def schedule(self, scheduler: BaseScheduler) -> None:
        """Add the jobs whose interval is not 0; the first freshness sample at once."""
        interval = self.settings.monitor_interval_s
        if interval:
            scheduler.add_job(
                self.record_freshness,
                "interval",
                seconds=interval,
                next_run_time=datetime.now(UTC),
                max_instances=1,
                coalesce=True,
                misfire_grace_time=interval,
                id="monitor-freshness",
            )
        interval = self.settings.sampled_verify_interval_s
        if interval:
            scheduler.add_job(
                self.verify_sample,
                "interval",
                seconds=interval,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=interval,
                id="monitor-sampled-verify",
            )
