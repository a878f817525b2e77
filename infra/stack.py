"""The embedded local stack: every service as a supervised local process, no Docker.

``lfp stack up`` spawns a detached supervisor (``lfp stack supervise``). It starts the
services in dependency order, waits for each to be healthy (the speed job's Flink start
overlaps the scheduler's and the API's, as in Compose), restarts any that exits
(with backoff), logs each to ``<data_dir>/logs/<service>.log`` and keeps its view of
the world in ``<data_dir>/run/stack.json``. ``lfp stack down`` signals the supervisor,
which stops exactly the processes it started, in reverse order.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from feature_core.credentials import REDIS_PASSWORD_FILE, ensure_secret, write_private
from feature_core.settings import ENV_FILE_VARIABLE, Settings
from infra.broker import broker_command
from online_store import STORE_ERRORS, open_store
from runtime.status import status_problem


def _lfp(*args: str) -> list[str]:
    return [sys.executable, "-m", "infra", *args]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _fresh_status(path: Path, require: dict[str, str] | None = None) -> bool:
    return status_problem(path, require=require) is None


@dataclass
class Service:
    name: str
    command: list[str]
    healthy: Callable[[], bool]
    port: int | None = None
    start_timeout_s: float = 60.0
    status_file: Path | None = None  # removed on (re)start, so stale health never counts
    one_shot: bool = False  # runs once to completion rather than staying up
    #: No later service needs it healthy first (as in docker-compose.yml's depends_on): the
    #: next ones start at once, and it is awaited (within its start timeout) after them.
    overlaps: bool = False


@dataclass
class Paths:
    root: Path
    run: Path = field(init=False)
    logs: Path = field(init=False)

    def __post_init__(self) -> None:
        self.root = self.root.resolve()
        self.run = self.root / "run"
        self.logs = self.root / "logs"

    @property
    def state(self) -> Path:
        return self.run / "stack.json"

    @property
    def redis_dir(self) -> Path:
        """Redis's append-only file: kept across ``make down`` and restarts."""
        return self.root / "redis"

    @property
    def supervisor_pid(self) -> Path:
        return self.run / "supervisor.pid"

    def status_file(self, service: str) -> Path:
        return self.run / f"{service}.status.json"


def redis_server_command(
    port: int,
    directory: Path,
    *extra: str,
    maxmemory: str = "0",
    config: Path | None = None,
) -> list[str]:
    """A redis-server on loopback, persisting to ``directory``: an append-only file
    fsynced every second (a crash loses at most the last second of writes, tiles the
    speed job rewrites whole anyway; "always" would fsync each write on the hot path),
    and no RDB snapshots (the AOF, with its RDB preamble on rewrite, is the one copy).

    ``maxmemory`` with policy noeviction: a full Redis refuses writes rather than evict
    views the API would then answer as missing. ``config``: a private config file read
    first (:func:`redis_auth_config`): the password stays off the command line, which
    every user of the machine can read (ps)."""
    return [
        "redis-server",
        *([str(config)] if config is not None else []),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        *extra,
        "--maxmemory",
        maxmemory,
        "--maxmemory-policy",
        "noeviction",
        "--save",
        "",
        "--appendonly",
        "yes",
        # Every acknowledged write on disk: a restart (kill -9 included) loses none, so
        # nothing is recomputed after it (the speed job and lake ingest go on).
        "--appendfsync",
        "always",
        "--dir",
        str(directory),
    ]


def ensure_redis_password(settings: Settings) -> None:
    """Generate the password of the Redis servers the platform starts (once: kept in
    ``LFP_REDIS_PASSWORD_FILE``, by default ``<data_dir>/secrets/redis-password``, mode
    0600), unless LFP_REDIS_URL carries one. Settings built after this carry it."""
    if settings.redis_password is None:
        ensure_secret(settings.redis_password_path)


