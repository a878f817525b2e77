"""Serving throughput and latency: our vector endpoint vs. a bare one-HGETALL ceiling.

Self-contained (`make bench-serving`): starts a private redis-server, loads N entities
x the ``user_features`` service (every user feature of the demo's groups) into batch and
speed views, starts two single-worker uvicorn servers with identical options (the platform
API and a bare FastAPI endpoint doing one Redis HGETALL), then drives each with wrk at
several concurrency levels, one endpoint at a time, in interleaved rounds. Prints the
median RPS, p50/p99 and server CPU per request per level, the median of the paired
per-round ratios of our RPS to the ceiling's, plus the in-process merge cost per entity.

The API serves ``benchmarks.derived_repo`` (the demo's repo plus a service
``user_features_derived``: the same vector with five derived features over it, a request
field in ``context``), measured beside ``user_features`` in the same rounds: the paired
ratio of their server CPU per request is what computing derived features costs (target:
at most 10% more).

Before the runs every entity is asked for once, so the API's batch view cache holds
them (its hit rate over the runs is printed): unless LFP_API_BATCH_CACHE_ENTRIES is set,
the API gets room for every (group, entity) view loaded (at least its default), and
`LFP_API_BATCH_CACHE_ENTRIES=0 make bench-serving` measures it without the cache. The
views stay as loaded unless ``--live-writes N`` rewrites N random entities' newest speed
tiles per second during the runs, as a live speed layer does: each such entity's next
vector is merged again instead of coming from the merge's memo (`make bench-serving
ARGS="--live-writes 500"`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import orjson
import redis
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.progress import track
from rich.table import Table

from feature_core.definitions import FeatureRepo
from feature_core.local_views import batch_doc, speed_tiles
from feature_core.merge import BatchPointer
from feature_core.settings import get_settings
from feature_core.windows import DAY_MS, MINUTE_MS, align_cutoff
from online_store.keys import KeySpace, stamped
from online_store.redis_standalone.reader import RedisViewReader
from online_store.views import EntityViews, ViewsSnapshot
from serving_layer.vectors import build_vectors, select

SERVICE = "user_features"
#: The same vector with five derived features (see benchmarks.derived_repo), and its repo.
DERIVED_SERVICE = "user_features_derived"
BENCH_REPO = "benchmarks.derived_repo"
#: The request field the derived features read: a random category of the synthetic events.
CONTEXT_LUA = """',"context":{"bench_category":"c' .. math.random(0, 19) .. '"}'"""
console = Console(width=None if sys.stdout.isatty() else 120)  # CI logs: no wrapping

CEILING_APP = """
import orjson
from fastapi import FastAPI
from fastapi.responses import Response

from feature_core.settings import Settings
from online_store.redis_standalone.reader import connect

app = FastAPI()
client = connect(Settings())  # the API's own client setup, so only the work differs


@app.get("/ceiling/{entity}")
async def ceiling(entity: str) -> Response:
    fields = await client.hgetall("%s" + entity + "%s")
    body = {k.decode(): orjson.loads(v) for k, v in fields.items()}
    return Response(orjson.dumps(body), media_type="application/json")
"""

VECTOR_LUA = """
math.randomseed(os.time())
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  local body = '{"feature_service":"%s","entities":[' .. %s .. ']' .. %s .. '}'
  return wrk.format(nil, "/v1/features", nil, body)
end
"""

CEILING_LUA = """
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/ceiling/bench_" .. math.random(0, %d))
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def synthetic_events(rng: random.Random, user: str, now: int, n: int) -> list[dict]:
    """``n`` events over 90 days, a quarter of them within the last hour."""
    events = []
    for i in range(n):
        recent = i % 4 == 0
        age = rng.randrange(60 * 60_000) if recent else rng.randrange(90 * DAY_MS)
        kind = rng.choice(["view", "view", "click", "add_to_cart", "purchase"])
        event = {
            "user_id": user,
            "event_type": kind,
            "event_time": now - age - 1,
            "item_id": f"i{rng.randrange(5000)}",
            "category": f"c{rng.randrange(20)}",
        }
        if kind == "purchase":
            event["amount"] = round(rng.uniform(5, 200), 2)
        if kind == "add_to_cart":
            event["price"] = round(rng.uniform(5, 200), 2)
        events.append(event)
    return events


