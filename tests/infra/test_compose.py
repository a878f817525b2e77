"""docker-compose.yml checked statically (no Docker engine is needed)."""

import os
import re
from pathlib import Path
from urllib.parse import urlparse

import click
import pytest
import typer
import yaml

from feature_core.settings import ENV_PREFIX, Settings
from infra.cli import app

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
PLATFORM = {n: s for n, s in SERVICES.items() if s.get("image") == "lambda-feature-platform:local"}
CLI = typer.main.get_command(app)


def interpolate(value: str) -> str:
    """``value`` as Compose reads it with no variable set: ``${NAME:-default}`` is
    ``default``, ``$$`` a literal ``$``."""
    value = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)
    assert "${" not in value, f"a variable without a default: {value}"
    return value.replace("$$", "$")


def resolve(argv: list[str]) -> click.Command:
    """The CLI command argv names, parsed with its real options (raises if not real)."""
    command: click.Command = CLI
    args = list(argv)
    while isinstance(command, click.Group):
        name = args.pop(0)
        assert name in command.commands, f"{name!r} is not an lfp command"
        command = command.commands[name]
    command.make_context("lfp", args, resilient_parsing=False)
    return command


def test_platform_services_share_one_image_built_from_the_dockerfile():
    assert {"topics", "lake-ingest", "speed-job", "batch-scheduler", "api"} <= set(PLATFORM)
    for service in PLATFORM.values():
        assert service["build"] == "."
    assert (ROOT / "Dockerfile").read_text().count('ENTRYPOINT ["lfp"]') == 1


def test_the_image_copies_every_package_the_wheel_ships():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert [p for p in packages if f"COPY {p} ./{p}" not in dockerfile] == []


@pytest.mark.parametrize("name", sorted(PLATFORM))
def test_every_service_command_is_a_real_cli_command(name):
    resolve(PLATFORM[name]["command"])


@pytest.mark.parametrize("name", sorted(PLATFORM))
def test_healthchecks_use_real_cli_commands(name):
    check = PLATFORM[name].get("healthcheck")
    if PLATFORM[name].get("restart") == "no":
        return  # one-shot
    assert check, f"{name} has no healthcheck"
    test = check["test"]
    assert test[:2] == ["CMD", "lfp"]
    resolve(test[2:])


def test_env_names_are_settings_fields():
    fields = {f"{ENV_PREFIX}{name}".upper() for name in Settings.model_fields}
    for name, service in PLATFORM.items():
        for key in service.get("environment", {}):
            assert key in fields, f"{name}: {key} is not a setting"


