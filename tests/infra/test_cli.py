"""The CLI answers operational failures with one actionable line, never a traceback."""

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


def test_status_without_a_stack_says_how_to_start_one(tmp_path, monkeypatch):
    monkeypatch.setenv("LFP_DATA_DIR", str(tmp_path))
    result = runner.invoke(app, ["stack", "status"])
    assert result.exit_code == 1
    assert "no stack running (start it with `make up`)" in result.output
    assert "error" not in result.output


def test_down_without_a_stack_is_harmless(tmp_path, monkeypatch):
    monkeypatch.setenv("LFP_DATA_DIR", str(tmp_path))
    result = runner.invoke(app, ["stack", "down"])
    assert result.exit_code == 0 and "no stack was running" in result.output


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


def test_validate_and_list_show_the_demo_features(monkeypatch):
    monkeypatch.setenv("LFP_FEATURE_REPO", "demo.feature_repo")
    assert runner.invoke(app, ["features", "validate"]).exit_code == 0
    listed = runner.invoke(app, ["features", "list"], env={"COLUMNS": "200"})
    assert "purchase_amount_sum_1h" in listed.output
