"""`lfp stack status` and `lfp cluster status` stay readable at 80 columns: a real
supervisor over stand-in processes named as the stack's services, the consumers' lags in
their status files and a crash loop published to a real redis-server with the store's
API, as the services would."""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from feature_core.settings import Settings
from infra.cli.stack import lag_lines, print_status
from infra.stack import Paths, start_supervisor, stop_supervisor
from online_store import open_store
from runtime.health import ConsumerHealth
from runtime.status import write_status
from tests.infra.cli.terminal import assert_readable, header_of, lfp, row_of

#: The session stack's services and topics (the demo and the fraud example at once).
SERVICES = [
    ("broker", "healthy", 51593),
    ("redis", "healthy", 36911),
    ("topics", "done", None),
    ("lake-ingest", "unhealthy", None),
    ("speed-job", "healthy", None),
    ("batch-scheduler", "healthy", None),
    ("api", "healthy", 50917),
]
TOPICS = ("account-logins", "card-transactions", "events")
CLUSTER = ["redis-cluster", "spark-master", "spark-worker", "flink-jobmanager"]
CLUSTER += ["flink-taskmanager-1", "flink-taskmanager-2"]


def test_status_without_a_stack_says_how_to_start_one(tmp_path, monkeypatch):
    monkeypatch.setenv("LFP_DATA_DIR", str(tmp_path))
    result = lfp("stack", "status")
    assert result.exit_code == 1
    assert "no stack running (start it with `make up`)" in result.output
    assert "error" not in result.output


def test_down_without_a_stack_is_harmless(tmp_path, monkeypatch):
    monkeypatch.setenv("LFP_DATA_DIR", str(tmp_path))
    result = lfp("stack", "down")
    assert result.exit_code == 0 and "no stack was running" in result.output


def test_a_consumer_that_is_not_consuming_is_marked_and_the_table_fits_80_columns():
    state = {
        "services": {
            name: {"state": s, "pid": 27670 + i, "port": port, "restarts": 17 * (i == 3)}
            for i, (name, s, port) in enumerate(SERVICES)
        }
    }
    lags = {
        "lake-ingest": dict(zip(TOPICS, (123_456, 7, 0), strict=True)),
        "speed-job": dict.fromkeys(TOPICS, 12),
    }
    problems = {"lake-ingest": "lake-ingest is crash-looping: it restarted 4 times ..."}
    console = Console(file=io.StringIO(), width=80, color_system=None, soft_wrap=True)
    print_status(console, state, lags, problems)
    for line in lag_lines(lags):  # as `stack status` prints them
        console.print(line, soft_wrap=False, markup=False, highlight=False)
    text = console.file.getvalue()
    assert_readable(text)
    assert " ".join(header_of(text)) == "service state pid port restarts records behind"
    ingest = row_of(text, "lake-ingest")
    assert "unhealthy !" in ingest and "17" in ingest and "123,463" in ingest, text
    assert "!" not in row_of(text, "speed-job") and "36" in row_of(text, "speed-job"), text
    flat = " ".join(text.split())
    assert "lake-ingest behind: account-logins 123,456; card-transactions 7; events 0" in flat
    assert "speed-job behind: account-logins 12; card-transactions 12; events 12" in flat


def _supervise(root: Path, names: list[str], ports: dict[str, int]) -> None:
    """A real supervisor over stand-in processes (sleeping, healthy at once)."""
    services = ", ".join(
        f"Service({name!r}, [PYTHON, '-c', 'import time; time.sleep(600)'], lambda: True, "
        f"port={ports.get(name)!r})"
        for name in names
    )
    script = root.parent / f"supervise-{root.name}.py"
    script.write_text(
        "import sys\n"
        "from pathlib import Path\n"
        "from infra.stack import Paths, Service, Supervisor\n"
        "PYTHON = sys.executable\n"
        f"sys.exit(Supervisor(Paths(Path({str(root)!r})), [{services}]).run())\n"
    )
    start_supervisor(Paths(root), [sys.executable, str(script)], {}, "test", "stop", 60)


