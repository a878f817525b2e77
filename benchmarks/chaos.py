"""Faults under load, on a stack of its own: `make bench-chaos`.

Starts an embedded stack in a temporary directory (free ports, a batch run every minute)
and brings in a population of past events, so each batch run writes views for a while.
Then, for each fault in turn (lake ingest, the speed job, the batch scheduler while it
writes a view, the API, Redis): steady events for fresh entities and API reads of them;
``kill -9`` of the service's process group, which the stack's supervisor restarts; the
load goes on until the service is healthy again and a few seconds more.

Printed per fault: events produced and events in the lake (each exactly once); the API's
answers by status ("none": no answer, only expected while the API is down; "silent":
200s whose values all said no_data for an entity with events, must be 0); seconds until
the service was healthy again and until every served value equalled the reference
evaluator's over the events sent (measured from the kill); values still wrong at the
end (must be 0). For the scheduler: whether the view it was writing stayed unserved and
when the next run switched one in.

"hostile-records" (a fault of its own, ``--faults hostile-records``): ``--hostile`` records
no validator accepts (random bytes, invalid UTF-8, 400 KB and 1 MB non-JSON, 100,000 '[',
1e400, 400-digit numbers, duplicate keys) mixed into the valid load. Printed: valid events
produced and in the lake (each once), hostile records sent, their dead letters in the
dead-letter topics and in the spill files (together: every one, once), the largest
envelope, and restarts of lake ingest and the speed job meanwhile (must be 0). With
``--population 0`` no population is brought first (a quick run of this row alone).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pyarrow.compute as pc
import redis

from batch_layer.lake import open_table
from feature_core.definitions import FeatureGroup, FeatureRepo
from feature_core.keys import entity_id
from feature_core.merge import values_match
from feature_core.reference import evaluate
from feature_core.settings import Settings
from feature_core.sources import EventSource
from feature_core.synthetic import random_record
from infra import stack
from online_store.keys import KeySpace, doc_version
from runtime.dead_letters import read_spilled
from runtime.kafka import consumer as kafka_consumer
from runtime.kafka import producer

REPOS = {"demo": "demo.feature_repo", "fraud": "fraud.feature_repo"}
FAULTS = ("lake-ingest", "speed-job", "batch-scheduler", "api", "redis")
HOSTILE = "hostile-records"
HOUR_MS = 3_600_000


@contextmanager
def own_stack(module: str, data_dir: Path) -> Iterator[Settings]:
    """An embedded stack on free ports under ``data_dir``, a batch run every minute."""
    env = {
        "LFP_BATCH_SCHEDULE": "* * * * *",
        "LFP_BATCH_SETTLE_S": "10",
        "LFP_SPEED_CHECKPOINT_INTERVAL_S": "5",
        "LFP_INGEST_POLL_MS": "200",
        "LFP_FEATURE_REPO": module,
    }
    print(f"starting a stack under {data_dir} ...", flush=True)
    with stack.temporary_stack(data_dir, env) as settings:
        yield settings


def key_fields(repo: FeatureRepo, source: EventSource) -> list[str]:
    """The source's join key fields (its groups'), which name the entities."""
    keys = {k for g in repo.groups if g.source.name == source.name for k in g.join_keys}
    for key in keys:
        kind = next(f.type for f in source.fields if f.name == key)
        if kind != "string":
            raise SystemExit(f"{source.name}.{key} is a {kind} key: the bench needs string keys")
    return sorted(keys)


class Load:
    """Steady valid events of every source with groups, for entities named ``prefix...``,
    dated as sent; every record sent is kept (the reference is computed from them)."""

    def __init__(self, settings: Settings, repo: FeatureRepo, prefix: str, rate: int) -> None:
        self.settings = settings
        grouped = {g.source.name for g in repo.groups}
        self.sources = [s for s in repo.sources if s.name in grouped]
        self.keys = {s.name: key_fields(repo, s) for s in self.sources}
        self.prefix = prefix
        self.rate = rate
        self.sent: dict[str, list[dict]] = defaultdict(list)
        self.sent_at: dict[str, list[float]] = defaultdict(list)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    @property
    def produced(self) -> int:
        return sum(len(records) for records in self.sent.values())

    def record(self, source: EventSource, rng: random.Random, now_ms: int) -> dict:
        record = dict(random_record(source, rng, now_ms, cardinality=40))
        for key in self.keys[source.name]:
            value = record[key] if record[key] is not None else f"{key}_{rng.randrange(40)}"
            record[key] = f"{self.prefix}{value}"
        return record

    def _run(self) -> None:
        rng = random.Random(self.prefix)
        out = producer(self.settings, linger_ms=5)
        started, n = time.monotonic(), 0
        try:
            while not self.stop.is_set():
                due = int((time.monotonic() - started) * self.rate)
                for _ in range(due - n):
                    source = self.sources[n % len(self.sources)]
                    record = self.record(source, rng, int(time.time() * 1000))
                    out.send(source.topic_name, orjson.dumps(record))
                    self.sent[source.name].append(record)
                    self.sent_at[source.name].append(time.monotonic())
                    n += 1
                time.sleep(0.01)
            out.flush()
        finally:
            out.close()


def known_entities(load: Load, group: FeatureGroup, older_than_s: float = 0.0) -> dict:
    """Entity id -> (key values, its events the group accepts), for entities whose first
    accepted event was sent at least ``older_than_s`` ago."""
    records = list(load.sent[group.source.name])
    times = load.sent_at[group.source.name][: len(records)]
    entities: dict[str, tuple[dict, list[dict]]] = {}
    first: dict[str, float] = {}
    for record, sent_at in zip(records, times, strict=False):
        if not group.accepts(record):
            continue
        key = {k: record[k] for k in group.join_keys}
        eid = entity_id(list(key.values()))
        entities.setdefault(eid, (key, []))[1].append(record)
        first.setdefault(eid, sent_at)
    newest = time.monotonic() - older_than_s
    return {eid: one for eid, one in entities.items() if first[eid] <= newest}


@dataclass
class Reads:
    statuses: Counter = field(default_factory=Counter)
    silent: int = 0


def read_loop(settings: Settings, load: Load, groups: list[FeatureGroup], reads: Reads) -> None:
    """API reads of entities that have events (sent 3 s ago or more) until the load stops."""
    rng = random.Random(1)
    client = httpx.Client(base_url=settings.api_url, timeout=5, headers=settings.api_headers)
    try:
        while not load.stop.is_set():
            group = rng.choice(groups)
            entities = known_entities(load, group, older_than_s=3.0)
            if not entities:
                time.sleep(0.1)
                continue
            key, _ = entities[rng.choice(list(entities))]
            try:
                response = client.get(f"/v1/features/{group.name}", params=key)
            except httpx.HTTPError:
                reads.statuses["none"] += 1
                time.sleep(0.1)
                continue
            reads.statuses[response.status_code] += 1
            if response.status_code == 200:
                statuses = response.json()["statuses"].values()
                reads.silent += all(s == "no_data" for s in statuses)
            time.sleep(0.02)
    finally:
        client.close()


def wrong_values(settings: Settings, load: Load, groups: list[FeatureGroup], sample: int) -> int:
    """Served values that differ from the reference, over up to ``sample`` entities per
    group (every value of an entity counts as wrong when it is not served)."""
    wrong = 0
    with httpx.Client(base_url=settings.api_url, timeout=10, headers=settings.api_headers) as api:
        for group in groups:
            entities = known_entities(load, group)
            for eid in sorted(entities)[:sample]:
                key, events = entities[eid]
                try:
                    response = api.get(f"/v1/features/{group.name}", params=key)
                except httpx.HTTPError:
                    response = None
                if response is None or response.status_code != 200:
                    wrong += len(group.features)
                    continue
                body = response.json()
                expected = evaluate(group, events, body["as_of"]).get(eid, {})
                wrong += sum(
                    not values_match(body["features"][name], value)
                    for name, value in expected.items()
                )
    return wrong


def lake_rows(settings: Settings, load: Load) -> tuple[int, int]:
    """(rows, distinct rows) in the lake of the load's entities, over its sources."""
    rows = distinct = 0
    for source in load.sources:
        table = open_table(settings.table_uri(source.table_name))
        if table is None:
            continue
        key = load.keys[source.name][0]
        data = table.to_pyarrow_table(columns=[f.name for f in source.fields])
        mine = data.filter(pc.starts_with(data[key], load.prefix)).to_pylist()
        rows += len(mine)
        distinct += len({tuple(sorted(r.items())) for r in mine})
    return rows, distinct


