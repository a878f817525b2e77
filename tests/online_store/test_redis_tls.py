"""``rediss://`` checks the server: its certificate must chain to a trusted CA and name
the host connected to, in the Python clients and in the JVM tile sink alike. A real
redis-server speaks TLS with a certificate for ``localhost`` only; ``127.0.0.1`` is the
same server under a name its certificate does not hold."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
import redis

from feature_core.credentials import redact_url
from feature_core.settings import Settings
from infra.stack import free_port
from online_store import open_store
from online_store.redis_standalone.reader import connect
from speed_layer.functions import udf_jar
from tests.conftest import wait_for
from tests.speed_layer.jvm_harness import JavaHarness

PASSWORD = "tls-test-password"


@dataclass
class TlsRedis:
    port: int
    ca: Path

    def url(self, host: str, ca: Path | None = None) -> str:
        return f"rediss://:{PASSWORD}@{host}:{self.port}/0?ssl_ca_certs={ca or self.ca}"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _certificates(root: Path) -> None:
    """A CA, and a server certificate it signs for DNS name ``localhost`` only; another
    CA, which signed nothing this server holds."""
    for name, subject in (("ca", "/CN=lfp test CA"), ("other", "/CN=other CA")):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                 "-keyout", f"{name}.key", "-out", f"{name}.pem", "-subj", subject,
                 cwd=root)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
             "-out", "server.csr", "-subj", "/CN=localhost", cwd=root)  # fmt: skip
    (root / "san.ext").write_text("subjectAltName=DNS:localhost\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "2", "-out", "server.pem",
             "-extfile", "san.ext", cwd=root)  # fmt: skip


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsRedis]:
    for tool in ("openssl", "redis-server"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} not installed: run make install")
    root = tmp_path_factory.mktemp("tls")
    _certificates(root)
    server = TlsRedis(free_port(), root / "ca.pem")
    config = root / "redis.conf"  # the password off the command line, as the stack does
    config.write_text(f'requirepass "{PASSWORD}"\n')
    process = subprocess.Popen(
        ["redis-server", str(config), "--port", "0", "--tls-port", str(server.port),
         "--bind", "127.0.0.1", "--tls-cert-file", str(root / "server.pem"),
         "--tls-key-file", str(root / "server.key"), "--tls-ca-cert-file", str(server.ca),
         "--tls-auth-clients", "no", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip

    def answers() -> bool:
        try:
            return bool(redis.Redis.from_url(server.url("localhost"), socket_timeout=2).ping())
        except redis.RedisError:
            return process.poll() is not None  # exited: fail below, not after the wait

    wait_for(answers, 20, "redis-server with TLS", 0.1)
    assert process.poll() is None, "redis-server with TLS exited: is it built with TLS?"
    yield server
    process.terminate()
    process.wait(10)


def _settings(url: str) -> Settings:
    return Settings(_env_file=None, redis_url=url, redis_password_file=os.devnull)


def test_the_store_connects_to_the_name_the_certificate_holds(tls_redis):
    store = open_store(_settings(tls_redis.url("localhost")), timeout_s=5)
    try:
        assert store.ping()
    finally:
        store.close()


def test_the_store_refuses_a_certificate_for_another_host_name(tls_redis):
    store = open_store(_settings(tls_redis.url("127.0.0.1")), timeout_s=5)
    try:
        with pytest.raises(redis.ConnectionError, match=r"(?i)hostname|IP address mismatch"):
            store.ping()
    finally:
        store.close()


def test_the_store_refuses_a_certificate_of_an_untrusted_ca(tls_redis):
    other = tls_redis.ca.with_name("other.pem")
    store = open_store(_settings(tls_redis.url("localhost", other)), timeout_s=5)
    try:
        with pytest.raises(redis.ConnectionError, match=r"(?i)certificate verify failed"):
            store.ping()
    finally:
        store.close()


def test_the_api_reader_checks_the_host_name_too(tls_redis):
    async def ping(url: str) -> bool:
        client = connect(_settings(url))
        try:
            return bool(await client.ping())
        finally:
            await client.aclose()

    assert asyncio.run(ping(tls_redis.url("localhost")))
    with pytest.raises(redis.ConnectionError, match=r"(?i)hostname|IP address mismatch"):
        asyncio.run(ping(tls_redis.url("127.0.0.1")))


@pytest.fixture(scope="module")
def sink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JavaHarness]:
    running = JavaHarness(udf_jar(tmp_path_factory.mktemp("jvm")), "lfp.speed.TileSink")
    yield running
    running.close()


def _ask(sink: JavaHarness, *request: str) -> str:
    return orjson.loads(sink.ask(orjson.dumps(list(request))))


def test_the_jvm_sink_sets_endpoint_identification_on_its_tls_sockets(sink):
    assert _ask(sink, "tls") == "HTTPS"


def test_the_jvm_sink_connects_to_the_name_the_certificate_holds(sink, tls_redis):
    assert _ask(sink, "ping", tls_redis.url("localhost")) == "PONG"


def test_the_jvm_sink_refuses_a_certificate_for_another_host_name(sink, tls_redis):
    reply = _ask(sink, "ping", tls_redis.url("127.0.0.1"))
    assert "SSLHandshakeException" in reply and "PONG" not in reply
    assert PASSWORD not in reply


def test_the_jvm_sink_refuses_a_certificate_of_an_untrusted_ca(sink, tls_redis):
    reply = _ask(sink, "ping", tls_redis.url("localhost", tls_redis.ca.with_name("other.pem")))
    assert "SSLHandshakeException" in reply and "PONG" not in reply


@pytest.mark.parametrize(
    "url",
    [
        "redis://:s3cret@host:6379/0",
        "redis://user:s3cret@host:6379/0",
        "rediss://:p%40ss@[::1]:6380/0?ssl_ca_certs=/ca.pem",
        "redis://:a@b@host/0",
        "redis://:ab/cd+ef@host:6379/0",
        "redis://:pa#ss@host:6379/0",
        "redis://host:6379/0",
        "redis://user@host:6379/0",
        "not a url",
    ],
)
def test_the_jvm_redacts_urls_as_python_does(sink, url):
    assert _ask(sink, "redact", url) == redact_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://:s3cret-pw@host:6379/0",  # a scheme the sink does not speak
        "redis://:s3cret-pw has spaces@host:6379/0",  # not a URL Java parses
        "redis://:s3cret-pw@host:6379/zero",  # no database number
    ],
)
def test_jvm_url_errors_never_print_the_password(sink, url):
    reply = _ask(sink, "ping", url)
    assert "LFP_REDIS_URL" in reply and "***" in reply
    assert "s3cret-pw" not in reply
