"""Status files: what services write is what the supervisor and `lfp probe` accept."""

import json
import time

from typer.testing import CliRunner

from infra.cli import app
from runtime.status import status_problem, write_status


def test_a_fresh_status_is_healthy_and_required_values_are_checked(tmp_path):
    path = tmp_path / "speed.json"
    write_status(path, job_state="JobStatus.RUNNING")
    assert status_problem(path) is None
    assert status_problem(path, require={"job_state": "RUNNING"}) is None
    assert "want 'FAILED'" in status_problem(path, require={"job_state": "FAILED"})
    assert not (tmp_path / "speed.tmp").exists()


def test_stale_or_unreadable_statuses_are_unhealthy(tmp_path):
    path = tmp_path / "ingest.json"
    assert "cannot read" in status_problem(path)
    path.write_text(json.dumps({"heartbeat": time.time() - 60}))
    assert "heartbeat 60s old" in status_problem(path)
    path.write_text("{half")
    assert "cannot read" in status_problem(path)


def test_probe_status_uses_the_same_rules(tmp_path):
    path = tmp_path / "speed.json"
    write_status(path, job_state="JobStatus.RUNNING")
    runner = CliRunner()
    ok = runner.invoke(app, ["probe", "status", str(path), "--require", "job_state=RUNNING"])
    assert ok.exit_code == 0 and "healthy" in ok.output
    bad = runner.invoke(app, ["probe", "status", str(path), "--require", "job_state=FAILED"])
    assert bad.exit_code == 1 and "unhealthy" in bad.output
