"""Point-in-time training sets at scale: `make bench-training` (self-contained).

For each lake size (``--events``), writes a shop lake of that many events over ``--days``
days straight to Delta (users and items drawn from a Zipf distribution, so a few keys hold
a large share: the hottest user about 18% of the events at the default exponent), then:

- computes the batch view of that lake (Spark, into a private redis-server): the ceiling
  the training sets are compared with;
- for each spine size (``--rows``), builds the training set of ``--service`` for a spine
  of ``(user_id, timestamp, label)`` rows over the last 30 days, users drawn from the same
  distribution, and writes it to Parquet.

Prints the time of each and the ratio to the batch view's time. One round per cell (the
big cells take minutes); ``--rounds`` for more, medians printed.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from deltalake import write_deltalake

from batch_layer.job import run_batch
from batch_layer.spark import spark_session
from batch_layer.training import build_training_set, write_training_set
from feature_core.definitions import FeatureRepo
from feature_core.settings import Settings
from feature_core.sources import EVENT_DATE, KAFKA_OFFSET, KAFKA_PARTITION
from feature_core.windows import DAY_MS
from infra.stack import free_port

EVENT_TYPES = np.array(["view", "click", "purchase"])
CATEGORIES = np.array([f"c{i}" for i in range(20)])


def zipf_ids(rng: np.random.Generator, n: int, universe: int, exponent: float) -> np.ndarray:
    return (rng.zipf(exponent, n) - 1) % universe


def shop_table(
    rng: np.random.Generator, first_id: int, times: np.ndarray, users: int, exponent: float
) -> pa.Table:
    """Shop events at ``times`` (ids from ``e{first_id}``), in the lake's columns; records
    written straight to the lake carry no Kafka position (partition and offset -1)."""
    n = len(times)
    kinds = EVENT_TYPES[rng.choice(3, n, p=[0.7, 0.2, 0.1])]
    amounts = np.where(kinds == "purchase", np.round(rng.uniform(1, 300, n), 2), np.nan)
    prices = np.where(kinds == "add_to_cart", np.round(rng.uniform(1, 300, n), 2), np.nan)
    user = zipf_ids(rng, n, users, exponent)
    item = zipf_ids(rng, n, 10_000, exponent)
    dates = (times // DAY_MS).astype("datetime64[D]").astype(str)
    return pa.table(
        {
            "event_id": pa.array([f"e{first_id + i}" for i in range(n)]),
            "user_id": pa.array(np.char.add("u", user.astype(str))),
            "event_type": pa.array(kinds),
            "event_time": pa.array(times, pa.int64()),
            "item_id": pa.array(np.char.add("i", item.astype(str))),
            "category": pa.array(CATEGORIES[rng.integers(0, 20, n)]),
            "amount": pa.array(amounts, pa.float64(), from_pandas=True),
            "price": pa.array(prices, pa.float64(), from_pandas=True),
            EVENT_DATE: pa.array(dates),
            KAFKA_PARTITION: pa.array(np.full(n, -1, np.int32)),
            KAFKA_OFFSET: pa.array(np.full(n, -1, np.int64)),
        }
    )


def write_lake(uri: str, events: int, users: int, days: int, exponent: float, now: int) -> None:
    rng = np.random.default_rng(7)
    chunk = 1_000_000
    for start in range(0, events, chunk):
        n = min(chunk, events - start)
        times = now - rng.integers(1, days * DAY_MS, n)
        table = shop_table(rng, start, times, users, exponent)
        write_deltalake(uri, table, mode="append", partition_by=[EVENT_DATE])


def spine_frame(spark, rows: int, users: int, exponent: float, now: int):
    rng = np.random.default_rng(11)
    user = zipf_ids(rng, rows, users, exponent)
    times = now - rng.integers(0, 30 * DAY_MS, rows)
    data = list(
        zip(
            np.char.add("u", user.astype(str)).tolist(),
            times.tolist(),
            rng.integers(0, 2, rows).tolist(),
            strict=True,
        )
    )
    return spark.createDataFrame(data, "user_id STRING, timestamp BIGINT, label INT")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", default="1000000,10000000")
    parser.add_argument("--rows", default="5000,50000,500000")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--zipf", type=float, default=1.2, help="Zipf exponent of the keys")
    parser.add_argument("--service", default="user_features")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    repo = FeatureRepo.from_module("demo.feature_repo")
    service = repo.service(args.service)
    work = Path(tempfile.mkdtemp(prefix="lfp-bench-training-"))
    port = free_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    now = int(time.time() * 1000)
    try:
        settings = Settings(
            _env_file=None,
            data_dir=work,
            lake_uri=str(work / "lake"),
            redis_url=f"redis://127.0.0.1:{port}/0",
            feature_repo="demo.feature_repo",
        )
        spark = spark_session(settings, "lfp-bench-training")
        print(
            f"service {service.name}: {len(service.features)} features; {args.users:,} users, "
            f"Zipf {args.zipf}; {args.days} days; Spark {settings.spark_master}, driver "
            f"{settings.spark_driver_memory}"
        )
        print(f"{'events':>11} {'spine rows':>10} {'seconds':>8} {'batch view s':>12} {'ratio':>6}")
        for events in (int(e) for e in args.events.split(",")):
            shutil.rmtree(work / "lake", ignore_errors=True)
            uri = settings.table_uri("raw_events")
            t0 = time.monotonic()
            write_lake(uri, events, args.users, args.days, args.zipf, now)
            print(f"# wrote {events:,} events in {time.monotonic() - t0:.0f} s", flush=True)
            batch = []
            for _ in range(args.rounds):
                t0 = time.monotonic()
                run_batch(spark, settings, repo, now)
                batch.append(time.monotonic() - t0)
            batch_s = statistics.median(batch)
            for rows in (int(r) for r in args.rows.split(",")):
                spine = spine_frame(spark, rows, args.users, args.zipf, now)
                took = []
                for _ in range(args.rounds):
                    t0 = time.monotonic()
                    frame = build_training_set(spark, settings, repo, service, spine)
                    written = write_training_set(frame, str(work / "out"), "parquet")
                    took.append(time.monotonic() - t0)
                    assert written == rows, (written, rows)
                seconds = statistics.median(took)
                print(
                    f"{events:>11,} {rows:>10,} {seconds:>8.1f} {batch_s:>12.1f} "
                    f"{seconds / batch_s:>6.2f}",
                    flush=True,
                )
        spark.stop()
    finally:
        redis.terminate()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
