"""A consumer that is not consuming makes the stack not ready: lake ingest paused (SIGSTOP)
while records arrive makes /readyz answer 503 naming it and why, `lfp stack status` says
the same (at 80 columns), and both recover once it resumes (SIGCONT)."""

from __future__ import annotations

import os
import signal
import time
import uuid

import httpx
import pytest
from typer.testing import CliRunner

from tests.conftest import wait_for
from tests.integration.helpers import make_event, produce, wait_in_lake

pytestmark = pytest.mark.integration

REASON = "lake-ingest has not reported for"


def _ingest_problems(api: str) -> list[str]:
    body = httpx.get(f"{api}/readyz", timeout=10).json()
    return [p for p in body["problems"] if p.startswith("lake-ingest")]


def test_a_paused_lake_ingest_makes_the_api_not_ready_until_it_resumes(stack) -> None:
    if stack.kind != "embedded":
        pytest.skip("pauses a process of the embedded stack")
    from infra import stack as embedded
    from infra.cli import app

    settings = stack.settings
    api = settings.api_url
    wait_for(lambda: stack.service_healthy("lake-ingest"), 120, "lake ingest healthy")
    wait_for(lambda: not _ingest_problems(api), 180, "lake ingest judged consuming")
    prefix = f"paused-{uuid.uuid4().hex[:8]}-"
    pid = embedded.service_state(settings, "lake-ingest")["pid"]
    os.killpg(pid, signal.SIGSTOP)
    try:
        sent = 0

        def stalled() -> bool:
            nonlocal sent
            produce(settings, [make_event(f"{prefix}{sent}", int(time.time() * 1000))])
            sent += 1
            return any(p.startswith(REASON) for p in _ingest_problems(api))

        wait_for(stalled, settings.consumer_stall_s + 90, "/readyz to name lake ingest", 2)
        ready = httpx.get(f"{api}/readyz", timeout=10)
        assert ready.status_code == 503
        (why,) = [p for p in ready.json()["problems"] if p.startswith("lake-ingest")]
        assert "LFP_CONSUMER_STALL_S" in why and "hung, paused" in why
        status = CliRunner().invoke(app, ["stack", "status"], env={"COLUMNS": "80"})
        assert status.exit_code == 0, status.output
        assert all(len(line) <= 80 for line in status.output.splitlines()), status.output
        assert REASON in " ".join(status.output.split()), status.output
        ingest_row = status.output.split("lake-ingest")[1].splitlines()[0]
        assert "!" in ingest_row, status.output
    finally:
        os.killpg(pid, signal.SIGCONT)
    wait_for(lambda: not _ingest_problems(api), 120, "lake ingest judged consuming again")
    wait_in_lake(settings, prefix, sent)  # what arrived meanwhile reached the lake
    assert embedded.service_state(settings, "lake-ingest")["pid"] == pid  # resumed, not restarted
