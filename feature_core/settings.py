"""All runtime configuration, in one place, from environment variables.

Every variable is prefixed ``LFP_`` (for example ``LFP_REDIS_URL``); a ``.env`` file in
the working directory is read too (``LFP_ENV_FILE`` names another; empty: none), its
names without the prefix left to the tools they belong to (Compose's ``COMPOSE_FILE``).
The embedded stack derives the ports it listens on from the same URLs the clients use,
so two stacks run side by side by changing ``LFP_KAFKA_BOOTSTRAP_SERVERS``,
``LFP_REDIS_URL``, ``LFP_API_PORT`` and ``LFP_DATA_DIR``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlparse

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from feature_core.credentials import (
    REDIS_PASSWORD_FILE,
    read_secret,
    redact_url,
    url_password,
    with_password,
)

ENV_PREFIX = "LFP_"
#: Variables docker-compose.yml reads from the same ``.env`` (see .env.example): not
#: settings, but a ``.env`` holding them must still be a valid settings file.
#: Which ``.env`` file the settings read (default ``.env`` in the working directory; an
#: empty value: none). Not a setting itself: it picks where settings come from.
ENV_FILE_VARIABLE = "LFP_ENV_FILE"
COMPOSE_VARIABLES = frozenset(
    {
        "LFP_REDIS_PASSWORD",
        "LFP_GRAFANA_ADMIN_PASSWORD",
        "LFP_PUBLISH_HOST",
        "LFP_UID",
        "LFP_COMPOSE_DATA_DIR",
    }
)

FEATURE_REPO_UNSET = (
    "LFP_FEATURE_REPO is not set: set it to the module holding your feature definitions, "
    "e.g. LFP_FEATURE_REPO=demo.feature_repo (make up and make demo set the demo's)"
)

#: Where tiles start to pay: make bench-batch on 2 cores (its lakes of 10 days, an entity
#: per 10 events, medians of 2), a run with no new events / after 1% appended, with tiles
#: against window by window: 100k events 9.3 / 16.1 s against 11.3 / 10.7 s; 300k
#: events 13.5 / 19.1 s against 22.5 / 22.0 s; 1M (60 days) 13.1 / 27.4 s against 68.1 /
#: 67.2 s (window by window measured before persisted results' partitions were merged).
TILES_MIN_EVENTS = 250_000


class MissingSetting(RuntimeError):
    """A setting the command needs has no value (the message says which and how)."""


class Settings(BaseSettings):
    """Platform settings; field ``x`` is read from env var ``LFP_X``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="forbid", frozen=True
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """``.env`` as the settings read it: Compose's own variables left out (an unknown
        ``LFP_`` name in it is still an error: a typo is not silently ignored)."""

        def dotenv() -> dict[str, object]:
            chosen = os.environ.get(ENV_FILE_VARIABLE)
            if chosen is None:
                values = dotenv_settings()
            elif chosen:
                values = DotEnvSettingsSource(settings_cls, env_file=chosen)()
            else:
                values = {}
            # Names without the prefix are other tools' (Compose's COMPOSE_FILE, ...).
            return {
                k: v
                for k, v in values.items()
                if k in cls.model_fields
                or (k.upper().startswith(ENV_PREFIX) and k.upper() not in COMPOSE_VARIABLES)
            }

        return init_settings, env_settings, dotenv, file_secret_settings  # type: ignore[return-value]

    # --- where things run -------------------------------------------------------
    data_dir: Path = Field(
        Path(".data/stack"),
        description="Root for the embedded stack: lake, logs, pids, state, Flink checkpoints "
        "and the Flink JVM's temp dir (flink-tmp, emptied at each speed job start).",
    )
    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:19092", description="Kafka bootstrap servers (host:port[,host:port])."
    )
    kafka_connect_timeout_s: float = Field(
        10.0, gt=0, description="How long clients wait for a Kafka broker before giving up."
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT",
        description="How every Kafka client (lake ingest, producers, admin, lag, the speed "
        "job's Flink source) talks to the brokers: PLAINTEXT, SSL, SASL_PLAINTEXT or "
        "SASL_SSL.",
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "PLAIN", description="SASL mechanism (with a SASL_* LFP_KAFKA_SECURITY_PROTOCOL)."
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user name.")
    kafka_sasl_password: SecretStr | None = Field(
        None, description="SASL password (never printed)."
    )
    kafka_ssl_cafile: Path | None = Field(
        None,
        description="PEM file of the CA(s) that sign the brokers' certificates (SSL, "
        "SASL_SSL); default: the system's CAs (the JVM's for the speed job).",
    )
    kafka_ssl_check_hostname: bool = Field(
        True,
        description="With TLS, check that a broker's certificate names the host connected "
        "to (turn off only for a test broker).",
    )
    redis_url: str = Field(
        "redis://127.0.0.1:16379/0",
        description="Redis URL for all views (on Redis Cluster: any node, database 0): "
        "redis://[[user]:password@]host:port/db, or rediss:// for TLS (the server's "
        "certificate and host name are checked; ?ssl_ca_certs=/path/ca.pem names the CA). "
        "Without a password in it, the one in LFP_REDIS_PASSWORD_FILE is used.",
    )
    redis_password_file: Path | None = Field(
        None,
        description="File holding the Redis password, used when LFP_REDIS_URL has none; "
        "default <data_dir>/secrets/redis-password, the password the embedded Redis and "
        "the local cluster's nodes get (generated at their first start, mode 0600). An "
        "empty file (/dev/null): no password.",
    )
    redis_maxmemory: str = Field(
        "2gb",
        pattern=r"^\d+([kKmMgG]?[bB])?$",
        description="maxmemory of each Redis server the platform starts (the embedded "
        "Redis, each local Redis Cluster node; Compose's uses LFP_REDIS_MAXMEMORY too), "
        "with policy noeviction: a full Redis refuses writes (the batch run and the speed "
        "sink fail loudly) rather than silently evicting views.",
    )
    redis_memory_ready_ratio: float = Field(
        0.9,
        gt=0,
        le=1,
        description="/readyz reports not ready once a Redis server's used memory is past "
        "this share of its maxmemory (also exported as lfp_redis_memory_used_ratio).",
    )
    online_store: Literal["redis", "redis-cluster"] = Field(
        "redis",
        description="Where the views live: redis (one server) or redis-cluster (Redis "
        "Cluster; LFP_REDIS_URL names one of its nodes).",
    )
    api_host: str = Field("127.0.0.1", description="Interface the API binds to.")
    api_port: int = Field(8000, ge=1, le=65535, description="Port the API listens on.")
    redis_timeout_s: float = Field(
        1.0, gt=0, description="Redis connect/read timeout of the API: its 503 comes this fast."
    )
    lake_uri: str | None = Field(
        None, description="Delta lake root (path or delta-rs URI); default <data_dir>/lake."
    )

    # --- serving layer ----------------------------------------------------------
    api_token: SecretStr | None = Field(
        None, description="Bearer token the feature endpoints require; unset: no auth."
    )
    api_max_entities: int = Field(
        1000,
        ge=1,
        description="Most entities in one request (/v1/features; each join key's list of "
        "/get-online-features); more is a 422 naming this setting.",
    )
    api_ops_interval_s: float = Field(
        1.0,
        gt=0,
        le=60,
        description="/readyz, /metrics and /health (no token) read Redis at most once per "
        "this many seconds, every caller meanwhile sharing that answer: a flood of them "
        "cannot take the Redis connections feature reads need.",
    )
    api_max_features: int = Field(
        1000,
        ge=1,
        description="Most feature references in one request's 'features' list (/v1/features, "
        "/get-online-features); more is a 422 naming this setting.",
    )
    api_redis_connections: int = Field(
        64,
        ge=1,
        description="Redis connections the API opens at most (to each node, on Redis "
        "Cluster); more requests at once wait for one, up to LFP_REDIS_TIMEOUT_S, then get "
        "a 503.",
    )
    api_max_body_bytes: int = Field(
        1_048_576, ge=1024, description="Largest request body the API accepts (413 above)."
    )
    api_batch_cache_entries: int = Field(
        50_000,
        ge=0,
        description="Batch views (group x entity) the API keeps in memory (about 3 KB each "
        "for the demo groups); 0: off. A batch view never changes, so for a cached one "
        "only speed tiles are read.",
    )
    api_serve_speed_only: bool = Field(
        False,
        description="While no batch view is serving (first start, Redis lost), answer "
        "feature requests from the speed tiles alone, each value with status speed_only, "
        "instead of 503.",
    )
    api_max_lag_records: int = Field(
        100_000,
        ge=0,
        description="/readyz reports not ready while lake ingest or the speed job is more "
        "records than this behind on a topic; 0: lag is not checked.",
    )
    consumer_max_restarts_per_min: int = Field(
        2,
        ge=0,
        description="/readyz and `lfp stack status` report a consumer (lake ingest, the "
        "speed job) as crash-looping when it restarted more times than this in the last "
        "minute, wherever it runs (each consumer publishes its start times).",
    )
    consumer_stall_s: float = Field(
        120.0,
        gt=0,
        description="/readyz and `lfp stack status` report a consumer as stalled when it "
        "has not reported for this long, or has not committed for this long while records "
        "that arrived after its last commit wait on its topics (counted from its start "
        "after a restart).",
    )
    consumer_lag_window_s: float = Field(
        60.0,
        ge=5,
        description="/readyz and `lfp stack status` report a consumer as falling behind "
        "when its lag grew through this whole window (each third above the one before).",
    )
    api_cors_origins: list[str] = Field(
        default_factory=list,
        description='Origins allowed by CORS, as JSON (e.g. ["https://app.example"]); none.',
    )

    api_routers: list[str] = Field(
        default_factory=list,
        description="Extra API routers as module:attribute (JSON list), mounted with the "
        "feature endpoints' auth; none by default (`make up` mounts the demo's "
        '["demo.recommendations:router"] with the demo repo).',
    )
    model_dir: Path | None = Field(
        None,
        description="Where models of the API's routers are saved and loaded (by bare file "
        "name, sha256-checked); default <data_dir>/models.",
    )

    # --- what flows -------------------------------------------------------------
    events_partitions: int = Field(
        3, ge=1, description="Partitions of each source's topic when the platform creates it."
    )
    feature_repo: str | None = Field(
        None,
        description="Python module holding the sources and feature definitions (topics, "
        "lake tables and dead-letter topics come from its sources); no default: `make up` "
        "and `make demo` set demo.feature_repo.",
    )
    key_prefix: str = Field(
        "lfp",
        pattern=r"^[^{}\s]+$",
        description="Prefix of every Redis key the platform owns (no braces: they would "
        "change the keys' hash slots).",
    )

    # --- batch layer ------------------------------------------------------------
    batch_watch_s: int = Field(
        5,
        ge=1,
        description="How often the scheduler checks that a batch view is serving; a run "
        "starts at once when none is.",
    )
    batch_schedule: str = Field(
        "*/15 * * * *", description="Crontab (5 fields, UTC) for scheduled batch runs."
    )
    batch_horizon_s: int = Field(
        86_400,
        ge=300,
        description="How long after its cutoff a batch view stays exact for sliding windows.",
    )
    batch_settle_s: int = Field(
        60,
        ge=0,
        description="Scheduled cutoffs lag now by this much, so the lake has every earlier event.",
    )
    batch_retries: int = Field(2, ge=0, description="Retries of a failed batch run.")
    batch_retry_backoff_s: float = Field(
        30.0, gt=0, description="First retry delay; doubles per retry (at most 5 minutes)."
    )
    batch_incremental: bool = Field(
        True,
        description="true: batch runs keep tiles (_lfp_tiles) and advance each group from "
        "them, reading only the events added since the last run and rewriting only the "
        "documents whose values can change; a group's first run (a rebuild: no tiles yet, "
        "or changed definitions) costs more than a full recompute window by window; on a "
        "lake of a million events or more every run after it costs far less (make "
        "bench-batch), while on a small lake its fixed costs make it dearer "
        "(LFP_BATCH_TILES_MIN_EVENTS). false: every run recomputes all history window by "
        "window, keeping no tiles.",
    )
    batch_tiles_min_events: int = Field(
        TILES_MIN_EVENTS,
        ge=0,
        description="With LFP_BATCH_INCREMENTAL=true, a group keeps tiles once its source "
        "table holds this many events (its Delta log's statistics count them); below, each "
        "run recomputes it window by window, which costs less on a small lake (make "
        "bench-batch measures both). Its stored tiles, if any, are kept for later runs. "
        "0: tiles at any size.",
    )
    batch_group_concurrency: int = Field(
        2,
        ge=1,
        description="Feature groups a batch run computes at once: one group's query "
        "planning and Redis writes overlap another's Spark jobs. 1: one after another.",
    )
    batch_keep_versions: int = Field(
        2,
        ge=1,
        description="Batch view versions readable on Redis Cluster: 2 keeps what the "
        "replaced version showed for each entity a run rewrote (a reader may read it just "
        "after a switch); 1 unlinks those previous documents at the switch. One Redis "
        "server reads atomically and always unlinks them at the switch.",
    )
    batch_redis_timeout_s: float = Field(
        30.0,
        gt=0,
        description="Redis connect/read timeout of the writers (batch job and its executors, "
        "scheduler, speed sink, CLI): a hung or paused Redis fails the run after this long "
        "(and the scheduler retries) instead of hanging it. Generous: a pipeline of 1,000 "
        "view writes takes longer than one API read.",
    )
    batch_run_history: int = Field(
        500,
        ge=1,
        description="Batch runs kept in the run history (Redis and the lake's "
        "_lfp_batch_runs table, trimmed on write; the lake table is rewritten once a "
        "tenth of that many saves were appended).",
    )
    batch_run_lease_s: float = Field(
        300.0,
        gt=0,
        description="A running batch run refreshes its record at least every third of this; "
        "one not refreshed for this long (its scheduler was killed) reads as abandoned.",
    )
    monitor_interval_s: int = Field(
        15,
        ge=0,
        description="How often the scheduler records a freshness sample (batch view age, "
        "speed watermark ages, consumer lag) in the freshness journal; 0: never.",
    )
    sampled_verify_interval_s: int = Field(
        300,
        ge=0,
        description="How often the scheduler runs a sampled verification (a few entities' "
        "served values against the reference evaluator over their lake events, no Spark); "
        "0: never.",
    )
    sampled_verify_entities: int = Field(
        20,
        ge=1,
        description="Random entities a sampled verification draws per entity type and lake "
        "table (the groups of one entity type reading one table share them).",
    )
    sampled_verify_settle_s: float = Field(
        10.0,
        ge=0,
        description="A sampled verification checks mismatching entities once more after "
        "this long (an event can reach the API before the lake, or the reverse).",
    )
    sampled_verify_max_events: int = Field(
        200_000,
        ge=1,
        description="Most lake events a sampled verification recomputes (spread evenly over "
        "the entity types); beyond it the entities with the most events are left out of that "
        "check (counted as skipped).",
    )
    feature_stats_sample: int = Field(
        20_000,
        ge=0,
        description="Entities per group (training set rows) whose feature values a batch run "
        "(training set build) summarizes into the feature statistics journal, a uniform "
        "sample; 0 records no statistics.",
    )
    drift_psi_threshold: float = Field(
        0.2,
        gt=0,
        description="A feature whose PSI against the previous run or its training set is "
        "over this is flagged as drifting (lfp_feature_drift_flagged).",
    )
    spark_master: str = Field(
        "local[2]",
        description="Spark master URL: local[N] in this process, or spark://host:port for a "
        "standalone cluster (lfp cluster up starts one).",
    )
    spark_driver_memory: str = Field("2g", description="Spark driver memory.")
    spark_driver_host: str | None = Field(
        None,
        description="Address a cluster's executors reach the driver at. A loopback address "
        "keeps the driver on it; any other makes the driver listen on every interface. "
        "Default: this host's name (loopback in local mode).",
    )
    spark_cores_max: int | None = Field(
        None,
        ge=1,
        description="Most cores one Spark application takes on a standalone cluster (the "
        "scheduler's session and a CLI run then share it); default: every free core.",
    )
    spark_executor_memory: str = Field(
        "2g", description="Memory of each executor on a cluster (local mode has none)."
    )
    lake_optimize_schedule: str = Field(
        "30 2 * * *",
        description="Crontab (5 fields, UTC) for clustering the lake by entity keys and "
        "removing unreferenced files (lfp lake optimize).",
    )
    lake_row_group_rows: int = Field(
        16384,
        ge=1024,
        description="Rows per Parquet row group when the lake is optimized; smaller groups "
        "let a read of a few entities skip more.",
    )
    lake_retention_hours: int = Field(
        168,
        ge=1,
        description="Data files replaced by an optimization are deleted after this long; "
        "a training set or batch run pinned at an older lake version needs them until then. "
        "In the tile table, also files a run replaced and those of runs that never committed "
        "(kept longer while a run is in progress).",
    )
    load_max_record_bytes: int = Field(
        128 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        description="Largest record `lfp lake load` reads (a JSON line, or a CSV record with "
        "its line breaks); a larger one is a reject (its head is kept), not a failed load.",
    )
    ingest_max_records: int = Field(20000, ge=1, description="Max events per Delta commit.")
    ingest_poll_ms: int = Field(500, ge=10, description="Longest wait for a lake ingest batch.")
    ingest_max_bytes: int = Field(
        16 * 1024 * 1024,
        ge=1024 * 1024,
        description="Max bytes of record values and keys per lake ingest batch (Delta commit); "
        "a single larger record still makes a batch of its own.",
    )
    dead_letter_max_bytes: int = Field(
        256 * 1024,
        ge=4096,
        le=1000 * 1024,
        description="Largest dead-letter envelope: a rejected record is kept whole when it "
        "fits, else its head (flagged truncated, with its size and sha256). Keep it below "
        "the broker's and producer's record limit (1 MiB by default).",
    )
    dead_letter_timeout_s: float = Field(
        10.0,
        gt=0,
        description="How long lake ingest waits for the broker to acknowledge a batch's dead "
        "letters; one not acknowledged by then goes to the spill file "
        "(<data_dir>/dead-letters/<dead-letter topic>.jsonl, `lfp dead-letters spilled`).",
    )

    # --- speed layer ------------------------------------------------------------
    speed_target: Literal["local", "remote"] = Field(
        "local",
        description="Where the speed job runs: local (a Flink mini-cluster in the `lfp speed "
        "run` process) or remote (submitted to the Flink session cluster at "
        "LFP_SPEED_FLINK_ADDRESS; `lfp speed run` then supervises it, and stops it with a "
        "savepoint).",
    )
    speed_flink_address: str = Field(
        "127.0.0.1:18081",
        description="host:port of the Flink session cluster's REST endpoint (remote target).",
    )
    speed_flink_python: str | None = Field(
        None,
        description="Python interpreter on the Flink TaskManagers, with the platform "
        "installed (remote target); default: this interpreter (same machine or image).",
    )
    speed_allowed_lateness_s: int = Field(
        3600, ge=0, description="Events older than this (vs. processing time) skip the speed layer."
    )
    late_events_max_age_s: int | None = Field(
        None,
        ge=0,
        description="Late events (dated before the serving batch view's cutoff) older "
        "than this are not corrected online (counted, and in the lake for the next batch "
        "run); default: any age a window of their group still covers (lifetime and "
        "session windows: any).",
    )
    speed_tile_ttl_s: int = Field(
        3 * 86_400, ge=60, description="TTL of speed tiles in Redis; must exceed batch interval."
    )
    speed_emit_latency_ms: int = Field(
        200,
        ge=10,
        description="Flink mini-batch latency: how often tile updates are emitted (longer: "
        "fewer, larger updates, more throughput at saturation, staler features).",
    )
    speed_checkpoint_interval_s: int = Field(10, ge=1, description="Flink checkpoint interval.")
    speed_state_backend: Literal["hashmap", "rocksdb"] = Field(
        "hashmap",
        description="Flink state backend: hashmap (on the heap, fastest) or rocksdb (on "
        "disk with incremental checkpoints, for state larger than memory).",
    )
    speed_parallelism: int = Field(
        1,
        ge=1,
        description="Flink job parallelism (Python workers too: one per slot). Above 1 the "
        "speed watermark only says the newest event was written: events of other partitions "
        "may still be in flight.",
    )

    # --- local cluster (lfp cluster up) ----------------------------------------------
    cluster_host: str = Field(
        "127.0.0.1",
        description="Address a part of the cluster advertises as its own (Compose: its "
        "service name); the Spark worker and the Spark web UIs listen on it.",
    )
    cluster_spark_master_host: str = Field(
        "127.0.0.1",
        description="Where the cluster's Spark master runs (workers join it); it listens "
        "on this address.",
    )
    cluster_flink_jobmanager_host: str = Field(
        "127.0.0.1",
        description="Where the cluster's Flink JobManager runs (TaskManagers join it). Any "
        "address but 127.0.0.1 makes the JobManager and TaskManagers listen on every "
        "interface.",
    )
    cluster_redis_ports: list[Annotated[int, Field(ge=1, le=55535)]] = Field(
        [17001, 17002, 17003],
        min_length=3,
        description="Ports of the local Redis Cluster's masters (JSON list, at least 3; at "
        "most 55535: each node also listens 10000 above its port).",
    )
    cluster_spark_port: int = Field(
        17077,
        ge=1,
        le=65533,
        description="Port of the local Spark master; its web UI takes the next one, the "
        "worker's the one after.",
    )
    cluster_spark_worker_memory: str = Field(
        "4g", description="Memory the local Spark worker offers its executors."
    )
    cluster_spark_worker_cores: int = Field(
        4,
        ge=1,
        description="Cores the local Spark worker offers (more than the machine's: the "
        "scheduler's session and a CLI run each get executors at once).",
    )
    cluster_flink_port: int = Field(
        18081,
        ge=1,
        le=65534,
        description="REST port of the local Flink JobManager; its RPC port is the next one.",
    )
    cluster_flink_taskmanagers: int = Field(
        2, ge=1, description="TaskManagers of the local Flink cluster (one slot each)."
    )

    @field_validator("batch_schedule", "lake_optimize_schedule")
    @classmethod
    def _five_field_cron(cls, value: str) -> str:
        if len(value.split()) != 5:
            raise ValueError(f"{value!r} is not a 5-field crontab, e.g. '*/15 * * * *'")
        return value

    @model_validator(mode="after")
    def _redis_password(self) -> Settings:
        """Resolved once, here: the URL then carries the password wherever the settings
        go (pickled to Spark executors, to the JVM tile sink), whatever their cwd."""
        if url_password(self.redis_url) is None:
            password = read_secret(self.redis_password_path)
            if password is not None:
                # Frozen model: the one place a field is set after validation.
                object.__setattr__(self, "redis_url", with_password(self.redis_url, password))
        return self

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        """As pydantic's, with URL passwords masked: a logged Settings shows no secret
        (SecretStr fields mask themselves; the Redis URL is a plain string)."""
        for name, value in super().__repr_args__():
            yield name, redact_url(value) if name == "redis_url" else value

    # --- derived (plain properties: a cached value would survive model_copy) -------
    @property
    def lake_root(self) -> str:
        return self.lake_uri or str((self.data_dir / "lake").resolve())

    def table_uri(self, table: str) -> str:
        """Where a source's lake table lives: ``<lake root>/<table>``."""
        return f"{self.lake_root.rstrip('/')}/{table}"

    @property
    def feature_repo_module(self) -> str:
        """LFP_FEATURE_REPO, or one line saying how to set it (the core names no workload)."""
        if not self.feature_repo:
            raise MissingSetting(FEATURE_REPO_UNSET)
        return self.feature_repo

    @property
    def models_path(self) -> Path:
        return self.model_dir or self.data_dir / "models"

    @property
    def broker_port(self) -> int:
        """Port of the first bootstrap server (the embedded broker listens there)."""
        return int(self.kafka_bootstrap_servers.split(",")[0].rsplit(":", 1)[1])

    @property
    def redis_port(self) -> int:
        return urlparse(self.redis_url).port or 6379

    @property
    def redis_password(self) -> str | None:
        """The password clients authenticate with (from the URL or the password file)."""
        return url_password(self.redis_url)

    @property
    def redis_password_path(self) -> Path:
        """Where the password of the Redis servers the platform starts is kept."""
        return self.redis_password_file or self.data_dir / REDIS_PASSWORD_FILE

    @property
    def api_url(self) -> str:
        return f"http://{self.api_host}:{self.api_port}"

    @property
    def api_headers(self) -> dict[str, str]:
        """Headers a client of this API sends (the bearer token, when one is set)."""
        if self.api_token is None:
            return {}
        return {"Authorization": f"Bearer {self.api_token.get_secret_value()}"}


def get_settings() -> Settings:
    """Settings from the current environment (not cached: tests and stacks vary it)."""
    return Settings()
