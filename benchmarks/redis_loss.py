"""Redis ``kill -9`` with big topics, on a stack of its own: `make bench-redis-loss`.

Issue 30, item 4: with Redis's append-only file fsynced on every write, a Redis loss
heals within 10 s of Redis answering, and that time does not grow with what the topics
hold. Starts an embedded stack in a temporary directory (free ports; no scheduled batch
run: one is started by hand once the history is in, so none runs during a fault), then
for each size of ``--records`` (cumulative: the topics hold that many records when it is
measured):

1. fills the topics with past events (librdkafka; ``--recent`` of them dated within the
   last 50 minutes, the rest over the ``--days`` before the last two hours) for
   ``--entities`` entities per join key, keeping those of a sample of entities;
2. waits until lake ingest has every record in the lake and the speed job has parsed
   them all (and both publish a lag of 0), then runs a batch view over the whole lake;
3. sends ``--rate`` events/s for fresh entities for ``--warmup-s``, stops them and waits
   until their values are served exactly (the fresh sample), and checks the history
   sample too: both must be exact before the fault;
4. keeps sending ``--rate`` events/s for other fresh entities, ``kill -9``s redis-server
   (the supervisor restarts it: at least 65 s after its last start, so its restart delay
   is the first crash's 1 s) and reads the sample's features without pause.

Printed per size: records in the topics, Redis's memory and append-only file, (a)
seconds from the kill until Redis answered PING (the file is loaded by then), the load
time Redis logged, (b) seconds from Redis answering until every served value of the
sample equals the reference evaluator's (the last answer that was not a 200 with every
value right; 0 when none was after Redis answered), (c) the API's answers from the kill
on by status, and 200s with a value that differs from the reference ("silent", must be
0), the speed job's and lake ingest's restarts, and whether the speed job is the same
process. Each size also prints the fill and catch-up times.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import redis
from confluent_kafka import Producer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from batch_layer.lake import open_table
from benchmarks.chaos import Load, key_fields, known_entities, wait
from benchmarks.speed import lags, processed
from feature_core.definitions import FeatureGroup, FeatureRepo
from feature_core.keys import entity_id
from feature_core.merge import values_match
from feature_core.reference import evaluate
from feature_core.settings import Settings
from feature_core.sources import EventSource, InvalidRecord
from feature_core.synthetic import random_record
from infra import stack
from online_store import open_store
from online_store.keys import KeySpace
from runtime.kafka import librdkafka_options

REPOS = {"demo": "demo.feature_repo", "fraud": "fraud.feature_repo"}
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
POOL = 5000  # drawn records per source, cycled with new keys, ids and times
NEVER = "0 0 1 1 *"  # a cron that fires on New Year's Day only: runs are started by hand
console = Console()


@contextmanager
def own_stack(module: str, data_dir: Path, maxmemory: str) -> Iterator[Settings]:
    env = {
        "LFP_BATCH_SCHEDULE": NEVER,
        "LFP_LAKE_OPTIMIZE_SCHEDULE": NEVER,
        "LFP_BATCH_SETTLE_S": "10",
        "LFP_FEATURE_REPO": module,
        "LFP_REDIS_MAXMEMORY": maxmemory,
    }
    console.print(f"starting a stack under {data_dir} ...")
    with stack.temporary_stack(data_dir, env) as settings:
        yield settings


# --- the history --------------------------------------------------------------------------


@dataclass
class History:
    """What was put in the topics, and every record of the sampled entities."""

    records: int = 0
    per_source: Counter = field(default_factory=Counter)
    sampled: dict[str, dict[str, set[str]]] = field(default_factory=dict)  # source->key->ids
    kept: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))


class FreshLoad(Load):
    """The chaos benchmark's load, drawing again when a drawn record breaks a rule
    (random_record gives up after 100 draws: about once in 40,000 records here)."""

    def record(self, source: EventSource, rng: random.Random, now_ms: int) -> dict:
        while True:
            try:
                return super().record(source, rng, now_ms)
            except InvalidRecord:
                continue


class Filler:
    """Past events of every source with groups, for ``entities`` entities per join key."""

    def __init__(self, settings: Settings, repo: FeatureRepo, args: argparse.Namespace) -> None:
        self.settings = settings
        grouped = {g.source.name for g in repo.groups}
        self.sources = [s for s in repo.sources if s.name in grouped]
        self.keys = {s.name: key_fields(repo, s) for s in self.sources}
        self.entities = args.entities
        self.days = args.days
        self.recent = args.recent
        rng = random.Random(5)
        now = int(time.time() * 1000)
        self.pools = {
            s.name: [random_record(s, rng, now) for _ in range(POOL)] for s in self.sources
        }
        self.history = History()
        for source in self.sources:
            self.history.sampled[source.name] = {
                key: {f"{key}-{j}" for j in rng.sample(range(self.entities), args.sample_keys)}
                for key in self.keys[source.name]
            }
        self.rng = random.Random(6)

    def fill(self, count: int, progress: Progress) -> float:
        """Sends ``count`` more records; returns the seconds it took."""
        out = Producer(
            {
                **librdkafka_options(self.settings),
                "linger.ms": 50,
                "batch.size": 1_000_000,
                "queue.buffering.max.messages": 500_000,
                "acks": "all",
            }
        )
        task = progress.add_task("producing", total=count)
        started = time.monotonic()
        now = int(time.time() * 1000)
        history = self.history
        rng = self.rng.random
        span = self.days * DAY_MS
        entities = self.entities
        first = history.records
        for n in range(count):
            source = self.sources[n % len(self.sources)]
            record = dict(self.pools[source.name][(first + n) % POOL])
            if rng() < self.recent:
                when = now - 60_000 - int(rng() * 49 * 60_000)
            else:
                when = now - 2 * HOUR_MS - int(rng() * span)
            record[source.event_time] = when
            if "event_id" in record:
                record["event_id"] = f"h{first + n}"
            keep = False
            sampled = history.sampled[source.name]
            for key in self.keys[source.name]:
                if record[key] is None:
                    continue
                value = f"{key}-{int(rng() * entities)}"
                record[key] = value
                keep = keep or value in sampled[key]
            if keep:
                history.kept[source.name].append(record)
            value = orjson.dumps(record)
            while True:
                try:
                    out.produce(source.topic_name, value)
                    break
                except BufferError:
                    out.poll(0.05)
            history.per_source[source.name] += 1
            if n % 20_000 == 0:
                out.poll(0)
                progress.update(task, completed=n)
        out.flush(120)
        progress.update(task, completed=count)
        history.records += count
        return time.monotonic() - started


def history_entities(
    history: History, group: FeatureGroup, sample: int
) -> dict[str, tuple[dict, list[dict]]]:
    """Up to ``sample`` entities of the group that hold a sampled key value, with every
    record of theirs the group accepts (all were kept: each holds a sampled value)."""
    sampled = history.sampled[group.source.name]
    entities: dict[str, tuple[dict, list[dict]]] = {}
    for record in history.kept[group.source.name]:
        if not group.accepts(record):
            continue
        key = {k: record[k] for k in group.join_keys}
        if any(v is None for v in key.values()):
            continue
        if not any(key[k] in sampled.get(k, ()) for k in group.join_keys):
            continue
        entities.setdefault(entity_id(list(key.values())), (key, []))[1].append(record)
    # The complete ones: every key of the entity sampled would do, one of them is enough.
    return {eid: entities[eid] for eid in sorted(entities)[:sample]}


# --- waiting for the consumers ------------------------------------------------------------


def lake_rows(settings: Settings, sources: list[EventSource]) -> int:
    rows = 0
    for source in sources:
        table = open_table(settings.table_uri(source.table_name))
        if table is None:
            continue
        actions = table.get_add_actions(flatten=True)
        rows += sum(n or 0 for n in actions.column("num_records").to_pylist())
    return rows


def catch_up(settings: Settings, sources: list[EventSource], total: int) -> tuple[float, float]:
    """Waits until the lake holds ``total`` records and the speed job has parsed as many
    (since it started) and both published a lag of 0; (lake s, speed s) after the call."""
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=30)
    keys = KeySpace(settings.key_prefix)
    started = time.monotonic()
    done: dict[str, float] = {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=console) as progress:
        lake = progress.add_task("lake ingest", total=total)
        speed = progress.add_task("speed job  ", total=total)
        while len(done) < 2:
            in_lake = lake_rows(settings, sources)
            parsed = processed(client, keys)
            lag = lags(client, keys)
            progress.update(lake, completed=min(in_lake, total))
            progress.update(speed, completed=min(parsed, total))
            if "lake" not in done and in_lake >= total and lag.get("lake-ingest", 1) == 0:
                done["lake"] = time.monotonic() - started
            if "speed" not in done and parsed >= total and lag.get("speed-job", 1) == 0:
                done["speed"] = time.monotonic() - started
            time.sleep(2)
    client.close()
    return done["lake"], done["speed"]


def batch_view(settings: Settings, sources: list[EventSource], log: Path) -> float:
    """A batch run over the whole lake (``lfp batch run``); its seconds. The serving view
    must then have read the lake's last version of every source."""
    versions = {
        s.table_name: open_table(settings.table_uri(s.table_name)).version() for s in sources
    }
    started = time.monotonic()
    with open(log, "ab") as out:
        subprocess.run(
            [sys.executable, "-m", "infra", "batch", "run"],
            stdout=out,
            stderr=subprocess.STDOUT,
            check=True,
            env=os.environ.copy(),
        )
    took = time.monotonic() - started
    store = open_store(settings, timeout_s=10)
    try:
        pointer = store.pointer()
    finally:
        store.close()
    read = (pointer.delta_versions or {}) if pointer else {}
    short = {t: v for t, v in versions.items() if read.get(t, -1) < v}
    if short:
        raise SystemExit(f"the batch view did not read the whole lake: {short} vs {read}")
    return took