#: One entity's speed tiles that an extra event changes: (key, field, as loaded or None
#: when the event opens the tile, with the event).
LiveTiles = list[tuple[str, str, bytes | None, bytes]]


def load_views(
    client: redis.Redis, repo: FeatureRepo, entities: int, events: int, live: bool = False
) -> list[LiveTiles]:
    """Batch docs (cutoff 30 min ago) and speed tiles (after it) for every entity; with
    ``live``, each entity's tiles that one more event (a view, now) would change."""
    keys = KeySpace("lfp")
    now = int(time.time() * 1000)
    cutoff = align_cutoff(now - 30 * MINUTE_MS)
    selection = select(repo, SERVICE)
    rng = random.Random(7)
    pipe = client.pipeline(transaction=False)
    live_tiles: list[LiveTiles] = []
    for i in track(range(entities), description="loading views", console=console):
        user = f"bench_{i}"
        user_events = synthetic_events(rng, user, now, events)
        extra = {**user_events[0], "event_type": "view", "event_time": now - 1, "item_id": "i_"}
        changed: LiveTiles = []
        for group in selection.groups:
            doc = batch_doc(group, user_events, cutoff, DAY_MS)
            if doc:
                pipe.set(keys.batch_doc(group.name, user), stamped(1, orjson.dumps(doc)))
            key = keys.speed_tiles(group.name, user)

            def hash_of(group_events: list[dict]) -> dict[str, bytes]:
                tiles = speed_tiles(group, group_events, cutoff)  # noqa: B023 - called at once
                return {str(t): orjson.dumps(p) for t, p in tiles.items()}

            loaded = hash_of(user_events)
            if loaded:
                pipe.hset(key, mapping=loaded)
            if live:
                changed += [
                    (key, field, loaded.get(field), value)
                    for field, value in hash_of([*user_events, extra]).items()
                    if value != loaded.get(field)
                ]
        if live:
            live_tiles.append(changed)
        if i % 500 == 499:
            pipe.execute()
    pipe.hset(keys.speed_watermark, mapping={g.name: now for g in selection.groups})
    pipe.set(keys.batch_pointer, orjson.dumps(BatchPointer(1, cutoff, DAY_MS).to_json()))
    pipe.execute()
    return live_tiles


@contextmanager
def live_writes(
    redis_port: int, live_tiles: list[LiveTiles], per_second: int
) -> Iterator[Callable[[], int]]:
    """While open, ``per_second`` random entities a second get their changeable tiles
    flipped (loaded <-> with the extra event), as a live speed layer keeps rewriting
    tiles. Yields a count of the entity writes so far."""
    if not per_second:
        yield lambda: 0
        return
    stop, written = threading.Event(), [0]

    def write() -> None:
        client, rng, flipped = (
            redis.Redis(host="127.0.0.1", port=redis_port, socket_timeout=30),
            random.Random(3),
            set(),
        )
        tick, due, next_tick = 0.02, 0.0, time.monotonic()
        while not stop.is_set():
            due += per_second * tick
            pipe = client.pipeline(transaction=False)
            while due >= 1:
                due -= 1
                entity = rng.randrange(len(live_tiles))
                flipped ^= {entity}
                for key, field, loaded, with_extra in live_tiles[entity]:
                    if entity in flipped:
                        pipe.hset(key, field, with_extra)
                    elif loaded is None:
                        pipe.hdel(key, field)
                    else:
                        pipe.hset(key, field, loaded)
                written[0] += 1
            pipe.execute()
            next_tick += tick
            stop.wait(max(0.0, next_tick - time.monotonic()))

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    try:
        yield lambda: written[0]
    finally:
        stop.set()
        thread.join()


