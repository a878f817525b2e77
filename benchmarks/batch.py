"""Batch runs at scale: `make bench-batch` (self-contained).

For each lake size (``--events``, default 10M and 100M), a shop lake (``--users`` users
drawn from a Zipf distribution, ``--days`` days, written straight to Delta with the
training benchmark's writer) is generated once and cached under ``--cache-dir``, keyed by
its parameters. Each bench run works on a copy of it (Parquet files hard-linked, the Delta
log copied), so the events appended here never reach the cache.

The batch job runs through its public entry point (:func:`batch_layer.job.run_batch`) in
one warm local Spark session with the scheduler's settings (tiles at every lake size:
``LFP_BATCH_TILES_MIN_EVENTS=0``), into a private redis-server on
a free loopback port. Cells, each the median wall time of ``--rounds`` rounds:

- **full run**: every group recomputed from the raw events, Redis writes included; next
  to it **DuckDB** (``--duckdb-threads`` threads) computing the same per-entity hop tiles
  for the same groups from the same Delta snapshot's files (``read_parquet`` over the files
  delta-rs lists; no extension), written to Parquet, and the ratio of the two;
- **no new events**: the cutoff moved 15 minutes, nothing appended;
- **1% appended**: 1% of the lake's events appended like lake ingest does (commits of
  ``LFP_INGEST_MAX_RECORDS`` records, one file per date partition each), 98% dated in the
  15 minutes before the new cutoff, 2% late into older dates; then a run.

Each cell also shows the events read, the entities written, Redis ``used_memory`` and the
mean ``MEMORY USAGE`` of sampled batch view keys (one key per entity and group), and the
size of the lake snapshot read. The full run's time is broken down by Spark job (from
Spark's status store, by call site), with the time outside any Spark job (driver work).
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from redis import Redis

from batch_layer.job import STEP_PREFIX, run_batch
from batch_layer.lake import INGEST_COMMIT, ingest_app_id
from batch_layer.spark import spark_session
from benchmarks.training import shop_table, write_lake
from feature_core.definitions import FeatureGroup, FeatureRepo, TileColumn
from feature_core.settings import Settings
from feature_core.sources import EVENT_DATE, EventSource
from feature_core.windows import COLLAPSED, DAY_MS, MINUTE_MS, Window, align_cutoff, batch_layout
from infra.stack import free_port
from online_store.keys import META_TAG

#: Between two scheduled runs (the default LFP_BATCH_SCHEDULE): how far each run's cutoff moves.
STEP_MS = 15 * MINUTE_MS
#: Disk a lake takes per event (Parquet; the unique event id strings dominate), with headroom.
LAKE_BYTES_PER_EVENT = 45
#: Scratch per event read by a run: Spark's cached snapshot spilled to disk, its shuffle
#: files, DuckDB's temporary files and tiles (estimate with headroom).
SCRATCH_BYTES_PER_EVENT = 60
#: A lake this large runs its full-run cell once unless --full-rounds says otherwise.
LARGE_LAKE_EVENTS = 50_000_000
#: Batch view keys whose MEMORY USAGE is sampled per cell.
MEMORY_SAMPLE = 500


# --- the lake -------------------------------------------------------------------------


@dataclass(frozen=True)
class LakeSpec:
    events: int
    users: int
    zipf: float
    days: int

    def key(self) -> str:
        """The cache entry's name: the parameters, and a hash of the writer's code (a
        changed generator writes a new lake)."""
        code = inspect.getsource(write_lake) + inspect.getsource(shop_table)
        digest = hashlib.sha256(code.encode()).hexdigest()[:10]
        return f"shop-e{self.events}-u{self.users}-z{self.zipf}-d{self.days}-{digest}"


@dataclass(frozen=True)
class CachedLake:
    path: Path  # the Delta table
    now_ms: int  # the generator's "now": every event is before it
    seconds: float  # how long generating it took


def disk_needed(events: int, cached: bool) -> int:
    """Bytes a bench over a lake of ``events`` needs free: the lake unless cached, the 1%
    appended per round, and the runs' scratch."""
    lake = 0 if cached else events * LAKE_BYTES_PER_EVENT
    return lake + events * (SCRATCH_BYTES_PER_EVENT + LAKE_BYTES_PER_EVENT // 10) + (1 << 30)


def check_disk(paths: Sequence[Path], needed: int, what: str) -> None:
    """Refuse (SystemExit, with the figures) rather than fail halfway through a write."""
    for path in paths:
        path.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(path).free
        if free < needed:
            raise SystemExit(
                f"bench-batch: {what} needs about {needed / 1e9:.1f} GB free under {path}; "
                f"{free / 1e9:.1f} GB are (free some, or choose --cache-dir elsewhere)"
            )


def cached_lake(cache_dir: Path, spec: LakeSpec, scratch: Path) -> CachedLake:
    """The lake of ``spec`` from the cache, generated first if missing. An entry without
    its marker (a generation cut short) is written again."""
    entry = cache_dir / spec.key()
    marker = entry / "lake.json"
    if marker.exists():
        doc = json.loads(marker.read_text())
        check_disk([cache_dir, scratch], disk_needed(spec.events, cached=True), "the runs")
        return CachedLake(entry / "raw_events", doc["now_ms"], doc["seconds"])
    check_disk([cache_dir, scratch], disk_needed(spec.events, cached=False), "generating the lake")
    shutil.rmtree(entry, ignore_errors=True)
    entry.mkdir(parents=True)
    # A day before now: the bench's later cutoffs (15 minutes apart) stay in the past.
    now_ms = align_cutoff(int(time.time() * 1000)) - DAY_MS
    print(f"# generating a {spec.events:,}-event lake under {entry}", flush=True)
    started = time.monotonic()
    write_lake(str(entry / "raw_events"), spec.events, spec.users, spec.days, spec.zipf, now_ms)
    seconds = time.monotonic() - started
    marker.write_text(json.dumps({**asdict(spec), "now_ms": now_ms, "seconds": seconds}))
    return CachedLake(entry / "raw_events", now_ms, seconds)


def working_copy(table: Path, into: Path) -> Path:
    """A copy of a Delta table to append to: data files hard-linked (Delta never
    rewrites one; copied across file systems), the log copied (``_last_checkpoint`` is
    rewritten in place)."""
    for source in table.rglob("*"):
        target = into / source.relative_to(table)
        if source.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if "_delta_log" in source.parts:
            shutil.copy2(source, target)
            continue
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)
    return into


