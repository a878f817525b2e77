"""A local cluster of the distributed engines, supervised like the stack: a Spark
standalone master and worker, a Flink session cluster (a JobManager and
``LFP_CLUSTER_FLINK_TASKMANAGERS`` TaskManagers) and a Redis Cluster of three masters.

Each is started from what the installed packages ship (``pyspark/bin/spark-class``,
``pyflink/bin/jobmanager.sh``/``taskmanager.sh``, Debian's ``redis-server``), under
``<data_dir>/cluster``. The stack's layers then run on it by settings alone
(:func:`cluster_settings`): the batch job on the Spark master, the speed job submitted
to the Flink cluster, the views in Redis Cluster.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import redis
import yaml

from feature_core.settings import Settings
from infra.stack import (
    Paths,
    Service,
    _lfp,
    ensure_redis_password,
    redis_auth_config,
    redis_server_command,
    start_supervisor,
    stop_supervisor,
    supervised_state,
)

LOOPBACK = "127.0.0.1"


def cluster_paths(settings: Settings) -> Paths:
    return Paths(settings.data_dir / "cluster")


def _package_dir(module: str) -> Path:
    return Path(__import__(module).__file__).parent


def spark_master_url(settings: Settings) -> str:
    return f"spark://{LOOPBACK}:{settings.cluster_spark_port}"


def flink_address(settings: Settings) -> str:
    return f"{LOOPBACK}:{settings.cluster_flink_port}"


def redis_cluster_url(settings: Settings) -> str:
    return f"redis://{LOOPBACK}:{settings.cluster_redis_ports[0]}/0"


def cluster_settings(settings: Settings) -> dict[str, str]:
    """The settings (environment variables) that run the stack's layers on this cluster."""
    return {
        "LFP_SPARK_MASTER": spark_master_url(settings),
        "LFP_SPARK_DRIVER_HOST": LOOPBACK,
        "LFP_SPARK_CORES_MAX": str(max(1, settings.cluster_spark_worker_cores // 2)),
        "LFP_SPEED_TARGET": "remote",
        "LFP_SPEED_FLINK_ADDRESS": flink_address(settings),
        "LFP_ONLINE_STORE": "redis-cluster",
        "LFP_REDIS_URL": redis_cluster_url(settings),
    }


def _get_json(url: str) -> dict | list | None:
    try:
        response = httpx.get(url, timeout=1)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


def _redis_ping(port: int, password: str | None = None) -> bool:
    try:
        node = redis.Redis(host=LOOPBACK, port=port, password=password, socket_timeout=1)
        return bool(node.ping())
    except redis.RedisError:
        return False


def write_flink_conf(settings: Settings) -> Path:
    """The session cluster's ``config.yaml``: the package's own (its JVM options), with the
    JobManager's address and ports from the settings, one slot per TaskManager."""
    root = cluster_paths(settings).root
    shipped = yaml.safe_load((_package_dir("pyflink") / "conf" / "config.yaml").read_text())
    port = settings.cluster_flink_port
    jobmanager = settings.cluster_flink_jobmanager_host
    on_loopback = jobmanager == LOOPBACK
    listen = LOOPBACK if on_loopback else "0.0.0.0"
    # Flink's REST handler uploads a submitted job's files to its own blob server at
    # "localhost", which some machines resolve to ::1 only. On loopback the JobManager's
    # RPC and blob server are therefore bound, and reached, by that name: wherever it
    # resolves, and never beyond this machine.
    rpc_host = "localhost" if on_loopback else jobmanager
    conf = {
        "env.java.opts.all": shipped["env"]["java"]["opts"]["all"],
        "jobmanager.rpc.address": rpc_host,
        "jobmanager.bind-host": "localhost" if on_loopback else listen,
        "jobmanager.rpc.port": port + 1,
        "jobmanager.memory.process.size": "1024m",
        "taskmanager.host": settings.cluster_host,
        "taskmanager.bind-host": listen,
        "taskmanager.numberOfTaskSlots": 1,
        "taskmanager.memory.process.size": "1536m",
        "parallelism.default": 1,
        "rest.address": jobmanager,
        "rest.bind-address": listen,
        "rest.port": port,
        "io.tmp.dirs": str(root / "flink-tmp"),
    }
    conf_dir = root / "flink-conf"
    conf_dir.mkdir(parents=True, exist_ok=True)
    (root / "flink-tmp").mkdir(parents=True, exist_ok=True)
    (conf_dir / "config.yaml").write_text(yaml.safe_dump(conf, sort_keys=True))
    for name in ("log4j-console.properties", "logback-console.xml"):
        source = _package_dir("pyflink") / "conf" / name
        (conf_dir / name).write_text(source.read_text())
    return conf_dir


#: The parts ``lfp cluster run`` starts (the local cluster's and Compose's processes).
PARTS = ("spark-master", "spark-worker", "flink-jobmanager", "flink-taskmanager")


def part_command(settings: Settings, part: str) -> list[str]:
    """The process of one part of the cluster, from what the installed packages ship."""
    root = cluster_paths(settings).root
    spark_class = str(_package_dir("pyspark") / "bin" / "spark-class")
    flink_bin = _package_dir("pyflink") / "bin"
    port = settings.cluster_spark_port
    if part == "spark-master":
        return [
            spark_class,
            "org.apache.spark.deploy.master.Master",
            "--host",
            settings.cluster_spark_master_host,
            "--port",
            str(port),
            "--webui-port",
            str(port + 1),
        ]
    if part == "spark-worker":
        return [
            spark_class,
            "org.apache.spark.deploy.worker.Worker",
            f"spark://{settings.cluster_spark_master_host}:{port}",
            "--host",
            settings.cluster_host,
            "--memory",
            settings.cluster_spark_worker_memory,
            "--cores",
            str(settings.cluster_spark_worker_cores),
            "--work-dir",
            str(root / "spark-work"),
            "--webui-port",
            str(port + 2),
        ]
    if part == "flink-jobmanager":
        return [str(flink_bin / "jobmanager.sh"), "start-foreground"]
    if part == "flink-taskmanager":
        # Its own ID: Flink would derive one from the machine's hostname, and stop where
        # that name does not resolve.
        resource_id = f"{settings.cluster_host}-{uuid.uuid4().hex[:8]}"
        return [
            str(flink_bin / "taskmanager.sh"),
            "start-foreground",
            f"-Dtaskmanager.resource-id={resource_id}",
        ]
    raise ValueError(f"no cluster part {part!r}; parts: {', '.join(PARTS)}")


def run_part(settings: Settings, part: str) -> None:
    """Become one part of the cluster (exec: signals reach the JVM directly)."""
    command = part_command(settings, part)
    if part.startswith("flink-"):
        write_flink_conf(settings)
    env = {**os.environ, **environment(settings)}
    os.execvpe(command[0], command, env)


def cluster_services(settings: Settings) -> list[Service]:
    """The local cluster, in start order."""
    root = cluster_paths(settings).root
    master_ui = f"http://{LOOPBACK}:{settings.cluster_spark_port + 1}/json/"
    flink_rest = f"http://{flink_address(settings)}"

    def spark_workers() -> int:
        state = _get_json(master_ui)
        return int(state.get("aliveworkers", 0)) if isinstance(state, dict) else 0

    def taskmanagers() -> int:
        state = _get_json(f"{flink_rest}/taskmanagers")
        return len(state.get("taskmanagers", [])) if isinstance(state, dict) else 0

    found: list[Service] = []
    for port in settings.cluster_redis_ports:
        node_dir = root / "redis" / str(port)
        node_dir.mkdir(parents=True, exist_ok=True)
        found.append(
            Service(
                f"redis-{port}",
                redis_server_command(
                    port,
                    node_dir,
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "5000",
                    maxmemory=settings.redis_maxmemory,
                    config=redis_auth_config(settings),
                ),
                lambda port=port: _redis_ping(port, settings.redis_password),
                port,
            )
        )
    found += [
        Service("redis-cluster", _lfp("cluster", "form-redis"), lambda: True, one_shot=True),
        Service(
            "spark-master",
            _lfp("cluster", "run", "spark-master"),
            lambda: isinstance(_get_json(master_ui), dict),
            settings.cluster_spark_port,
        ),
        Service(
            "spark-worker",
            _lfp("cluster", "run", "spark-worker"),
            lambda: spark_workers() >= 1,
            start_timeout_s=90.0,
            overlaps=True,  # Flink's processes do not need it
        ),
        Service(
            "flink-jobmanager",
            _lfp("cluster", "run", "flink-jobmanager"),
            lambda: _get_json(f"{flink_rest}/overview") is not None,
            settings.cluster_flink_port,
            start_timeout_s=90.0,
        ),
    ]
    for n in range(1, settings.cluster_flink_taskmanagers + 1):
        found.append(
            Service(
                f"flink-taskmanager-{n}",
                _lfp("cluster", "run", "flink-taskmanager"),
                lambda n=n: taskmanagers() >= n,
                start_timeout_s=90.0,
            )
        )
    return found


def environment(settings: Settings) -> dict[str, str]:
    """What the cluster's processes need in their environment."""
    root = cluster_paths(settings).root
    return {
        "FLINK_CONF_DIR": str(root / "flink-conf"),
        "FLINK_LOG_DIR": str(root / "logs" / "flink"),
        # Executors run this interpreter: the platform's code and dependencies.
        "PYSPARK_PYTHON": sys.executable,
        # Spark's own address (the master's, the worker's and its executors'): without
        # it Spark resolves the machine's hostname, which not every machine can.
        "SPARK_LOCAL_IP": settings.cluster_host,
        "SPARK_LOG_DIR": str(root / "logs" / "spark"),
        # The master's REST submission server (fixed port 6066, no authentication: a
        # door to code execution) is not used: applications connect over spark://.
        "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false",
    }


def form_redis_cluster(settings: Settings, timeout_s: float = 60.0) -> str:
    """Join the Redis nodes into one cluster (once: a restart keeps ``nodes.conf``), and
    wait until every node says the cluster is ok."""
    ports = settings.cluster_redis_ports
    password = settings.redis_password
    first = redis.Redis(host=LOOPBACK, port=ports[0], password=password, socket_timeout=5)
    info = first.cluster("info")
    if int(info.get("cluster_known_nodes", 1)) < len(ports):
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"{LOOPBACK}:{p}" for p in ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=timeout_s,
            # The password in its environment, not on its command line (ps shows that).
            env={**os.environ, **({"REDISCLI_AUTH": password} if password else {})},
        )
        outcome = f"formed a Redis Cluster of {len(ports)} masters"
    else:
        outcome = "the Redis Cluster was formed before"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        states = [
            redis.Redis(host=LOOPBACK, port=p, password=password, socket_timeout=5)
            .cluster("info")
            .get("cluster_state")
            for p in ports
        ]
        if all(state == "ok" for state in states):
            return outcome
        time.sleep(0.5)
    raise RuntimeError(f"the Redis Cluster on ports {ports} is not ok after {timeout_s:.0f} s")


def up(settings: Settings, timeout_s: float = 300.0) -> dict:
    """Start the cluster's supervisor (detached) and wait until every part is healthy."""
    ensure_redis_password(settings)  # before the supervisor reads its settings
    port = settings.cluster_spark_port
    flink = settings.cluster_flink_port
    ports = {
        **{f"redis-{p}": (p, "LFP_CLUSTER_REDIS_PORTS") for p in settings.cluster_redis_ports},
        "spark-master": (port, "LFP_CLUSTER_SPARK_PORT"),
        "spark-master web UI": (port + 1, "LFP_CLUSTER_SPARK_PORT"),
        "spark-worker web UI": (port + 2, "LFP_CLUSTER_SPARK_PORT"),
        "flink-jobmanager": (flink, "LFP_CLUSTER_FLINK_PORT"),
        "flink-jobmanager RPC": (flink + 1, "LFP_CLUSTER_FLINK_PORT"),
    }
    return start_supervisor(
        cluster_paths(settings),
        _lfp("cluster", "supervise"),
        ports,
        "cluster",
        "lfp cluster down",
        timeout_s,
    )


def down(settings: Settings, timeout_s: float = 120.0) -> bool:
    return stop_supervisor(cluster_paths(settings), timeout_s)


def state(settings: Settings) -> dict | None:
    return supervised_state(cluster_paths(settings))
