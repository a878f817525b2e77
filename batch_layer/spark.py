"""The one place a Spark session is configured (local by default, any master by setting)."""

from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path

from pyspark.sql import SparkSession

from feature_core.settings import Settings

#: Values of an IN filter Parquet is given as equalities (it skips the row groups whose
#: statistics or dictionaries hold none); Spark pushes a longer list as one min-max range.
PARQUET_IN_VALUES_MAX = 1000

LOG4J_CONFIG = Path(__file__).with_name("log4j2.properties")


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def spark_session(settings: Settings, app_name: str = "lfp-batch") -> SparkSession:
    # Executors must run this interpreter (the virtual environment), not whatever is on PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder
    if settings.spark_master.startswith("local"):
        # Local mode stays on loopback (no traffic to other interfaces, no hostname warning).
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        # Quiet local driver logs; on a cluster, its own spark-defaults decide.
        java_options = f"-Dlog4j2.configurationFile={LOG4J_CONFIG}"
        builder = builder.config("spark.driver.extraJavaOptions", java_options)
    else:
        # The scheduler keeps its session between runs: idle executors go back to the
        # cluster, so `lfp batch run`, training sets and the verifier get some meanwhile
        # (a standalone master gives an application every free core).
        for key, value in {
            "spark.dynamicAllocation.enabled": "true",
            "spark.dynamicAllocation.shuffleTracking.enabled": "true",
            "spark.dynamicAllocation.executorIdleTimeout": "30s",
            "spark.dynamicAllocation.cachedExecutorIdleTimeout": "60s",
            # Without a timeout, an executor holding a finished run's shuffle files is
            # never given back.
            "spark.dynamicAllocation.shuffleTracking.timeout": "60s",
        }.items():
            builder = builder.config(key, value)
        if settings.spark_cores_max is not None:
            builder = builder.config("spark.cores.max", str(settings.spark_cores_max))
        if settings.spark_driver_host is not None:
            # Executors elsewhere connect back to the driver by this name. It is also the
            # JVM's own address: Spark otherwise resolves the machine's hostname, and
            # fails where that name is in no hosts file or DNS.
            os.environ.setdefault("SPARK_LOCAL_IP", settings.spark_driver_host)
            builder = builder.config("spark.driver.host", settings.spark_driver_host)
            # A loopback name keeps the driver (RPC, block manager) on loopback; any other
            # address is reached from elsewhere, so the driver listens on every interface.
            bind = (
                settings.spark_driver_host if is_loopback(settings.spark_driver_host) else "0.0.0.0"
            )
            builder = builder.config("spark.driver.bindAddress", bind)
    if "://" not in settings.lake_root or settings.lake_root.startswith("file://"):
        # A run reads file lists from Delta logs (a group's tile files, a day's lake
        # files): on a local disk the driver stats a few hundred files in milliseconds,
        # where past 32 Spark runs a listing job (~0.2 s per read). Object stores keep
        # the parallel listing: each file is a request there.
        builder = builder.config("spark.sql.sources.parallelPartitionDiscovery.threshold", "1024")
    return (
        builder.master(settings.spark_master)
        .appName(app_name)
        .config("spark.driver.memory", settings.spark_driver_memory)
        .config("spark.executor.memory", settings.spark_executor_memory)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "8")
        # Adaptive execution merges small shuffle partitions, but by default not those of a
        # persisted result (a run's documents and tiles): on a small lake each of its 8
        # partitions was a Python task (~0.2 s, a Redis connection) for a few rows.
        .config("spark.sql.optimizer.canChangeCachedPlanOutputPartitioning", "true")
        .config("spark.sql.parquet.pushdown.inFilterThreshold", str(PARQUET_IN_VALUES_MAX))
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.ansi.enabled", "true")
        .getOrCreate()
    )
