"""Session fixtures: one stack and one Spark session for all integration tests.

The stack is Docker Compose (through testcontainers) when a Docker daemon answers, and
the embedded stack otherwise (``LFP_TEST_STACK=embedded|compose`` forces one). Either way
the tests get a :class:`StackHandle` and run unchanged.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import cached_property, partial
from pathlib import Path
from typing import Any

import pytest
import redis

from feature_core.definitions import FeatureRepo
from feature_core.settings import Settings
from infra.stack import free_port, free_redis_cluster_port
from online_store import open_store

ROOT = Path(__file__).resolve().parents[1]

# Settings built by tests take no Redis password from a password file unless a test names
# one: a developer's own stack (`make up`: .data/stack/secrets/redis-password) must not
# send its password to the tests' own password-less Redis servers. A stack the tests
# start puts its password in LFP_REDIS_URL (infra.stack.temporary_stack).
os.environ.setdefault("LFP_REDIS_PASSWORD_FILE", os.devnull)
#: The LFP_ settings the suite started with: tests that use no stack see these, not the
#: session stack's (temporary_stack puts its URLs, password and repo in os.environ).
_SUITE_SETTINGS = {k: v for k, v in os.environ.items() if k.startswith("LFP_")}


def pytest_configure(config: pytest.Config) -> None:
    """A terminated run (``timeout``, CI's cancel) stops as Ctrl-C does: the session
    fixtures' teardown then stops the stacks, instead of leaving their supervisors
    (detached, as ``make up``'s must be) running with every service."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)
    if hasattr(config, "workerinput"):
        # An xdist worker starts with COLUMNS=80 and LINES=24 set. Rich fixes a console's
        # width when it is made under COLUMNS, so the CLI tests' terminal widths (each
        # invocation's COLUMNS) would not apply: as in a plain run, neither is set.
        for name in ("COLUMNS", "LINES"):
            os.environ.pop(name, None)


#: Tests that start stacks of their own. ``make test`` runs two pytest-xdist workers: one
#: starts with these, the other with the tests on the one session stack, so their waits (a
#: cluster starting, a lost broker's gap closing at a tile's end) overlap the suite; the
#: modules that use neither go, module by module, to whichever worker is free.
OWN_STACK_MODULES = frozenset(
    {
        "tests/integration/test_broker_restart.py",
        "tests/integration/test_cluster.py",
        "tests/integration/test_schema_evolution.py",
    }
)
OWN_STACKS, SESSION_STACK = "own-stacks", "session-stack"
#: Where workers write, at collection, the modules whose tests use the session stack: only
#: a worker sees fixtures, only the controller schedules.
_STACK_MODULES_FILE = "lfp_stack_modules_file"


def _module(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """Name the file the workers write their stack modules to (an xdist hook)."""
    config = node.config
    if not hasattr(config, "_lfp_stack_modules"):
        handle, path = tempfile.mkstemp(prefix="lfp-stack-modules-", suffix=".json")
        os.close(handle)
        config._lfp_stack_modules = Path(path)
        config.add_cleanup(config._lfp_stack_modules.unlink)
    node.workerinput[_STACK_MODULES_FILE] = str(config._lfp_stack_modules)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    target = getattr(config, "workerinput", {}).get(_STACK_MODULES_FILE)
    if target is None:
        return
    modules = sorted({_module(item.nodeid) for item in items if "stack" in item.fixturenames})
    written = Path(f"{target}.{os.getpid()}")
    written.write_text(json.dumps(modules))
    written.replace(target)  # both workers write the same list; a reader sees one whole


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """The own-stack tests and the session-stack tests are each run whole by one worker, the
    others module by module. (xdist's ``--dist loadgroup`` marks do not reach pytest 9's node
    ids.)"""
    from xdist.scheduler import LoadScopeScheduling

    class StackScopes(LoadScopeScheduling):
        @cached_property
        def stack_modules(self) -> frozenset[str] | None:
            """The workers' list, read once (None: no list, from one worker or a worker
            that failed to write it)."""
            path = getattr(config, "_lfp_stack_modules", None)
            text = path.read_text() if path is not None else ""
            return frozenset(json.loads(text)) if text else None

        def _split_scope(self, nodeid: str) -> str:
            module = _module(nodeid)
            if module in OWN_STACK_MODULES:
                return OWN_STACKS
            if self.stack_modules is None:  # one scope for all the others
                return SESSION_STACK
            return SESSION_STACK if module in self.stack_modules else module

        def _assign_work_unit(self, node: Any) -> None:
            # The two long scopes first, one to each worker; then the rest in file order.
            for scope in (OWN_STACKS, SESSION_STACK):
                if scope in self.workqueue:
                    self.workqueue.move_to_end(scope, last=False)
            super()._assign_work_unit(node)

    return StackScopes(config, log)


#: Every batch run a test asked of an embedded stack: (test, seconds, mode, reasons).
_STACK_RUNS: list[tuple[str, float, str, dict[str, str]]] = []


def pytest_sessionfinish(session: pytest.Session) -> None:
    output = getattr(session.config, "workeroutput", None)
    if output is not None:  # an xdist worker: the controller prints the summary
        output["stack_runs"] = [list(run) for run in _STACK_RUNS]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """A worker's stack runs, for the summary (an xdist hook)."""
    output = getattr(node, "workeroutput", None) or {}  # none from a crashed worker
    for test, seconds, mode, reasons in output.get("stack_runs", []):
        _STACK_RUNS.append((test, seconds, mode, reasons))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The stacks' batch runs with what each cost and why a group was not incremental:
    tests share a stack, so a run's cost depends on the runs of the tests before it."""
    if not _STACK_RUNS:
        return
    terminalreporter.section("batch runs of the tests' stacks")
    for test, seconds, mode, reasons in _STACK_RUNS:
        why = sorted(set(reasons.values()))
        terminalreporter.write_line(f"{seconds:6.1f} s {mode:<11} {test} {why}")


@pytest.fixture(autouse=True)
def _no_stack_settings_outside_stack_tests(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    if request.node.get_closest_marker("integration") is not None:
        return
    for key in [k for k in os.environ if k.startswith("LFP_") and k not in _SUITE_SETTINGS]:
        monkeypatch.delenv(key)
    for key, value in _SUITE_SETTINGS.items():
        monkeypatch.setenv(key, value)


def wait_for(
    condition: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.5
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(interval_s)


def docker_available() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


@dataclass
class StackHandle:
    """What a test may do to the stack, whichever kind runs it."""

    kind: str
    settings: Settings
    #: ``run_batch(cutoff_ms, incremental=None, mode=None)``: one batch run;
    #: ``incremental`` sets LFP_BATCH_INCREMENTAL for it, tiles at any lake size (None:
    #: the stack's settings, under which its small lake goes window by window),
    #: ``mode`` asks for ``full`` or ``reassemble`` (``lfp batch run --full``...).
    run_batch: Callable[..., dict]
    kill: Callable[[str], None]
    service_healthy: Callable[[str], bool]
    #: ``training_set(service, rows, columns=None)``: the training set of a spine of
    #: ``rows`` (tuples of ``columns``: by default the service's join keys, then
    #: "timestamp"; the timestamp is epoch ms, every other column text).
    training_set: Callable[..., list[dict]]


#: The feature repo of the session's stack: the demo shop and the fraud example at once.
TEST_REPO = "tests.integration.both_workloads"


@contextmanager
def embedded_stack(
    tmp: Path, feature_repo: str = TEST_REPO, **overrides: str
) -> Iterator[Settings]:
    """An embedded stack on free ports under ``tmp``, serving ``feature_repo``; its
    settings are in the environment while it runs (the CLI and the services read them).
    ``overrides``: more settings, by environment variable name."""
    from infra import stack

    env = {
        "LFP_BATCH_SCHEDULE": "0 0 1 1 *",  # tests trigger batch runs themselves
        "LFP_SPEED_CHECKPOINT_INTERVAL_S": "5",
        "LFP_INGEST_POLL_MS": "200",
        # A paused consumer is named within a minute (tests/integration/test_consumer_health.py).
        "LFP_CONSUMER_STALL_S": "45",
        "LFP_FEATURE_REPO": feature_repo,
        # The demo's recommender (tests/demo/test_run.py), asked for: none is by default.
        "LFP_API_ROUTERS": '["demo.recommendations:router"]',
        **overrides,
    }
    with ExitStack() as running:
        try:
            settings = running.enter_context(stack.temporary_stack(tmp, env))
        except RuntimeError as error:
            pytest.fail(f"embedded stack failed to start: {error}")
        yield settings


def _embedded(tmp: Path, spark_factory: Callable[[Settings], Any]) -> Iterator[StackHandle]:
    from infra import stack

    with embedded_stack(tmp) as settings:
        yield _embedded_handle(settings, spark_factory, stack)


def _embedded_handle(
    settings: Settings, spark_factory: Callable[[Settings], Any], stack: Any
) -> StackHandle:
    def run_batch(cutoff_ms: int, incremental: bool | None = None, mode: str | None = None) -> dict:
        from batch_layer.job import run_batch as run

        spark = spark_factory(settings)
        run_settings = settings
        if incremental is not None:
            # Tiles asked for: kept on the stack's small lake too.
            update = {"batch_incremental": incremental, "batch_tiles_min_events": 0}
            run_settings = settings.model_copy(update=update)
        started = time.monotonic()
        repo = FeatureRepo.from_module(settings.feature_repo)
        result = run(spark, run_settings, repo, cutoff_ms, mode=mode).to_json()
        test = os.environ.get("PYTEST_CURRENT_TEST", "?").rsplit(" ", 1)[0]
        seconds = time.monotonic() - started
        _STACK_RUNS.append((test, seconds, result["mode"], result["mode_reasons"]))
        return result

    def kill(service: str) -> None:
        os.killpg(stack.service_state(settings, service)["pid"], signal.SIGKILL)

    def service_healthy(service: str) -> bool:
        return stack.service_state(settings, service).get("state") == "healthy"

    def training_set(
        service: str, rows: list[tuple], columns: list[str] | None = None
    ) -> list[dict]:
        from batch_layer.training import build_training_set

        spark = spark_factory(settings)
        repo = FeatureRepo.from_module(settings.feature_repo)
        definition = repo.service(service)
        columns = columns or [*repo.join_keys_of(definition.features), "timestamp"]
        spine = spark.createDataFrame(rows, _spine_schema(columns))
        frame = build_training_set(spark, settings, repo, definition, spine)
        return [r.asDict() for r in frame.collect()]

    return StackHandle("embedded", settings, run_batch, kill, service_healthy, training_set)


def _spine_schema(columns: list[str]) -> str:
    """A test spine's schema: the timestamp as epoch ms, every other column as text."""
    return ", ".join(f"`{c}` {'BIGINT' if c == 'timestamp' else 'STRING'}" for c in columns)


def _compose(tmp: Path) -> Iterator[StackHandle]:  # pragma: no cover - needs a Docker daemon
    import secrets

    from testcontainers.compose import DockerCompose

    # The tests reach Kafka and Redis from the host: the override publishes them (on
    # loopback). Compose has no default secrets: the session makes its own.
    files = ["docker-compose.yml", "docker-compose.expose.yml"]
    for name in ("LFP_REDIS_PASSWORD", "LFP_API_TOKEN", "LFP_GRAFANA_ADMIN_PASSWORD"):
        os.environ.setdefault(name, secrets.token_hex(24))
    # /data is this directory: the image's user is this user (root: the image's default
    # uid, given the directory).
    os.environ["LFP_COMPOSE_DATA_DIR"] = str(tmp)
    if os.getuid() == 0:
        os.chown(tmp, 10001, 10001)
    else:
        os.environ["LFP_UID"] = str(os.getuid())
    compose = DockerCompose(str(ROOT), compose_file_name=files, build=True, wait=True)
    compose.start()
    settings = Settings(
        _env_file=None,
        kafka_bootstrap_servers="localhost:19092",
        redis_url=f"redis://:{os.environ['LFP_REDIS_PASSWORD']}@localhost:16379/0",
        api_port=8000,
        api_token=os.environ["LFP_API_TOKEN"],
        feature_repo="demo.feature_repo",  # what docker-compose.yml serves by default
        data_dir=tmp,
        lake_uri=str(tmp / "lake"),
    )

    def docker_compose(*args: str) -> str:
        chosen = [arg for f in files for arg in ("-f", str(ROOT / f))]
        return subprocess.run(
            ["docker", "compose", *chosen, *args],
            check=True,
            capture_output=True,
            text=True,
            cwd=ROOT,
        ).stdout

    def run_batch(cutoff_ms: int, incremental: bool | None = None, mode: str | None = None) -> dict:
        import json

        env = []
        if incremental is not None:
            env = ["-e", f"LFP_BATCH_INCREMENTAL={str(incremental).lower()}"]
            env += ["-e", "LFP_BATCH_TILES_MIN_EVENTS=0"]
        asked = [] if mode is None else [f"--{mode}"]
        out = docker_compose(
            "exec",
            "-T",
            *env,
            "batch-scheduler",
            "lfp",
            "batch",
            "run",
            "--json",
            "--cutoff-ms",
            str(cutoff_ms),
            *asked,
        )
        return json.loads(out[out.index("{") :])

    def kill(service: str) -> None:
        docker_compose("kill", "-s", "SIGKILL", service)
        docker_compose("start", service)

    def service_healthy(service: str) -> bool:
        return "healthy" in docker_compose("ps", "--format", "{{.Health}}", service)

    def training_set(
        service: str, rows: list[tuple], columns: list[str] | None = None
    ) -> list[dict]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        from feature_core.definitions import FeatureRepo as Repo

        repo = Repo.from_module("demo.feature_repo")
        columns = columns or [*repo.join_keys_of(repo.service(service).features), "timestamp"]
        types = {c: pa.int64() if c == "timestamp" else pa.string() for c in columns}
        pq.write_table(
            pa.table({c: pa.array([r[i] for r in rows], types[c]) for i, c in enumerate(columns)}),
            tmp / "spine.parquet",
        )
        docker_compose(
            "exec",
            "-T",
            "batch-scheduler",
            "lfp",
            "training-set",
            "build",
            "--service",
            service,
            "--spine",
            "/data/spine.parquet",
            "--output",
            "/data/training",
        )
        return pq.read_table(tmp / "training").to_pylist()

    try:
        yield StackHandle("compose", settings, run_batch, kill, service_healthy, training_set)
    finally:
        compose.stop()


@pytest.fixture(scope="session")
def spark_factory() -> Iterator[Callable[[Settings], Any]]:
    """One Spark session per test session, created on first use."""
    sessions: list[Any] = []

    def get(settings: Settings) -> Any:
        if not sessions:
            from batch_layer.spark import spark_session

            sessions.append(spark_session(settings, "lfp-tests"))
        return sessions[0]

    yield get
    for session in sessions:
        session.stop()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, spark_factory) -> Iterator[StackHandle]:
    kind = os.environ.get("LFP_TEST_STACK", "auto")
    tmp = tmp_path_factory.mktemp("stack")
    handles = (
        _compose(tmp)
        if kind == "compose" or (kind == "auto" and docker_available())
        else _embedded(tmp, spark_factory)
    )
    for handle in handles:
        # Feature endpoints answer 503 until the stack's startup batch run has switched a
        # view in: every test starts after it.
        serving = partial(batch_view_serving, handle.settings)
        wait_for(serving, 300, "the startup batch run's view")
        yield handle


def batch_view_serving(settings: Settings) -> bool:
    store = open_store(settings)
    try:
        return store.pointer() is not None
    finally:
        store.close()


#: The demo at test scale; its ids are prefixed so no other test's entities mix in.
DEMO_SHOP_PREFIX = "demo_u"


@pytest.fixture(scope="session")
def demo_result(stack: StackHandle, spark_factory) -> dict:
    """`make demo`, small: history, batch run, model, live events, burst. Run once."""
    import io

    from rich.console import Console

    from demo.generator import ShopConfig
    from demo.run import DemoConfig, run_demo

    config = DemoConfig(
        shop=ShopConfig(
            users=30, items=60, seed=11, user_prefix=DEMO_SHOP_PREFIX, item_prefix="demo_i"
        ),
        history_days=3,
        history_events=5000,
        live_rate=40,
        live_seconds=4,
        training_examples=800,
        burst_views=15,
    )
    out = io.StringIO()
    result = run_demo(
        stack.settings, Console(file=out, width=120), config, spark_factory(stack.settings)
    )
    result["output"] = out.getvalue()
    result["config"] = config
    return result


# --- a private redis-server per test (tests that stop it or need an empty keyspace) ---


class RedisProcess:
    def __init__(self, port: int) -> None:
        self.port = port
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no"),
            ],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis(host="127.0.0.1", port=self.port)
        wait_for(lambda: _pings(client), 10, f"redis-server on port {self.port}", 0.05)

    def stop(self) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait(10)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@pytest.fixture
def redis_process() -> Iterator[RedisProcess]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server not installed: run make install")
    server = RedisProcess(free_port())
    server.start()
    yield server
    if server.process and server.process.poll() is None:
        server.stop()


class RedisClusterProcesses:
    """Three masters on free ports, formed into one Redis Cluster."""

    def __init__(self, root: Path) -> None:
        self.ports = [free_redis_cluster_port() for _ in range(3)]
        self.root = root
        self.processes: list[subprocess.Popen] = []

    def start(self) -> None:
        from infra.cluster import form_redis_cluster

        for port in self.ports:
            node = self.root / str(port)
            node.mkdir(parents=True)
            command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1"]
            command += ["--cluster-enabled", "yes", "--save", "", "--appendonly", "no"]
            command += ["--dir", str(node), "--logfile", str(node / "redis.log")]
            self.processes.append(subprocess.Popen(command, stdout=subprocess.DEVNULL))
        # Cluster mode writes and fsyncs nodes.conf before it listens: on a busy disk the
        # first node can take a while, so the deadline is generous and a miss says why.
        for port, process in zip(self.ports, self.processes, strict=True):
            pings = partial(_pings, redis.Redis(host="127.0.0.1", port=port))
            deadline = time.monotonic() + 60
            while not pings():
                exited = process.poll()
                if exited is not None or time.monotonic() > deadline:
                    self.stop()
                    log = (self.root / str(port) / "redis.log").read_text(errors="replace")
                    how = f"exited {exited}" if exited is not None else "not answering after 60 s"
                    pytest.fail(f"cluster-enabled redis-server on {port} {how}: {log[-1500:]}")
                time.sleep(0.05)
        # Its own URL: the session stack's (in the environment) carries that one's password.
        own = {"redis_url": self.url, "redis_password_file": os.devnull}
        form_redis_cluster(Settings(_env_file=None, cluster_redis_ports=self.ports, **own))

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def flush(self) -> None:
        for port in self.ports:
            redis.Redis(host="127.0.0.1", port=port).flushall()

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(10)


@contextmanager
def memory_backed_dir(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[Path]:
    """A scratch directory on tmpfs (``/dev/shm``) when it has room, else under pytest's
    temporary directory; removed afterwards. Redis Cluster nodes fsync ``nodes.conf`` as
    they start and on each cluster change: on a disk the rest of the suite keeps busy,
    those syncs can stall for seconds, and the tests are about the cluster, not the disk."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 2 << 30:
        path = Path(tempfile.mkdtemp(prefix=f"lfp-{name}-", dir=shm))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)
    else:
        yield tmp_path_factory.mktemp(name)


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory) -> Iterator[RedisClusterProcesses]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server not installed: run make install")
    with memory_backed_dir(tmp_path_factory, "redis-cluster") as root:
        cluster = RedisClusterProcesses(root)
        cluster.start()
        yield cluster
        cluster.stop()
