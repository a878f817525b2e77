"""``lfp cluster``: a local Spark standalone cluster, Flink session cluster and Redis
Cluster."""

from __future__ import annotations

from typing import Annotated

import typer

from feature_core.settings import get_settings
from infra.cli.common import console, friendly_errors, setup_logging
from infra.cli.stack import print_status
from infra.cli.tables import WideOption

app = typer.Typer(
    no_args_is_help=True,
    help="A local Spark standalone cluster, Flink session cluster and Redis Cluster.",
)


@app.command("up")
@friendly_errors
def cluster_up() -> None:
    """Start a Redis Cluster (three masters), a Spark master and worker, and a Flink
    JobManager and TaskManagers, supervised under <data_dir>/cluster; print the settings
    that run the stack on them."""
    from infra import cluster

    settings = get_settings()
    with console.status("starting the cluster (Spark and Flink take a minute)..."):
        state = cluster.up(settings)
    print_status(console, state, wide_hint="lfp cluster status --wide")
    console.print("Run the stack on it (then `make up`):")
    for name, value in cluster.cluster_settings(settings).items():
        console.print(f"  export {name}={value}")


@app.command("down")
@friendly_errors
def cluster_down() -> None:
    """Stop everything `cluster up` started (data stays under <data_dir>/cluster)."""
    from infra import cluster

    stopped = cluster.down(get_settings())
    console.print("cluster stopped" if stopped else "no cluster was running")


@app.command("status")
@friendly_errors
def cluster_status(wide: WideOption = False) -> None:
    """Each part of the local cluster: state, pid, port."""
    from infra import cluster
    from infra.stack import running_supervisor

    settings = get_settings()
    state = cluster.state(settings)
    if not state or running_supervisor(cluster.cluster_paths(settings)) is None:
        console.print("no cluster running (start it with `lfp cluster up`)")
        raise typer.Exit(1)
    print_status(console, state, wide=wide, wide_hint="lfp cluster status --wide")


@app.command("supervise", hidden=True)
def cluster_supervise() -> None:
    """(internal) The supervisor process `cluster up` spawns."""
    from infra import cluster
    from infra.stack import Supervisor

    setup_logging()
    settings = get_settings()
    supervisor = Supervisor(cluster.cluster_paths(settings), cluster.cluster_services(settings))
    raise typer.Exit(supervisor.run())


@app.command("run")
@friendly_errors
def cluster_run(
    part: Annotated[
        str,
        typer.Argument(help="spark-master, spark-worker, flink-jobmanager or flink-taskmanager."),
    ],
) -> None:
    """Run one part of the cluster in the foreground (what `cluster up` supervises, and
    what Compose's cluster services run): Spark from the pyspark package's spark-class,
    Flink from the apache-flink package's scripts."""
    from infra import cluster

    if part not in cluster.PARTS:
        raise RuntimeError(f"no cluster part {part!r}; parts: {', '.join(cluster.PARTS)}")
    cluster.run_part(get_settings(), part)


@app.command("form-redis", hidden=True)
@friendly_errors
def cluster_form_redis() -> None:
    """(internal) Join the local Redis nodes into one cluster, once."""
    from infra import cluster

    console.print(cluster.form_redis_cluster(get_settings()))
