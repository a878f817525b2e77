"""The loopback patch of Beam's gRPC server factory: with it first on the class path, the
servers Flink starts for its Python workers listen on loopback; without it, on every
interface (what the patch is for)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from speed_layer.loopback import flink_python_jar, loopback_jar, use_loopback_lib_dir
from tests.integration.listeners import is_loopback

PROBE = """
import java.util.Collections;
import org.apache.beam.model.pipeline.v1.Endpoints;
import org.apache.beam.sdk.fn.server.ServerFactory;

public class Probe {
  public static void main(String[] args) throws Exception {
    Endpoints.ApiServiceDescriptor.Builder descriptor = Endpoints.ApiServiceDescriptor.newBuilder();
    ServerFactory.createDefault().allocateAddressAndCreate(Collections.emptyList(), descriptor);
    System.out.println(descriptor.getUrl());
    System.out.flush();
    Thread.sleep(60_000);
  }
}
"""


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("javac") is None:
        pytest.fail("javac not installed: run make install")
    build = tmp_path_factory.mktemp("probe")
    (build / "Probe.java").write_text(PROBE)
    subprocess.run(
        ["javac", "-d", str(build), "-cp", str(flink_python_jar()), str(build / "Probe.java")],
        check=True,
        capture_output=True,
    )
    return build


def _listen(classpath: list[Path]) -> tuple[str, list[str]]:
    """The URL the probe's server is advertised at, and the addresses it listens on."""
    command = ["java", "-cp", ":".join(map(str, classpath)), "Probe"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            url = process.stdout.readline().strip()
            connections = psutil.Process(process.pid).net_connections(kind="inet")
            return url, [c.laddr.ip for c in connections if c.status == psutil.CONN_LISTEN]
        finally:
            process.kill()


def test_the_patched_factory_listens_where_it_advertises_on_loopback(
    probe: Path, tmp_path: Path
) -> None:
    jar = loopback_jar(tmp_path)
    assert loopback_jar(tmp_path) == jar  # cached
    url, addresses = _listen([probe, jar, flink_python_jar()])
    assert url.startswith("127.0.0.1:"), url
    assert addresses and all(is_loopback(a) for a in addresses), addresses


def test_beams_own_factory_listens_on_every_interface(probe: Path) -> None:
    url, addresses = _listen([probe, flink_python_jar()])
    assert url.startswith("localhost:"), url
    assert addresses and not any(is_loopback(a) for a in addresses), addresses


GATEWAY_PROBE = """
import sys
from pathlib import Path
from speed_layer.loopback import use_loopback_lib_dir
use_loopback_lib_dir(Path(sys.argv[1]))
from pyflink.java_gateway import get_gateway
name = "org.apache.beam.sdk.fn.server.ServerFactory$InetSocketAddressServerFactory"
found = get_gateway().jvm.java.lang.Class.forName(name)
print(found.getProtectionDomain().getCodeSource().getLocation().getPath())
"""


def test_the_speed_jobs_gateway_jvm_loads_the_patch(tmp_path: Path) -> None:
    """The mini-cluster runs in PyFlink's gateway JVM: the patch is the class it loads."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLINK_")}
    result = subprocess.run(
        [sys.executable, "-c", GATEWAY_PROBE, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert Path(result.stdout.strip().splitlines()[-1]).name == loopback_jar(tmp_path).name


def test_the_lib_dir_holds_flinks_lib_and_the_patch(tmp_path: Path, monkeypatch) -> None:
    for name in ("FLINK_LIB_DIR", "FLINK_HOME", "FLINK_OPT_DIR", "FLINK_PLUGINS_DIR"):
        monkeypatch.delenv(name, raising=False)
    lib = use_loopback_lib_dir(tmp_path)
    names = {p.name for p in lib.iterdir()}
    assert loopback_jar(tmp_path).name in names
    assert any(name.startswith("flink-dist") for name in names)
    assert use_loopback_lib_dir(tmp_path) == lib  # made once
    assert os.environ["FLINK_LIB_DIR"] == str(lib)