@pytest.fixture
def running_stack(tmp_path, redis_process, monkeypatch) -> Iterator[Settings]:
    url = f"redis://127.0.0.1:{redis_process.port}/0"
    monkeypatch.setenv("LFP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LFP_REDIS_URL", url)
    settings = Settings(_env_file=None, data_dir=tmp_path, redis_url=url)
    ports = {"broker": 51593, "redis": redis_process.port, "api": 50917}
    _supervise(tmp_path, [name for name, _, _ in SERVICES], ports)
    try:
        yield settings
    finally:
        stop_supervisor(Paths(tmp_path))


def test_stack_status_at_80_columns(running_stack):
    settings = running_stack
    paths = Paths(settings.data_dir)
    lag = dict(zip(TOPICS, (1_234_567, 7, 0), strict=True))
    write_status(paths.status_file("lake-ingest"), lag=lag)  # as lake ingest's heartbeat
    now = int(time.time() * 1000)
    crash_loop = ConsumerHealth(  # started 5 times in the last minute
        "speed-job", starts_ms=tuple(now - 10_000 * n for n in range(5, 0, -1)), at_ms=now
    )
    store = open_store(settings)
    store.publish_health("speed-job", crash_loop.to_json())
    store.close()
    run = {"run_id": "77aa88bb99cc", "trigger": "schedule", "started_at": 1.0, "age_s": 4321.5}
    error = "Redis timed out after 2 s writing the view (LFP_BATCH_REDIS_TIMEOUT_S) " * 2
    write_status(
        paths.status_file("batch-scheduler"), current_run={**run, "attempts": 2, "error": error}
    )

    result = lfp("stack", "status")
    assert result.exit_code == 0, result.output
    out = result.output
    assert_readable(out)
    assert " ".join(header_of(out)) == "service state pid port restarts records behind"
    for name, _, _ in SERVICES:
        assert name in row_of(out, name)
    assert "1,234,574" in row_of(out, "lake-ingest")
    assert "!" in row_of(out, "speed-job") and "!" not in row_of(out, "lake-ingest")
    flat = " ".join(out.split())
    assert "lake-ingest behind: account-logins 1,234,567; card-transactions 7; events 0" in flat
    assert "speed-job is crash-looping: it restarted 4 times in the last minute" in flat
    assert "batch run 77aa88bb99cc (schedule) running for 4322 s, attempt 2; last error: " in flat
    assert " ".join(error.split()) in flat

    narrow = lfp("stack", "status", columns=40)
    assert narrow.exit_code == 0, narrow.output
    assert_readable(narrow.output, 40)
    assert {"service", "state"} <= set(header_of(narrow.output))
    assert "lfp stack status --wide adds" in " ".join(narrow.output.split())
    wide = lfp("stack", "status", "--wide", columns=40)
    assert " ".join(header_of(wide.output)) == "service state pid port restarts records behind"
    assert "…" not in wide.output


def test_cluster_status_at_80_columns(tmp_path, monkeypatch):
    monkeypatch.setenv("LFP_DATA_DIR", str(tmp_path))
    root = tmp_path / "cluster"  # infra.cluster.cluster_paths
    _supervise(root, CLUSTER, {"redis-cluster": 17001, "spark-master": 7077})
    try:
        result = lfp("cluster", "status")
        assert result.exit_code == 0, result.output
        assert_readable(result.output)
        assert " ".join(header_of(result.output)) == "service state pid port restarts"
        for name in CLUSTER:
            assert "healthy" in row_of(result.output, name)
        assert "7077" in row_of(result.output, "spark-master")
        narrow = lfp("cluster", "status", columns=30)
        assert_readable(narrow.output, 30)
        assert "lfp cluster status --wide adds" in " ".join(narrow.output.split())
        wide = lfp("cluster", "status", "--wide", columns=30)
        assert " ".join(header_of(wide.output)) == "service state pid port restarts"
    finally:
        stop_supervisor(Paths(root))
