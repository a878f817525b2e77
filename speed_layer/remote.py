"""The speed job on a Flink session cluster: what it ships and how it is stopped.

Submitted by ``lfp speed run`` with ``LFP_SPEED_TARGET=remote``: the job graph, the UDF
jar and the Python packages the workers import go to the cluster over its REST endpoint;
the process that submitted it stays to supervise it. The job outlives that process, so a
new start first stops any job of the same name with a savepoint and resumes from it:
never two jobs writing the same tiles.
"""

from __future__ import annotations

import importlib.util
import logging
import time
import zipfile
from pathlib import Path

import httpx
import pyflink
from pyflink.common import Configuration
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.java_gateway import get_gateway

from feature_core.settings import Settings

log = logging.getLogger(__name__)

#: Packages every TaskManager's Python workers import (the repo's own comes on top).
SHIPPED_PACKAGES = ("feature_core", "runtime", "online_store", "speed_layer")


def job_name(settings: Settings, fingerprint: str) -> str:
    """Names the job by key prefix (two stacks may share a cluster, never a job) and by
    the fingerprint of its checkpoints (the definitions and topic instances its state
    belongs to)."""
    return f"{job_family(settings)}{fingerprint}"


def job_family(settings: Settings) -> str:
    """What every speed job name of this key prefix starts with."""
    return f"lfp-speed:{settings.key_prefix}:"


def shipped_python(settings: Settings) -> Path:
    """The zip ``python.files`` ships: the platform's packages and the feature repo's
    top-level package or module (its sources' validators run in the workers), each at the
    zip's root. A directory would be put on the workers' path itself, its modules
    becoming top-level (``runtime/kafka.py`` would shadow kafka-python)."""
    archive = settings.data_dir / "python" / "lfp-speed-python.zip"
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_suffix(".zip.tmp")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as out:
        for name in dict.fromkeys([*SHIPPED_PACKAGES, settings.feature_repo_module.split(".")[0]]):
            spec = importlib.util.find_spec(name)
            if spec is None or spec.origin is None:
                raise RuntimeError(f"cannot ship {name!r} to the Flink cluster: not importable")
            locations = list(spec.submodule_search_locations or [])
            if not locations:  # a single module
                out.write(spec.origin, Path(spec.origin).name)
                continue
            root = Path(locations[0])
            for path in sorted(root.rglob("*.py")):
                out.write(path, (Path(name) / path.relative_to(root)).as_posix())
    partial.replace(archive)
    return archive


def python_operators_jar() -> Path:
    """Flink's Python operators (``opt/flink-python-*.jar``): a session cluster's lib
    does not hold them, so the job ships them, as ``flink run --python`` does."""
    found = sorted((Path(pyflink.__file__).parent / "opt").glob("flink-python-*.jar"))
    if not found:
        raise RuntimeError("the apache-flink package has no opt/flink-python-*.jar")
    return found[-1]


def remote_environment(
    settings: Settings, config: Configuration, jars: list[Path]
) -> StreamExecutionEnvironment:
    """An environment that submits to the session cluster at ``LFP_SPEED_FLINK_ADDRESS``
    (PyFlink's ``get_execution_environment`` is always local outside ``flink run``)."""
    gateway = get_gateway()
    host, port = settings.speed_flink_address.rsplit(":", 1)
    j_jars = gateway.new_array(gateway.jvm.String, len(jars))
    for i, jar in enumerate(jars):
        j_jars[i] = str(jar.resolve())
    environments = gateway.jvm.org.apache.flink.streaming.api.environment
    j_env = environments.StreamExecutionEnvironment.createRemoteEnvironment(
        host, int(port), config._j_configuration, j_jars
    )
    return StreamExecutionEnvironment(j_env)


class FlinkRest:
    """The few REST calls the supervisor needs (Flink's REST API, v1)."""

    def __init__(self, address: str, timeout_s: float = 10.0) -> None:
        self.base = f"http://{address}"
        self.client = httpx.Client(timeout=timeout_s)

    def _get(self, path: str) -> dict:
        try:
            response = self.client.get(f"{self.base}{path}")
        except httpx.HTTPError as error:
            raise RuntimeError(
                f"the Flink cluster at {self.base} does not answer ({error}); start it "
                "(`lfp cluster up`) or set LFP_SPEED_FLINK_ADDRESS"
            ) from None
        response.raise_for_status()
        return response.json()

    def running_jobs(self, family: str) -> list[tuple[str, str, str]]:
        """(id, name, state) of the jobs whose name starts with ``family``, still running
        (or starting)."""
        jobs = self._get("/jobs/overview")["jobs"]
        live = {"CREATED", "INITIALIZING", "RUNNING", "RESTARTING", "RECONCILING"}
        return [
            (j["jid"], j["name"], j["state"])
            for j in jobs
            if j["name"].startswith(family) and j["state"] in live
        ]

    def cancel(self, job_id: str) -> None:
        response = self.client.patch(f"{self.base}/jobs/{job_id}", params={"mode": "cancel"})
        response.raise_for_status()

    def stop_with_savepoint(self, job_id: str, directory: Path, timeout_s: float = 120.0) -> str:
        """Stop the job, its state saved under ``directory``; the savepoint's path."""
        response = self.client.post(
            f"{self.base}/jobs/{job_id}/stop",
            json={"targetDirectory": directory.resolve().as_uri(), "drain": False},
        )
        response.raise_for_status()
        trigger = response.json()["request-id"]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = self._get(f"/jobs/{job_id}/savepoints/{trigger}")
            if status["status"]["id"] == "COMPLETED":
                operation = status.get("operation", {})
                if "failure-cause" in operation:
                    cause = operation["failure-cause"].get("stack-trace", "")[:500]
                    raise RuntimeError(f"stopping job {job_id} with a savepoint failed: {cause}")
                return operation["location"]
            time.sleep(0.5)
        raise RuntimeError(f"job {job_id} did not stop with a savepoint in {timeout_s:.0f} s")

    def stop_leftovers(self, family: str, name: str, directory: Path) -> list[str]:
        """Stop every running job of the family: the one named ``name`` (its state is this
        start's to resume) with a savepoint under ``directory``, if it can take one; any
        other (other definitions or topics) is cancelled. The savepoints' paths."""
        saved = []
        for job_id, found, state in self.running_jobs(family):
            log.warning("job %s (%s) is still running on the cluster: stopping it", job_id, found)
            if found == name and state == "RUNNING":
                try:
                    saved.append(self.stop_with_savepoint(job_id, directory))
                    continue
                except (RuntimeError, httpx.HTTPError) as error:
                    log.warning("no savepoint of job %s (%s): cancelling it", job_id, error)
            self.cancel(job_id)
        return saved

    def close(self) -> None:
        self.client.close()
