"""Train the demo ranking model on point-in-time correct vectors built from the lake.

Examples are views. The label says whether the same user clicked the same item within
``label_window_ms`` after the view; the features are the ``recommender`` service's vector
as the serving layer would have returned it at the view's time for that (user, item) with
the item's category as context (``build_training_set`` over a spine of user_id, item_id,
timestamp, candidate_category and the label), so nothing from after the view leaks in.

A second model, trained on the same examples with the same split but on the aggregates
alone (``recommender_raw``: no derived feature), gives the baseline holdout AUC beside
the model's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from batch_layer.job import read_snapshot
from batch_layer.training import build_training_set, column_name
from demo.feature_repo import events as shop_events
from demo.ranking import BASELINE_SERVICE, CONTEXT_FIELD, SERVICE, RankingModel, model_input
from feature_core.definitions import FeatureRepo, FeatureService
from feature_core.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingConfig:
    examples: int = 4000  # views sampled as training examples
    label_window_ms: int = 10 * 60 * 1000
    candidates_per_category: int = 15
    holdout: float = 0.2  # the latest share of examples, for the reported AUC
    seed: int = 7


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
        raise RuntimeError("no view events in the lake to train on: run `make demo` first")
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
    """AUC on the examples from ``split`` on, of a model fit on those before."""
    from sklearn.metrics import roc_auc_score

    if len(set(labels[split:])) != 2 or len(set(labels[:split])) != 2:
        return None
    estimator = _fit(features[:split], labels[:split], monotonic)
    return float(roc_auc_score(labels[split:], estimator.predict_proba(features[split:])[:, 1]))


def catalog_and_candidates(
    events: DataFrame, per_category: int
) -> tuple[dict[str, str], list[str]]:
    """Every item's category, and each category's most viewed items (the candidates)."""
    views = (
        events.where("item_id IS NOT NULL AND category IS NOT NULL")
        .groupBy("item_id", "category")
        .agg(F.sum(F.when(F.col("event_type") == "view", 1).otherwise(0)).alias("views"))
        .collect()
    )
    catalog = {row["item_id"]: row["category"] for row in views}
    by_category: dict[str, list[tuple[int, str]]] = {}
    for row in views:
        by_category.setdefault(row["category"], []).append((-row["views"], row["item_id"]))
    candidates = [
        item for ranked in by_category.values() for _, item in sorted(ranked)[:per_category]
    ]
    return catalog, sorted(candidates)


def train_model(
    spark: SparkSession,
    settings: Settings,
    repo: FeatureRepo,
    until_ms: int,
    config: TrainingConfig | None = None,
) -> RankingModel:
    """Build the PIT training set from the lake, fit, and report time-split holdout AUCs:
    ``holdout_auc`` (the recommender's vector) and ``holdout_auc_raw`` (the baseline's
    aggregates, no derived feature; same examples, same split)."""
    config = config or TrainingConfig()
    events, delta_version = read_snapshot(spark, settings, shop_events)
    pins = {shop_events.table_name: delta_version} if delta_version is not None else None
    events = events.where(F.col("event_time") < until_ms).cache()
    spine = labelled_views(events, config, until_ms)
    full = build_training_set(
        spark, settings, repo, training_service(repo), spine, delta_versions=pins
    )
    rows = sorted(full.collect(), key=lambda r: (r["timestamp"], r["user_id"], r["item_id"]))
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
    metrics = {"positive_rate": sum(labels) / len(labels)}
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