def pointer_version(client: redis.Redis, keys: KeySpace) -> int:
    raw = client.get(keys.batch_pointer)
    return orjson.loads(raw)["version"] if raw else 0


def service_pid(settings: Settings, service: str) -> int | None:
    return stack.service_state(settings, service).get("pid")


def healthy(settings: Settings, service: str) -> bool:
    return stack.service_state(settings, service).get("state") == "healthy"


def wait(condition: Any, timeout_s: float, interval_s: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval_s)
    return False


def view_being_written(client: redis.Redis, keys: KeySpace) -> bool:
    """A batch run took a version newer than the served one and wrote documents of it."""
    seq = int(client.get(keys.batch_seq) or 0)
    if seq <= pointer_version(client, keys):
        return False
    _, found = client.scan(0, match=f"{keys.batch_doc_root}*", count=10_000)
    return any(doc_version(doc) == seq for doc in client.mget(found) if doc) if found else False


@dataclass
class FaultResult:
    service: str
    produced: int = 0
    lake_rows: int = 0
    lake_distinct: int = 0
    reads: Reads = field(default_factory=Reads)
    back_s: float | None = None
    correct_s: float | None = None
    wrong_at_end: int = 0
    note: str = ""


def run_fault(
    settings: Settings, repo: FeatureRepo, service: str, args: argparse.Namespace
) -> FaultResult:
    result = FaultResult(service)
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=2)
    keys = KeySpace(settings.key_prefix)
    load = Load(settings, repo, f"k{uuid.uuid4().hex[:6]}-", args.rate)
    groups = list(repo.groups)
    load.thread.start()
    reader = threading.Thread(target=read_loop, args=(settings, load, groups, result.reads))
    reader.start()
    time.sleep(args.warmup_s)
    writing = service != "batch-scheduler" or wait(
        lambda: view_being_written(client, keys), 180, 0.02
    )
    if not writing:
        result.note = "no run caught writing a view in 180 s"
    before = pointer_version(client, keys)
    pid = service_pid(settings, service)
    assert pid is not None, f"{service} is not running"
    killed = time.monotonic()
    os.killpg(pid, signal.SIGKILL)
    if service == "batch-scheduler":
        kept = pointer_version(client, keys) == before
        result.note = f"view being written {'not served' if kept else 'SERVED'}"
    wait(lambda: service_pid(settings, service) not in (None, pid), 120, 0.2)
    if wait(lambda: healthy(settings, service), 300, 0.2):
        result.back_s = time.monotonic() - killed
    time.sleep(args.after_s)
    load.stop.set()
    load.thread.join()
    reader.join()
    result.produced = load.produced
    if wait(lambda: wrong_values(settings, load, groups, args.sample) == 0, args.settle_s, 2.0):
        result.correct_s = time.monotonic() - killed
    if service == "batch-scheduler":
        moved = wait(lambda: pointer_version(client, keys) > before, 180, 1.0)
        after = time.monotonic() - killed
        result.note += f"; next run switched in {after:.0f} s" if moved else "; no run since"
    wait(lambda: lake_rows(settings, load)[0] >= load.produced, 120, 1.0)
    result.lake_rows, result.lake_distinct = lake_rows(settings, load)
    result.wrong_at_end = wrong_values(settings, load, groups, args.sample)
    return result