def merge_cost_us(
    redis_port: int,
    repo: FeatureRepo,
    entities: int,
    batch: int,
    memo: bool,
    service: str = SERVICE,
) -> float:
    """In-process cost of merging and laying out one entity's vector (microseconds),
    derived features computed too (their request field from one context object).

    ``memo``: as the API merges views it has served before (batch view cache on, warm):
    unchanged speed tiles give the memoized result. Else the whole merge, as without the
    cache (or on views never served before)."""

    async def read(ids: list[str]) -> ViewsSnapshot:
        client = aioredis.Redis(host="127.0.0.1", port=redis_port, socket_timeout=30)
        try:
            store = RedisViewReader(client, "lfp", get_settings().api_batch_cache_entries)
            return await store.read([selection.views_request(ids)])
        finally:
            await client.aclose()

    selection = select(repo, service)
    ids = [f"bench_{i}" for i in random.Random(1).sample(range(entities), batch)]
    context = selection.context_rows({"bench_category": "c3"}, batch)
    snapshot = asyncio.run(read(ids))
    if not memo:
        views = [EntityViews(v.batch_doc, v.speed_tiles) for v in snapshot.entities]
        snapshot = ViewsSnapshot(snapshot.pointer, snapshot.speed_watermarks, views)
    now = int(time.time() * 1000)
    build_vectors(selection, snapshot, ids, now, context)  # fills the cached views' memos
    rounds = 20
    started = time.perf_counter()
    for _ in range(rounds):
        build_vectors(selection, snapshot, ids, now, context)
    return (time.perf_counter() - started) / (rounds * batch) * 1e6


@contextmanager
def server(
    args: list[str],
    env: dict[str, str],
    port: int,
    cwd: Path,
    prefix: Sequence[str] = (),
    startup_s: float = 30,
) -> Iterator[subprocess.Popen[bytes]]:
    """A single-worker uvicorn server, optionally run under ``prefix`` (e.g. valgrind)."""
    process = subprocess.Popen(
        [
            *prefix,
            sys.executable,
            "-m",
            "uvicorn",
            *args,
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
            "--no-access-log",
            "--log-level",
            "warning",
            "--loop",
            "uvloop",
            "--http",
            "httptools",
        ],
        env=env,
        cwd=cwd,
    )
    try:
        deadline = time.monotonic() + startup_s
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/docs", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise SystemExit(f"server {args[0]} did not start") from None
                time.sleep(0.2)
        yield process
    finally:
        process.terminate()
        process.wait(10)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(url: str, script: str, connections: int, seconds: int, pid: int) -> dict[str, float]:
    """One wrk run: RPS, p50/p99 ms, non-2xx count, and the server's CPU per request (us),
    which the machine's run-to-run noise disturbs much less than RPS."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    cpu_before = cpu_seconds(pid)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", handle.name, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    cpu_after = cpu_seconds(pid)
    os.unlink(handle.name)

    def ms(label: str) -> float:
        value, unit = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": ms("50"),
        "p99": ms("99"),
        "errors": float(errors.group(1)) if errors else 0.0,
        "cpu_us": cpu / requests * 1e6 if cpu is not None and requests else float("nan"),
    }


def warm_up(api_url: str, entities: int, batch: int) -> None:
    """Ask for every entity once, as a serving process sees its hot entities before a
    measurement would: the API's batch view cache then holds what the runs read."""
    with httpx.Client(base_url=api_url, timeout=30) as client:
        for start in track(range(0, entities, batch), description="warm-up", console=console):
            ids = [f"bench_{i}" for i in range(start, min(start + batch, entities))]
            client.post(
                "/v1/features", json={"feature_service": SERVICE, "entities": ids}
            ).raise_for_status()


def batch_cache_lookups(api_url: str) -> tuple[float, float]:
    """(hits, misses) of the API's batch view cache so far, from /metrics."""
    text = httpx.get(f"{api_url}/metrics", timeout=30).text
    samples = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    return samples["lfp_api_batch_cache_hits_total"], samples["lfp_api_batch_cache_misses_total"]


def _fill(limit: int, key: str, item: object, rest: dict, feast: bool = False) -> bytes:
    """``rest`` with ``key`` a list of ``item`` repeated to fill a body of ``limit`` bytes
    (``feast``: the list is the one join key list of Feast's ``entities``)."""

    def body(items: list) -> bytes:
        return orjson.dumps({**rest, "entities": {key: items}} if feast else {**rest, key: items})

    n = (limit - len(body([]))) // (len(orjson.dumps(item)) + 1)
    while len(encoded := body([item] * n)) > limit:
        n -= 1
    return encoded