# --- the fault ----------------------------------------------------------------------------


@dataclass
class Answer:
    sent: float
    received: float
    status: int  # 0: no answer
    right: bool  # a 200 whose every value equals the reference
    wrong: dict | None = None  # a 200's values that differ: name -> (served, expected)


@dataclass
class Row:
    records: int
    fill_s: float = 0.0
    lake_s: float = 0.0
    speed_s: float = 0.0
    batch_s: float = 0.0
    redis_mb: float = 0.0
    redis_keys: int = 0
    aof_mb: float = 0.0
    wrong_before: int = 0
    ping_s: float | None = None
    aof_load_s: float | None = None
    correct_s: float | None = None
    statuses: Counter = field(default_factory=Counter)
    silent: int = 0
    speed_restarts: int = 0
    ingest_restarts: int = 0
    same_speed_job: bool = False
    checked: int = 0


Sample = list[tuple[FeatureGroup, dict, list[dict]]]


def answer_right(api: httpx.Client, group: FeatureGroup, key: dict, events: list[dict]) -> Answer:
    sent = time.monotonic()
    try:
        response = api.get(f"/v1/features/{group.name}", params=key)
    except httpx.HTTPError:
        return Answer(sent, time.monotonic(), 0, False)
    received = time.monotonic()
    if response.status_code != 200:
        return Answer(sent, received, response.status_code, False)
    body = response.json()
    eid = entity_id(list(key.values()))
    expected = evaluate(group, events, body["as_of"]).get(eid, {})
    wrong = {
        n: (body["features"][n], body["statuses"].get(n), v)
        for n, v in expected.items()
        if not values_match(body["features"][n], v)
    }
    if wrong:
        wrong = {"group": group.name, "key": key, "as_of": body["as_of"], "values": wrong}
    return Answer(sent, received, 200, not wrong, wrong or None)