def hostile_value(source: EventSource, n: int, rng: random.Random) -> bytes:
    """The n-th hostile record for ``source``: one no validator accepts, of many kinds."""
    valid = orjson.dumps(random_record(source, rng, int(time.time() * 1000)))
    kind = n % 10
    if kind == 0:
        return rng.randbytes(rng.randrange(1, 1024))
    if kind == 1:  # invalid UTF-8 inside an otherwise valid event
        at = rng.randrange(1, len(valid) - 1)
        return valid[:at] + b"\xff\xfe" + valid[at:]
    if kind == 2:
        return b"[" * 100_000
    if kind == 3:
        return valid[:-1] + b', "' + source.event_time.encode() + b'": 1e400}'
    if kind == 4:
        return valid[:-1] + b', "' + source.event_time.encode() + b'": ' + b"9" * 400 + b"}"
    if kind == 5:  # a duplicate key whose last value is of the wrong type
        return valid[:-1] + b', "' + source.event_time.encode() + b'": [true]}'
    if kind == 6 and n % 100 == 6:  # the record: 400 KB, non-UTF-8, not JSON
        return bytes(rng.randrange(0xA0, 0x100) for _ in range(4096)) * 100
    if kind == 7 and n % 250 == 7:  # near the producer's 1 MiB limit
        return rng.randbytes(1_000_000)
    return b'{"' + b"a" * rng.randrange(1, 64) + b'": ' + b"{" * rng.randrange(1, 3000)


