"""The speed job's own JVM functions (``speed_layer/jvm/src``), compiled on first use.

The JVM parser (``ParseRecord``) is a source's validator for records it can decide
exactly as the Python one does; it hands any other record to Python.

Aggregates the algebra has no native SQL form for run in the JVM, per event, with state
bounded by their parameter (the k latest pairs, or 2^p sketch registers, not every value
of a tile); Python finishes each emitted update with the algebra itself. The jar is
built with the JDK's ``javac`` against the Flink jars of the installed PyFlink and
cached under ``<data_dir>/jvm/<hash of the sources>.jar``, so a changed source builds a
new jar.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

import pyflink

from feature_core.aggregations import PRIMITIVES

SOURCES = Path(__file__).parent / "jvm" / "src"

_COMPILE_CLASSPATH = (
    "flink-table-common.jar",
    "flink-core.jar",
    "flink-annotations.jar",
    "flink-shaded-jackson.jar",
)


class JvmBuildError(RuntimeError):
    """The speed job's JVM functions could not be built; the message says how to fix it."""


#: The JVM form of a source's validator (a table function: raw value, spec -> one row).
PARSE_RECORD = "lfp_parse_record"


def register_sql() -> list[str]:
    """``CREATE TEMPORARY SYSTEM FUNCTION`` statements for every JVM function: each
    primitive's JVM twins (declared by its class) and the parser."""
    functions: dict[str, str] = {}
    for primitive_class in PRIMITIVES.values():
        functions.update(primitive_class.jvm_functions)
    functions[PARSE_RECORD] = "lfp.speed.ParseRecord"
    return [
        f"CREATE TEMPORARY SYSTEM FUNCTION {name} AS '{java_class}' LANGUAGE JAVA"
        for name, java_class in functions.items()
    ]


def _java_files() -> list[Path]:
    return sorted(SOURCES.rglob("*.java"))


def sources_hash() -> str:
    digest = hashlib.sha256()
    for path in _java_files():
        digest.update(path.relative_to(SOURCES).as_posix().encode())
        digest.update(path.read_bytes())
    digest.update(pyflink.__file__.encode())  # another Flink install compiles again
    return digest.hexdigest()[:16]


def udf_jar(cache_dir: Path) -> Path:
    """The jar of the speed job's JVM functions, compiled now if not cached yet."""
    flink_lib = Path(pyflink.__file__).parent / "lib"
    return compile_jar(
        cache_dir / f"lfp-speed-{sources_hash()}.jar",
        _java_files(),
        [flink_lib / name for name in _COMPILE_CLASSPATH],
        "its aggregate functions",
    )


def compile_jar(
    jar: Path,
    sources: Sequence[Path],
    classpath: Sequence[Path],
    what: str,
    entries: Sequence[str] | None = None,
) -> Path:
    """``jar`` built from ``sources`` with the JDK's ``javac`` unless it exists (its name
    carries the sources' hash); ``entries``: the class files packaged (default: all)."""
    if jar.exists():
        return jar
    javac = shutil.which("javac")
    if javac is None:
        raise JvmBuildError(
            f"javac not found: the speed job compiles {what} with the JDK. "
            "Install it (apt-get install openjdk-17-jdk-headless) or run make install."
        )
    jar.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=jar.parent) as build:
        command = [javac, "--release", "17", "-d", build, "-cp", ":".join(map(str, classpath))]
        result = subprocess.run([*command, *map(str, sources)], capture_output=True, text=True)
        if result.returncode != 0:
            where = os.path.commonpath([str(p.parent) for p in sources])
            raise JvmBuildError(f"compiling {where} failed:\n{result.stderr.strip()}")
        root = Path(build)
        packaged = entries or [p.relative_to(root).as_posix() for p in root.rglob("*.class")]
        partial = jar.with_name(f"{jar.name}.{os.getpid()}.tmp")  # one per process
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
            for entry in sorted(packaged):
                archive.write(root / entry, entry)
        partial.replace(jar)  # atomic: a concurrent start never loads half a jar
    return jar
