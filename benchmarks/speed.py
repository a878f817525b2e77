"""Speed layer under load, against a running stack (`make up` first): `make bench-speed`.

For each rate of a curve (``--rates``), produces random valid events of every source of
the feature repo for ``--seconds``, dated as sent, over ``--keys`` entities; every half
second a probe event for a fresh entity is produced and the API polled until it serves
it. Per rate it prints produce -> visible p50/p95/p99, the rate offered and the rate the
speed job sustained, both consumers' lag at the end, and the CPU of each process of the
stack (and of this load generator). "Sustained" is the level's events over the time
until the speed job had processed them all ("drain": how long after the last was sent);
a speed job that keeps up drains in about its emit interval. Then a pass-through Flink
job reads everything in the sources' topics (parsing nothing, aggregating nothing): its
rate is the ceiling of this broker and machine. A second instance of the speed job reads
the same backlog the same way; the two alternate for ``--rounds`` rounds and the ratio of
their medians is the one the speed layer is judged by; the best sustained live rate is
printed as a ratio too (``--no-ceiling`` skips the backlog jobs).

Late events (``--late-share``, e.g. ``make bench-speed ARGS="--late-share 0.1 --rates
10000"``): that share of the load's events is dated in the past instead of as sent, by an
age drawn log-uniformly between 1 minute and 7 days (as many events a minute to 10 minutes
late as 1 to 10 hours or 17 hours to 7 days: recent stragglers and replays of old days
alike). Those dated before the serving batch view's cutoff B are served through the
correction tiles lake ingest writes after each Delta commit; the rest through the speed
job. Whatever the share, every half second a *late probe* is produced too: an event of a
fresh entity dated by the same draw (capped below the probe group's longest window, so
that it stays in one), the API polled until it serves it; its produce -> visible
p50/p95/p99 is printed beside the fresh probes', with the late probes sent, seen, and
dated before B when sent. A late probe not served within ``--deadline`` seconds is
listed. A batch view must serve (else nothing is late): the benchmark waits for one.

``--repo`` names the feature repo the stack serves (``demo`` or ``fraud``, or a module);
start the stack with the same ``LFP_FEATURE_REPO``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import redis
from confluent_kafka import Producer

from feature_core.corrections import reach
from feature_core.definitions import FeatureGroup, FeatureRepo
from feature_core.settings import Settings, get_settings
from feature_core.sources import EventSource
from feature_core.synthetic import random_record
from online_store import open_store
from online_store.keys import KeySpace
from runtime import lag
from runtime.kafka import librdkafka_options, producer
from speed_layer.job import build, jvm_temp_dir

REPOS = {"demo": "demo.feature_repo", "fraud": "fraud.feature_repo"}
POOL = 4000  # pre-drawn records per source; cycled, each dated when sent
LATE_MIN_MS = 60_000  # late events' ages: log-uniform over [1 minute, 7 days]
LATE_MAX_MS = 7 * 86_400_000


@dataclass
class Probes:
    """One kind of probe's outcomes over a level."""

    latencies: list[float] = field(default_factory=list)  # produce -> visible, seconds
    before_latencies: list[float] = field(default_factory=list)  # those dated before B
    sent: int = 0
    before_cutoff: int = 0  # dated before the serving batch view's cutoff when sent
    missed: list[tuple[float, bool]] = field(default_factory=list)  # (age s, before B)


@dataclass
class Level:
    rate: int
    offered: float = 0.0
    sustained: float = 0.0  # the level's events over the time until all were processed
    drain_s: float = 0.0  # after the last event was sent, until the speed job had them all
    fresh: Probes = field(default_factory=Probes)
    late: Probes = field(default_factory=Probes)
    late_sent: int = 0  # load events dated in the past
    corrected: int = 0  # late records lake ingest put in correction tiles (all groups)
    lags: dict[str, int] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)  # process -> share of one core


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)] if ordered else float("nan")


def percentiles(values: list[float], width: int, first: int | None = None) -> str:
    """p50, p95 and p99 as columns of ``width`` (the first of ``first``)."""
    p50, p95, p99 = (percentile(values, q) for q in (0.5, 0.95, 0.99))
    return f"{p50:>{first or width}.2f} {p95:>{width}.2f} {p99:>{width}.2f}"