def wrong_now(settings: Settings, sample: Sample) -> int:
    with httpx.Client(base_url=settings.api_url, timeout=10, headers=settings.api_headers) as api:
        return sum(not answer_right(api, g, k, e).right for g, k, e in sample)


def read_sample(settings: Settings, sample: Sample, stop: threading.Event, out: list) -> None:
    """Reads every entity of the sample in turn, without pause, until ``stop``."""
    with httpx.Client(base_url=settings.api_url, timeout=5, headers=settings.api_headers) as api:
        while not stop.is_set():
            for group, key, events in sample:
                out.append(answer_right(api, group, key, events))
                if stop.is_set():
                    return


def redis_answers(settings: Settings) -> bool:
    client = redis.Redis.from_url(
        settings.redis_url, socket_timeout=0.2, socket_connect_timeout=0.2
    )
    try:
        return bool(client.ping())
    except redis.RedisError:  # refused, or LOADING its file
        return False
    finally:
        client.close()


def aof_load_s(settings: Settings) -> float | None:
    """The load time the restarted Redis logged ("DB loaded from append only file")."""
    info = stack.service_state(settings, "redis")
    path = settings.data_dir / "logs" / "redis.log"
    with open(path, "rb") as log:
        log.seek(info.get("log_from", 0))
        text = log.read().decode(errors="replace")
    found = re.findall(r"DB loaded from append only file: ([\d.]+) seconds", text)
    return float(found[-1]) if found else None


def redis_size(settings: Settings) -> tuple[float, int, float]:
    """Redis's used memory (MB), its keys, and its append-only files' size (MB)."""
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=30)
    try:
        memory = client.info("memory")["used_memory"] / 1e6
        keys = client.dbsize()
    finally:
        client.close()
    aof = sum(p.stat().st_size for p in (settings.data_dir / "redis").rglob("*") if p.is_file())
    return memory, keys, aof / 1e6


