"""Serving throughput and latency: our vector endpoint vs. a bare one-HGETALL ceiling.

Self-contained (`make bench-serving`): starts a private redis-server, loads N entities
x the ``user_features`` service (22 features, 3 groups) into batch and speed views,
starts two single-worker uvicorn servers with identical options (the platform API and
a bare FastAPI endpoint doing one Redis HGETALL), then drives each with wrk at several
concurrency levels, one server at a time. Prints RPS and p50/p99 per level and the
ratio of our RPS to the ceiling's, plus the in-process merge cost per entity.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import orjson
import redis
import redis.asyncio as aioredis
from rich.console import Console
from rich.progress import track
from rich.table import Table

from feature_core.definitions import FeatureRepo
from feature_core.keys import KeySpace
from feature_core.local_views import batch_doc, speed_tiles
from feature_core.merge import BatchPointer
from feature_core.windows import DAY_MS, MINUTE_MS, align_cutoff
from serving_layer.store import EntityViews, FeatureStore, ViewsSnapshot
from serving_layer.vectors import build_vectors, select

SERVICE = "user_features"
console = Console()

CEILING_APP = """
import orjson
from fastapi import FastAPI
from fastapi.responses import Response

from feature_core.settings import Settings
from serving_layer.store import connect

app = FastAPI()
client = connect(Settings())  # the API's own client setup, so only the work differs


@app.get("/ceiling/{entity}")
async def ceiling(entity: str) -> Response:
    fields = await client.hgetall("%s" + entity)
    body = {k.decode(): orjson.loads(v) for k, v in fields.items()}
    return Response(orjson.dumps(body), media_type="application/json")
"""

VECTOR_LUA = """
math.randomseed(os.time())
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  local body = '{"feature_service":"%s","entities":[' .. %s .. ']}'
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
        events.append(event)
    return events


def load_views(client: redis.Redis, repo: FeatureRepo, entities: int, events: int) -> None:
    """Batch docs (cutoff 30 min ago) and speed tiles (after it) for every entity."""
    keys = KeySpace("lfp")
    now = int(time.time() * 1000)
    cutoff = align_cutoff(now - 30 * MINUTE_MS)
    selection = select(repo, SERVICE)
    rng = random.Random(7)
    pipe = client.pipeline(transaction=False)
    for i in track(range(entities), description="loading views", console=console):
        user = f"bench_{i}"
        user_events = synthetic_events(rng, user, now, events)
        for group in selection.groups:
            doc = batch_doc(group, user_events, cutoff, DAY_MS)
            if doc:
                pipe.set(keys.batch_view(1, group.name, user), orjson.dumps(doc))
            tiles = speed_tiles(group, user_events, cutoff)
            if tiles:
                pipe.hset(
                    keys.speed_tiles(group.name, user),
                    mapping={str(t): orjson.dumps(p) for t, p in tiles.items()},
                )
        if i % 500 == 499:
            pipe.execute()
    pipe.hset(keys.speed_watermark, mapping={g.name: now for g in selection.groups})
    pipe.set(keys.batch_pointer, orjson.dumps(BatchPointer(1, cutoff, DAY_MS).to_json()))
    pipe.execute()


def merge_cost_us(redis_port: int, repo: FeatureRepo, entities: int, batch: int) -> float:
    """In-process cost of merging and laying out one entity's vector (microseconds)."""

    async def read(ids: list[str]) -> ViewsSnapshot:
        client = aioredis.Redis(port=redis_port)
        try:
            return await FeatureStore(client, "lfp").read([selection.views_request(ids)])
        finally:
            await client.aclose()

    selection = select(repo, SERVICE)
    ids = [f"bench_{i}" for i in random.Random(1).sample(range(entities), batch)]
    snapshot = asyncio.run(read(ids))
    assert all(isinstance(v, EntityViews) for v in snapshot.entities)
    now = int(time.time() * 1000)
    rounds = 20
    started = time.perf_counter()
    for _ in range(rounds):
        build_vectors(selection, snapshot, ids, now)
    return (time.perf_counter() - started) / (rounds * batch) * 1e6


