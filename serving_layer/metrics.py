"""Prometheus metrics of the serving layer, on a registry per app (tests build many)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from feature_core.merge import BatchPointer
from feature_core.runs import RunRecord, RunStatus
from feature_core.stats import DEFAULT_PSI_THRESHOLD, RunFeatureStats
from online_store.batch_cache import BatchViewCache
from online_store.memory import MemoryUse
from runtime.lag import TopicLag

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
ENTITY_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000)


class ServingMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "lfp_api_request_duration_seconds",
            "HTTP request latency by endpoint (route template), method and status.",
            ["endpoint", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.entities = Histogram(
            "lfp_api_entities_per_request",
            "Entities asked for in one feature request.",
            ["endpoint"],
            buckets=ENTITY_BUCKETS,
            registry=self.registry,
        )
        self.freshness = Gauge(
            "lfp_feature_freshness_seconds",
            "Now minus the newest event time a view covers: the speed watermark, or the "
            "batch cutoff.",
            ["group", "view"],
            registry=self.registry,
        )
        self.consumer_lag = Gauge(
            "lfp_consumer_lag_records",
            "Records of a topic a consumer has not yet taken in: lake-ingest (not yet in the "
            "lake) and speed-job (not yet committed by a checkpoint).",
            ["consumer", "topic"],
            registry=self.registry,
        )
        self.consistency_mismatches = Gauge(
            "lfp_consistency_mismatches",
            "Values that differed between the API and a recompute from the lake, per feature, "
            "in the last `lfp verify`.",
            ["feature"],
            registry=self.registry,
        )
        self.consistency_values = Gauge(
            "lfp_consistency_values_checked",
            "Values compared by the last `lfp verify`.",
            registry=self.registry,
        )
        self.consistency_checked_at = Gauge(
            "lfp_consistency_last_check_timestamp_seconds",
            "When the last `lfp verify` ran (epoch seconds).",
            registry=self.registry,
        )
        # Children by label values, memoized: labels() validates and locks on every call.
        self.latency_of = lru_cache(maxsize=512)(self.latency.labels)
        self.entities_of = lru_cache(maxsize=64)(self.entities.labels)
        self.redis_errors = Counter(
            "lfp_api_redis_errors_total",
            "Requests that failed because Redis was unreachable, slow or erroring.",
            registry=self.registry,
        )
        self.redis_memory = Gauge(
            "lfp_redis_memory_used_ratio",
            "A Redis server's used memory over its maxmemory (noeviction: at 1 it refuses "
            "writes); /readyz reports one past LFP_REDIS_MEMORY_READY_RATIO.",
            ["node"],
            registry=self.registry,
        )
        # The store's cache, set at each app start-up; its collector is registered once.
        self.batch_cache: BatchViewCache | None = None
        self.registry.register(_BatchCacheCollector(self))
        self.batch_runs_recorded = Gauge(
            "lfp_batch_runs_recorded",
            "Batch run records kept in the run history (LFP_BATCH_RUN_HISTORY), by status; "
            "a running one whose lease ran out counts as abandoned.",
            ["status"],
            registry=self.registry,
        )
        # The newest finished run, exported by its collector (nothing before the first).
        self.last_batch_run: RunRecord | None = None
        self.registry.register(_LastBatchRunCollector(self))
        # The scheduler's newest sampled verification (batch_layer.monitor), if any.
        self.sampled_check: Mapping[str, Any] | None = None
        self.registry.register(_SampledCheckCollector(self))
        # The newest batch run's feature statistics (batch_layer.feature_stats), if any.
        self.feature_stats: RunFeatureStats | None = None
        self.drift_threshold = DEFAULT_PSI_THRESHOLD
        self.registry.register(_FeatureStatsCollector(self))

    def watch_batch_cache(self, cache: BatchViewCache) -> None:
        """Export this batch view cache's counters (read at scrape time)."""
        self.batch_cache = cache

    def observe_freshness(
        self,
        groups: Iterable[str],
        pointer: BatchPointer | None,
        watermarks: Mapping[str, int],
        now_ms: int | None = None,
    ) -> None:
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        for group in groups:
            if pointer is not None:
                self.freshness.labels(group, "batch").set((now_ms - pointer.cutoff) / 1000)
            if group in watermarks:
                self.freshness.labels(group, "speed").set((now_ms - watermarks[group]) / 1000)

    def observe_lag(self, lags: Iterable[TopicLag]) -> None:
        self.consumer_lag.clear()  # a consumer that stopped reporting is not shown as current
        for one in lags:
            self.consumer_lag.labels(one.consumer, one.topic).set(one.behind)

    def observe_memory(self, uses: Iterable[MemoryUse]) -> None:
        """Export each Redis server's memory use (servers without maxmemory: none)."""
        self.redis_memory.clear()
        for use in uses:
            if use.ratio is not None:
                self.redis_memory.labels(use.node).set(use.ratio)

    def observe_runs(self, records: Iterable[RunRecord]) -> None:
        """Export the run history (records as :func:`feature_core.runs.settled` reads them):
        counts by status, and the last finished run (the newest ``finished_at``)."""
        counts = dict.fromkeys(RunStatus, 0)
        last: RunRecord | None = None
        for record in records:
            counts[record.status] += 1
            finished = record.status is not RunStatus.RUNNING and record.finished_at is not None
            if finished and (last is None or record.finished_at > last.finished_at):
                last = record
        for status, count in counts.items():
            self.batch_runs_recorded.labels(status.value).set(count)
        self.last_batch_run = last

    def observe_consistency(self, report: Mapping[str, Any]) -> None:
        """Export a published consistency report (``batch_layer.verify``)."""
        for feature, count in report["by_feature"].items():
            self.consistency_mismatches.labels(feature).set(count)
        self.consistency_values.set(report["values"])
        self.consistency_checked_at.set(report["checked_at"])

    def observe_sampled_check(self, record: Mapping[str, Any]) -> None:
        """Export the newest sampled verification (a ``Journal.SAMPLED_VERIFY`` record)."""
        self.sampled_check = record

    def observe_feature_stats(self, newest: list[bytes], threshold: float) -> None:
        """Export the newest batch run's feature statistics (``Journal.FEATURE_STATS``,
        its newest record or none), drift flagged over ``threshold``. A record this
        release cannot read leaves the last one exported."""
        self.drift_threshold = threshold
        if not newest:
            return
        try:
            self.feature_stats = RunFeatureStats.model_validate_json(newest[-1])
        except ValueError:
            return


