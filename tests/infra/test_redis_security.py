"""The Redis servers the platform starts (the embedded stack's, the local cluster's
nodes) require the generated password, which never appears on a command line, and cap
their memory without evicting views."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
import redis
import yaml

from feature_core.settings import Settings
from infra.cluster import cluster_services
from infra.stack import ensure_redis_password, free_port, services
from tests.conftest import wait_for


@pytest.fixture(autouse=True)
def _password_file_by_default(monkeypatch):
    """The platform's default (tests/conftest.py turns the password file off)."""
    monkeypatch.delenv("LFP_REDIS_PASSWORD_FILE", raising=False)


def _stack_settings(tmp_path, **values) -> Settings:
    ensure_redis_password(Settings(_env_file=None, data_dir=tmp_path, **values))
    return Settings(_env_file=None, data_dir=tmp_path, **values)


def _redis_commands(settings: Settings) -> list[list[str]]:
    found = [s.command for s in services(settings) if s.name == "redis"]
    found += [s.command for s in cluster_services(settings) if s.name.startswith("redis-")]
    found = [c for c in found if c[0] == "redis-server"]
    assert len(found) == 1 + len(settings.cluster_redis_ports)
    return found


def test_no_password_on_any_command_line_and_memory_capped(tmp_path):
    settings = _stack_settings(tmp_path, redis_maxmemory="300mb")
    password = settings.redis_password
    assert password and password in settings.redis_url
    for command in _redis_commands(settings):
        assert not any(password in arg for arg in command)
        config = command[1]  # read first: requirepass, off the command line
        assert stat.S_IMODE((tmp_path / "secrets" / "redis-auth.conf").stat().st_mode) == 0o600
        assert config == str((tmp_path / "secrets" / "redis-auth.conf").resolve())
        assert f'requirepass "{password}"' in Path(config).read_text()
        at = command.index("--maxmemory")
        assert command[at + 1] == "300mb"
        assert command[command.index("--maxmemory-policy") + 1] == "noeviction"


def test_a_password_in_the_url_is_the_one_required(tmp_path):
    settings = _stack_settings(tmp_path, redis_url="redis://:chosen@127.0.0.1:16379/0")
    assert not (tmp_path / "secrets" / "redis-password").exists()
    for command in _redis_commands(settings):
        assert 'requirepass "chosen"' in Path(command[1]).read_text()


def test_the_embedded_redis_refuses_clients_without_the_password(tmp_path):
    port = free_port()
    settings = _stack_settings(
        tmp_path, redis_url=f"redis://127.0.0.1:{port}/0", redis_maxmemory="64mb"
    )
    command = next(s.command for s in services(settings) if s.name == "redis")
    (tmp_path / "redis").mkdir()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        client = redis.Redis.from_url(settings.redis_url, socket_timeout=2)

        def pings() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        wait_for(pings, 20, "the embedded redis-server")
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=port, socket_timeout=2).ping()
        memory = client.config_get("maxmemory*")
        assert memory["maxmemory"] == str(64 * 1024 * 1024)
        assert memory["maxmemory-policy"] == "noeviction"
        # What ps shows: no password.
        shown = subprocess.run(
            ["ps", "-ww", "-o", "args=", "-p", str(process.pid)], capture_output=True, text=True
        ).stdout
        assert settings.redis_password not in shown
        # Full: writes are refused, nothing is evicted.
        client.set("kept", b"x")
        with pytest.raises(redis.ResponseError, match="maxmemory"):
            for n in range(200):
                client.set(f"big:{n}", b"x" * (1 << 20))
        assert client.get("kept") == b"x"
    finally:
        process.terminate()
        process.wait(10)


def test_compose_redis_caps_memory_without_eviction():
    compose = yaml.safe_load((Path(__file__).parents[2] / "docker-compose.yml").read_text())
    command = compose["services"]["redis"]["command"][-1]
    assert '--maxmemory "${LFP_REDIS_MAXMEMORY:-2gb}"' in command
    assert "--maxmemory-policy noeviction" in command


def test_a_wrong_password_is_one_line_naming_where_it_comes_from(redis_process, monkeypatch):
    from typer.testing import CliRunner

    from infra.cli import app

    redis.Redis(host="127.0.0.1", port=redis_process.port).config_set("requirepass", "right")
    url = f"redis://:wrong-one@127.0.0.1:{redis_process.port}/0"
    monkeypatch.setenv("LFP_REDIS_URL", url)
    monkeypatch.setenv("COLUMNS", "300")
    result = CliRunner().invoke(app, ["batch", "history"])
    assert result.exit_code == 1, result.output
    assert "Redis refused the password" in result.output
    assert "LFP_REDIS_PASSWORD_FILE" in result.output
    assert "wrong-one" not in result.output and "Traceback" not in result.output


def test_a_temporary_stack_hands_its_password_in_the_url_only(tmp_path, monkeypatch):
    """While a test's stack runs, its password is in LFP_REDIS_URL and no password file is
    read: settings built meanwhile for another Redis (a test's own) send none."""
    from infra import stack

    started: list[Settings] = []
    monkeypatch.setattr(stack, "up", started.append)  # the processes are not the point
    monkeypatch.setattr(stack, "down", lambda settings: True)
    monkeypatch.setenv("LFP_REDIS_PASSWORD_FILE", "/elsewhere")
    with stack.temporary_stack(tmp_path) as settings:
        password = (tmp_path / "secrets" / "redis-password").read_text().strip()
        assert settings.redis_password == password == started[0].redis_password
        assert os.environ["LFP_REDIS_URL"] == settings.redis_url
        other = Settings(_env_file=None, redis_url="redis://127.0.0.1:1/0")
        assert other.redis_password is None
    assert os.environ["LFP_REDIS_PASSWORD_FILE"] == "/elsewhere"
