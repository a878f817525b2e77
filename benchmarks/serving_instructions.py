"""Instructions per request: our vector endpoint vs. the one-HGETALL ceiling, deterministic.

Timings on a shared machine move by 30% between runs, so a 3% change cannot be seen in
RPS. This benchmark (`make bench-serving-ir`) runs each server under valgrind's callgrind
and counts the instructions the server process executes per request: the same views and
servers as `make bench-serving`, the same request sequence each run, repeatable to about
1%. Use it to judge a change to the serving path; use `make bench-serving` for throughput.
The vector is counted without and with five derived features (``user_features`` and
``user_features_derived``, see benchmarks.derived_repo): their ratio is what computing
derived features costs (issue 29's target: at most 10% more).
Needs valgrind (make install apt-installs it); each server takes about half a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import subprocess
import time
from pathlib import Path

import httpx
from rich.console import Console

from benchmarks.serving import BENCH_REPO, DERIVED_SERVICE, SERVICE, bench_views, free_port, server
from feature_core.definitions import FeatureRepo
from feature_core.windows import FINEST_HOP_MS

console = Console()


async def drive(url: str, paths: list[tuple[str, bytes | None]], connections: int) -> None:
    """Send every request (POST when it has a body), ``connections`` at a time."""
    queue = iter(paths)
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:

        async def worker() -> None:
            for path, body in queue:
                if body is None:
                    response = await client.get(path)
                else:
                    response = await client.post(
                        path, content=body, headers={"content-type": "application/json"}
                    )
                response.raise_for_status()

        await asyncio.gather(*(worker() for _ in range(connections)))


def callgrind(pid: int, *command: str) -> None:
    subprocess.run(["callgrind_control", *command, str(pid)], check=True, capture_output=True)


def instructions_per_request(
    name: str,
    app: list[str],
    env: dict[str, str],
    cwd: Path,
    requests: list[tuple[str, bytes | None]],
    connections: int,
) -> float:
    """Warm the server up uncounted with every request once (so a cache holds what the
    requests read), then count the instructions of ``requests``.

    The merge's memos hold one 5-minute step (FINEST_HOP_MS): a counted pass that crosses
    into the next would merge every entity's batch view again, as if nothing were cached
    (about +80% instructions). So when the step would end before the counted pass does,
    the server is warmed up again at the start of the next step."""
    port = free_port()
    out = cwd / f"callgrind.{name}"
    valgrind = ["valgrind", "-q", "--tool=callgrind", "--instr-atstart=no"]
    valgrind.append(f"--callgrind-out-file={out}")
    with server(app, env, port, cwd, prefix=valgrind, startup_s=300) as process:
        url = f"http://127.0.0.1:{port}"
        for _ in range(2):
            started = time.monotonic()
            asyncio.run(drive(url, requests, connections))
            took = time.monotonic() - started
            left = (FINEST_HOP_MS - time.time() * 1000 % FINEST_HOP_MS) / 1000
            if left > 3 * took + 5:  # the counted pass (instrumented: slower) ends in it
                break
            console.print(f"{name}: {left:.0f} s to the next 5-minute step: waiting for it")
            time.sleep(left + 1)
        callgrind(process.pid, "--zero")
        callgrind(process.pid, "--instr=on")
        asyncio.run(drive(url, requests, connections))
        callgrind(process.pid, "--instr=off")
        callgrind(process.pid, "--dump")
    total = 0
    for dump in cwd.glob(f"callgrind.{name}*"):
        for line in dump.read_text(errors="replace").splitlines():
            if line.startswith("totals:"):  # the dump's cost; "summary:" may read 0
                total += int(line.split()[1])
                break
    return total / len(requests)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entities", type=int, default=10_000)
    parser.add_argument("--events-per-entity", type=int, default=40)
    parser.add_argument("--requests", type=int, default=400, help="counted requests per server")
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    for tool in ("valgrind", "callgrind_control", "redis-server"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: run make install (it apt-installs valgrind)")
    repo = FeatureRepo.from_module(BENCH_REPO)
    rng = random.Random(7)  # the same entities, in the same order, every run
    entities = [f"bench_{rng.randrange(args.entities)}" for _ in range(args.requests)]
    categories = [f"c{rng.randrange(20)}" for _ in range(args.requests)]
    vector_body = '{"feature_service":"%s","entities":["%s"]}'
    derived_body = '{"feature_service":"%s","entities":["%s"],"context":{"bench_category":"%s"}}'
    with bench_views(repo, args.entities, args.events_per_entity) as (_, workdir, env, _):
        ceiling = instructions_per_request(
            "ceiling",
            ["ceiling_app:app"],
            env,
            workdir,
            [(f"/ceiling/{e}", None) for e in entities],
            args.connections,
        )
        vector_requests = [
            ("/v1/features", (vector_body % (SERVICE, e)).encode()) for e in entities
        ]
        app = ["--factory", "serving_layer.app:create_app"]
        vector = instructions_per_request(
            "vector", app, env, workdir, vector_requests, args.connections
        )
        derived_requests = [
            ("/v1/features", (derived_body % (DERIVED_SERVICE, e, k)).encode())
            for e, k in zip(entities, categories, strict=True)
        ]
        derived = instructions_per_request(
            "derived", app, env, workdir, derived_requests, args.connections
        )
        uncached = instructions_per_request(
            "uncached",
            app,
            {**env, "LFP_API_BATCH_CACHE_ENTRIES": "0"},
            workdir,
            vector_requests,
            args.connections,
        )
    console.print(f"ceiling (one HGETALL): {ceiling / 1000:,.0f}k instructions per request")
    for label, count in [
        ("batch views cached", vector),
        ("+ 5 derived features, batch views cached", derived),
        ("batch cache off", uncached),
    ]:
        console.print(
            f"POST /v1/features, 1 entity, {label}: {count / 1000:,.0f}k instructions per "
            f"request; ratio ceiling / vector {ceiling / count:.0%} (RPS target >= 70%)"
        )
    console.print(
        f"derived features: {derived / vector:.1%} of the vector's instructions without them "
        "(target <= 110%)"
    )


if __name__ == "__main__":
    main()
