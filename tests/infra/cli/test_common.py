"""The CLI answers operational failures with one actionable line, never a traceback
(infra.cli.common.friendly_errors, load_repo)."""

import socket

import pytest
from typer.testing import CliRunner

from feature_core.settings import FEATURE_REPO_UNSET
from infra.cli import app

runner = CliRunner()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_generate_with_no_broker_explains_the_fix(monkeypatch):
    monkeypatch.setenv("LFP_FEATURE_REPO", "demo.feature_repo")
    monkeypatch.setenv("LFP_KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("LFP_KAFKA_CONNECT_TIMEOUT_S", "2")
    result = runner.invoke(app, ["generate", "--rate", "5", "--duration", "1"])
    assert result.exit_code == 1
    assert "no Kafka broker at" in result.output and "make up" in result.output
    assert "Traceback" not in result.output


def test_invalid_feature_repo_is_reported_by_validate(monkeypatch):
    monkeypatch.setenv("LFP_FEATURE_REPO", "no_such_module")
    result = runner.invoke(app, ["features", "validate"])
    assert result.exit_code == 1 and "LFP_FEATURE_REPO" in result.output


def test_bad_settings_are_reported_not_raised(monkeypatch):
    monkeypatch.setenv("LFP_BATCH_SCHEDULE", "every minute")
    result = runner.invoke(app, ["features", "validate"])
    assert result.exit_code == 2 and "5-field crontab" in result.output


@pytest.mark.parametrize("command", [["features", "validate"], ["stack", "up"], ["batch", "run"]])
def test_a_command_needing_the_feature_repo_says_how_to_set_it(monkeypatch, tmp_path, command):
    monkeypatch.delenv("LFP_FEATURE_REPO", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env here
    result = runner.invoke(app, command)
    assert result.exit_code == 1
    assert result.output.strip() == f"error: {FEATURE_REPO_UNSET}"  # one line, no traceback


def test_redis_unreachable_is_one_line_naming_the_fix(monkeypatch):
    monkeypatch.setenv("LFP_REDIS_URL", f"redis://127.0.0.1:{_closed_port()}/0")
    result = runner.invoke(app, ["batch", "history"])
    assert result.exit_code == 1
    assert result.output.startswith("error: Redis unreachable") and "make up" in result.output
    assert "Traceback" not in result.output
