"""The supervisor's start-up errors: each says which service, what state, and the end of
its log, so a failure on a machine nobody can log into still says why."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from infra.stack import Paths, running_supervisor, start_supervisor, stop_supervisor

PYTHON = sys.executable


def _supervisor_command(tmp_path: Path, services: str) -> list[str]:
    """A supervisor process over ``services`` (Python source of a list of Service)."""
    script = tmp_path / "supervise.py"
    root = str(tmp_path / "root")
    script.write_text(
        "import sys\n"
        "from pathlib import Path\n"
        "from infra.stack import Paths, Service, Supervisor\n"
        "PYTHON = sys.executable\n"
        f"services = {services}\n"
        f"sys.exit(Supervisor(Paths(Path({root!r})), services).run())\n"
    )
    return [PYTHON, str(script)]


def _start(tmp_path: Path, command: list[str], timeout_s: float = 60.0) -> dict:
    return start_supervisor(Paths(tmp_path / "root"), command, {}, "test set", "stop it", timeout_s)


def test_a_supervisor_that_dies_at_once_is_reported_with_its_output(tmp_path) -> None:
    command = [PYTHON, "-c", "import sys; print('no such setting: LFP_X'); sys.exit(3)"]
    started = time.monotonic()
    with pytest.raises(RuntimeError) as error:
        _start(tmp_path, command)
    message = str(error.value)
    assert "supervisor exited (code 3)" in message
    assert "no such setting: LFP_X" in message
    assert time.monotonic() - started < 30  # not the whole start timeout


def test_a_service_that_exits_is_named_with_the_end_of_its_log(tmp_path) -> None:
    exits = "print('Fatal: cannot bind'); raise SystemExit(1)"
    services = f"""[Service("redis-1", [PYTHON, "-c", "{exits}"], lambda: False)]"""
    logs = tmp_path / "root" / "logs"
    logs.mkdir(parents=True)
    (logs / "redis-1.log").write_text("Caused by: an earlier start's failure\n" * 3)
    with pytest.raises(RuntimeError) as error:
        _start(tmp_path, _supervisor_command(tmp_path, services))
    message = str(error.value)
    assert message.startswith("redis-1 failed to start")
    assert "Fatal: cannot bind" in message
    assert "earlier start" not in message  # only this start's lines
    assert running_supervisor(Paths(tmp_path / "root")) is None


def test_a_slow_start_says_which_services_are_still_starting(tmp_path) -> None:
    services = """[
        Service("quick", [PYTHON, "-c", "import time; time.sleep(60)"], lambda: True),
        Service(
            "slow",
            [PYTHON, "-u", "-c", "print('loading 1 of 9'); import time; time.sleep(60)"],
            lambda: False, start_timeout_s=120),
    ]"""
    with pytest.raises(RuntimeError) as error:
        _start(tmp_path, _supervisor_command(tmp_path, services), timeout_s=20)
    message = str(error.value)
    assert "not healthy after 20 s (slow starting)" in message
    assert "loading 1 of 9" in message
    assert running_supervisor(Paths(tmp_path / "root")) is None


def test_a_stack_trace_is_shown_with_the_cause_far_above_its_end(tmp_path) -> None:
    trace = [
        "Caused by: java.net.UnknownHostException: vm: Name or service not known",
        *(f"\tat org.example.Frame{n}(Frame.java:{n})" for n in range(30)),
    ]
    script = f"print({chr(10).join(trace)!r}); raise SystemExit(1)"
    services = f"""[Service("flink-taskmanager-1", [PYTHON, "-c", {script!r}], lambda: False)]"""
    with pytest.raises(RuntimeError) as error:
        _start(tmp_path, _supervisor_command(tmp_path, services))
    message = str(error.value)
    assert "UnknownHostException: vm: Name or service not known" in message
    assert "Frame29" in message and "Frame5" not in message


def test_an_overlapping_service_is_awaited_after_the_ones_started_next(tmp_path) -> None:
    """``overlaps``: the next services start without waiting for it (here it becomes
    healthy only once the next one has started); both end up healthy."""
    marker = tmp_path / "second-started"
    second = f"open({str(marker)!r}, 'w').close(); import time; time.sleep(60)"
    services = f"""[
        Service(
            "first",
            [PYTHON, "-c", "import time; time.sleep(60)"],
            lambda: Path({str(marker)!r}).exists(),
            start_timeout_s=30,
            overlaps=True,
        ),
        Service("second", [PYTHON, "-c", {second!r}], lambda: True),
    ]"""
    paths = Paths(tmp_path / "root")
    try:
        state = _start(tmp_path, _supervisor_command(tmp_path, services))
        assert {n: s["state"] for n, s in state["services"].items()} == {
            "first": "healthy",
            "second": "healthy",
        }
    finally:
        stop_supervisor(paths)
    assert running_supervisor(paths) is None
