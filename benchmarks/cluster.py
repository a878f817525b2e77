"""Serving from Redis Cluster against one Redis server, and the speed job at parallelism
1 and 2 on the Flink session cluster: `make bench-cluster` (``ARGS="--speed"`` for the
second, on a stack running on the cluster: `lfp cluster up`, its exports, `make up`).

The same views (the serving benchmark's: ``--entities`` users, the ``user_features``
service) are loaded into a private redis-server and into a private three-master Redis
Cluster; two APIs, one on each (``LFP_ONLINE_STORE``), run side by side, and each round
measures both with wrk back to back, for 1 and ``--batch`` entities per request at each
concurrency. Prints RPS and p99 (medians of rounds) and the ratio cluster / one server,
each round's ratio taken within the round.

On one machine the three masters share its cores with the API and wrk: the ratio shows
the cost of the cluster's read (two round trips when the cache is cold or the view
switched, one pipelined per node otherwise), not the capacity a cluster adds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from threading import Event

import redis
from redis.cluster import RedisCluster
from rich.console import Console
from rich.table import Table

from benchmarks.serving import (
    SERVICE,
    VECTOR_LUA,
    load_views,
    server,
    warm_up,
    wrk,
)
from feature_core.definitions import FeatureRepo
from feature_core.settings import Settings, get_settings
from infra.cluster import form_redis_cluster
from infra.stack import free_port, free_redis_cluster_port

console = Console()


@contextmanager
def redis_servers(root: Path, cluster: bool) -> Iterator[str]:
    """A private redis-server, or three masters formed into a cluster: the URL."""
    ports = [free_redis_cluster_port() for _ in range(3 if cluster else 1)]
    processes = []
    for port in ports:
        command = ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"]
        if cluster:
            (root / str(port)).mkdir(parents=True)
            command += ["--cluster-enabled", "yes", "--dir", str(root / str(port))]
        processes.append(subprocess.Popen(command, stdout=subprocess.DEVNULL))
    try:
        for port in ports:
            client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=30)
            for _ in range(100):
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.05)
        if cluster:
            form_redis_cluster(
                Settings(_env_file=None, cluster_redis_ports=ports, redis_password_file=os.devnull)
            )
        yield f"redis://127.0.0.1:{ports[0]}/0"
    finally:
        for process in processes:
            process.terminate()
            process.wait(10)


def speed(args) -> None:
    """The speed job reading a backlog from the earliest offset on the session cluster, at
    parallelism 1 and 2 in turn (:func:`benchmarks.speed.backlog`), ``--rounds`` times."""
    from benchmarks.speed import backlog, pools, produce_at

    settings = get_settings()
    if settings.speed_target != "remote":
        raise SystemExit("run on the cluster: `lfp cluster up`, its exports, then `make up`")
    repo = FeatureRepo.from_module(settings.feature_repo)
    sent, took = produce_at(
        settings, pools(repo, 10_000), args.backlog_rate, args.backlog_s, Event()
    )
    console.print(f"backlog: {sent:,} records produced in {took:.1f} s")
    rates: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(args.rounds):
        for parallelism in (1, 2):
            records, rate = backlog(settings, repo, parallelism=parallelism)
            rates[parallelism].append(rate)
            console.print(f"parallelism {parallelism}: {records:,} records at {rate:,.0f}/s")
    one, two = (statistics.median(rates[p]) for p in (1, 2))
    table = Table("parallelism", "records/s, median", "rounds")
    for p, median in ((1, one), (2, two)):
        table.add_row(str(p), f"{median:,.0f}", ", ".join(f"{r:,.0f}" for r in rates[p]))
    console.print(table)
    console.print(f"parallelism 2 / 1: {two / one:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--speed", action="store_true", help="the speed job part instead")
    parser.add_argument("--backlog-rate", type=int, default=20_000)
    parser.add_argument("--backlog-s", type=float, default=15.0)
    parser.add_argument("--entities", type=int, default=10_000)
    parser.add_argument("--events-per-entity", type=int, default=40)
    parser.add_argument("--concurrency", default="8,32,64")
    parser.add_argument("--seconds", type=int, default=5, help="wrk duration per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=10, help="entities per request, batch row")
    args = parser.parse_args()
    if args.speed:
        speed(args)
        return
    if shutil.which("wrk") is None or shutil.which("redis-server") is None:
        raise SystemExit("wrk and redis-server are needed: run make install")
    repo = FeatureRepo.from_module("demo.feature_repo")
    root = Path(tempfile.mkdtemp(prefix="lfp-bench-cluster-"))
    last = args.entities - 1
    one = f"'\"bench_' .. math.random(0, {last}) .. '\"'"
    many = " .. ',' .. ".join([one] * args.batch)
    shapes = [("1 entity", VECTOR_LUA % (SERVICE, one))]
    shapes.append((f"{args.batch} entities", VECTOR_LUA % (SERVICE, many)))
    try:
        with (
            redis_servers(root / "one", cluster=False) as one_url,
            redis_servers(root / "cluster", cluster=True) as cluster_url,
        ):
            single = redis.Redis.from_url(one_url, socket_timeout=30)
            load_views(single, repo, args.entities, args.events_per_entity)
            nodes = RedisCluster.from_url(cluster_url, socket_timeout=30)
            load_views(nodes, repo, args.entities, args.events_per_entity)
            stores = {"redis": one_url, "redis-cluster": cluster_url}
            ports = {name: free_port() for name in stores}
            api = ["--factory", "serving_layer.app:create_app"]
            with (
                server(api, _env(one_url, "redis"), ports["redis"], Path.cwd()) as one_api,
                server(
                    api, _env(cluster_url, "redis-cluster"), ports["redis-cluster"], Path.cwd()
                ) as cluster_api,
            ):
                pids = {"redis": one_api.pid, "redis-cluster": cluster_api.pid}
                urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
                for url in urls.values():
                    warm_up(url, args.entities, args.batch)
                report(args, shapes, urls, pids)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _env(url: str, store: str) -> dict[str, str]:
    return {
        **os.environ,
        "LFP_REDIS_URL": url,
        "LFP_REDIS_PASSWORD_FILE": os.devnull,  # its own Redis has no password
        "LFP_ONLINE_STORE": store,
        "LFP_API_ROUTERS": "[]",
    }


def report(args, shapes, urls: dict[str, str], pids: dict[str, int]) -> None:
    table = Table(
        "request",
        "connections",
        "one server RPS",
        "p99 ms",
        "cluster RPS",
        "p99 ms",
        "ratio (rounds)",
    )
    for shape, script in shapes:
        for c in (int(x) for x in args.concurrency.split(",")):
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in urls}
            ratios = []
            for _ in range(args.rounds):
                measured = {
                    name: wrk(url, script, c, args.seconds, pids[name])
                    for name, url in urls.items()
                }
                for name, run in measured.items():
                    runs[name].append(run)
                ratios.append(measured["redis-cluster"]["rps"] / measured["redis"]["rps"])
            one = {k: statistics.median(r[k] for r in runs["redis"]) for k in ("rps", "p99")}
            many = {
                k: statistics.median(r[k] for r in runs["redis-cluster"]) for k in ("rps", "p99")
            }
            table.add_row(
                shape,
                str(c),
                f"{one['rps']:,.0f}",
                f"{one['p99']:.1f}",
                f"{many['rps']:,.0f}",
                f"{many['p99']:.1f}",
                f"{statistics.median(ratios):.2f} ({', '.join(f'{r:.2f}' for r in ratios)})",
            )
    console.print(table)


if __name__ == "__main__":
    main()
