"""Secrets: one redaction rule for printed URLs, a generated password kept private, and
settings whose Redis URL carries the password wherever they go."""

from __future__ import annotations

import os
import pickle
import stat

import pytest
from hypothesis import given
from hypothesis import strategies as st

from feature_core.credentials import (
    REDIS_PASSWORD_FILE,
    ensure_secret,
    redact_url,
    redis_tls_options,
    with_password,
)
from feature_core.settings import Settings


@pytest.fixture(autouse=True)
def _password_file_by_default(monkeypatch):
    """The platform's default (tests/conftest.py turns the password file off)."""
    monkeypatch.delenv("LFP_REDIS_PASSWORD_FILE", raising=False)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://user:s3cret@host:6379/0", "redis://user:***@host:6379/0"),
        ("rediss://:p%40ss@[::1]:6380/0?ssl_ca_certs=/ca.pem", "rediss://:***@[::1]:6380/0?ssl_ca_certs=/ca.pem"),
        ("redis://:a@b@host/0", "redis://:***@host/0"),
        ("redis://:ab/cd+ef@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://:pa#ss@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://:pa?ss@host/0", "redis://:***@host/0"),
        ("redis://host:6379/0", "redis://host:6379/0"),
        ("redis://user@host:6379/0", "redis://user@host:6379/0"),
        ("not a url", "not a url"),
        ("/a/path", "/a/path"),
    ],
)  # fmt: skip
def test_a_url_is_printed_without_its_password(url, shown):
    assert redact_url(url) == shown


_PASSWORDS = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30)


@given(password=_PASSWORDS)
def test_no_password_survives_redaction(password):
    url = with_password("redis://127.0.0.1:16379/0", password)
    shown = redact_url(url)
    assert shown == "redis://:***@127.0.0.1:16379/0"


@given(password=_PASSWORDS)
def test_no_unescaped_password_survives_redaction(password):
    """A password pasted into LFP_REDIS_URL as it is (a base64 one holds '/' and '+')."""
    url = f"redis://:{password}@127.0.0.1:16379/0"
    assert redact_url(url) == "redis://:***@127.0.0.1:16379/0"


def test_the_secret_is_generated_once_private_and_reused(tmp_path):
    path = tmp_path / "data" / REDIS_PASSWORD_FILE
    first = ensure_secret(path)
    assert first and len(first) >= 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert ensure_secret(path) == first
    empty = tmp_path / "none"
    empty.write_text("")
    assert ensure_secret(empty) is None  # an empty file means: no password


def test_settings_take_the_password_file_when_the_url_has_none(tmp_path):
    password = ensure_secret(tmp_path / REDIS_PASSWORD_FILE)
    settings = Settings(_env_file=None, data_dir=tmp_path)
    assert settings.redis_url == f"redis://:{password}@127.0.0.1:16379/0"
    assert settings.redis_password == password
    # Resolved once: a pickled copy (a Spark executor's) needs no file, whatever its cwd.
    assert pickle.loads(pickle.dumps(settings)).redis_url == settings.redis_url
    own = Settings(_env_file=None, data_dir=tmp_path, redis_url="redis://:mine@h:1/0")
    assert own.redis_password == "mine"
    none = Settings(_env_file=None, data_dir=tmp_path, redis_password_file=os.devnull)
    assert none.redis_password is None
    other = tmp_path / "elsewhere"
    other.write_text("from-a-file\n")
    assert Settings(_env_file=None, redis_password_file=other).redis_password == "from-a-file"


def test_rediss_urls_check_certificates_and_host_names():
    assert redis_tls_options("redis://h:1/0") == {}
    assert redis_tls_options("rediss://h:1/0") == {
        "ssl_cert_reqs": "required",
        "ssl_check_hostname": True,
    }


def test_lfp_config_masks_every_secret(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from infra.cli import app

    password = ensure_secret(tmp_path / REDIS_PASSWORD_FILE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LFP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LFP_API_TOKEN", "api-token-value")
    monkeypatch.setenv("LFP_KAFKA_SASL_PASSWORD", "kafka-sasl-value")
    monkeypatch.setenv("COLUMNS", "400")
    result = CliRunner().invoke(app, ["config"])
    assert result.exit_code == 0, result.output
    for secret in (password, "api-token-value", "kafka-sasl-value"):
        assert secret not in result.output
    assert "redis://:***@127.0.0.1:16379/0" in result.output
