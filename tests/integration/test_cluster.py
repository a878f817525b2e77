"""The thin path on the distributed engines (``lfp cluster up``): events through Kafka, the
batch job on a Spark standalone cluster, the speed job on a Flink session cluster at
parallelism 2 (one slot on each of two TaskManagers), serving from a three-master Redis
Cluster; every served value equals the reference evaluator, also after the speed job was
stopped with a savepoint (and, killed, stopped by its next start) and resumed from it.

Marked ``cluster``: ``make test`` and CI run it; ``-m "not cluster"`` skips it locally.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from feature_core.definitions import FeatureRepo
from feature_core.reference import evaluate
from feature_core.settings import Settings
from feature_core.windows import HOUR_MS, MINUTE_MS, align_cutoff
from infra import cluster
from infra.stack import (
    Paths,
    free_redis_cluster_port,
    port_free,
    read_state,
    service_state,
    temporary_stack,
)
from tests.conftest import wait_for
from tests.integration.helpers import get_features, make_event, produce, wait_in_lake

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

REPO = FeatureRepo.from_module("demo.feature_repo")
USER_GROUPS = [g for g in REPO.groups if g.entity.join_keys == ("user_id",)]


def _free_run(n: int) -> int:
    """The first of ``n`` consecutive free ports."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20_000, 60_000)
        ports = range(base, base + n)
        if all(port_free(p) for p in ports):
            return base
    raise RuntimeError(f"no {n} consecutive free ports")