@dataclass(frozen=True)
class LakeSize:
    bytes: int
    files: int


def lake_size(uri: str) -> LakeSize:
    """The current snapshot's data files (what a full run reads)."""
    actions = DeltaTable(uri).get_add_actions(flatten=True)
    sizes = actions.column("size_bytes").to_pylist()
    return LakeSize(int(sum(sizes)), len(sizes))


@dataclass
class Appender:
    """Appends shop events like lake ingest: commits of ``max_records`` records, each
    with one file per date partition, tagged as ingest commits with their next offset."""

    uri: str
    spec: LakeSpec
    max_records: int
    next_id: int
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(13))
    offset: int = 0
    commits: int = 0

    def append(self, count: int, oldest_ms: int, previous_cutoff: int, cutoff: int) -> None:
        late = round(count * 0.02)
        times = np.concatenate(
            [
                self.rng.integers(previous_cutoff, cutoff, count - late),
                self.rng.integers(oldest_ms, previous_cutoff, late),
            ]
        )
        self.rng.shuffle(times)  # arrival order: the late ones among the fresh
        for start in range(0, count, self.max_records):
            chunk = times[start : start + self.max_records]
            table = shop_table(self.rng, self.next_id, chunk, self.spec.users, self.spec.zipf)
            positions = np.arange(self.offset, self.offset + len(chunk), dtype=np.int64)
            table = table.set_column(
                table.schema.get_field_index("kafka_offset"), "kafka_offset", [positions]
            )
            table = table.set_column(
                table.schema.get_field_index("kafka_partition"),
                "kafka_partition",
                [np.zeros(len(chunk), np.int32)],
            )
            self.offset += len(chunk)
            self.next_id += len(chunk)
            properties = CommitProperties(
                app_transactions=[Transaction(ingest_app_id("events", "bench", 0), self.offset)],
                custom_metadata={INGEST_COMMIT: uuid.uuid4().hex},
            )
            write_deltalake(
                self.uri,
                table,
                mode="append",
                partition_by=[EVENT_DATE],
                schema_mode="merge",
                commit_properties=properties,
            )
            self.commits += 1


# --- Redis ------------------------------------------------------------------------------