def late_age_ms(rng: random.Random, low_ms: int = LATE_MIN_MS, high_ms: int = LATE_MAX_MS) -> int:
    """A late event's age: log-uniform over [low_ms, high_ms]."""
    return int(math.exp(rng.uniform(math.log(low_ms), math.log(high_ms))))


def probe_max_age_ms(group: FeatureGroup, now_ms: int, max_age_s: int | None = None) -> int:
    """The oldest a late probe of ``group`` may be dated: 7 days, or half the reach of the
    group's longest window (or of the late events' max age) when that is shorter, so
    that the probe is still in a window when it is served."""
    oldest = reach(group, now_ms, None if max_age_s is None else max_age_s * 1000)
    if oldest is None:
        return LATE_MAX_MS
    return max(LATE_MIN_MS, min(LATE_MAX_MS, (now_ms - oldest) // 2))


# --- CPU of the stack's processes ----------------------------------------------------------


def _process_groups(settings: Settings) -> dict[int, str]:
    """Process group id -> service name, from the embedded stack's state."""
    state = json.loads((settings.data_dir / "run" / "stack.json").read_text())
    return {info["pid"]: name for name, info in state["services"].items() if info.get("pid")}


def cpu_ticks(groups: dict[int, str]) -> dict[str, int]:
    """CPU ticks (user + system) so far of every process, summed per service; this
    process is ``load generator``."""
    ticks: dict[str, int] = {}
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, pgid = int(entry.name), int(fields[2])
        name = "load generator" if pid == me else groups.get(pgid)
        if name is not None:
            ticks[name] = ticks.get(name, 0) + int(fields[11]) + int(fields[12])
    return ticks


# --- load ----------------------------------------------------------------------------------


def pools(repo: FeatureRepo, keys: int, seed: int = 1) -> list[tuple[EventSource, list[dict]]]:
    rng = random.Random(seed)
    now = int(time.time() * 1000)
    return [
        (s, [random_record(s, rng, now, cardinality=keys) for _ in range(POOL)])
        for s in repo.sources
    ]


def produce_at(
    settings: Settings,
    drawn: list[tuple[EventSource, list[dict]]],
    rate: int,
    seconds: float,
    stop: threading.Event,
    late_share: float = 0.0,
    seed: int = 2,
) -> tuple[int, float, int]:
    """Sends about ``rate`` events a second, sources in turn, ``late_share`` of them
    dated :func:`late_age_ms` in the past; (sent, elapsed, sent late).

    With confluent-kafka (librdkafka): kafka-python spends about 52 us of CPU per record
    here, so at 10k events/s the load generator alone would take half of one of the two
    cores the stack under test runs on (and it could not offer more than ~9k beside it)."""
    out = Producer(
        {
            **librdkafka_options(settings),
            "linger.ms": 20,
            "acks": "all",
        }
    )
    rng = random.Random(seed)
    sent = late = 0
    start = time.monotonic()
    while not stop.is_set():
        elapsed = time.monotonic() - start
        if elapsed >= seconds:
            break
        now = int(time.time() * 1000)
        for _ in range(int(elapsed * rate) - sent):
            source, records = drawn[sent % len(drawn)]
            record = records[(sent // len(drawn)) % POOL]
            if late_share and rng.random() < late_share:
                record[source.event_time] = now - late_age_ms(rng)
                late += 1
            else:
                record[source.event_time] = now
            while True:
                try:
                    out.produce(source.topic_name, orjson.dumps(record))
                    break
                except BufferError:  # librdkafka's queue is full: let it send
                    out.poll(0.01)
            sent += 1
        out.poll(0)
        time.sleep(0.002)
    out.flush(30)
    return sent, time.monotonic() - start, late


def probe_group(repo: FeatureRepo) -> FeatureGroup:
    """A group every record of its source reaches (no filter), keyed by one field."""
    for group in repo.groups:
        if not group.filters and len(group.join_keys) == 1:
            return group
    raise SystemExit("no unfiltered one-key group to probe freshness with")


def probe_loop(
    settings: Settings,
    group: FeatureGroup,
    template: dict,
    until: Callable[[], bool],
    probes: Probes,
    age_ms: Callable[[], int] = lambda: 0,
    deadline_s: float = 30.0,
    every_s: float = 0.5,
) -> None:
    """Every ``every_s`` until ``until()``: a fresh entity's event dated ``age_ms()``
    before now. Each is polled at the API (every 20 ms for its first 3 s, then every half
    second, so that a slow one delays no other) until it is served (a value present: the
    entity has no other event) or ``deadline_s`` passed (then it is listed as missed)."""
    out = producer(settings, linger_ms=0)
    api = httpx.Client(base_url=settings.api_url, timeout=5, headers=settings.api_headers)
    store = open_store(settings)
    key = group.join_keys[0]
    # entity -> (sent at, age, dated before the view's cutoff, next poll at)
    pending: dict[str, tuple[float, int, bool, float]] = {}
    next_send = time.monotonic()
    try:
        while pending or not until():
            if not until() and time.monotonic() >= next_send:
                entity = f"probe-{uuid.uuid4().hex[:12]}"
                age = age_ms()
                event_time = int(time.time() * 1000) - age
                pointer = store.pointer() if age else None
                before = pointer is not None and event_time < pointer.cutoff
                record = {**template, key: entity, group.event_time: event_time}
                started = time.monotonic()
                out.send(group.source.topic_name, orjson.dumps(record))
                out.flush()
                pending[entity] = (started, age, before, started)
                probes.sent += 1
                probes.before_cutoff += before
                next_send = started + every_s
            for entity, (started, age, before, due) in list(pending.items()):
                if time.monotonic() < due:
                    continue
                body = api.get(f"/v1/features/{group.name}/{entity}").json()
                waited = time.monotonic() - started
                if "present" in body.get("statuses", {}).values():
                    probes.latencies.append(waited)
                    if before:
                        probes.before_latencies.append(waited)
                    del pending[entity]
                elif waited > deadline_s:
                    probes.missed.append((age / 1000, before))
                    del pending[entity]
                else:
                    again = time.monotonic() + (0.02 if waited < 3 else 0.5)
                    pending[entity] = (started, age, before, again)
            time.sleep(0.005)
    finally:
        out.close()
        api.close()
        store.close()


def processed(client: redis.Redis, keys: KeySpace) -> int:
    """Records the speed job has parsed so far (every source, every status)."""
    stats = client.hgetall(keys.speed_stats)
    return sum(int(v) for k, v in stats.items() if k.decode().endswith("_events"))


def lags(client: redis.Redis, keys: KeySpace) -> dict[str, int]:
    found: dict[str, int] = {}
    for one in lag.parse(client.hgetall(keys.consumer_lag)):
        found[one.consumer] = found.get(one.consumer, 0) + one.behind
    return found


def corrected(settings: Settings) -> int:
    """Late records lake ingest has put in correction tiles so far (its status file)."""
    try:
        status = json.loads((settings.data_dir / "run" / "lake-ingest.status.json").read_text())
    except (OSError, ValueError):
        return 0
    return int(status.get("late_events", {}).get("records", 0))


def wait_for_view(settings: Settings, timeout_s: float) -> None:
    """Until a batch view serves (events are late only against one's cutoff) and covers any
    gap in the speed tiles: right after `make up` the embedded broker starts empty, and
    until the scheduler's speed-gap run serves, values are stale_batch_view, not present."""
    store = open_store(settings)
    try:
        deadline = time.monotonic() + timeout_s
        told = False
        while (pointer := store.pointer()) is None or (
            (gap := (store.speed_epoch() or {}).get("gap_before")) is not None
            and pointer.cutoff < gap
        ):
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"no batch view serving after {timeout_s:.0f} s"
                    if pointer is None
                    else f"the speed tiles' gap is still open after {timeout_s:.0f} s: "
                    "is the batch scheduler running (`make status`)?"
                )
            if pointer is not None and not told:
                print("waiting for the scheduler's batch run to cover the speed tiles' gap")
                told = True
            time.sleep(2)
        age_min = (time.time() * 1000 - pointer.cutoff) / 60_000
        print(f"batch view v{pointer.version} serving, cutoff B = {age_min:.1f} min ago")
        if age_min * 60 > settings.speed_allowed_lateness_s:
            print(
                f"  warning: B is older than the speed job's allowed lateness "
                f"({settings.speed_allowed_lateness_s} s): events dated between B and that "
                "lateness reach neither the speed tiles nor the correction tiles"
            )
    finally:
        store.close()


def run_level(
    settings: Settings,
    repo: FeatureRepo,
    drawn,
    rate: int,
    seconds: float,
    late_share: float = 0.0,
    deadline_s: float = 30.0,
) -> Level:
    level = Level(rate)
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=30)
    keys = KeySpace(settings.key_prefix)
    groups = _process_groups(settings)
    group = probe_group(repo)
    template = next(records[0] for source, records in drawn if source is group.source)
    done = threading.Event()
    max_age = probe_max_age_ms(group, int(time.time() * 1000), settings.late_events_max_age_s)
    rng = random.Random(rate)
    probers = [
        threading.Thread(
            target=probe_loop,
            args=(settings, group, template, done.is_set, level.fresh),
            kwargs={"deadline_s": deadline_s},
        ),
        threading.Thread(
            target=probe_loop,
            args=(settings, group, template, done.is_set, level.late),
            kwargs={
                "age_ms": lambda: late_age_ms(rng, LATE_MIN_MS, max_age),
                "deadline_s": deadline_s,
            },
        ),
    ]
    corrected0 = corrected(settings)
    ticks0, count0, t0 = cpu_ticks(groups), processed(client, keys), time.monotonic()
    for prober in probers:
        prober.start()
    sent, elapsed, level.late_sent = produce_at(
        settings, drawn, rate, seconds, threading.Event(), late_share
    )
    done.set()
    ticks1, t1 = cpu_ticks(groups), time.monotonic()
    level.lags = lags(client, keys)
    # The probes' events count too: wait until the speed job has processed them all.
    deadline = time.monotonic() + 180
    while processed(client, keys) - count0 < sent and time.monotonic() < deadline:
        time.sleep(0.1)
    level.drain_s = time.monotonic() - t1
    level.offered = sent / elapsed
    level.sustained = min(processed(client, keys) - count0, sent) / (elapsed + level.drain_s)
    hz = os.sysconf("SC_CLK_TCK")
    level.cpu = {
        name: (ticks1.get(name, 0) - ticks0.get(name, 0)) / hz / (t1 - t0) for name in ticks1
    }
    for prober in probers:  # the last probes: served, or missed after the deadline
        prober.join()
    # Let lake ingest catch up too before the next level, so levels do not overlap.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and any(v > 1000 for v in lags(client, keys).values()):
        time.sleep(1)
    level.corrected = max(0, corrected(settings) - corrected0)  # 0 if ingest restarted
    client.close()
    return level


# --- the pass-through ceiling ---------------------------------------------------------------


def ceiling(settings: Settings, repo: FeatureRepo, quiet_s: float = 5.0) -> tuple[int, float]:
    """Records a pass-through Flink job reads from the sources' topics from the earliest
    offset, and its rate: Kafka source -> COUNT, nothing parsed. The count is watched
    as it grows (200 ms mini-batches); the rate runs from its first to its last change,
    so the job's start-up is not counted. The job is cancelled once the count has not
    moved for ``quiet_s`` (the backlog is read)."""
    from pyflink.common import RowKind
    from pyflink.table import EnvironmentSettings, TableEnvironment

    env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    for key, value in {
        "parallelism.default": "1",
        "table.exec.mini-batch.enabled": "true",
        "table.exec.mini-batch.allow-latency": "200 ms",
        "table.exec.mini-batch.size": "100000",
    }.items():
        env.get_config().set(key, value)
    selects = []
    for i, source in enumerate(repo.sources):
        env.execute_sql(
            f"CREATE TABLE raw{i} (`v` BYTES) WITH ('connector' = 'kafka', "
            f"'topic' = '{source.topic_name}', "
            f"'properties.bootstrap.servers' = '{settings.kafka_bootstrap_servers}', "
            "'properties.group.id' = 'lfp-bench-ceiling', "
            "'properties.isolation.level' = 'read_uncommitted', "
            "'scan.startup.mode' = 'earliest-offset', 'format' = 'raw')"
        )
        selects.append(f"SELECT 1 AS x FROM raw{i}")
    result = env.execute_sql(f"SELECT COUNT(*) FROM ({' UNION ALL '.join(selects)})")
    changes: list[tuple[float, int]] = []

    def watch() -> None:
        try:
            with result.collect() as rows:
                for row in rows:
                    if row.get_row_kind() in (RowKind.INSERT, RowKind.UPDATE_AFTER):
                        changes.append((time.monotonic(), int(row[0])))
        except Exception:  # the iterator ends with an error when the job is cancelled
            pass

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        time.sleep(0.5)
        if changes and time.monotonic() - changes[-1][0] > quiet_s:
            break
    result.get_job_client().cancel().result()
    watcher.join(timeout=30)
    return rate_of(changes)


def rate_of(changes: list[tuple[float, int]]) -> tuple[int, float]:
    """The last count and the rate from the first change of a growing count to its last,
    so that a job's start-up and its idle tail are not counted."""
    if len(changes) < 2 or changes[-1][0] <= changes[0][0]:
        return (changes[-1][1] if changes else 0), 0.0
    (t0, n0), (t1, n1) = changes[0], changes[-1]
    return n1, (n1 - n0) / (t1 - t0)


def backlog(
    settings: Settings, repo: FeatureRepo, quiet_s: float = 5.0, parallelism: int | None = None
) -> tuple[int, float]:
    """A second instance of the speed job (the same pipeline, parser and tile sinks, its
    own consumer group, keys and checkpoints) reads everything in the topics from the
    earliest offset, as the ceiling job does: its rate, measured the same way (from the
    first to the last change of its processed count), is the speed job's throughput in
    the same conditions as the ceiling's. It runs where the settings say (a session
    cluster with ``LFP_SPEED_TARGET=remote``), at ``parallelism`` if given. Its keys are
    deleted after."""
    tag = uuid.uuid4().hex[:8]
    update: dict[str, object] = {
        "key_prefix": f"lfpbench{tag}",
        "data_dir": settings.data_dir / "bench",
    }
    if parallelism is not None:
        update["speed_parallelism"] = parallelism
    own = settings.model_copy(update=update)
    checkpoints = own.data_dir / f"checkpoints-{tag}"
    checkpoints.mkdir(parents=True)
    store = open_store(own)
    job = build(own, repo, checkpoints, group_id=f"lfp-bench-speed-{tag}").execute_async(
        "lfp-bench-speed"
    )
    changes: list[tuple[float, int]] = []
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            time.sleep(0.2)
            count = sum(n for k, n in store.speed_stats().items() if k.endswith("_events"))
            if count and (not changes or count != changes[-1][1]):
                changes.append((time.monotonic(), count))
            if changes and time.monotonic() - changes[-1][0] > quiet_s:
                break
    finally:
        job.cancel().result()
        for key in store.client.scan_iter(match=f"{own.key_prefix}:*", count=1000):
            store.client.unlink(key)
        store.close()
        shutil.rmtree(checkpoints, ignore_errors=True)
    return rate_of(changes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repo", default=None, help="demo, fraud or a module (the stack's)")
    parser.add_argument("--rates", default="2000,5000,10000,20000")
    parser.add_argument("--seconds", type=float, default=20.0, help="per rate")
    parser.add_argument("--keys", type=int, default=2000, help="distinct values per key field")
    parser.add_argument("--no-ceiling", action="store_true", help="skip the backlog jobs")
    parser.add_argument("--rounds", type=int, default=3, help="of the backlog jobs")
    parser.add_argument(
        "--late-share",
        type=float,
        default=0.0,
        help="share of the load's events dated 1 min to 7 days in the past (e.g. 0.1)",
    )
    parser.add_argument(
        "--deadline", type=float, default=30.0, help="seconds a probe may take to be served"
    )
    parser.add_argument(
        "--wait-view",
        type=float,
        default=600.0,
        help="seconds to wait for a batch view covering any gap in the speed tiles",
    )
    args = parser.parse_args()
    if not 0 <= args.late_share <= 1:
        raise SystemExit("--late-share is a share: 0 to 1")
    settings = get_settings()
    module = REPOS.get(args.repo, args.repo) if args.repo else settings.feature_repo
    if module != settings.feature_repo:
        raise SystemExit(
            f"the stack serves LFP_FEATURE_REPO={settings.feature_repo}; start it with "
            f"LFP_FEATURE_REPO={module} (and run this with the same)"
        )
    repo = FeatureRepo.from_module(module)
    httpx.get(f"{settings.api_url}/healthz", timeout=5).raise_for_status()
    wait_for_view(settings, args.wait_view)
    drawn = pools(repo, args.keys)
    print(
        f"repo {module}: {len(repo.sources)} sources, {len(repo.groups)} groups; "
        f"{args.keys} values per key field; {args.seconds:.0f} s per rate; "
        f"{100 * args.late_share:g}% of events late (1 min - 7 d, log-uniform)"
    )
    header = (
        f"{'rate':>7} {'offered':>8} {'sustained':>9} {'drain s':>7} "
        f"{'p50 s':>6} {'p95 s':>6} {'p99 s':>6} {'seen':>5} | "
        f"{'late p50':>8} {'p95':>5} {'p99':>5} {'sent':>4} {'seen':>4} {'<B':>4} {'<B p99':>6} | "
        f"{'late ev':>7} {'corr.':>7}  lag when sent (records)     CPU (% of one core)"
    )
    print(header)
    best = 0.0
    missed: list[tuple[int, str, Probes]] = []
    for rate in (int(r) for r in args.rates.split(",")):
        level = run_level(settings, repo, drawn, rate, args.seconds, args.late_share, args.deadline)
        best = max(best, level.sustained)
        cpu = ", ".join(
            f"{name} {100 * share:.0f}"
            for name, share in sorted(level.cpu.items(), key=lambda kv: -kv[1])
            if share >= 0.01
        )
        fresh, late = level.fresh, level.late
        print(
            f"{rate:>7} {level.offered:>8,.0f} {level.sustained:>9,.0f} {level.drain_s:>7.1f} "
            f"{percentiles(fresh.latencies, 6)} {len(fresh.latencies):>5} | "
            f"{percentiles(late.latencies, 5, first=8)} {late.sent:>4} "
            f"{len(late.latencies):>4} {late.before_cutoff:>4} "
            f"{percentile(late.before_latencies, 0.99):>6.2f} | "
            f"{level.late_sent:>7,} {level.corrected:>7,}  "
            f"{json.dumps(level.lags):<27} {cpu}"
        )
        missed += [(rate, kind, p) for kind, p in (("fresh", fresh), ("late", late)) if p.missed]
    print(
        "  seen: probes served within the deadline; <B: late probes dated before the serving "
        "view's cutoff when sent (served through correction tiles), <B p99: their p99;\n"
        "  late ev: load events dated late; corr.: late records lake ingest put in correction "
        "tiles (per group reading them)"
    )
    for rate, kind, probes in missed:
        ages = ", ".join(f"{age:,.0f} s old{' (<B)' if b else ''}" for age, b in probes.missed)
        print(
            f"  {rate}/s: {len(probes.missed)} {kind} probes not served within "
            f"{args.deadline:g} s" + (f": {ages}" if kind == "late" else "")
        )
    if not args.no_ceiling:
        # Both read the same backlog with the stack idle, in one JVM, alternating, so that
        # neither is favoured by running second (a warmer JIT, a warmer page cache).
        jvm_temp_dir(settings.model_copy(update={"data_dir": settings.data_dir / "bench"}))
        ceilings, jobs = [], []
        for _ in range(args.rounds):
            records, rate = ceiling(settings, repo)
            ceilings.append(rate)
            _, job_rate = backlog(settings, repo)
            jobs.append(job_rate)
        rate, job_rate = statistics.median(ceilings), statistics.median(jobs)

        def share(x: float) -> str:
            return f"{100 * x / rate:.0f}%" if rate else "n/a"

        def listed(rates: list[float]) -> str:
            return ", ".join(f"{r:,.0f}" for r in rates)

        print(
            f"backlog of {records:,} records, {args.rounds} rounds, median (rounds):\n"
            f"  pass-through Flink job (the ceiling): {rate:,.0f}/s ({listed(ceilings)})\n"
            f"  the speed job: {job_rate:,.0f}/s ({listed(jobs)}), {share(job_rate)} of the "
            "ceiling (target >= 50%)\n"
            f"  the speed job's best sustained rate under live load with the whole stack: "
            f"{best:,.0f}/s, {share(best)} of the ceiling"
        )


if __name__ == "__main__":
    main()
