"""A speed-layer JVM class's own main(), kept running for a parity test: one line in, one
line out (the parser's and the tile sink's harnesses speak this way)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pyflink


class JavaHarness:
    def __init__(self, jar: Path, main_class: str, *args: str) -> None:
        lib = Path(pyflink.__file__).parent / "lib"
        jars = ["flink-table-common.jar", "flink-core.jar", "flink-shaded-jackson.jar"]
        classpath = ":".join([str(jar), *(str(lib / name) for name in jars)])
        self.process = subprocess.Popen(
            ["java", "-cp", classpath, main_class, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )

    def ask(self, line: bytes) -> bytes:
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(line + b"\n")
        self.process.stdin.flush()
        return self.process.stdout.readline().rstrip(b"\n")

    def close(self) -> None:
        assert self.process.stdin
        self.process.stdin.close()
        self.process.wait(timeout=30)