@contextmanager
def server(args: list[str], env: dict[str, str], port: int, cwd: Path) -> Iterator[None]:
    process = subprocess.Popen(
        [
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
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/docs", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise SystemExit(f"server {args[0]} did not start") from None
                time.sleep(0.2)
        yield
    finally:
        process.terminate()
        process.wait(10)


def wrk(url: str, script: str, connections: int, seconds: int) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", handle.name, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    os.unlink(handle.name)

    def ms(label: str) -> float:
        value, unit = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": ms("50"),
        "p99": ms("99"),
        "errors": float(errors.group(1)) if errors else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entities", type=int, default=10_000)
    parser.add_argument("--events-per-entity", type=int, default=40)
    parser.add_argument("--concurrency", default="1,8,32,64")
    parser.add_argument("--seconds", type=int, default=10, help="wrk duration per level")
    parser.add_argument("--batch", type=int, default=10, help="entities per request, batch row")
    args = parser.parse_args()
    for tool in ("wrk", "redis-server"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: run make install (it apt-installs {tool})")
    repo = FeatureRepo.from_module("demo.feature_repo")
    n_features = len(select(repo, SERVICE).refs)
    workdir = Path(tempfile.mkdtemp(prefix="lfp-bench-"))
    redis_port, api_port, ceiling_port = free_port(), free_port(), free_port()
    redis_process = subprocess.Popen(
        ["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(port=redis_port)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        load_views(client, repo, args.entities, args.events_per_entity)
        merge_one = merge_cost_us(redis_port, repo, args.entities, 1)
        merge_batch = merge_cost_us(redis_port, repo, args.entities, 100)
        tiles_key = KeySpace("lfp").speed_tiles("user_browsing", "")
        (workdir / "ceiling_app.py").write_text(CEILING_APP % tiles_key)
        env = {
            **os.environ,
            "LFP_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "PYTHONPATH": os.pathsep.join([str(workdir), os.getcwd()]),
        }
        last = args.entities - 1
        one = f"'\"bench_' .. math.random(0, {last}) .. '\"'"
        many = " .. ',' .. ".join([one] * args.batch)
        results: list[tuple[str, int, dict[str, float]]] = []
        levels = [int(c) for c in args.concurrency.split(",")]
        ceiling_url = f"http://127.0.0.1:{ceiling_port}"
        api_url = f"http://127.0.0.1:{api_port}"
        api = ["--factory", "serving_layer.app:create_app"]
        # Both servers up at once and measured back to back per level, so drift in the
        # machine's load hits both sides alike.
        with (
            server(["ceiling_app:app"], env, ceiling_port, workdir),
            server(api, env, api_port, Path.cwd()),
        ):
            for c in levels:
                results.append(
                    ("ceiling: 1 HGETALL", c, wrk(ceiling_url, CEILING_LUA % last, c, args.seconds))
                )
                script = VECTOR_LUA % (SERVICE, one)
                results.append(("vector, 1 entity", c, wrk(api_url, script, c, args.seconds)))
                script = VECTOR_LUA % (SERVICE, many)
                results.append(
                    (f"vector, {args.batch} entities", c, wrk(api_url, script, c, args.seconds))
                )
    finally:
        redis_process.terminate()
        redis_process.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)

    table = Table(title=f"{args.entities} entities x {n_features} features, {os.cpu_count()} cores")
    for column in ("endpoint", "connections", "RPS", "p50 ms", "p99 ms", "non-2xx", "vs ceiling"):
        table.add_column(column, justify="right")
    ceiling = {c: r["rps"] for name, c, r in results if name.startswith("ceiling")}
    for name, c, r in results:
        ratio = "" if name.startswith("ceiling") else f"{r['rps'] / ceiling[c]:.0%}"
        table.add_row(
            name,
            str(c),
            f"{r['rps']:.0f}",
            f"{r['p50']:.2f}",
            f"{r['p99']:.2f}",
            f"{r['errors']:.0f}",
            ratio,
        )
    console.print(table)
    console.print(
        f"merge + layout per entity: {merge_one:.0f} us (1 per call), "
        f"{merge_batch:.0f} us (100 per call)"
    )
    ours = {c: r["rps"] for name, c, r in results if name == "vector, 1 entity"}
    worst = min(ours[c] / ceiling[c] for c in levels)
    console.print(f"ratio (vector, 1 entity / ceiling), worst level: {worst:.0%} (target >= 70%)")


if __name__ == "__main__":
    main()