def redis_auth_config(settings: Settings) -> Path | None:
    """A config file (mode 0600) making redis-server require the clients' password
    (LFP_REDIS_URL's, or the password file's); None when they use none."""
    password = settings.redis_password
    if password is None:
        return None
    quoted = password.replace("\\", "\\\\").replace('"', '\\"')
    # masterauth too: a Redis Cluster node's replicas authenticate with it.
    text = f'requirepass "{quoted}"\nmasterauth "{quoted}"\n'
    return write_private(settings.data_dir.resolve() / "secrets" / "redis-auth.conf", text)


def services(settings: Settings) -> list[Service]:
    """The stack, in start order. Commands are the same CLI the Compose file runs."""
    paths = Paths(settings.data_dir)

    def redis_ok() -> bool:
        try:
            store = open_store(settings, timeout_s=1)
            try:
                return store.ping()
            finally:
                store.close()
        except STORE_ERRORS:
            return False

    def api_ok() -> bool:
        try:
            return httpx.get(f"{settings.api_url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    found = [
        Service(
            "broker",
            broker_command(settings.broker_port),
            lambda: port_open(settings.broker_port),
            settings.broker_port,
        ),
        Service(
            "redis",
            redis_server_command(
                settings.redis_port,
                paths.redis_dir,
                maxmemory=settings.redis_maxmemory,
                config=redis_auth_config(settings),
            ),
            redis_ok,
            settings.redis_port,
        ),
        Service("topics", _lfp("topics", "create"), lambda: True, one_shot=True),
        Service(
            "lake-ingest",
            _lfp("ingest", "run", "--status-file", str(paths.status_file("lake-ingest"))),
            lambda: _fresh_status(paths.status_file("lake-ingest")),
            status_file=paths.status_file("lake-ingest"),
        ),
        Service(
            "speed-job",
            _lfp("speed", "run", "--status-file", str(paths.status_file("speed-job"))),
            lambda: _fresh_status(paths.status_file("speed-job"), {"job_state": "RUNNING"}),
            start_timeout_s=180.0,
            status_file=paths.status_file("speed-job"),
            overlaps=True,  # the scheduler and the API do not wait for Flink
        ),
        Service(
            "batch-scheduler",
            _lfp("batch", "schedule", "--status-file", str(paths.status_file("batch-scheduler"))),
            lambda: _fresh_status(paths.status_file("batch-scheduler")),
            start_timeout_s=120.0,
            status_file=paths.status_file("batch-scheduler"),
        ),
        Service("api", _lfp("serve"), api_ok, settings.api_port),
    ]
    if settings.online_store == "redis-cluster":
        # Redis Cluster runs on its own (``lfp cluster up``, or the operator's): the
        # stack uses it, it does not start it.
        found = [s for s in found if s.name != "redis"]
    return found