@dataclass
class HostileResult:
    produced: int = 0
    lake_rows: int = 0
    lake_distinct: int = 0
    hostile: int = 0
    dead_letters: int = 0
    spilled: int = 0
    largest: int = 0
    restarts: dict[str, int] = field(default_factory=dict)


def dead_letters(settings: Settings, sources: list[EventSource], since: dict) -> list[dict]:
    """The envelopes in the sources' dead-letter topics past ``since`` (their ends before)."""
    from kafka import TopicPartition

    consumer = kafka_consumer(settings, enable_auto_commit=False)
    try:
        tps = [TopicPartition(s.dlq_topic, 0) for s in sources]
        consumer.assign(tps)
        ends = consumer.end_offsets(tps)
        found: list[dict] = []
        for tp in tps:
            consumer.seek(tp, since.get(tp, 0))
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < ends[tp] for tp in tps) and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=500).items():
                found += [
                    {**orjson.loads(r.value), "_bytes": len(r.value)}
                    for r in records
                    if r.offset < ends[tp]
                ]
        return found
    finally:
        consumer.close()


def dlq_ends(settings: Settings, sources: list[EventSource]) -> dict:
    from kafka import TopicPartition

    consumer = kafka_consumer(settings)
    try:
        return consumer.end_offsets([TopicPartition(s.dlq_topic, 0) for s in sources])
    finally:
        consumer.close()


def run_hostile(settings: Settings, repo: FeatureRepo, args: argparse.Namespace) -> HostileResult:
    """``args.hostile`` hostile records over ``args.hostile_s`` seconds, in the valid load."""
    result = HostileResult()
    load = Load(settings, repo, f"h{uuid.uuid4().hex[:6]}-", args.rate)
    services = ("lake-ingest", "speed-job")
    restarts = {s: stack.service_state(settings, s).get("restarts", 0) for s in services}
    since = dlq_ends(settings, load.sources)
    spilled_before = sum(1 for _ in read_spilled(settings.data_dir))
    load.thread.start()
    time.sleep(args.warmup_s)
    rng = random.Random(27)
    out = producer(settings, linger_ms=5)
    started = time.monotonic()
    try:
        for n in range(args.hostile):
            wait_s = started + n * args.hostile_s / args.hostile - time.monotonic()
            if wait_s > 0:
                time.sleep(wait_s)
            source = load.sources[n % len(load.sources)]
            out.send(source.topic_name, hostile_value(source, n, rng))
            result.hostile += 1
        out.flush()
    finally:
        out.close()
    time.sleep(args.after_s)
    load.stop.set()
    load.thread.join()
    result.produced = load.produced

    def rejects() -> tuple[list[dict], int]:
        spilled = sum(1 for _ in read_spilled(settings.data_dir)) - spilled_before
        return dead_letters(settings, load.sources, since), spilled

    wait(lambda: lake_rows(settings, load)[0] >= load.produced, 180, 1.0)

    def all_rejected() -> bool:
        letters, spilled = rejects()
        return len(letters) + spilled >= result.hostile

    wait(all_rejected, 180, 2.0)
    result.lake_rows, result.lake_distinct = lake_rows(settings, load)
    letters, result.spilled = rejects()
    result.dead_letters = len(letters)
    result.largest = max((letter["_bytes"] for letter in letters), default=0)
    result.restarts = {
        s: stack.service_state(settings, s).get("restarts", 0) - restarts[s] for s in services
    }
    return result


def print_hostile(r: HostileResult, args: argparse.Namespace) -> None:
    once = "yes" if r.lake_rows == r.lake_distinct == r.produced else "NO"
    every = "yes" if r.dead_letters + r.spilled == r.hostile else "NO"
    restarts = ", ".join(f"{s} {n}" for s, n in r.restarts.items())
    print(
        f"\n{'row':<16} {'produced':>8} {'in lake':>8} {'once':>5} {'hostile':>7} "
        f"{'DLQ':>5} {'spilled':>7} {'every':>5} {'largest':>9}  restarts"
    )
    print(
        f"{HOSTILE:<16} {r.produced:>8,} {r.lake_rows:>8,} {once:>5} {r.hostile:>7,} "
        f"{r.dead_letters:>5,} {r.spilled:>7,} {every:>5} {r.largest:>9,}  {restarts}"
    )


