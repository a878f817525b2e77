"""Keep the gRPC servers of Flink's Python operators on loopback.

A JVM that runs Python functions (the embedded mini-cluster, a TaskManager) starts
Beam's gRPC servers for its Python workers: control, data, state, logging,
provisioning. Beam advertises them at ``localhost`` but binds their ports on every
interface (``NettyServerBuilder.forPort``), and no setting changes that. The jar built
here holds one class, Beam's ``ServerFactory$InetSocketAddressServerFactory`` with the
servers bound to the loopback address they advertise (``speed_layer/jvm/loopback``);
it only works placed before ``flink-python`` on the class path:

- embedded: :func:`use_loopback_lib_dir` points PyFlink's ``FLINK_LIB_DIR`` at a copy
  of Flink's ``lib`` (links) plus this jar: the gateway JVM (the mini-cluster) lists
  ``lib`` before ``opt/flink-python`` on its class path;
- a session cluster: the job's jars list it before ``flink-python`` (the user class
  loader resolves ``org.apache.beam`` classes child-first, in that order).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import pyflink

from speed_layer.functions import JvmBuildError, compile_jar

SOURCES = Path(__file__).parent / "jvm" / "loopback"
#: The one class file packaged (the outer class is only compiled against).
PATCHED = "org/apache/beam/sdk/fn/server/ServerFactory$InetSocketAddressServerFactory.class"


def flink_python_jar() -> Path:
    found = sorted((Path(pyflink.__file__).parent / "opt").glob("flink-python-*.jar"))
    if not found:
        raise JvmBuildError("the apache-flink package has no opt/flink-python-*.jar")
    return found[-1]


def _sources() -> list[Path]:
    return sorted(SOURCES.rglob("*.java"))


def loopback_jar(cache_dir: Path) -> Path:
    """The patch jar, compiled against the installed ``flink-python`` and cached."""
    digest = hashlib.sha256(str(flink_python_jar()).encode())
    for path in _sources():
        digest.update(path.read_bytes())
    jar = cache_dir / f"lfp-beam-loopback-{digest.hexdigest()[:16]}.jar"
    return compile_jar(jar, _sources(), [flink_python_jar()], "a Beam class", [PATCHED])


def use_loopback_lib_dir(cache_dir: Path) -> Path:
    """Point ``FLINK_LIB_DIR`` at Flink's ``lib`` jars (links) plus the patch jar, for the
    PyFlink gateway JVM this process starts (call before it starts)."""
    jar = loopback_jar(cache_dir)
    lib = Path(pyflink.__file__).parent / "lib"
    target = cache_dir / f"flink-lib-{jar.stem.rsplit('-', 1)[-1]}"
    if not target.is_dir():
        partial = Path(tempfile.mkdtemp(dir=cache_dir, prefix="flink-lib-"))
        for source in lib.glob("*.jar"):
            (partial / source.name).symlink_to(source.resolve())
        shutil.copy2(jar, partial / jar.name)
        try:
            partial.rename(target)
        except OSError:  # another start made it first
            shutil.rmtree(partial, ignore_errors=True)
    # PyFlink resets FLINK_LIB_DIR to its own lib before it starts the gateway, unless
    # FLINK_HOME is set: set it to where PyFlink would find it, with this lib.
    home = Path(pyflink.__file__).parent
    os.environ.setdefault("FLINK_HOME", str(home))
    os.environ.setdefault("FLINK_OPT_DIR", str(home / "opt"))
    os.environ.setdefault("FLINK_PLUGINS_DIR", str(home / "plugins"))
    os.environ["FLINK_LIB_DIR"] = str(target)
    return target
