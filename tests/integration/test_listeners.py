"""Loopback by default: no process of the embedded stack (``make up``) listens beyond
loopback. The broker, Redis, the API, the speed job's Flink mini-cluster and its Python
workers, the scheduler's Spark driver and its Python workers: every listening socket of
every process the stack's supervisor started is on 127.0.0.0/8 or ::1."""

from __future__ import annotations

import psutil
import pytest

from infra.stack import read_state, service_state
from tests.conftest import StackHandle, wait_for
from tests.integration.listeners import listeners, supervised_processes, table

pytestmark = pytest.mark.integration


def _tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def _cmdlines(pid: int) -> str:
    lines = []
    for process in _tree(pid):
        try:
            lines.append(" ".join(process.cmdline()))
        except psutil.NoSuchProcess:
            continue
    return "\n".join(lines)


def test_every_listener_of_the_embedded_stack_is_on_loopback(stack: StackHandle) -> None:
    if stack.kind != "embedded":
        pytest.skip("Compose's processes run in containers: see the Compose checks")
    settings = stack.settings
    for service in ("speed-job", "batch-scheduler", "api", "lake-ingest"):
        wait_for(lambda s=service: stack.service_healthy(s), 180, f"{service} healthy")
    # The parts that start late are there: the mini-cluster's JVM with its Python UDF
    # workers, and the scheduler's Spark driver (its session opens at start-up).
    speed = service_state(settings, "speed-job")["pid"]
    wait_for(
        lambda: "org.apache.flink" in _cmdlines(speed) or "pyflink" in _cmdlines(speed),
        120,
        "the speed job's Flink JVM",
    )
    wait_for(
        lambda: "pyflink.fn_execution" in _cmdlines(speed),
        120,
        "the speed job's Python UDF workers",
    )
    scheduler = service_state(settings, "batch-scheduler")["pid"]
    wait_for(lambda: "spark" in _cmdlines(scheduler), 120, "the scheduler's Spark driver")

    processes = supervised_processes(read_state(settings))
    found = listeners(processes)
    print(f"{len(processes)} processes, listeners:\n{table(found)}")
    ports = {item.port for item in found}
    # The check sees the sockets: the ports the settings name are among them.
    assert {settings.broker_port, settings.redis_port, settings.api_port} <= ports, table(found)
    beyond = [item for item in found if not item.loopback]
    assert not beyond, "listening beyond loopback:\n" + table(beyond)
