"""Kafka's security settings reach every client: kafka-python's (through one options
function, which every construction in the code base uses), Flink's Kafka connector (its
DDL) and librdkafka's; the SASL password is never in what is printed."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

import runtime.kafka as kafka_module
from demo.feature_repo import events
from feature_core.settings import Settings
from runtime.kafka import (
    client_options,
    flink_properties,
    librdkafka_options,
    redact_flink,
)
from speed_layer.sql import source_ddl

ROOT = Path(__file__).resolve().parents[2]
SECRET = 'pa"ss\\word-123'


def _sasl_ssl(tmp_path: Path) -> Settings:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    return Settings(
        _env_file=None,
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="lfp",
        kafka_sasl_password=SECRET,
        kafka_ssl_cafile=ca,
    )


def test_plaintext_is_the_default_with_nothing_else():
    options = client_options(Settings(_env_file=None))
    assert options == {
        "bootstrap_servers": "127.0.0.1:19092",
        "security_protocol": "PLAINTEXT",
    }
    assert flink_properties(Settings(_env_file=None)) == {
        "properties.security.protocol": "PLAINTEXT"
    }


def test_kafka_python_options_carry_sasl_and_tls(tmp_path):
    settings = _sasl_ssl(tmp_path)
    options = client_options(settings)
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert options["sasl_plain_username"] == "lfp"
    assert options["sasl_plain_password"] == SECRET
    assert options["ssl_cafile"] == str(tmp_path / "ca.pem")
    assert options["ssl_check_hostname"] is True
    relaxed = settings.model_copy(update={"kafka_ssl_check_hostname": False})
    assert client_options(relaxed)["ssl_check_hostname"] is False


class _Recorder:
    """Stands in for a kafka-python class: records the options it is built with."""

    built: list[tuple[str, dict[str, Any]]] = []

    def __init__(self, **options: Any) -> None:
        _Recorder.built.append((type(self).__name__, options))


def test_every_factory_builds_its_client_with_the_options(tmp_path, monkeypatch):
    classes = {
        name: type(name, (_Recorder,), {})
        for name in ("KafkaConsumer", "KafkaProducer", "KafkaAdminClient")
    }
    for name, cls in classes.items():
        monkeypatch.setattr(kafka_module, name, cls)
    _Recorder.built = []
    settings = _sasl_ssl(tmp_path)
    kafka_module.consumer(settings, enable_auto_commit=False)
    kafka_module.producer(settings, linger_ms=0)
    kafka_module.admin_client(settings)
    assert [name for name, _ in _Recorder.built] == list(classes)
    for _, options in _Recorder.built:
        assert options["security_protocol"] == "SASL_SSL"
        assert options["sasl_plain_password"] == SECRET
        assert options["ssl_cafile"] == str(tmp_path / "ca.pem")


_CLIENTS = {"KafkaConsumer", "KafkaProducer", "KafkaAdminClient"}


def _constructions(path: Path) -> list[tuple[int, ast.Call]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if name in _CLIENTS:
                found.append((node.lineno, node))
    return found


def test_no_kafka_python_client_is_built_without_the_options():
    """Outside runtime/kafka.py's factories, a client is built only with
    ``**client_options(settings)``: a new one that forgets SASL/TLS fails here."""
    missing = []
    for folder in ("batch_layer", "speed_layer", "serving_layer", "runtime", "infra",
                   "online_store", "demo", "benchmarks", "tests"):  # fmt: skip
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == ROOT / "runtime" / "kafka.py" or path == Path(__file__):
                continue
            for line, call in _constructions(path):
                spread = [k.value for k in call.keywords if k.arg is None]
                if not any(
                    isinstance(v, ast.Call) and getattr(v.func, "id", "") == "client_options"
                    for v in spread
                ):
                    missing.append(f"{path.relative_to(ROOT)}:{line}")
    assert missing == []


def test_the_flink_source_gets_the_same_settings(tmp_path):
    settings = _sasl_ssl(tmp_path)
    ddl = source_ddl(settings, events)
    assert "'properties.security.protocol' = 'SASL_SSL'" in ddl
    assert "'properties.sasl.mechanism' = 'SCRAM-SHA-512'" in ddl
    assert "org.apache.kafka.common.security.scram.ScramLoginModule required" in ddl
    assert 'username="lfp"' in ddl
    assert "'properties.ssl.truststore.type' = 'PEM'" in ddl
    assert f"'properties.ssl.truststore.location' = '{tmp_path / 'ca.pem'}'" in ddl
    assert "'properties.ssl.endpoint.identification.algorithm' = 'https'" in ddl
    # The JAAS value escapes the password's quote and backslash; SQL doubles quotes.
    jaas = flink_properties(settings)["properties.sasl.jaas.config"]
    assert jaas.endswith('password="pa\\"ss\\\\word-123";')


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256"])
def test_the_login_module_follows_the_mechanism(tmp_path, mechanism):
    settings = _sasl_ssl(tmp_path).model_copy(update={"kafka_sasl_mechanism": mechanism})
    jaas = flink_properties(settings)["properties.sasl.jaas.config"]
    module = "plain.PlainLoginModule" if mechanism == "PLAIN" else "scram.ScramLoginModule"
    assert jaas.startswith(f"org.apache.kafka.common.security.{module} required")


def test_a_printed_ddl_or_setting_never_holds_the_password(tmp_path):
    settings = _sasl_ssl(tmp_path)
    ddl = source_ddl(settings, events)
    assert "pa" in ddl and SECRET.split('"')[0] + '\\"' in ddl  # it is in the DDL itself
    shown = redact_flink(ddl, settings)
    assert "ss\\\\word" not in shown and "***" in shown
    assert SECRET not in repr(settings) and SECRET not in str(settings.kafka_sasl_password)


def test_librdkafka_options_match(tmp_path):
    options = librdkafka_options(_sasl_ssl(tmp_path))
    assert options["security.protocol"] == "SASL_SSL"
    assert options["sasl.mechanism"] == "SCRAM-SHA-512"
    assert options["sasl.username"] == "lfp" and options["sasl.password"] == SECRET
    assert options["ssl.ca.location"] == str(tmp_path / "ca.pem")
    assert options["ssl.endpoint.identification.algorithm"] == "https"


def test_sasl_without_credentials_is_one_clear_error():
    settings = Settings(_env_file=None, kafka_security_protocol="SASL_PLAINTEXT")
    for build in (client_options, flink_properties, librdkafka_options):
        with pytest.raises(RuntimeError, match="needs LFP_KAFKA_SASL_USERNAME and LFP_KAFKA_SASL"):
            build(settings)