class Supervisor:
    """Runs in its own process; owns the service processes (the stack's, or those of
    another set under its own root: see :mod:`infra.cluster`)."""

    def __init__(self, paths: Paths, supervised: list[Service]) -> None:
        self.paths = paths
        self.services = supervised
        self.procs: dict[str, subprocess.Popen] = {}
        self.state: dict[str, dict] = {
            s.name: {"state": "pending", "port": s.port, "pid": None, "restarts": 0}
            for s in self.services
        }
        self.stopping = False

    def _save(self) -> None:
        tmp = self.paths.state.with_suffix(".tmp")
        tmp.write_text(json.dumps({"supervisor_pid": os.getpid(), "services": self.state}))
        tmp.replace(self.paths.state)

    def _spawn(self, service: Service) -> subprocess.Popen:
        if service.status_file is not None:
            service.status_file.unlink(missing_ok=True)
        log = open(self.paths.logs / f"{service.name}.log", "ab")  # noqa: SIM115 - child owns it
        self.state[service.name]["log_from"] = log.tell()  # this start's lines begin here
        proc = subprocess.Popen(
            service.command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=os.environ.copy(),
        )
        log.close()
        self.procs[service.name] = proc
        self.state[service.name].update(pid=proc.pid, state="starting", started_at=time.time())
        self._save()
        return proc

    def _wait_healthy(
        self, service: Service, proc: subprocess.Popen, deadline: float | None = None
    ) -> bool:
        if deadline is None:
            deadline = time.monotonic() + service.start_timeout_s
        while time.monotonic() < deadline and not self.stopping:
            if service.one_shot:
                if proc.poll() is not None:
                    return proc.returncode == 0
            elif proc.poll() is not None:
                return False
            elif service.healthy():
                return True
            time.sleep(0.25)
        return False

    def start_all(self) -> bool:
        """Each service once the one before is healthy, but those that overlap the next
        ones (``Service.overlaps``), which are awaited at the end."""
        overlapping: list[tuple[Service, subprocess.Popen, float]] = []
        for service in self.services:
            proc = self._spawn(service)
            if service.overlaps:
                overlapping.append((service, proc, time.monotonic() + service.start_timeout_s))
            elif not self._started(service, proc):
                return False
        return all(self._started(s, proc, deadline) for s, proc, deadline in overlapping)

    def _started(
        self, service: Service, proc: subprocess.Popen, deadline: float | None = None
    ) -> bool:
        ok = self._wait_healthy(service, proc, deadline)
        state = ("done" if service.one_shot else "healthy") if ok else "failed"
        self.state[service.name]["state"] = state
        self._save()
        return ok

    def watch(self) -> None:
        """Restart services that exit, with exponential backoff, until told to stop."""
        backoff: dict[str, float] = {}
        while not self.stopping:
            for service in self.services:
                if service.one_shot or self.stopping:
                    continue
                proc = self.procs[service.name]
                info = self.state[service.name]
                if proc.poll() is None:
                    healthy = service.healthy()
                    info["state"] = "healthy" if healthy else "unhealthy"
                    if healthy and time.time() - info.get("started_at", 0) > 60:
                        backoff.pop(service.name, None)
                    continue
                delay = backoff.get(service.name, 1.0)
                info.update(state="restarting", exit_code=proc.returncode)
                self._save()
                time.sleep(delay)
                backoff[service.name] = min(delay * 2, 30.0)
                info["restarts"] += 1
                self._spawn(service)
            self._save()
            time.sleep(1.0)

    def stop_all(self) -> None:
        self.stopping = True
        for service in reversed(self.services):
            proc = self.procs.get(service.name)
            if proc is None or proc.poll() is not None:
                if self.state[service.name]["state"] != "failed":  # `up` reports it
                    self.state[service.name]["state"] = "stopped"
                continue
            _terminate_group(proc.pid, proc.wait)
            self.state[service.name].update(state="stopped", pid=None)
            self._save()
        self._save()

    def run(self) -> int:
        self.paths.run.mkdir(parents=True, exist_ok=True)
        self.paths.logs.mkdir(parents=True, exist_ok=True)
        self.paths.supervisor_pid.write_text(str(os.getpid()))
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stopping", True))
        signal.signal(signal.SIGINT, lambda *_: setattr(self, "stopping", True))
        try:
            if self.start_all():
                self.watch()
        finally:
            self.stop_all()
            self.paths.supervisor_pid.unlink(missing_ok=True)
        return 0


def _terminate_group(pid: int, wait: Callable[..., object], grace_s: float = 20.0) -> None:
    """SIGTERM the process group, then SIGKILL what is left after ``grace_s``."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def pid_alive(pid: int) -> bool:
    """True if ``pid`` runs. Reaps it first if it is our exited child (a zombie)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass  # not our child: whoever started it reaps it
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def supervisor_pid(settings: Settings) -> int | None:
    return running_supervisor(Paths(settings.data_dir))


def running_supervisor(paths: Paths) -> int | None:
    path = paths.supervisor_pid
    try:
        pid = int(path.read_text())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def read_state(settings: Settings) -> dict | None:
    return supervised_state(Paths(settings.data_dir))