@contextmanager
def private_redis() -> Iterator[int]:
    """A redis-server of this bench's own on a free loopback port (no persistence)."""
    port = free_port()
    server = subprocess.Popen(
        [
            *("redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""),
            *("--appendonly", "no", "--protected-mode", "yes"),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        client = Redis(host="127.0.0.1", port=port, socket_timeout=5, socket_connect_timeout=5)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                break
            except Exception:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"redis-server on port {port} did not start") from None
                time.sleep(0.1)
        client.close()
        yield port
    finally:
        server.terminate()
        server.wait(10)


@dataclass(frozen=True)
class RedisFigures:
    used_memory: int
    keys: int
    view_keys_sampled: int
    memory_per_key: float  # mean MEMORY USAGE of the sampled batch view keys
    command_seconds: float  # server time in commands since the previous figures
    commands: int


def redis_figures(client: Redis, before: dict[str, Any] | None) -> RedisFigures:
    """Memory after a run, and the server's command time during it (INFO commandstats).
    Sampled keys: every key outside ``{meta}`` (the bench runs no speed job, so these are
    the batch views' keys, whatever their layout)."""
    keys: list[bytes] = []
    for key in client.scan_iter(count=1000):
        if META_TAG.encode() in key:
            continue
        keys.append(key)
        if len(keys) >= MEMORY_SAMPLE:
            break
    usage = [client.memory_usage(k, samples=0) or 0 for k in keys]
    stats = client.info("commandstats")
    seconds, calls = _command_totals(stats, before)
    return RedisFigures(
        int(client.info("memory")["used_memory"]),
        int(client.dbsize()),
        len(keys),
        statistics.fmean(usage) if usage else 0.0,
        seconds,
        calls,
    )


def _command_totals(stats: dict[str, Any], before: dict[str, Any] | None) -> tuple[float, int]:
    usec = sum(v["usec"] for v in stats.values()) - sum(v["usec"] for v in (before or {}).values())
    calls = sum(v["calls"] for v in stats.values()) - sum(
        v["calls"] for v in (before or {}).values()
    )
    return usec / 1e6, calls


# --- where a run's time goes (Spark's status store) -------------------------------------


@dataclass(frozen=True)
class JobTime:
    call_site: str  # "foreachPartition at /…/batch_layer/job.py:337"
    start_s: float  # since the run's start
    seconds: float
    stages: int
    tasks: int
    map_task_s: float  # task time of the stages writing shuffle output
    result_task_s: float  # task time of the others (for foreachPartition: the Python writes)
    input_bytes: int
    shuffle_bytes: int  # written
    step: str = ""  # the run's step (its Spark job description, batch_layer.job), if any


def job_times(spark, group: str, started_ms: float) -> list[JobTime]:
    """Each Spark job of ``group`` (a job group the run ran in), from the status store
    Spark keeps whether or not its UI runs."""
    context = spark.sparkContext
    store = context._jsc.sc().statusStore()
    found = []
    for job_id in context.statusTracker().getJobIdsForGroup(group):
        job = store.job(job_id)
        if not job.submissionTime().isDefined() or not job.completionTime().isDefined():
            continue
        submitted = job.submissionTime().get().getTime()
        completed = job.completionTime().get().getTime()
        ids = job.stageIds()
        stages = tasks = input_bytes = shuffle = 0
        map_ms = result_ms = 0
        for i in range(ids.length()):
            try:
                stage = store.lastStageAttempt(ids.apply(i))
            except Exception:  # forgotten
                continue
            if not stage.submissionTime().isDefined():
                continue  # skipped: an earlier job's shuffle output was reused
            stages += 1
            tasks += stage.numCompleteTasks()
            input_bytes += stage.inputBytes()
            shuffle += stage.shuffleWriteBytes()
            if stage.shuffleWriteBytes() > 0:
                map_ms += stage.executorRunTime()
            else:
                result_ms += stage.executorRunTime()
        described = job.description()
        step = str(described.get()) if described.isDefined() else ""
        found.append(
            JobTime(
                job.name(),
                (submitted - started_ms) / 1000,
                (completed - submitted) / 1000,
                stages,
                tasks,
                map_ms / 1000,
                result_ms / 1000,
                input_bytes,
                shuffle,
                step if step.startswith(STEP_PREFIX) else "",
            )
        )
    return sorted(found, key=lambda j: j.start_s)


def busy_seconds(jobs: Sequence[JobTime]) -> float:
    """Wall time covered by at least one job (jobs may overlap)."""
    total, end = 0.0, float("-inf")
    for job in sorted(jobs, key=lambda j: j.start_s):
        stop = job.start_s + job.seconds
        if stop > end:
            total += stop - max(job.start_s, end)
            end = stop
    return total


def short_site(call_site: str) -> str:
    """``foreachPartition at /work/main/batch_layer/job.py:337`` -> ``foreachPartition
    at batch_layer/job.py:337``."""
    action, _, where = call_site.partition(" at ")
    parts = Path(where).parts
    return f"{action} at {'/'.join(parts[-2:])}" if where else call_site


# --- DuckDB: the same tiles ------------------------------------------------------------


def dq(name: str) -> str:
    """A DuckDB identifier (double quotes; Spark SQL's are backticks)."""
    return '"' + name.replace('"', '""') + '"'


def duckdb_partial(column: TileColumn, time_column: str) -> str:
    """DuckDB SQL of a tile column's partial: native aggregates for the native
    primitives; for the others the raw form Spark hands the algebra (its list or set)."""
    kind = column.primitive.kind
    value = dq(column.column) if column.column else None
    time_sql = dq(time_column)
    pair = f"CASE WHEN {value} IS NOT NULL THEN {{'t': {time_sql}, 'v': {value}}} END"
    templates: dict[str, Callable[[], str]] = {
        "count": lambda: f"COUNT({value or '*'})",
        "sum": lambda: f"SUM({value})",
        "min": lambda: f"MIN({value})",
        "max": lambda: f"MAX({value})",
        "last": lambda: f"MAX({pair})",
        "first": lambda: f"MIN({pair})",
        "last_k": lambda: f"MAX({pair}, {column.primitive.param})",
        "first_k": lambda: f"MIN({pair}, {column.primitive.param})",
        "hll": lambda: f"LIST(DISTINCT CAST({value} AS VARCHAR)) FILTER ({value} IS NOT NULL)",
        "count_by": lambda: f"HISTOGRAM({value})",
        "moments": lambda: f"LIST(CAST({value} AS DOUBLE)) FILTER ({value} IS NOT NULL)",
        "ddsketch": lambda: f"LIST(CAST({value} AS DOUBLE)) FILTER ({value} IS NOT NULL)",
    }
    if kind not in templates:
        raise SystemExit(f"bench-batch: no DuckDB form for the {kind!r} primitive yet")
    return templates[kind]()


def duckdb_bucket(window: Window, cutoff: int, horizon_ms: int, time_column: str) -> str:
    """An event's bucket as the batch job labels it (hop tile start, ``'c'`` or NULL);
    every event here is before the cutoff."""
    t = dq(time_column)
    if window.is_session:
        return f"CASE WHEN {t} >= __session_{window.gap_ms} THEN '{COLLAPSED}' END"
    layout = batch_layout(window, cutoff, horizon_ms)
    if layout.tail_start is None:
        return f"'{COLLAPSED}'"
    hop = window.hop_ms
    return (
        f"CASE WHEN {t} < {layout.tail_start} THEN NULL "
        f"WHEN {t} >= {layout.collapsed_start} THEN '{COLLAPSED}' "
        f"ELSE CAST(({t} // {hop}) * {hop} AS VARCHAR) END"
    )


def duckdb_group_sql(group: FeatureGroup, cutoff: int, horizon_ms: int) -> str:
    """One row per entity: its keys and ``buckets`` = [(window, bucket, partials)], from
    the ``events`` table (the snapshot before the cutoff), as the batch job builds it."""
    t = dq(group.event_time)
    keys = [f"__k{i}" for i in range(len(group.join_keys))]
    entity = ", ".join(dq(k) for k in group.join_keys)
    conditions = [f"{dq(k)} IS NOT NULL" for k in group.join_keys]
    for flt in group.filters:
        values = ", ".join("'" + str(v).replace("'", "''") + "'" for v in flt.values)
        conditions.append(f"{dq(flt.column)} IN ({values})")
    selected = f"SELECT * FROM events WHERE {' AND '.join(conditions)}"
    for window in group.windows:
        if window.is_session:
            gap = window.gap_ms
            selected = (
                f"SELECT * EXCLUDE (__prev), MAX(CASE WHEN __prev IS NULL OR "
                f"{t} - __prev >= {gap} THEN {t} END) OVER (PARTITION BY {entity}) "
                f"AS __session_{gap} FROM ("
                f"SELECT *, LAG({t}) OVER (PARTITION BY {entity} ORDER BY {t}) AS __prev "
                f"FROM ({selected}))"
            )
    key_sql = ", ".join(
        f"CAST({dq(k)} AS VARCHAR) AS __k{i}" for i, k in enumerate(group.join_keys)
    )
    partials = ", ".join(
        f"'p{i}': {duckdb_partial(c, group.event_time)}" for i, c in enumerate(group.tile_columns)
    )
    key_list = ", ".join(keys)
    per_window = [
        f"SELECT {key_list}, '{window.name}' AS \"window\", bucket, {{{partials}}} AS partials "
        f"FROM (SELECT *, {key_sql}, {duckdb_bucket(window, cutoff, horizon_ms, group.event_time)} "
        f"AS bucket FROM selected) WHERE bucket IS NOT NULL GROUP BY {key_list}, bucket"
        for window in group.windows
    ]
    return (
        f"WITH selected AS ({selected}) SELECT {', '.join(keys)}, "
        "LIST({'window': \"window\", 'bucket': bucket, 'partials': partials}) AS buckets FROM ("
        + " UNION ALL ".join(per_window)
        + f") GROUP BY {', '.join(keys)}"
    )


@dataclass(frozen=True)
class DuckResult:
    seconds: float
    rows_read: int
    entities_written: int


def duckdb_tiles(
    files: Sequence[str],
    source: EventSource,
    groups: Sequence[FeatureGroup],
    cutoff: int,
    horizon_ms: int,
    threads: int,
    memory: str,
    out: Path,
) -> DuckResult:
    """Every group's per-entity tiles from a snapshot's files, written to Parquet: the
    snapshot read once into a table (as the job caches it), then one query per group."""
    import duckdb

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    columns = ", ".join(dq(f.name) for f in source.lake_schema if f.name in source.by_name)
    started = time.monotonic()
    con = duckdb.connect(
        config={"threads": threads, "memory_limit": memory, "preserve_insertion_order": False}
    )
    try:
        con.execute(f"SET temp_directory = '{out / 'tmp'}'")
        listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
        con.execute(
            f"CREATE TEMP TABLE events AS SELECT {columns} FROM read_parquet([{listed}], "
            f"union_by_name = true, hive_partitioning = false) "
            f"WHERE {dq(source.event_time)} < {cutoff}"
        )
        (rows,) = con.execute("SELECT COUNT(*) FROM events").fetchone()
        entities = 0
        for group in groups:
            target = out / f"{group.name}.parquet"
            query = duckdb_group_sql(group, cutoff, horizon_ms)
            (written,) = con.execute(f"COPY ({query}) TO '{target}' (FORMAT parquet)").fetchone()
            entities += int(written)
    finally:
        con.close()
    return DuckResult(time.monotonic() - started, int(rows), entities)


# --- cells ------------------------------------------------------------------------------


@dataclass
class Round:
    seconds: float
    mode: str
    rows_read: int
    entities_written: int
    used_memory: int
    keys: int
    memory_per_key: float
    keys_sampled: int
    redis_command_s: float
    lake_bytes: int
    lake_files: int


@dataclass
class Cell:
    events: int  # the lake's size before this bench appended anything
    name: str
    rounds_asked: int
    rounds: list[Round] = field(default_factory=list)
    note: str = ""

    @property
    def median_s(self) -> float:
        return statistics.median(r.seconds for r in self.rounds)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "median_s": self.median_s}


CELL_FULL = "full run (Spark + Redis writes)"
CELL_DUCKDB = "DuckDB, same tiles (no Redis)"
CELL_NO_NEW = "no new events (cutoff +15 min)"
CELL_APPENDED = "1% appended (98% last 15 min, 2% late)"
CELLS = (CELL_FULL, CELL_DUCKDB, CELL_NO_NEW, CELL_APPENDED)


def run_mode(result: Any) -> str:
    """The mode a run reports; a job that has only one mode reports none: full."""
    return str(getattr(result, "mode", None) or "full")


class Bench:
    """One warm Spark session and one private Redis over the bench's lakes."""

    def __init__(self, args: argparse.Namespace, settings: Settings, repo: FeatureRepo) -> None:
        self.args = args
        self.settings = settings
        self.repo = repo
        self.spark = spark_session(settings, "lfp-bench-batch")
        self.redis = Redis.from_url(settings.redis_url, socket_timeout=30)
        self.breakdowns: dict[tuple[int, str], tuple[float, list[JobTime]]] = {}
        self.last_jobs: tuple[float, list[JobTime]] = (0.0, [])
        self.cells: list[Cell] = []

    def close(self) -> None:
        self.redis.close()
        self.spark.stop()

    def run(self, cutoff: int, uri: str, full: bool = False, job_group: str | None = None) -> Round:
        before = self.redis.info("commandstats")
        context = self.spark.sparkContext
        group = job_group or f"bench-{uuid.uuid4().hex[:8]}"
        context.setJobGroup(group, "bench-batch run")
        extra = {"mode": "full"} if full else {}
        started_ms = time.time() * 1000
        started = time.monotonic()
        try:
            result = run_batch(self.spark, self.settings, self.repo, cutoff, **extra)
        finally:
            context.setLocalProperty("spark.jobGroup.id", None)  # type: ignore[arg-type]
        seconds = time.monotonic() - started
        if result.cutoff != cutoff:
            raise SystemExit(f"bench-batch: the run moved its cutoff {cutoff} -> {result.cutoff}")
        figures = redis_figures(self.redis, before)
        size = lake_size(uri)
        self.last_jobs = (seconds, job_times(self.spark, group, started_ms))
        return Round(
            seconds=seconds,
            mode=run_mode(result),
            rows_read=result.rows_read,
            entities_written=result.entities_written,
            used_memory=figures.used_memory,
            keys=figures.keys,
            memory_per_key=figures.memory_per_key,
            keys_sampled=figures.view_keys_sampled,
            redis_command_s=figures.command_seconds,
            lake_bytes=size.bytes,
            lake_files=size.files,
        )

    def lake(self, events: int, work: Path) -> None:
        """The cells of one lake size, each added to ``self.cells`` once complete (a
        later failure keeps them). DuckDB goes first: it is quick, and fails fast."""
        args = self.args
        spec = LakeSpec(events, args.users, args.zipf, args.days)
        cached = cached_lake(args.cache_dir, spec, Path(os.environ.get("TMPDIR", "/tmp")))
        print(
            f"# lake: {events:,} events (generated in {cached.seconds:.0f} s, cached at "
            f"{cached.path.parent})",
            flush=True,
        )
        uri = self.settings.table_uri("raw_events")
        shutil.rmtree(Path(uri), ignore_errors=True)
        working_copy(cached.path, Path(uri))
        self.redis.flushall()
        horizon = self.settings.batch_horizon_s * 1000
        source = self.repo.groups[0].source
        full_rounds = args.full_rounds or (args.rounds if events < LARGE_LAKE_EVENTS else 1)
        cutoff = cached.now_ms
        needed = cutoff + 2 * args.rounds * STEP_MS
        if needed > int(time.time() * 1000):
            raise SystemExit("bench-batch: the lake is too recent for this many rounds' cutoffs")

        duck = Cell(events, CELL_DUCKDB, args.rounds)
        files = DeltaTable(uri).file_uris()
        size = lake_size(uri)
        for _ in range(args.rounds):
            found = duckdb_tiles(
                files,
                source,
                self.repo.groups,
                cutoff,
                horizon,
                args.duckdb_threads,
                args.duckdb_memory,
                work / "duckdb",
            )
            duck.rounds.append(
                Round(
                    seconds=found.seconds,
                    mode="full",
                    rows_read=found.rows_read,
                    entities_written=found.entities_written,
                    used_memory=0,
                    keys=0,
                    memory_per_key=0.0,
                    keys_sampled=0,
                    redis_command_s=0.0,
                    lake_bytes=size.bytes,
                    lake_files=size.files,
                )
            )
            self._progress(duck)
        shutil.rmtree(work / "duckdb", ignore_errors=True)

        full = Cell(events, CELL_FULL, args.rounds)
        jobs = []
        for _ in range(full_rounds):
            full.rounds.append(self.run(cutoff, uri, full=True))
            jobs.append(self.last_jobs)
            self._progress(full)
        self._breakdown(full, jobs)
        if full_rounds < args.rounds:
            full.note = f"{full_rounds} of {args.rounds} rounds (a lake of {events:,} events)"
        self.cells += [full, duck]

        unchanged = Cell(events, CELL_NO_NEW, args.rounds)
        jobs = []
        for _ in range(args.rounds):
            cutoff += STEP_MS
            unchanged.rounds.append(self.run(cutoff, uri))
            jobs.append(self.last_jobs)
            self._progress(unchanged)
        self._breakdown(unchanged, jobs)
        self.cells.append(unchanged)

        appended = Cell(events, CELL_APPENDED, args.rounds)
        appender = Appender(uri, spec, self.settings.ingest_max_records, events)
        oldest = cached.now_ms - args.days * DAY_MS
        jobs = []
        for _ in range(args.rounds):
            appender.append(max(1, events // 100), oldest, cutoff, cutoff + STEP_MS)
            cutoff += STEP_MS
            appended.rounds.append(self.run(cutoff, uri))
            jobs.append(self.last_jobs)
            self._progress(appended)
        self._breakdown(appended, jobs)
        appended.note = (
            f"{max(1, events // 100):,} events per round in {appender.commits // args.rounds} "
            f"commits of {self.settings.ingest_max_records:,}"
        )
        self.cells.append(appended)

    def _breakdown(self, cell: Cell, jobs: list[tuple[float, list[JobTime]]]) -> None:
        """Keep the Spark jobs of the cell's round nearest its median."""
        self.breakdowns[(cell.events, cell.name)] = min(
            jobs, key=lambda j: abs(j[0] - cell.median_s)
        )

    @staticmethod
    def _progress(cell: Cell) -> None:
        last = cell.rounds[-1]
        print(
            f"#   {cell.name}: round {len(cell.rounds)} {last.seconds:.1f} s "
            f"({last.rows_read:,} events read, {last.entities_written:,} entities)",
            flush=True,
        )


# --- output -----------------------------------------------------------------------------


def mib(n: float) -> str:
    return f"{n / (1 << 20):,.0f} MiB"


def table(cells: Sequence[Cell]) -> str:
    """The cells side by side, one row each; the DuckDB ratio under each lake."""
    header = (
        f"{'events':>12}  {'cell':<40} {'rounds':>6} {'median s':>9} {'mode':>5} "
        f"{'events read':>12} {'entities':>10} {'Redis used':>11} {'keys':>9} {'B/key':>6} "
        f"{'lake':>10} {'files':>6}"
    )
    lines = [header, "-" * len(header)]
    by_lake: dict[int, dict[str, Cell]] = {}
    for cell in cells:
        by_lake.setdefault(cell.events, {})[cell.name] = cell
        last = cell.rounds[-1]
        redis = cell.name != CELL_DUCKDB
        redis_used = mib(last.used_memory) if redis else "-"
        keys = f"{last.keys:,}" if redis else "-"
        per_key = f"{last.memory_per_key:.0f}" if redis else "-"
        rounds = f"{len(cell.rounds)}/{cell.rounds_asked}"
        lines.append(
            f"{cell.events:>12,}  {cell.name:<40} {rounds:>6} {cell.median_s:>9.1f} "
            f"{last.mode:>5} {last.rows_read:>12,} {last.entities_written:>10,} "
            f"{redis_used:>11} {keys:>9} {per_key:>6} {mib(last.lake_bytes):>10} "
            f"{last.lake_files:>6,}"
        )
    lines.append("")
    for events, named in by_lake.items():
        full, duck = named.get(CELL_FULL), named.get(CELL_DUCKDB)
        if full and duck:
            lines.append(
                f"{events:>12,}  full run / DuckDB: {full.median_s / duck.median_s:.1f}x "
                f"({full.median_s:.1f} s / {duck.median_s:.1f} s)"
            )
    for cell in cells:
        rounds = " ".join(f"{r.seconds:.1f}" for r in cell.rounds)
        note = f"; {cell.note}" if cell.note else ""
        if cell.name != CELL_DUCKDB:
            commands = statistics.median(r.redis_command_s for r in cell.rounds)
            note += f"; Redis busy in commands {commands:.1f} s (median)"
        lines.append(f"{cell.events:>12,}  {cell.name}: rounds {rounds} s{note}")
    return "\n".join(lines)


def by_action(jobs: Sequence[JobTime]) -> list[tuple[str, list[JobTime]]]:
    """Jobs grouped by the action that ran them: adaptive query execution submits each
    shuffle stage as a job of its own (call site ``...CompletableFuture...``) before the
    action's final job, so such jobs count toward the next job with a call site."""
    actions: list[tuple[str, list[JobTime]]] = []
    pending: list[JobTime] = []
    for job in sorted(jobs, key=lambda j: j.start_s):
        if job.stages == 0:
            continue
        pending.append(job)
        if job.call_site and not job.call_site.startswith("$anonfun"):
            site = short_site(job.call_site)
            if job.step:  # the run's step first: which group, which phase
                site = f"{job.step[len(STEP_PREFIX) :]}: {site.partition(' at ')[0]}"
            actions.append((site, pending))
            pending = []
    if pending:
        actions.append(("(stage jobs of no named action)", pending))
    return actions


def breakdown(events: int, cell: str, seconds: float, jobs: Sequence[JobTime]) -> str:
    """Where a run's wall time goes: Spark jobs by the action (call site) that ran them,
    in order, and the time outside any job."""
    by_site: dict[str, list[list[JobTime]]] = {}
    for site, members in by_action(jobs):
        by_site.setdefault(site, []).append(members)
    busy = busy_seconds(jobs)
    lines = [
        f"where the run '{cell}' on {events:,} events spends its {seconds:.1f} s (Spark jobs by "
        "the action that ran them; task seconds are summed over the cores):",
        f"  {'action (call site)':<44} {'runs':>4} {'jobs':>4} {'wall s':>7} "
        f"{'map task s':>10} {'result task s':>13} {'input':>10} {'shuffle':>10}",
    ]
    for site, runs in by_site.items():
        members = [j for run in runs for j in run]
        lines.append(
            f"  {site:<44} {len(runs):>4} {len(members):>4} {busy_seconds(members):>7.1f} "
            f"{sum(j.map_task_s for j in members):>10.1f} "
            f"{sum(j.result_task_s for j in members):>13.1f} "
            f"{mib(sum(j.input_bytes for j in members)):>10} "
            f"{mib(sum(j.shuffle_bytes for j in members)):>10}"
        )
    lines.append(
        f"  in Spark jobs {busy:.1f} s; outside any job (driver: planning, Delta log, "
        f"pointer switch, key GC, statistics) {seconds - busy:.1f} s"
    )
    return "\n".join(lines)


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--events", default="10000000,100000000", help="lake sizes, comma-separated"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--no-tiles",
        action="store_true",
        help="runs as with LFP_BATCH_INCREMENTAL=false: window by window, no tiles kept",
    )
    parser.add_argument(
        "--full-rounds",
        type=int,
        default=0,
        help=f"rounds of the full-run cell (default: --rounds; 1 from {LARGE_LAKE_EVENTS:,} "
        "events)",
    )
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--zipf", type=float, default=1.2, help="Zipf exponent of the keys")
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lfp-bench-batch",
        help="where generated lakes are kept between runs",
    )
    parser.add_argument("--duckdb-threads", type=int, default=2)
    parser.add_argument(
        "--duckdb-memory",
        default="8GB",
        help="DuckDB's memory_limit (its list aggregates over the hottest users exceed 2GB at "
        "10M events)",
    )
    parser.add_argument("--json", type=Path, help="also write the cells here")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    sizes = [int(e) for e in args.events.split(",")]
    repo = FeatureRepo.from_module("demo.feature_repo")
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    work = args.cache_dir / f"work-{os.getpid()}"
    started = time.monotonic()
    load_before = load_average()
    bench: Bench | None = None
    try:
        with private_redis() as port:
            settings = Settings(
                _env_file=None,
                data_dir=work,
                lake_uri=str(work / "lake"),
                redis_url=f"redis://127.0.0.1:{port}/0",
                redis_password_file=os.devnull,
                feature_repo="demo.feature_repo",
                batch_incremental=not args.no_tiles,
                batch_tiles_min_events=0,  # tiles at every lake size: that is what is measured
            )
            bench = Bench(args, settings, repo)
            try:
                print(
                    f"# {len(repo.groups)} groups; {args.users:,} users, Zipf {args.zipf}, "
                    f"{args.days} days; Spark {settings.spark_master}, driver "
                    f"{settings.spark_driver_memory}; feature statistics sample "
                    f"{settings.feature_stats_sample:,}; DuckDB {_duckdb_version()} "
                    f"{args.duckdb_threads} threads, {args.duckdb_memory}; load average "
                    f"{load_before}",
                    flush=True,
                )
                for events in sizes:
                    bench.lake(events, work)
            finally:
                bench.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if bench is not None and bench.cells:  # what completed, also when a later cell failed
            report(bench, args, load_before, started)


def report(bench: Bench, args: argparse.Namespace, load_before: str, started: float) -> None:
    print()
    print(table(bench.cells))
    for (events, cell), (seconds, jobs) in bench.breakdowns.items():
        print()
        print(breakdown(events, cell, seconds, jobs))
    print()
    print(
        f"load average (1, 5, 15 min) {load_before} at the start, {load_average()} at the "
        f"end; {time.monotonic() - started:.0f} s in all; {os.cpu_count()} cores",
        flush=True,
    )
    if args.json:
        args.json.write_text(json.dumps([c.to_json() for c in bench.cells], indent=1))


def _duckdb_version() -> str:
    import duckdb

    return duckdb.__version__


if __name__ == "__main__":
    main(sys.argv[1:])
