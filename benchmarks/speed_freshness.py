"""Speed-layer freshness and throughput against a running stack (`make up` first).

Produces background load at ``--rate`` events/s for ``--seconds``; every half second a probe
event for a fresh user is produced and the API polled until it shows it. Prints the
produce -> visible latency distribution, and what the speed job and lake ingest kept up with.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
import uuid

import httpx
import orjson
import redis

from batch_layer.lake import count_rows
from demo.feature_repo import events as shop
from feature_core.keys import KeySpace
from feature_core.settings import get_settings
from runtime.kafka import producer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=int, default=5000, help="background events per second")
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--users", type=int, default=2000)
    args = parser.parse_args()
    settings = get_settings()
    keys = KeySpace(settings.key_prefix)
    client = redis.Redis.from_url(settings.redis_url)
    api = httpx.Client(base_url=settings.api_url, timeout=5)
    api.get("/healthz").raise_for_status()

    def ok_events() -> int:
        return int(client.hget(keys.speed_stats, f"{shop.name}.ok_events") or 0)

    lake_uri = settings.table_uri(shop.table_name)
    lake_before, speed_before = count_rows(lake_uri), ok_events()
    stop = threading.Event()
    sent = [0]

    def load() -> None:
        out = producer(settings)
        start = time.monotonic()
        while not stop.is_set():
            due = int((time.monotonic() - start) * args.rate)
            now = int(time.time() * 1000)
            for _ in range(due - sent[0]):
                event = {
                    "event_id": uuid.uuid4().hex,
                    "user_id": f"bench_{sent[0] % args.users}",
                    "event_type": "view",
                    "event_time": now,
                }
                out.send(shop.topic_name, orjson.dumps(event))
                sent[0] += 1
            time.sleep(0.01)
        out.flush()
        out.close()

    loader = threading.Thread(target=load)
    loader.start()
    probe_out = producer(settings)
    latencies = []
    started = time.monotonic()
    while time.monotonic() - started < args.seconds:
        user = f"probe_{uuid.uuid4().hex[:10]}"
        event = {
            "event_id": uuid.uuid4().hex,
            "user_id": user,
            "event_type": "view",
            "event_time": int(time.time() * 1000),
        }
        t0 = time.monotonic()
        probe_out.send(shop.topic_name, orjson.dumps(event))
        probe_out.flush()
        while time.monotonic() - t0 < 30:
            body = api.get(f"/v1/features/user_activity/{user}").json()
            if body["features"]["event_count_lifetime"] >= 1:
                latencies.append(time.monotonic() - t0)
                break
            time.sleep(0.02)
        time.sleep(max(0.0, 0.5 - (time.monotonic() - t0)))
    stop.set()
    loader.join()
    elapsed = time.monotonic() - started
    deadline = time.monotonic() + 120
    while ok_events() - speed_before < sent[0] and time.monotonic() < deadline:
        time.sleep(0.5)
    drain = time.monotonic() - started
    speed_done = ok_events() - speed_before
    lake_done = count_rows(lake_uri) - lake_before
    latencies.sort()
    print(f"background load: {sent[0]} events in {elapsed:.1f}s = {sent[0] / elapsed:,.0f} ev/s")
    print(
        f"probes: {len(latencies)}  produce->visible p50 {statistics.median(latencies):.2f}s "
        f"p95 {latencies[int(0.95 * (len(latencies) - 1))]:.2f}s max {latencies[-1]:.2f}s"
    )
    print(
        f"speed job counted {speed_done} events by {drain:.1f}s "
        f"({speed_done / drain:,.0f} ev/s sustained)"
    )
    print(f"lake ingest wrote {lake_done} rows by {drain:.1f}s")


if __name__ == "__main__":
    main()