def supervised_state(paths: Paths) -> dict | None:
    try:
        return json.loads(paths.state.read_text())
    except (OSError, ValueError):
        return None


def service_state(settings: Settings, service: str) -> dict:
    """The supervisor's record of one service (state, pid, restarts); empty if none."""
    return (read_state(settings) or {"services": {}})["services"].get(service, {})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_free(port: int) -> bool:
    """Nothing listens on ``port`` and it can be bound: a connect finds only listeners,
    while a server's bind also fails on a port another socket holds."""
    if port_open(port):
        return False
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_redis_cluster_port() -> int:
    """A free port for a Redis Cluster node: at most 55535, its bus port (10000 above)
    free too."""
    rng = random.Random()
    for _ in range(500):
        port = rng.randrange(20_000, 55_535)
        if port_free(port) and port_free(port + 10_000):
            return port
    raise RuntimeError("no free port for a Redis Cluster node")


@contextlib.contextmanager
def temporary_stack(data_dir: Path, env: Mapping[str, str] | None = None) -> Iterator[Settings]:
    """An embedded stack under ``data_dir`` on free ports, with ``env`` (``LFP_*``) on top;
    its settings are in this process's environment while it runs (the CLI and the
    services read them) and the earlier values come back after.

    The Redis password (``<data_dir>/secrets/redis-password`` unless ``env`` names another
    file) goes into ``LFP_REDIS_URL`` itself, and ``LFP_REDIS_PASSWORD_FILE`` is
    ``/dev/null`` meanwhile: settings built in this process for another Redis (a test's
    own) take no password from the stack's file."""
    values = {
        "LFP_DATA_DIR": str(data_dir),
        "LFP_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "LFP_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "LFP_API_PORT": str(free_port()),
        "LFP_REDIS_PASSWORD_FILE": str(data_dir.resolve() / REDIS_PASSWORD_FILE),
        # Its services read no .env: the repo's (a token, another data dir) is not theirs.
        ENV_FILE_VARIABLE: "",
        **(env or {}),
    }
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        before = Settings(_env_file=None)
        if before.online_store == "redis":  # the stack starts that Redis
            ensure_redis_password(before)
        os.environ["LFP_REDIS_URL"] = Settings(_env_file=None).redis_url  # with it
        os.environ["LFP_REDIS_PASSWORD_FILE"] = os.devnull
        settings = Settings(_env_file=None)
        up(settings)
        try:
            yield settings
        finally:
            down(settings)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def up(settings: Settings, timeout_s: float = 420.0) -> dict:
    """Start the stack's supervisor (detached) and wait until every service is healthy."""
    paths = Paths(settings.data_dir)
    paths.redis_dir.mkdir(parents=True, exist_ok=True)
    if settings.online_store == "redis":
        ensure_redis_password(settings)  # before the supervisor reads its settings
    ports = {
        "broker": (settings.broker_port, "LFP_KAFKA_BOOTSTRAP_SERVERS"),
        "redis": (settings.redis_port, "LFP_REDIS_URL"),
        "api": (settings.api_port, "LFP_API_PORT"),
    }
    if settings.online_store == "redis-cluster":
        del ports["redis"]
    return start_supervisor(
        paths, _lfp("stack", "supervise"), ports, "stack", "make down", timeout_s
    )