def test_urls_and_ports_agree_with_the_services(monkeypatch):
    # The session's embedded stack exports LFP_* for its own ports: judge the defaults.
    for key in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(key)
    for service in PLATFORM.values():
        env = service["environment"]
        settings = Settings(
            **{k[len(ENV_PREFIX) :].lower(): interpolate(v) for k, v in env.items()},
            _env_file=None,
        )
        assert settings.kafka_bootstrap_servers == "kafka:9092"
        assert (
            "PLAINTEXT://kafka:9092"
            in SERVICES["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
        )
        assert urlparse(settings.redis_url).hostname == "redis" and settings.redis_port == 6379
    api_env = SERVICES["api"]["environment"]
    assert SERVICES["api"]["ports"] == [f"{api_env['LFP_API_PORT']}:{api_env['LFP_API_PORT']}"]
    # Host ports match the embedded stack's defaults, so LFP_* defaults work from the host.
    defaults = Settings(_env_file=None)
    assert f"{defaults.broker_port}:19092" in SERVICES["kafka"]["ports"]
    assert f"{defaults.redis_port}:6379" in SERVICES["redis"]["ports"]


def test_dependencies_wait_for_health_or_completion():
    for name, service in SERVICES.items():
        for dep, condition in (service.get("depends_on") or {}).items():
            assert dep in SERVICES, f"{name} depends on unknown {dep}"
            wanted = "service_completed_successfully" if dep == "topics" else "service_healthy"
            assert condition["condition"] == wanted, f"{name} -> {dep}"
            if wanted == "service_healthy":
                assert "healthcheck" in SERVICES[dep], f"{dep} has no healthcheck"


def test_kafka_is_kraft_single_node_with_a_persistent_volume():
    kafka = SERVICES["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert any(v.startswith("kafka-data:") for v in kafka["volumes"])
    assert "kafka-data" in COMPOSE["volumes"]


def test_the_api_requires_a_bearer_token_and_the_demo_sends_it():
    for name in ("api", "demo"):
        assert "LFP_API_TOKEN" in SERVICES[name]["environment"], name
    assert SERVICES["api"]["environment"]["LFP_API_TOKEN"].startswith("${LFP_API_TOKEN")


def test_redis_requires_a_password_that_every_service_sends():
    redis_service = SERVICES["redis"]
    password = interpolate(redis_service["environment"]["REDISCLI_AUTH"])
    assert password
    command = " ".join(redis_service["command"])
    # The server's password is the one redis-cli (the healthcheck) reads from REDISCLI_AUTH.
    assert '--requirepass "$$REDISCLI_AUTH"' in command
    assert redis_service["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    for name, service in SERVICES.items():
        url = service.get("environment", {}).get("LFP_REDIS_URL")
        if url is not None:
            assert urlparse(interpolate(url)).password == password, name
    # The same variable names both, so one value in .env changes them together.
    assert redis_service["environment"]["REDISCLI_AUTH"].startswith("${LFP_REDIS_PASSWORD")
    assert all(
        "${LFP_REDIS_PASSWORD" in s["environment"]["LFP_REDIS_URL"]
        for s in SERVICES.values()
        if "LFP_REDIS_URL" in s.get("environment", {})
    )


def _settings_of(name: str, monkeypatch) -> Settings:
    for key in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(key)
    env = SERVICES[name]["environment"]
    return Settings(
        **{k[len(ENV_PREFIX) :].lower(): interpolate(v) for k, v in env.items()}, _env_file=None
    )


def test_the_layers_run_on_the_composed_spark_and_flink_clusters(monkeypatch):
    parts = {"spark-master", "spark-worker", "flink-jobmanager", "flink-taskmanager"}
    assert parts <= set(PLATFORM)
    for part in parts:  # each advertises the name the others reach it by
        assert SERVICES[part]["hostname"] == part
        assert _settings_of(part, monkeypatch).cluster_host == part
        assert SERVICES[part]["command"] == ["cluster", "run", part]
    master = _settings_of("spark-master", monkeypatch)
    assert master.cluster_spark_master_host == "spark-master"
    ui = SERVICES["spark-master"]["healthcheck"]["test"][-1]
    assert ui == f"http://spark-master:{master.cluster_spark_port + 1}/json/"
    worker_ui = SERVICES["spark-worker"]["healthcheck"]["test"][-1]
    assert worker_ui == f"http://spark-worker:{master.cluster_spark_port + 2}/json/"
    jobmanager = _settings_of("flink-jobmanager", monkeypatch)
    assert SERVICES["flink-jobmanager"]["healthcheck"]["test"][-1] == (
        f"http://flink-jobmanager:{jobmanager.cluster_flink_port}/overview"
    )
    for name in ("batch-scheduler", "demo"):
        driver = _settings_of(name, monkeypatch)
        assert driver.spark_master == f"spark://spark-master:{master.cluster_spark_port}"
        assert driver.spark_driver_host == SERVICES[name]["hostname"] == name
    assert "spark-worker" in SERVICES["batch-scheduler"]["depends_on"]
    speed = _settings_of("speed-job", monkeypatch)
    assert speed.speed_target == "remote"
    assert speed.speed_flink_address == f"flink-jobmanager:{jobmanager.cluster_flink_port}"
    assert "flink-taskmanager" in SERVICES["speed-job"]["depends_on"]