def restarts(settings: Settings) -> dict[str, int]:
    return {
        s: stack.service_state(settings, s).get("restarts", 0) for s in ("speed-job", "lake-ingest")
    }


def fault(
    settings: Settings, repo: FeatureRepo, filler: Filler, row: Row, args: argparse.Namespace
) -> None:
    groups = list(repo.groups)
    # The supervisor doubles its restart delay (1 s, 2 s, 4 s ...) for a service that
    # crashes again within 60 s of its start: each kill here is a first one.
    started = stack.service_state(settings, "redis").get("started_at", 0.0)
    pause = started + 65 - time.time()
    if pause > 0:
        console.print(f"  {pause:.0f} s for the supervisor's restart backoff to reset ...")
        time.sleep(pause)
    fresh = FreshLoad(settings, repo, f"f{uuid.uuid4().hex[:6]}-", args.rate)
    fresh.thread.start()
    time.sleep(args.warmup_s)
    fresh.stop.set()
    fresh.thread.join()
    sample: Sample = []
    for group in groups:
        mine = known_entities(fresh, group)
        sample += [(group, *mine[eid]) for eid in sorted(mine)[: args.sample]]
        old = history_entities(filler.history, group, args.sample)
        sample += [(group, key, events) for key, events in old.values()]
    row.checked = len(sample)
    # Exact before the fault: the fresh events visible, the history in the view.
    wait(lambda: wrong_now(settings, sample) == 0, 60, 1.0)
    row.wrong_before = wrong_now(settings, sample)
    row.redis_mb, row.redis_keys, row.aof_mb = redis_size(settings)
    before = restarts(settings)
    speed_pid = stack.service_state(settings, "speed-job").get("pid")
    redis_pid = stack.service_state(settings, "redis").get("pid")
    assert redis_pid is not None, "redis is not running"

    # Under load (other fresh entities), reading the sample without pause.
    load = FreshLoad(settings, repo, f"g{uuid.uuid4().hex[:6]}-", args.rate)
    load.thread.start()
    stop = threading.Event()
    answers: list[Answer] = []
    reader = threading.Thread(target=read_sample, args=(settings, sample, stop, answers))
    reader.start()
    time.sleep(2)
    killed = time.monotonic()
    os.killpg(redis_pid, signal.SIGKILL)
    console.print(f"  kill -9 redis-server (pid {redis_pid})")
    wait(lambda: not redis_answers(settings), 5, 0.01)
    if wait(lambda: redis_answers(settings), 300, 0.02):
        answered = time.monotonic()
        row.ping_s = answered - killed

        # Correct again: the sample read whole after the last wrong answer, then some.
        def settled() -> bool:
            bad = [a.received for a in answers if a.sent >= killed and not a.right]
            last_bad = max(bad, default=answered)
            after = sum(1 for a in answers if a.sent > last_bad)
            return after >= 3 * len(sample) and time.monotonic() - last_bad > args.after_s

        wait(settled, args.settle_s, 0.2)
        bad = [a.received for a in answers if a.sent >= killed and not a.right]
        last_bad = max(bad, default=answered)
        if sum(1 for a in answers if a.sent > last_bad) >= len(sample):
            row.correct_s = max(last_bad - answered, 0.0)
    stop.set()
    reader.join()
    load.stop.set()
    load.thread.join()
    row.aof_load_s = aof_load_s(settings)
    after = [a for a in answers if a.sent >= killed]
    row.statuses = Counter(a.status for a in after)
    row.silent = sum(1 for a in after if a.status == 200 and not a.right)
    for a in [a for a in after if a.wrong][:3]:
        console.print(f"  silently wrong {a.sent - killed:.2f} s after the kill: {a.wrong}")
    now = restarts(settings)
    row.speed_restarts = now["speed-job"] - before["speed-job"]
    row.ingest_restarts = now["lake-ingest"] - before["lake-ingest"]
    row.same_speed_job = stack.service_state(settings, "speed-job").get("pid") == speed_pid


def fmt(value: float | None, digits: int = 1) -> str:
    return "never" if value is None else f"{value:.{digits}f}"