def start_supervisor(
    paths: Paths,
    command: list[str],
    ports: Mapping[str, tuple[int, str]],
    what: str,
    stop_command: str,
    timeout_s: float,
) -> dict:
    """Spawn a supervisor (``command``) detached, and wait until every service it starts
    is healthy. ``ports``: service -> (port it needs free, the setting that moves it)."""
    if running_supervisor(paths):
        raise RuntimeError(f"a {what} is already running from {paths.root}: `{stop_command}` first")
    paths.run.mkdir(parents=True, exist_ok=True)
    paths.logs.mkdir(parents=True, exist_ok=True)
    paths.state.unlink(missing_ok=True)
    for name, (port, setting) in ports.items():
        if port_open(port):
            raise RuntimeError(
                f"port {port} for {name} is already in use: stop what uses it or change {setting}"
            )
    with open(paths.logs / "supervisor.log", "ab") as log:
        supervisor_log_from = log.tell()
        supervisor = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=os.environ.copy(),
        )
    deadline = time.monotonic() + timeout_s
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        exited = supervisor.poll() is not None  # before the state: its last word is read
        state = supervised_state(paths)
        if state:
            states = {n: s["state"] for n, s in state["services"].items()}
            failed = [n for n, s in states.items() if s == "failed"]
            if failed:
                stop_supervisor(paths)
                raise RuntimeError(
                    f"{failed[0]} failed to start"
                    f"{_log_tail(paths, failed[0], _log_from(state, failed[0]))}"
                )
            if all(s in ("healthy", "done") for s in states.values()):
                return state
        if exited:
            _stop_recorded(state)  # a supervisor killed outright leaves its services
            raise RuntimeError(
                f"the {what}'s supervisor exited (code {supervisor.returncode}) before every "
                f"service was up{_log_tail(paths, 'supervisor', supervisor_log_from)}"
            )
        time.sleep(0.5)
    stop_supervisor(paths)
    waiting = [n for n, s in states.items() if s not in ("healthy", "done")]
    if not waiting:
        raise RuntimeError(
            f"the {what}'s supervisor wrote no state in {timeout_s:.0f} s"
            f"{_log_tail(paths, 'supervisor', supervisor_log_from)}"
        )
    now = ", ".join(f"{n} {states[n]}" for n in waiting)
    tail = _log_tail(paths, waiting[0], _log_from(supervised_state(paths), waiting[0]))
    raise RuntimeError(f"{what} not healthy after {timeout_s:.0f} s ({now}){tail}")


def _stop_recorded(state: dict | None) -> None:
    """Stop the services a supervisor's state names as running."""
    for info in (state or {"services": {}})["services"].values():
        if info.get("pid") and pid_alive(info["pid"]):
            _terminate_group(info["pid"], lambda timeout: None, 0)


#: A log line that names a cause: Java's "Caused by:", an exception, Redis's fatal lines.
_CAUSE = re.compile(r"Caused by:|\w+(Exception|Error):|# (Fatal|Failed|Can't|Sorry)")


def _log_from(state: dict | None, name: str) -> int:
    """Where a service's current start begins in its log (the supervisor records it)."""
    return ((state or {}).get("services", {}).get(name) or {}).get("log_from", 0)


def _log_tail(paths: Paths, name: str, start: int = 0, lines: int = 8) -> str:
    """The end of a service's log, for an error message (which names the whole file):
    only this start's lines (the log is appended to across restarts), at most its last
    64 KiB. A JVM's stack trace often ends far below its cause: the last line naming a
    cause comes first."""
    path = paths.logs / f"{name}.log"
    try:
        with open(path, "rb") as log:
            size = log.seek(0, os.SEEK_END)
            log.seek(max(start, size - 65536))
            text = log.read().decode(errors="replace").rstrip().splitlines()
    except OSError:
        text = []
    shown = text[-lines:]
    causes = [line.strip() for line in text[:-lines] if _CAUSE.search(line)]
    if causes:
        shown = [causes[-1], "...", *shown]
    body = "".join(f"\n  {line}" for line in shown) if shown else " (empty)"
    return f"; the end of {path}:{body}"


def down(settings: Settings, timeout_s: float = 120.0) -> bool:
    """Stop the stack's supervisor and everything it started. False if none was running."""
    return stop_supervisor(Paths(settings.data_dir), timeout_s)


def stop_supervisor(paths: Paths, timeout_s: float = 120.0) -> bool:
    """Stop a supervisor and everything it started. False if nothing was running."""
    pid = running_supervisor(paths)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.25)
    os.kill(pid, signal.SIGKILL)
    _stop_recorded(supervised_state(paths))
    return True