class _BatchCacheCollector(Collector):
    def __init__(self, metrics: ServingMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        cache = self.metrics.batch_cache
        if cache is None:
            return
        yield CounterMetricFamily(
            "lfp_api_batch_cache_hits",
            "Batch views served from the API's cache (not read from Redis).",
            value=cache.hits,
        )
        yield CounterMetricFamily(
            "lfp_api_batch_cache_misses",
            "Batch views read from Redis (then cached, unless the cache is off).",
            value=cache.misses,
        )
        yield GaugeMetricFamily(
            "lfp_api_batch_cache_entries", "Batch views in the API's cache.", value=len(cache)
        )


class _SampledCheckCollector(Collector):
    """The scheduler's newest sampled verification; the families are listed (without
    samples) before the first, so a dashboard never reads a 0 that no check produced."""

    def __init__(self, metrics: ServingMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        check = self.metrics.sampled_check
        families = [
            (
                "lfp_consistency_sample_mismatches",
                "Values that differed, after a re-check, between the API and the reference "
                "evaluator over the lake in the scheduler's newest sampled verification.",
                None if check is None else check["mismatches"],
            ),
            (
                "lfp_consistency_sample_values_checked",
                "Values the newest sampled verification compared.",
                None if check is None else check["values"],
            ),
            (
                "lfp_consistency_sample_timestamp_seconds",
                "When the newest sampled verification started (epoch seconds).",
                None if check is None else check["at_ms"] / 1000,
            ),
        ]
        for name, documentation, value in families:
            family = GaugeMetricFamily(name, documentation)
            if value is not None:
                family.add_metric([], value)
            yield family


class _FeatureStatsCollector(Collector):
    """The newest batch run's feature statistics and drift, per feature (the families
    are listed without samples before the first record)."""

    def __init__(self, metrics: ServingMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        record = self.metrics.feature_stats
        threshold = self.metrics.drift_threshold
        baseline = ["group", "feature", "baseline"]
        psi = GaugeMetricFamily(
            "lfp_feature_drift_psi",
            "PSI of a feature's values served at the newest batch run's cutoff against "
            "the previous run's (baseline previous_run) or its newest training set's "
            "(baseline training).",
            labels=baseline,
        )
        flagged = GaugeMetricFamily(
            "lfp_feature_drift_flagged",
            "1 when lfp_feature_drift_psi is over LFP_DRIFT_PSI_THRESHOLD, else 0.",
            labels=baseline,
        )
        nulls = GaugeMetricFamily(
            "lfp_feature_null_rate",
            "Share of the newest batch run's sampled entities whose value is null.",
            labels=["group", "feature"],
        )
        no_data = GaugeMetricFamily(
            "lfp_feature_no_data_rate",
            "Share of the newest batch run's sampled entities whose value has status no_data.",
            labels=["group", "feature"],
        )
        at = GaugeMetricFamily(
            "lfp_feature_stats_timestamp_seconds",
            "When the newest batch run's feature statistics were recorded (epoch seconds).",
        )
        if record is not None:
            at.add_metric([], record.at_ms / 1000)
            for reference, stats in record.features.items():
                group, _, feature = reference.partition(":")
                nulls.add_metric([group, feature], stats.null_rate)
                if stats.no_data_rate is not None:
                    no_data.add_metric([group, feature], stats.no_data_rate)
            for reference, drift in record.drift.items():
                group, _, feature = reference.partition(":")
                for name, value in (
                    ("previous_run", drift.previous_run),
                    ("training", drift.training),
                ):
                    if value is not None:
                        psi.add_metric([group, feature, name], value)
                        flagged.add_metric([group, feature, name], float(value > threshold))
        yield from (psi, flagged, nulls, no_data, at)


class _LastBatchRunCollector(Collector):
    """The last finished batch run's figures; the families are listed (without samples)
    before any run finished, so a dashboard never reads a 0 that no run produced."""

    def __init__(self, metrics: ServingMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        run = self.metrics.last_batch_run
        families = [
            (
                "lfp_batch_last_run_duration_seconds",
                "Wall time of the last finished batch run, trigger to switch or failure.",
                None if run is None else run.duration_s,
            ),
            (
                "lfp_batch_last_run_finished_timestamp_seconds",
                "When the last finished batch run ended (epoch seconds).",
                None if run is None else run.finished_at,
            ),
            (
                "lfp_batch_last_run_succeeded",
                "1 if the last finished batch run succeeded, 0 if it failed or was abandoned.",
                None if run is None else float(run.status is RunStatus.SUCCEEDED),
            ),
            (
                "lfp_batch_last_run_events_read",
                "Lake events the last finished batch run read (none recorded: no sample).",
                None if run is None else run.rows_read,
            ),
            (
                "lfp_batch_last_run_entities_written",
                "Entities whose views the last finished batch run wrote (none recorded: no "
                "sample).",
                None if run is None else run.entities_written,
            ),
        ]
        for name, documentation, value in families:
            family = GaugeMetricFamily(name, documentation)
            if value is not None:
                family.add_metric([], value)
            yield family


class RequestTimer:
    """ASGI middleware: one latency observation per HTTP request, labelled by route."""

    def __init__(self, app: ASGIApp, metrics: ServingMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.latency_of(route, scope["method"], str(status)).observe(
                time.perf_counter() - start
            )