def bring_population(settings: Settings, repo: FeatureRepo, entities: int) -> None:
    """One event an hour old per entity and source, into the lake and a batch view: every
    later batch run writes their views again (a run can then be caught writing)."""
    load = Load(settings, repo, "pop-", 0)
    rng = random.Random(7)
    out = producer(settings, linger_ms=20, batch_size=256 * 1024)
    then = int(time.time() * 1000) - HOUR_MS
    for i in range(entities):
        for source in load.sources:
            record = load.record(source, rng, then)
            for key in load.keys[source.name]:
                record[key] = f"pop-{i}"
            out.send(source.topic_name, orjson.dumps(record))
            load.sent[source.name].append(record)
    out.flush()
    out.close()
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=30)
    keys = KeySpace(settings.key_prefix)
    wait(lambda: lake_rows(settings, load)[0] >= load.produced, 300, 2.0)
    landed = pointer_version(client, keys)
    print(f"population: {load.produced:,} events in the lake; waiting for a batch run ...")
    wait(lambda: pointer_version(client, keys) > landed, 240, 2.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repo", default="demo", help="demo, fraud or a feature repo module")
    parser.add_argument("--faults", default=",".join((*FAULTS, HOSTILE)))
    parser.add_argument("--rate", type=int, default=200, help="events/s during each fault")
    parser.add_argument("--population", type=int, default=20_000, help="entities before")
    parser.add_argument("--warmup-s", type=float, default=8.0)
    parser.add_argument("--after-s", type=float, default=5.0, help="load after recovery")
    parser.add_argument("--settle-s", type=float, default=300.0, help="wait for correct")
    parser.add_argument("--sample", type=int, default=15, help="entities checked per group")
    parser.add_argument("--hostile", type=int, default=1000, help="hostile records (its row)")
    parser.add_argument("--hostile-s", type=float, default=20.0, help="sent over this long")
    args = parser.parse_args()
    module = REPOS.get(args.repo, args.repo)
    repo = FeatureRepo.from_module(module)
    faults = [f for f in args.faults.split(",") if f]
    unknown = set(faults) - {*FAULTS, HOSTILE}
    if unknown:
        raise SystemExit(f"unknown faults {sorted(unknown)}; known: {', '.join(FAULTS)}, {HOSTILE}")
    results = []
    hostile: HostileResult | None = None
    with (
        tempfile.TemporaryDirectory(prefix="lfp-chaos-") as tmp,
        own_stack(module, Path(tmp)) as settings,
    ):
        if args.population > 0:
            bring_population(settings, repo, args.population)
        for service in faults:
            if service == HOSTILE:
                print(f"{args.hostile} hostile records in {args.rate} events/s ...", flush=True)
                hostile = run_hostile(settings, repo, args)
                continue
            print(f"kill -9 {service} under {args.rate} events/s ...", flush=True)
            results.append(run_fault(settings, repo, service, args))
    print(
        f"\nrepo {module}; {args.rate} events/s; {args.population:,} entities before; "
        f"values checked on {args.sample} entities per group"
    )
    if results:
        print(
            f"{'fault':<16} {'produced':>8} {'in lake':>8} {'once':>5} {'back s':>6} "
            f"{'correct s':>9} {'wrong':>5} {'silent':>6}  API answers            note"
        )
    for r in results:
        answers = ", ".join(f"{k}: {v}" for k, v in sorted(r.reads.statuses.items(), key=str))
        once = "yes" if r.lake_rows == r.lake_distinct == r.produced else "NO"
        back = f"{r.back_s:.1f}" if r.back_s is not None else "never"
        correct = f"{r.correct_s:.1f}" if r.correct_s is not None else "never"
        print(
            f"{r.service:<16} {r.produced:>8,} {r.lake_rows:>8,} {once:>5} {back:>6} "
            f"{correct:>9} {r.wrong_at_end:>5} {r.reads.silent:>6}  {answers:<22} {r.note}"
        )
    if hostile is not None:
        print_hostile(hostile, args)


if __name__ == "__main__":
    main()
