"""``lfp demo``: the demo workload."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from feature_core.settings import get_settings
from infra.cli.common import console, friendly_errors, load_repo

app = typer.Typer(no_args_is_help=True, help="The demo workload.")


@app.command("run")
@friendly_errors
def demo_run(
    users: Annotated[int, typer.Option(help="Shoppers.")] = 200,
    items: Annotated[int, typer.Option(help="Catalog size.")] = 300,
    history_days: Annotated[int, typer.Option(help="Days of back-dated history.")] = 7,
    history_events: Annotated[int, typer.Option(help="Events in that history.")] = 30_000,
    rate: Annotated[float, typer.Option(help="Live events per second.")] = 50.0,
    seconds: Annotated[float, typer.Option(help="Seconds of live events.")] = 20.0,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 7,
) -> None:
    """History to the lake, batch run, model training, live events, recommendations."""
    from demo.generator import ShopConfig
    from demo.run import DemoConfig, run_demo

    config = DemoConfig(
        shop=ShopConfig(users=users, items=items, seed=seed),
        history_days=history_days,
        history_events=history_events,
        live_rate=rate,
        live_seconds=seconds,
    )
    run_demo(get_settings(), console, config)


@app.command("train")
@friendly_errors
def demo_train(
    examples: Annotated[int, typer.Option(help="Views sampled as training examples.")] = 4000,
) -> None:
    """Retrain the ranking model on PIT vectors from the lake; the API picks it up."""
    from batch_layer.spark import spark_session
    from demo.train import TrainingConfig, holdout_report, train_model, training_set_path

    settings = get_settings()
    spark = spark_session(settings, "lfp-demo-train")
    try:
        model = train_model(
            spark, settings, load_repo(settings), int(time.time() * 1000), TrainingConfig(examples)
        )
    finally:
        spark.stop()
    path = model.save(settings.models_path)
    console.print(
        f"model saved to {path}: {model.training_rows} examples; "
        f"{holdout_report(model.metrics, model.training_rows)}; training set (the drift "
        f"baseline) in {training_set_path(settings)}"
    )