def _fill_distinct(limit: int, key: str, make: Callable[[int], str], rest: dict) -> bytes:
    """``rest`` with ``key`` a list of distinct ``make(i)`` filling ``limit`` bytes."""
    items, size = [], len(orjson.dumps({**rest, key: []}))
    while size + len(make(len(items))) + 3 <= limit:
        items.append(make(len(items)))
        size += len(items[-1]) + 3
    return orjson.dumps({**rest, key: items})


def _fill_object(limit: int, rest: dict, top_level: bool = False) -> bytes:
    """An object of short keys, each with a wrong value, filling ``limit`` bytes: as the
    one entity of ``rest`` (each key a join key to check), or as the body itself."""
    n = (limit - len(orjson.dumps(rest)) - 64) // len(b'"k000000":true,')
    keys = {f"k{i:06d}": True for i in range(n)}
    return orjson.dumps(keys if top_level else {**rest, "entities": [keys]})


def hostile_bodies(limit: int, max_entities: int) -> list[tuple[str, str, bytes]]:
    """The worst bodies under LFP_API_MAX_BODY_BYTES: (name, path, body). Before the caps,
    a 1 MB list of one repeated reference froze the API for seconds (a quadratic check)."""
    ref = "user_activity:event_count_1h"
    users = [f"bench_{i}" for i in range(max_entities)]
    v1, feast = "/v1/features", "/get-online-features"
    return [
        (
            "v1: shortest ref ('a:b') x 1 MB",
            v1,
            _fill(limit, "features", "a:b", {"entities": ["u"]}),
        ),
        ("v1: one valid ref x 1 MB", v1, _fill(limit, "features", ref, {"entities": ["u"]})),
        (
            "v1: distinct unknown refs, 1 MB",
            v1,
            _fill_distinct(limit, "features", lambda i: f"g{i}:f", {"entities": ["u"]}),
        ),
        ("v1: wrong-typed refs x 1 MB", v1, _fill(limit, "features", 0, {"entities": ["u"]})),
        ("v1: entities x 1 MB", v1, _fill(limit, "entities", "u", {"features": [ref]})),
        (
            "v1: one entity object, keys x 1 MB",
            v1,
            _fill_object(limit, {"features": [ref]}),
        ),
        ("v1: top-level unknown keys x 1 MB", v1, _fill_object(limit, {}, top_level=True)),
        (
            f"v1: {max_entities} entities (the cap), 200",
            v1,
            orjson.dumps({"feature_service": SERVICE, "entities": users}),
        ),
        (
            "feast: shortest ref x 1 MB",
            feast,
            _fill(limit, "features", "a:b", {"entities": {"user_id": ["u"]}}),
        ),
        ("feast: entities x 1 MB", feast, _fill(limit, "user_id", "u", {"features": [ref]}, True)),
    ]


def time_hostile(api_url: str, rounds: int) -> list[tuple[str, int, int, float, float]]:
    """Each hostile body sent ``rounds`` times, one at a time: (name, bytes, status,
    median ms, max ms). Statuses are what the API answered; nothing here is asserted."""
    settings = get_settings()
    bodies = hostile_bodies(settings.api_max_body_bytes, settings.api_max_entities)
    headers = {"content-type": "application/json"}
    rows = []
    with httpx.Client(base_url=api_url, timeout=120) as client:
        for name, path, body in bodies:
            took, statuses = [], set()
            for _ in range(rounds):
                started = time.perf_counter()
                statuses.add(client.post(path, content=body, headers=headers).status_code)
                took.append((time.perf_counter() - started) * 1000)
            status = statuses.pop() if len(statuses) == 1 else -1
            rows.append((name, len(body), status, statistics.median(took), max(took)))
    return rows


