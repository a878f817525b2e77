"""What the speed layer's JVM tests share: one build of the JVM functions, and Flink
table environments that aggregate as the speed job does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from speed_layer.functions import register_sql, udf_jar


@pytest.fixture(scope="session")
def jar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return udf_jar(tmp_path_factory.mktemp("jvm"))


def two_phase_tables(jar: Path) -> Any:
    """A streaming table environment with every JVM function registered, aggregating in
    two phases (local, then global: ``merge`` runs too) over small mini-batches, so each
    aggregate's accumulate, merge and emitted updates are all exercised."""
    from pyflink.common import Configuration
    from pyflink.table import EnvironmentSettings, TableEnvironment

    config = Configuration()
    for key, value in {
        "pipeline.jars": jar.resolve().as_uri(),
        "parallelism.default": "2",
        "table.exec.mini-batch.enabled": "true",
        "table.exec.mini-batch.allow-latency": "50 ms",
        "table.exec.mini-batch.size": "7",
        "table.optimizer.agg-phase-strategy": "TWO_PHASE",
    }.items():
        config.set_string(key, value)
    t_env = TableEnvironment.create(
        EnvironmentSettings.new_instance().in_streaming_mode().with_configuration(config).build()
    )
    for statement in register_sql():
        t_env.execute_sql(statement)
    return t_env


def final_values(result: Any) -> dict[Any, tuple]:
    """A grouped query's final values by its first column: the last change per key."""
    final: dict[Any, tuple] = {}
    with result.collect() as changes:
        for row in changes:
            final[row[0]] = tuple(row[1:])
    return final
