"""What feature statistics add to a batch run (self-contained):
``.venv/bin/python -m benchmarks.feature_stats``.

Writes the demo's lake (``make demo``'s 30,000 history events over 7 days, straight to
Delta) and, with ``--events``, a larger shop lake (benchmarks.training's generator), then
runs the batch job over each into a private redis-server, alternating
``LFP_FEATURE_STATS_SAMPLE=0`` (no statistics) with the given sample, ``--rounds`` times
each (the first run with statistics estimates the groups' entities, later ones read the
previous record's). Prints the median run time of each, every round's, the driver's
summarizing time (its log line) and the record's size in the journal.
"""

from __future__ import annotations

import argparse
import logging
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from redis import Redis

from batch_layer.job import run_batch
from batch_layer.lake import append_backfill
from batch_layer.spark import spark_session
from benchmarks.training import write_lake
from demo.feature_repo import events as shop_events
from demo.generator import Shop, encode
from feature_core.definitions import FeatureRepo
from feature_core.journals import Journal
from feature_core.settings import Settings
from feature_core.windows import DAY_MS, align_cutoff
from infra.stack import free_port
from online_store import open_store


class _StatsSeconds(logging.Handler):
    """Keeps the statistics' times from the batch job's log lines: the entity estimate
    (first run), the task time spent sampling, the driver's summarizing."""

    def __init__(self) -> None:
        super().__init__()
        self.clear()

    def clear(self) -> None:
        self.estimate: list[float] = []
        self.sampling: list[float] = []
        self.summarizing: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        found = re.search(
            r"sampled in ([0-9.]+) s of task time, summarized in ([0-9.]+) s", message
        )
        if found:
            self.sampling.append(float(found.group(1)))
            self.summarizing.append(float(found.group(2)))
        found = re.search(r"estimated for the feature statistics' sample in ([0-9.]+) s", message)
        if found:
            self.estimate.append(float(found.group(1)))


def demo_lake(settings: Settings, now: int) -> None:
    events = Shop().history(30_000, now - 7 * DAY_MS, now)
    uri = settings.table_uri(shop_events.table_name)
    append_backfill(uri, shop_events, (shop_events.parse(encode(e)) for e in events))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sample", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--events", type=int, default=0, help="also a lake this large")
    parser.add_argument("--users", type=int, default=100_000)
    args = parser.parse_args()
    repo = FeatureRepo.from_module("demo.feature_repo")
    work = Path(tempfile.mkdtemp(prefix="lfp-bench-stats-"))
    port = free_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    handler = _StatsSeconds()
    logging.getLogger("batch_layer.job").addHandler(handler)
    logging.getLogger("batch_layer.job").setLevel(logging.INFO)
    now = align_cutoff(int(time.time() * 1000))
    try:
        base = Settings(
            _env_file=None,
            data_dir=work,
            lake_uri=str(work / "lake"),
            redis_url=f"redis://127.0.0.1:{port}/0",
            redis_password_file="/dev/null",
            feature_repo="demo.feature_repo",
        )
        spark = spark_session(base, "lfp-bench-feature-stats")
        lakes = [("demo (30,000 events)", lambda: demo_lake(base, now))]
        if args.events:
            lakes.append(
                (
                    f"{args.events:,} events, {args.users:,} users",
                    lambda: write_lake(
                        base.table_uri("raw_events"), args.events, args.users, 30, 1.1, now
                    ),
                )
            )
        for label, write in lakes:
            shutil.rmtree(work / "lake", ignore_errors=True)
            # An empty Redis: the first run with statistics estimates the entities.
            Redis(host="127.0.0.1", port=port, socket_timeout=10).flushall()
            write()
            run_batch(spark, base.model_copy(update={"feature_stats_sample": 0}), repo, now)
            off, on = [], []
            handler.clear()
            entities = 0
            for _ in range(args.rounds):
                for sample, took in ((0, off), (args.sample, on)):
                    settings = base.model_copy(update={"feature_stats_sample": sample})
                    t0 = time.monotonic()
                    result = run_batch(spark, settings, repo, now)
                    took.append(time.monotonic() - t0)
                    entities = result.entities_written
            store = open_store(base)
            sizes = [len(r) for r in store.journal(Journal.FEATURE_STATS, limit=1)]
            store.close()
            print(
                f"{label}: {entities:,} entities over {len(repo.groups)} groups; batch run "
                f"median {statistics.median(off):.1f} s without statistics, "
                f"{statistics.median(on):.1f} s with (sample {args.sample:,}); rounds "
                f"{' '.join(f'{t:.1f}' for t in off)} / {' '.join(f'{t:.1f}' for t in on)} s; "
                f"estimate (first run) {' '.join(f'{t:.1f}' for t in handler.estimate)} s; "
                f"sampling {statistics.median(handler.sampling):.2f} s of task time; "
                f"summarizing {statistics.median(handler.summarizing):.2f} s; "
                f"record {sizes[0] / 1024:.0f} KiB",
                flush=True,
            )
    finally:
        redis.terminate()
        redis.wait(10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