@pytest.fixture(scope="module")
def on_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    root = tmp_path_factory.mktemp("cluster")
    cluster_env = {
        "LFP_DATA_DIR": str(root / "stack"),
        "LFP_CLUSTER_REDIS_PORTS": json.dumps([free_redis_cluster_port() for _ in range(3)]),
        "LFP_CLUSTER_SPARK_PORT": str(_free_run(3)),
        "LFP_CLUSTER_FLINK_PORT": str(_free_run(2)),
        "LFP_CLUSTER_SPARK_WORKER_MEMORY": "2g",
    }
    saved = {k: os.environ.get(k) for k in cluster_env}
    os.environ.update(cluster_env)
    settings = Settings(_env_file=None)
    try:
        try:
            cluster.up(settings)
        except RuntimeError as error:
            pytest.fail(f"local cluster failed to start: {error}")
        env = {
            **cluster.cluster_settings(settings),
            "LFP_SPEED_PARALLELISM": "2",
            "LFP_FEATURE_REPO": "demo.feature_repo",
            "LFP_BATCH_SCHEDULE": "0 0 1 1 *",  # the test runs the batch job itself
            "LFP_SPEED_CHECKPOINT_INTERVAL_S": "5",
            "LFP_INGEST_POLL_MS": "200",
            "LFP_SPARK_EXECUTOR_MEMORY": "1g",
            "LFP_API_ROUTERS": "[]",
        }
        with temporary_stack(root / "stack", env) as stack_settings:
            yield stack_settings
    finally:
        cluster.down(settings)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _batch_run(settings: Settings, cutoff: int) -> dict:
    """``lfp batch run`` in its own process: its Spark driver talks to the cluster's
    master (this process already has a local session)."""
    result = subprocess.run(
        [sys.executable, "-m", "infra", "batch", "run", "--cutoff-ms", str(cutoff), "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(result.stdout)


def _mismatches(settings: Settings, users: list[str], events: list[dict]) -> list[str]:
    problems = []
    for group in USER_GROUPS:
        for user in users:
            served = get_features(settings, group.name, user)
            own = [e for e in events if e["user_id"] == user]
            expected = evaluate(group, own, served["as_of"]).get(user)
            if expected is None:
                continue
            for name, want in expected.items():
                got = served["features"][name]
                same = (
                    abs(got - want) <= 1e-9 * max(1.0, abs(want))
                    if isinstance(want, float) and got is not None
                    else got == want
                )
                if not same:
                    problems.append(f"{group.name}:{name} {user}: served {got}, reference {want}")
    return problems


def _flink_job(settings: Settings) -> dict:
    base = f"http://{settings.speed_flink_address}"
    jobs = httpx.get(f"{base}/jobs/overview", timeout=5).json()["jobs"]
    (running,) = [j for j in jobs if j["state"] == "RUNNING"]
    return httpx.get(f"{base}/jobs/{running['jid']}", timeout=5).json()


def _restored_from(settings: Settings) -> str | None:
    status = Paths(settings.data_dir).status_file("speed-job")
    try:
        return json.loads(status.read_text()).get("restored_from")
    except (OSError, ValueError):
        return None


def _stop_speed_job(settings: Settings, how: signal.Signals) -> None:
    """Signal the speed job's process; the supervisor starts it again, and it resumes from
    a savepoint of the job it stopped."""
    before = service_state(settings, "speed-job")
    os.killpg(before["pid"], how)
    wait_for(
        lambda: (
            service_state(settings, "speed-job").get("restarts", 0) > before["restarts"]
            and service_state(settings, "speed-job").get("state") == "healthy"
        ),
        240,
        "the speed job back on the cluster",
    )
    restored = _restored_from(settings)
    assert restored is not None and "savepoint" in restored, restored


def test_the_thin_path_on_spark_flink_and_redis_cluster(on_cluster: Settings) -> None:
    settings = on_cluster
    assert settings.online_store == "redis-cluster"
    job = _flink_job(settings)
    parallel = [v for v in job["vertices"] if v["parallelism"] == 2]
    assert parallel, [v["parallelism"] for v in job["vertices"]]
    base = f"http://{settings.speed_flink_address}/jobs/{job['jid']}/vertices"
    hosts = {
        tm["taskmanager-id"]
        for vertex in parallel
        for tm in httpx.get(f"{base}/{vertex['id']}/taskmanagers", timeout=5).json()["taskmanagers"]
    }
    assert len(hosts) == 2  # the parallel tasks run on both TaskManagers

    rng = random.Random(20261202)
    prefix = f"cl-{uuid.uuid4().hex[:6]}-"
    users = [f"{prefix}{i}" for i in range(6)]
    start = int(time.time() * 1000)
    cutoff = align_cutoff(start) - 5 * MINUTE_MS
    kinds = ["view", "click", "add_to_cart", "purchase"]

    def events(lo: int, hi: int, n: int) -> list[dict]:
        made = []
        for _ in range(n):
            kind = rng.choice(kinds)
            amount = round(rng.uniform(1, 100), 2) if kind == "purchase" else None
            made.append(make_event(rng.choice(users), rng.randrange(lo, hi), kind, amount))
        return made

    before = events(cutoff - 3 * HOUR_MS, cutoff, 200)
    after = events(cutoff, start - 1000, 80)
    sent = before + after
    produce(settings, sent)
    wait_in_lake(settings, prefix, len(sent))
    result = _batch_run(settings, cutoff)
    assert result["status"] == "succeeded" and result["entities_written"] > 0
    served = get_features(settings, USER_GROUPS[0].name, users[0])
    assert served["batch_cutoff"] == cutoff
    wait_for(lambda: not _mismatches(settings, users, sent), 180, "served == reference")

    # Stopped with a savepoint (SIGTERM) and resumed: later events are counted once.
    _stop_speed_job(settings, signal.SIGTERM)
    more = events(start, int(time.time() * 1000) - 500, 40)
    produce(settings, more)
    sent += more
    wait_for(lambda: not _mismatches(settings, users, sent), 180, "after a savepoint")

    # Killed: the job outlives its supervisor's process; the next start stops it with a
    # savepoint and resumes from there (never two jobs writing the same tiles).
    _stop_speed_job(settings, signal.SIGKILL)
    assert len(httpx.get(f"http://{settings.speed_flink_address}/jobs/overview").json()["jobs"])
    more = events(start, int(time.time() * 1000) - 500, 40)
    produce(settings, more)
    sent += more
    wait_for(lambda: not _mismatches(settings, users, sent), 180, "after a kill")
    assert _mismatches(settings, users, sent) == []

    # The verifier: the point-in-time engine recomputes them on the Spark cluster.
    verified = subprocess.run(
        [sys.executable, "-m", "infra", "verify", "--settle", "2"]
        + [arg for user in users[:3] for arg in ("--entity", f"user_id={user}")],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert verified.returncode == 0, verified.stdout[-3000:] + verified.stderr[-3000:]
    assert "consistent: 0 of" in verified.stdout


def test_cluster_status_lists_every_part(on_cluster: Settings) -> None:
    from typer.testing import CliRunner

    from infra.cli import app

    result = CliRunner().invoke(app, ["cluster", "status"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for part in ("redis-cluster", "spark-master", "spark-worker", "flink-jobmanager"):
        assert part in result.output
    assert Path(cluster.cluster_paths(on_cluster).root, "flink-conf", "config.yaml").exists()


def test_every_listener_of_the_cluster_and_its_stack_is_on_loopback(on_cluster: Settings) -> None:
    """Loopback by default: the cluster's parts (Redis nodes, Spark master and worker,
    Flink JobManager and TaskManagers with their Python workers) and the stack on it,
    sampled while a batch run's driver and executors are up."""
    from tests.integration.listeners import Listener, listeners, supervised_processes, table

    settings = on_cluster
    cutoff = align_cutoff(int(time.time() * 1000)) - 5 * MINUTE_MS
    command = [sys.executable, "-m", "infra", "batch", "run", "--cutoff-ms", str(cutoff)]
    seen: dict[tuple[int, str, int], Listener] = {}
    commands: set[str] = set()
    log = settings.data_dir / "listeners-batch-run.log"
    with (
        log.open("wb") as out,
        subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT) as run,
    ):
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            processes = supervised_processes(cluster.state(settings))
            processes += supervised_processes(read_state(settings))
            try:
                driver = psutil.Process(run.pid)
                processes += [driver, *driver.children(recursive=True)]
            except psutil.NoSuchProcess:
                pass
            for process in processes:
                try:
                    commands.add(" ".join(process.cmdline()))
                except psutil.Error:
                    continue
            for item in listeners(processes):
                seen[(item.pid, item.address, item.port)] = item
            if run.poll() is not None:
                break
            time.sleep(1)
        if run.poll() is None:
            run.kill()
            pytest.fail("the batch run did not finish in 600 s")
    assert run.returncode == 0, log.read_text(errors="replace")[-3000:]
    everything = "\n".join(commands)
    for part in ("CoarseGrainedExecutorBackend", "TaskManagerRunner", "pyflink.fn_execution"):
        assert part in everything, f"no {part} process was sampled"
    found = list(seen.values())
    print(f"listeners:\n{table(found)}")
    assert {settings.api_port, *settings.cluster_redis_ports} <= {i.port for i in found}
    assert 6066 not in {i.port for i in found}, "the Spark master's REST server is on"
    beyond = [item for item in found if not item.loopback]
    assert not beyond, "listening beyond loopback:\n" + table(beyond)