def print_hostile(rows: list[tuple[str, int, int, float, float]], rounds: int) -> None:
    table = Table(title=f"worst bodies (one at a time, median of {rounds} rounds)")
    for column in ("body", "bytes", "status", "median ms", "max ms"):
        table.add_column(column, justify="right")
    for name, size, status, median, worst in rows:
        table.add_row(name, f"{size:,}", str(status), f"{median:.1f}", f"{worst:.1f}")
    console.print(table)


def median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's median over the rounds."""
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def cache_entries(repo: FeatureRepo, entities: int) -> str:
    """The API's LFP_API_BATCH_CACHE_ENTRIES: as set in the environment, else room for
    every view loaded (10,000 entities x 6 user groups is past the default of 50,000,
    which an LRU cache read at random then hits 5 times in 6)."""
    views = entities * len(select(repo, SERVICE).groups)
    default = get_settings().api_batch_cache_entries
    return os.environ.get("LFP_API_BATCH_CACHE_ENTRIES") or str(max(views, default))


@contextmanager
def bench_views(
    repo: FeatureRepo, entities: int, events: int, live: bool = False
) -> Iterator[tuple[int, Path, dict[str, str], list[LiveTiles]]]:
    """A private redis-server loaded with the views, and a work dir holding the ceiling app:
    (redis port, work dir, the servers' environment, the tiles live writes change)."""
    workdir = Path(tempfile.mkdtemp(prefix="lfp-bench-"))
    redis_port = free_port()
    redis_process = subprocess.Popen(
        ["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(host="127.0.0.1", port=redis_port, socket_timeout=30)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        live_tiles = load_views(client, repo, entities, events, live)
        tiles_key = KeySpace("lfp").speed_tiles_affixes("user_browsing")
        (workdir / "ceiling_app.py").write_text(CEILING_APP % tiles_key)
        yield (
            redis_port,
            workdir,
            {
                **os.environ,
                "LFP_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
                "LFP_REDIS_PASSWORD_FILE": os.devnull,  # its own Redis has no password
                "LFP_ENV_FILE": "",  # the repo's .env (a token) is not its settings
                # The feature endpoints only: the demo router loads its model (importing
                # scikit-learn) in the background at start-up, which would be measured.
                "LFP_API_ROUTERS": "[]",
                "LFP_FEATURE_REPO": BENCH_REPO,
                "LFP_API_BATCH_CACHE_ENTRIES": cache_entries(repo, entities),
                "PYTHONPATH": os.pathsep.join([str(workdir), os.getcwd()]),
            },
            live_tiles,
        )
    finally:
        redis_process.terminate()
        redis_process.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entities", type=int, default=10_000)
    parser.add_argument("--events-per-entity", type=int, default=40)
    parser.add_argument("--concurrency", default="1,8,32,64")
    parser.add_argument("--seconds", type=int, default=5, help="wrk duration per run")
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds per level (medians are reported)"
    )
    parser.add_argument("--batch", type=int, default=10, help="entities per request, batch row")
    parser.add_argument(
        "--live-writes",
        type=int,
        default=0,
        help="entities whose speed tiles are rewritten per second during the runs",
    )
    parser.add_argument(
        "--hostile",
        action="store_true",
        help="only the worst-bodies rows: 1 MB bodies of repeated or unknown references, "
        "wrong items and entities, each timed alone (median of --rounds x 5)",
    )
    args = parser.parse_args()
    if args.hostile:
        hostile_only(args)
        return
    for tool in ("wrk", "redis-server"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: run make install (it apt-installs {tool})")
    repo = FeatureRepo.from_module(BENCH_REPO)
    n_features = len(select(repo, SERVICE).refs)
    n_derived = len(select(repo, DERIVED_SERVICE).refs) - n_features
    api_port, ceiling_port = free_port(), free_port()
    views = bench_views(repo, args.entities, args.events_per_entity, args.live_writes > 0)
    with views as (redis_port, workdir, env, live_tiles):
        merge_costs = {
            (service, memo, batch): merge_cost_us(
                redis_port, repo, args.entities, batch, memo, service
            )
            for service in (SERVICE, DERIVED_SERVICE)
            for memo in (True, False)
            for batch in (1, 100)
        }
        last = args.entities - 1
        one = f"'\"bench_' .. math.random(0, {last}) .. '\"'"
        many = " .. ',' .. ".join([one] * args.batch)
        levels = [int(c) for c in args.concurrency.split(",")]
        ceiling_url = f"http://127.0.0.1:{ceiling_port}"
        api_url = f"http://127.0.0.1:{api_port}"
        api = ["--factory", "serving_layer.app:create_app"]
        ceiling = ("ceiling: 1 HGETALL", ceiling_url, CEILING_LUA % last)
        # (the vector, the same with derived features) per entities per request.
        pairs = [
            (
                (f"vector, {label}", api_url, VECTOR_LUA % (SERVICE, ids, "''")),
                (
                    f"vector+{n_derived} derived, {label}",
                    api_url,
                    VECTOR_LUA % (DERIVED_SERVICE, ids, CONTEXT_LUA),
                ),
            )
            for label, ids in [("1 entity", one), (f"{args.batch} entities", many)]
        ]
        single = [name for (name, _, _) in pairs[0]]  # the 1-entity vectors
        runs: dict[tuple[str, int], list[dict[str, float]]] = {}
        # Per (endpoint, level), paired per round: RPS / the ceiling's (1-entity vectors),
        # server CPU per request / the vector's without derived features (derived ones).
        ratios: dict[tuple[str, int], list[float]] = {}
        cpu_ratios: dict[tuple[str, int], list[float]] = {}
        # Both servers up at once; each round measures every endpoint back to back, so
        # drift in the machine's speed hits both sides of a ratio alike, and the median
        # over rounds drops the runs a noisy neighbour spoiled. The vector and its derived
        # twin swap places every other round, so neither always runs first.
        with (
            server(["ceiling_app:app"], env, ceiling_port, workdir) as ceiling_process,
            server(api, env, api_port, Path.cwd()) as api_process,
        ):
            pids = {ceiling_url: ceiling_process.pid, api_url: api_process.pid}
            warm_up(api_url, args.entities, args.batch)
            lookups_before = batch_cache_lookups(api_url)
            writes = live_writes(redis_port, live_tiles, args.live_writes)
            with writes as entity_writes:
                started = time.monotonic()
                for c in levels:
                    for round_ in track(
                        range(args.rounds), description=f"{c} connections", console=console
                    ):
                        order = [ceiling]
                        for pair in pairs:
                            order += pair if round_ % 2 == 0 else pair[::-1]
                        measured = {
                            name: wrk(url, script, c, args.seconds, pids[url])
                            for name, url, script in order
                        }
                        for name, _, _ in [ceiling, *(e for pair in pairs for e in pair)]:
                            runs.setdefault((name, c), []).append(measured[name])
                        for name in single:
                            ratios.setdefault((name, c), []).append(
                                measured[name]["rps"] / measured[ceiling[0]]["rps"]
                            )
                        for (plain, _, _), (derived, _, _) in pairs:
                            cpu_ratios.setdefault((derived, c), []).append(
                                measured[derived]["cpu_us"] / measured[plain]["cpu_us"]
                            )
                writes_per_s = entity_writes() / (time.monotonic() - started)
            hits, misses = (
                after - before
                for after, before in zip(batch_cache_lookups(api_url), lookups_before, strict=True)
            )
            hostile = time_hostile(api_url, args.rounds * 5)

    live = f", {writes_per_s:,.0f} entity writes/s" if args.live_writes else ""
    table = Table(
        title=f"{args.entities} entities x {n_features} features (+ {n_derived} derived), "
        f"{os.cpu_count()} cores, median of {args.rounds} rounds x {args.seconds} s{live}"
    )
    columns = ("endpoint", "connections", "RPS", "p50 ms", "p99 ms", "non-2xx", "CPU us/req")
    for column in (*columns, "vs ceiling", "CPU vs vector"):
        table.add_column(column, justify="right")

    def paired(figures: dict[tuple[str, int], list[float]], key: tuple[str, int]) -> str:
        return f"{statistics.median(figures[key]):.0%}" if key in figures else ""

    for (name, c), level_runs in runs.items():
        r = median_run(level_runs)
        table.add_row(
            name,
            str(c),
            f"{r['rps']:.0f}",
            f"{r['p50']:.2f}",
            f"{r['p99']:.2f}",
            f"{r['errors']:.0f}",
            f"{r['cpu_us']:.0f}",
            paired(ratios, (name, c)),
            paired(cpu_ratios, (name, c)),
        )
    console.print(table)
    print_side_by_side(runs, ratios, cpu_ratios, pairs, levels)
    lookups = hits + misses
    console.print(
        f"batch view cache (LFP_API_BATCH_CACHE_ENTRIES={env['LFP_API_BATCH_CACHE_ENTRIES']}): "
        f"{hits / lookups:.1%} hits over the runs ({lookups:,.0f} lookups)"
        if lookups
        else "batch view cache: off"
    )
    print_hostile(hostile, args.rounds * 5)
    for memo, label in [(True, "views served before"), (False, "whole merge")]:
        for service in (SERVICE, DERIVED_SERVICE):
            console.print(
                f"merge + layout per entity, {service}, {label}: "
                f"{merge_costs[service, memo, 1]:.1f} us (1 per call), "
                f"{merge_costs[service, memo, 100]:.1f} us (100 per call)"
            )
    for name in single:
        worst = min(statistics.median(ratios[name, c]) for c in levels)
        console.print(
            f"ratio ({name} / ceiling; median of paired rounds), worst level: {worst:.0%} "
            "(target >= 70%)"
        )
    cpu_ratio = statistics.median(
        run["cpu_us"] for c in levels for run in runs[(ceiling[0], c)]
    ) / statistics.median(run["cpu_us"] for c in levels for run in runs[(single[0], c)])
    console.print(f"server CPU per request, ceiling / vector: {cpu_ratio:.0%}")
    for _, (derived, _, _) in pairs:
        all_levels = [r for c in levels for r in cpu_ratios[derived, c]]
        console.print(
            f"server CPU per request, {derived} / without: {statistics.median(all_levels):.0%} "
            "(median of paired rounds over all levels; target <= 110%)"
        )


def print_side_by_side(
    runs: dict[tuple[str, int], list[dict[str, float]]],
    ratios: dict[tuple[str, int], list[float]],
    cpu_ratios: dict[tuple[str, int], list[float]],
    pairs: Sequence[tuple[tuple[str, str, str], tuple[str, str, str]]],
    levels: Sequence[int],
) -> None:
    """Each vector beside the same vector with derived features: RPS, server CPU per
    request, their paired CPU ratio and (one entity) each one's share of the ceiling."""
    table = Table(title="the vector without | with derived features (medians)")
    for column in (
        "entities, connections",
        "RPS",
        "RPS derived",
        "CPU us/req",
        "CPU derived",
        "CPU derived / without",
        "vs ceiling",
        "derived vs ceiling",
    ):
        table.add_column(column, justify="right")
    for (plain, _, _), (derived, _, _) in pairs:
        for c in levels:
            a, b = median_run(runs[plain, c]), median_run(runs[derived, c])
            shares = [
                f"{statistics.median(ratios[n, c]):.0%}" if (n, c) in ratios else ""
                for n in (plain, derived)
            ]
            table.add_row(
                f"{plain.partition(', ')[2]}, {c}",
                f"{a['rps']:.0f}",
                f"{b['rps']:.0f}",
                f"{a['cpu_us']:.0f}",
                f"{b['cpu_us']:.0f}",
                f"{statistics.median(cpu_ratios[derived, c]):.0%}",
                *shares,
            )
    console.print(table)


def hostile_only(args: argparse.Namespace) -> None:
    """The worst-bodies rows alone, on a small loaded Redis (seconds, no wrk needed)."""
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server not found: run make install (it apt-installs it)")
    repo = FeatureRepo.from_module(BENCH_REPO)
    api_port = free_port()
    entities = min(args.entities, 2000)
    with bench_views(repo, entities, 5) as (_, _, env, _):
        api = ["--factory", "serving_layer.app:create_app"]
        with server(api, env, api_port, Path.cwd()):
            rows = time_hostile(f"http://127.0.0.1:{api_port}", args.rounds * 5)
    print_hostile(rows, args.rounds * 5)


if __name__ == "__main__":
    main()