def print_rows(rows: list[Row], args: argparse.Namespace, module: str) -> None:
    console.print(
        f"\nrepo {module}; {args.entities:,} entities per join key; {args.recent:.0%} of the "
        f"history within the last hour; {args.rate} events/s meanwhile; sample: "
        f"{args.sample} fresh + {args.sample} history entities per group"
    )
    header = (
        f"{'records':>11} {'fill s':>6} {'lake s':>6} {'speed s':>7} {'batch s':>7} "
        f"{'Redis MB':>8} {'keys':>9} {'AOF MB':>7} {'wrong<':>6} {'(a) PING s':>10} "
        f"{'load s':>6} {'(b) correct s':>13} {'silent':>6} {'speed':>11}  API answers"
    )
    print(header)
    for r in rows:
        speed = ("same pid" if r.same_speed_job else "NEW pid") + f" {r.speed_restarts}"
        answers = ", ".join(f"{k or 'none'}: {v}" for k, v in sorted(r.statuses.items()))
        print(
            f"{r.records:>11,} {r.fill_s:>6.0f} {r.lake_s:>6.0f} {r.speed_s:>7.0f} "
            f"{r.batch_s:>7.0f} {r.redis_mb:>8.0f} {r.redis_keys:>9,} {r.aof_mb:>7.0f} "
            f"{r.wrong_before:>6} {fmt(r.ping_s, 2):>10} {fmt(r.aof_load_s, 2):>6} "
            f"{fmt(r.correct_s, 2):>13} {r.silent:>6} {speed:>11}  {answers}"
            f"{'' if r.ingest_restarts == 0 else f'; lake ingest restarted {r.ingest_restarts}'}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repo", default="demo", help="demo, fraud or a feature repo module")
    parser.add_argument(
        "--records", default="1000000,10000000", help="topic sizes measured, cumulative"
    )
    parser.add_argument("--repeat", type=int, default=1, help="kills per size (medians)")
    parser.add_argument("--entities", type=int, default=100_000, help="per join key")
    parser.add_argument("--days", type=float, default=30.0, help="history spread over")
    parser.add_argument("--recent", type=float, default=0.01, help="share in the last hour")
    parser.add_argument("--rate", type=int, default=200, help="live events/s")
    parser.add_argument("--warmup-s", type=float, default=8.0)
    parser.add_argument("--after-s", type=float, default=5.0, help="read on once correct")
    parser.add_argument("--settle-s", type=float, default=300.0, help="wait for correct")
    parser.add_argument("--sample", type=int, default=5, help="entities of each kind per group")
    parser.add_argument("--sample-keys", type=int, default=20, help="history keys kept")
    parser.add_argument("--maxmemory", default="8gb", help="the stack's Redis maxmemory")
    args = parser.parse_args()
    # SIGTERM (and SIGINT, which a shell's background job ignores) unwinds: the stack stops.
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, lambda *_: sys.exit(1))
    module = REPOS.get(args.repo, args.repo)
    repo = FeatureRepo.from_module(module)
    sizes = sorted(int(n) for n in args.records.split(",") if n)
    rows: list[Row] = []
    with (
        tempfile.TemporaryDirectory(prefix="lfp-redis-loss-") as tmp,
        own_stack(module, Path(tmp), args.maxmemory) as settings,
    ):
        filler = Filler(settings, repo, args)
        for size in sizes:
            more = size - filler.history.records
            console.print(f"[bold]{size:,} records in the topics[/] ({more:,} more) ...")
            base = Row(size)
            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
            with Progress(*columns, TimeElapsedColumn(), console=console) as progress:
                base.fill_s = filler.fill(more, progress)
            base.lake_s, base.speed_s = catch_up(settings, filler.sources, size)
            console.print(
                f"  filled in {base.fill_s:.0f} s; lake ingest had them all "
                f"{base.lake_s:.0f} s later, the speed job {base.speed_s:.0f} s; batch run ..."
            )
            base.batch_s = batch_view(settings, filler.sources, Path(tmp) / "batch-runs.log")
            console.print(f"  batch view over the whole lake in {base.batch_s:.0f} s")
            measured = []
            for _ in range(args.repeat):
                row = Row(size, base.fill_s, base.lake_s, base.speed_s, base.batch_s)
                fault(settings, repo, filler, row, args)
                print_rows([row], args, module)
                measured.append(row)
            rows += measured
            if args.repeat > 1:
                values = [r.correct_s for r in measured if r.correct_s is not None]
                pings = [r.ping_s for r in measured if r.ping_s is not None]
                console.print(
                    f"  medians over {args.repeat}: (a) {statistics.median(pings):.2f} s, "
                    f"(b) {statistics.median(values) if values else float('nan'):.2f} s"
                )
    print_rows(rows, args, module)


if __name__ == "__main__":
    main()
