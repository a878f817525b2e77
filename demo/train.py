"""Train the demo ranking model on point-in-time correct vectors built from the lake.

Examples are views. The label says whether the same user clicked the same item within
``label_window_ms`` after the view; the features are the ``recommender`` service's vector
as the serving layer would have returned it at the view's time for that (user, item) with
the item's category as context (``build_training_set`` over a spine of user_id, item_id,
timestamp, candidate_category and the label), so nothing from after the view leaks in.

A second model, trained on the same examples with the same split but on the aggregates
alone (``recommender_raw``: no derived feature), gives the baseline holdout AUC beside
the model's.

Only the shop's own events (its ids: a prefix and a number) make examples and candidates:
the lake may hold other workloads' events, whose ids may share the prefixes. The training
set is written beside the model, its statistics recorded as the drift baseline of the
features served later.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from batch_layer.job import read_snapshot
from batch_layer.training import build_training_set, column_name, write_training_set
from demo.feature_repo import events as shop_events
from demo.generator import ShopConfig
from demo.ranking import BASELINE_SERVICE, CONTEXT_FIELD, SERVICE, RankingModel, model_input
from feature_core.definitions import FeatureRepo, FeatureService
from feature_core.settings import Settings

log = logging.getLogger(__name__)
_SHOP = ShopConfig()
#: The training set's folder in the model directory (Parquet, replaced at each training).
TRAINING_SET_DIR = "training-set"


@dataclass(frozen=True)
class TrainingConfig:
    examples: int = 4000  # views sampled as training examples
    label_window_ms: int = 10 * 60 * 1000
    candidates_per_category: int = 15
    holdout: float = 0.2  # the latest share of examples, for the reported AUC
    seed: int = 7
    # The shop's own ids (ShopConfig's prefixes, each followed by a number): the lake may
    # hold other workloads' events (benchmarks write theirs to the same table), which are
    # neither examples nor candidates.
    user_prefix: str = _SHOP.user_prefix
    item_prefix: str = _SHOP.item_prefix


#: Features a higher value of which never lowers a score: the model stays explainable,
#: and a burst of interest in a category can only lift that category.
MONOTONIC = (
    "shopper:category_affinity_score",
    "ranking:category_share_session",
    "ranking:item_ctr_1d",
    "ranking:item_ctr_7d",
)


def labelled_views(events: DataFrame, config: TrainingConfig, until_ms: int) -> DataFrame:
    """The spine: (user_id, item_id, timestamp, candidate_category, label) of sampled
    views whose label window has closed; the label says the user clicked the item."""
    views = events.where(
        (F.col("event_type") == "view") & (F.col("event_time") < until_ms - config.label_window_ms)
    ).select(
        "user_id",
        "item_id",
        F.col("category").alias(CONTEXT_FIELD),
        F.col("event_time").alias("timestamp"),
    )
    total = views.count()
    if total == 0:
        raise RuntimeError(
            f"no view events of the shop (users {config.user_prefix}*, items "
            f"{config.item_prefix}*) in the lake to train on: run `make demo` first"
        )
    sampled = views.sample(fraction=min(1.0, 1.5 * config.examples / total), seed=config.seed)
    sampled = sampled.orderBy(F.rand(config.seed)).limit(config.examples)
    clicks = events.where(F.col("event_type") == "click").select(
        F.col("user_id").alias("c_user"),
        F.col("item_id").alias("c_item"),
        F.col("event_time").alias("c_time"),
    )
    hit = (
        (F.col("c_user") == F.col("user_id"))
        & (F.col("c_item") == F.col("item_id"))
        & (F.col("c_time") >= F.col("timestamp"))
        & (F.col("c_time") < F.col("timestamp") + config.label_window_ms)
    )
    return (
        sampled.join(clicks, hit, "left")
        .groupBy("user_id", "item_id", "timestamp", CONTEXT_FIELD)
        .agg(F.max(F.col("c_time").isNotNull().cast("int")).alias("label"))
    )


def training_service(repo: FeatureRepo) -> FeatureService:
    """The recommender's features, then the baseline's not among them: one training set
    gives both models their columns (each column is what its service gives)."""
    model, baseline = repo.service(SERVICE), repo.service(BASELINE_SERVICE)
    return FeatureService(
        name=f"{SERVICE}_training",
        features=list(dict.fromkeys([*model.features, *baseline.features])),
        defaults={**baseline.defaults, **model.defaults},
    )


def _fit(features: list[list[float]], labels: list[int], monotonic: list[int]) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    # Shallow trees, learning slowly: a few thousand examples of a noisy label (a click
    # within minutes) overfit deeper ones (on the demo's training set, 31-leaf trees had a
    # holdout AUC 0.00 to 0.04 lower over four time-ordered folds).
    estimator = HistGradientBoostingClassifier(
        max_iter=50,
        max_depth=3,
        learning_rate=0.05,
        min_samples_leaf=40,
        monotonic_cst=monotonic,
        random_state=0,
    )
    return estimator.fit(features, labels)


def _holdout_auc(
    features: list[list[float]], labels: list[int], split: int, monotonic: list[int]
) -> float | None:
    """AUC on the examples from ``split`` on, of a model fit on those before (None when
    either side holds one class only: no AUC to measure)."""
    from sklearn.metrics import roc_auc_score

    if len(set(labels[split:])) != 2 or len(set(labels[:split])) != 2:
        return None
    estimator = _fit(features[:split], labels[:split], monotonic)
    auc = float(roc_auc_score(labels[split:], estimator.predict_proba(features[split:])[:, 1]))
    return None if math.isnan(auc) else auc


def holdout_report(metrics: Mapping[str, float], training_rows: int) -> str:
    """The holdout AUCs as `make demo` prints them, or, when they could not be measured,
    why (a holdout or its training part with one class only), never a bare NaN."""
    auc, raw = metrics.get("holdout_auc"), metrics.get("holdout_auc_raw")
    if auc is not None and raw is not None and not (math.isnan(auc) or math.isnan(raw)):
        return (
            f"holdout AUC {auc:.3f} with the derived features, {raw:.3f} on the raw "
            "aggregates alone (same examples and split)"
        )
    held = int(metrics.get("holdout_examples", 0))
    held_clicks = int(metrics.get("holdout_clicks", 0))
    clicks = round(metrics.get("positive_rate", 0.0) * training_rows)
    fit, fit_clicks = training_rows - held, clicks - held_clicks
    return (
        f"holdout AUC not measured: the {held} latest examples (the holdout) hold "
        f"{held_clicks} clicks and the {fit} before them {fit_clicks}; an AUC needs clicked "
        "and unclicked views on both sides (train on more history)"
    )


#: The longest text Spark's substring takes: the rest of a value, whatever its length.
_REST = 2**31 - 1


def shop_id(column: str, prefix: str) -> Column:
    """Whether ``column`` holds one of the shop's ids: its prefix followed by a number and
    nothing else, as ShopConfig names users and items (``user_17``, ``item_4``). The
    prefix alone is not enough: schema-random events (``lfp generate``, the benchmarks:
    feature_core.synthetic) name theirs after the field, ``user_id_17`` and
    ``item_id_4``, which start with the shop's ``user_`` and ``item_``. Taken for the
    shop's, a lake's hundreds of thousands of such views, never clicked within the label
    window, made nearly every example, each a negative its counts alone gave away (make
    demo's holdout AUC 0.996 instead of about 0.65, and 1516 candidates)."""
    value = F.col(column)
    return value.startswith(prefix) & value.substr(len(prefix) + 1, _REST).rlike("^[0-9]+$")


def shop_only(events: DataFrame, config: TrainingConfig) -> DataFrame:
    """The shop's own events (its users on its items, by their ids: see :func:`shop_id`):
    the lake may hold other workloads' events too."""
    return events.where(
        shop_id("user_id", config.user_prefix) & shop_id("item_id", config.item_prefix)
    )


def rank_candidates(
    counts: Iterable[tuple[str, str, int, int]], per_category: int
) -> tuple[dict[str, str], list[str]]:
    """From (item, category, events, views) counts: each item's category (the one most of
    its events carry, should events disagree), and each category's ``per_category`` most
    viewed items, the candidates (ties by id), sorted by id. The candidates are at most
    ``per_category`` times the categories, whatever the catalog's size."""
    if per_category < 1:
        raise ValueError(f"candidates per category must be at least 1, got {per_category}")
    carried: dict[str, dict[str, int]] = {}
    views: dict[str, int] = {}
    for item, category, events, viewed in counts:
        carried.setdefault(item, {})[category] = events
        views[item] = views.get(item, 0) + viewed
    catalog = {
        item: min(categories, key=lambda c: (-categories[c], c))
        for item, categories in carried.items()
    }
    by_category: dict[str, list[tuple[int, str]]] = {}
    for item, category in catalog.items():
        by_category.setdefault(category, []).append((-views[item], item))
    candidates = [
        item for ranked in by_category.values() for _, item in sorted(ranked)[:per_category]
    ]
    return catalog, sorted(candidates)


def catalog_and_candidates(
    events: DataFrame, per_category: int
) -> tuple[dict[str, str], list[str]]:
    """Every item's category, and each category's most viewed items (the candidates), from
    ``events`` (the shop's own: see :func:`shop_only`)."""
    counts = (
        events.where("item_id IS NOT NULL AND category IS NOT NULL")
        .groupBy("item_id", "category")
        .agg(
            F.count(F.lit(1)).alias("events"),
            F.sum(F.when(F.col("event_type") == "view", 1).otherwise(0)).alias("views"),
        )
        .collect()
    )
    return rank_candidates(
        ((r["item_id"], r["category"], r["events"], r["views"]) for r in counts), per_category
    )


def training_set_path(settings: Settings) -> Path:
    """Where the model's training set is written, beside the model: the drift baseline
    batch runs compare the served values with (Journal.TRAINING_STATS) names it."""
    return settings.models_path / TRAINING_SET_DIR


def train_model(
    spark: SparkSession,
    settings: Settings,
    repo: FeatureRepo,
    until_ms: int,
    config: TrainingConfig | None = None,
) -> RankingModel:
    """Build the PIT training set from the shop's events in the lake, write it beside the
    model (recording its statistics, the drift baseline, as `lfp training-set build`
    does), fit, and report time-split holdout AUCs: ``holdout_auc`` (the recommender's
    vector) and ``holdout_auc_raw`` (the baseline's aggregates, no derived feature; same
    examples, same split), with the holdout's size and clicks."""
    config = config or TrainingConfig()
    events, delta_version = read_snapshot(spark, settings, shop_events)
    pins = {shop_events.table_name: delta_version} if delta_version is not None else None
    events = shop_only(events.where(F.col("event_time") < until_ms), config).cache()
    spine = labelled_views(events, config, until_ms)
    service = training_service(repo)
    full = build_training_set(spark, settings, repo, service, spine, delta_versions=pins)
    path = str(training_set_path(settings))
    write_training_set(full, path, "parquet", settings, service=service.name)
    written = spark.read.parquet(path).collect()  # the rows written, not a second build
    rows = sorted(written, key=lambda r: (r["timestamp"], r["user_id"], r["item_id"]))
    catalog, candidates = catalog_and_candidates(events, config.candidates_per_category)
    events.unpersist()
    if len(rows) < 50:
        raise RuntimeError(f"only {len(rows)} training examples in the lake: produce more history")
    names = list(repo.service(SERVICE).features)
    raw_names = list(repo.service(BASELINE_SERVICE).features)
    features = [model_input([row[column_name(f)] for f in names]) for row in rows]
    raw = [model_input([row[column_name(f)] for f in raw_names]) for row in rows]
    labels = [int(row["label"]) for row in rows]
    split = int(len(rows) * (1 - config.holdout))
    monotonic = [1 if name in MONOTONIC else 0 for name in names]
    metrics = {
        "positive_rate": sum(labels) / len(labels),
        "holdout_examples": float(len(labels) - split),
        "holdout_clicks": float(sum(labels[split:])),
    }
    for metric, auc in (
        ("holdout_auc", _holdout_auc(features, labels, split, monotonic)),
        ("holdout_auc_raw", _holdout_auc(raw, labels, split, [0] * len(raw_names))),
    ):
        if auc is not None:
            metrics[metric] = auc
    estimator = _fit(features, labels, monotonic)  # the served model learns from every example
    log.info("trained on %d examples (%d features): %s", len(rows), len(names), metrics)
    return RankingModel(
        estimator,
        {SERVICE: repo.service_version(SERVICE)},
        names,
        catalog,
        candidates,
        metrics,
        training_rows=len(rows),
    )
