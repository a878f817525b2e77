"""Train the demo ranking model on point-in-time correct vectors built from the lake.

Examples are views. The label says whether the same user clicked the same item within
``label_window_ms`` after the view; the features are what the serving layer would have
returned at the view's time (``build_training_set``), so nothing from after the view
leaks in.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from batch_layer.job import read_snapshot
from batch_layer.training import build_training_set
from demo.feature_repo import events as shop_events
from demo.ranking import ITEM_SERVICE, PAIR_FEATURES, USER_SERVICE, RankingModel, pair_features
from feature_core.definitions import FeatureRepo
from feature_core.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingConfig:
    examples: int = 4000  # views sampled as training examples
    label_window_ms: int = 10 * 60 * 1000
    candidates_per_category: int = 15
    holdout: float = 0.2  # the latest share of examples, for the reported AUC
    seed: int = 7


def labelled_views(events: DataFrame, config: TrainingConfig, until_ms: int) -> DataFrame:
    """(user_id, item_id, timestamp, clicked): sampled views whose label window has closed."""
    views = events.where(
        (F.col("event_type") == "view") & (F.col("event_time") < until_ms - config.label_window_ms)
    ).select("user_id", "item_id", "category", F.col("event_time").alias("timestamp"))
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
        .groupBy("user_id", "item_id", "category", "timestamp")
        .agg(F.max(F.col("c_time").isNotNull().cast("int")).alias("clicked"))
    )


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
    """Build the PIT training set from the lake, fit, and report a time-split holdout AUC."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    config = config or TrainingConfig()
    events, delta_version = read_snapshot(spark, settings, shop_events)
    pins = {shop_events.table_name: delta_version} if delta_version is not None else None
    events = events.where(F.col("event_time") < until_ms).cache()
    spine = labelled_views(events, config, until_ms)
    with_users = build_training_set(
        spark,
        settings,
        repo,
        repo.service(USER_SERVICE),
        spine,
        ["user_id"],
        "timestamp",
        pins,
    )
    full = build_training_set(
        spark,
        settings,
        repo,
        repo.service(ITEM_SERVICE),
        with_users,
        ["item_id"],
        "timestamp",
        pins,
    )
    rows = sorted(full.collect(), key=lambda r: r["timestamp"])
    catalog, candidates = catalog_and_candidates(events, config.candidates_per_category)
    events.unpersist()
    if len(rows) < 50:
        raise RuntimeError(f"only {len(rows)} training examples in the lake: produce more history")
    features, labels = [], []
    for row in rows:
        values = row.asDict()
        vector = {name.replace("__", ":", 1): value for name, value in values.items()}
        features.append(
            pair_features(vector, vector, row["item_id"], row["category"], row["timestamp"])
        )
        labels.append(int(row["clicked"]))
    split = int(len(rows) * (1 - config.holdout))
    # More affinity or a higher click-through rate never lowers a score: the model stays
    # explainable, and a burst of interest in a category can only lift that category.
    monotonic = [
        1
        if name
        in (
            "category_affinity",
            "category_share_session",
            "item_ctr_1d",
            "item_ctr_7d",
        )
        else 0
        for name in PAIR_FEATURES
    ]
    estimator = HistGradientBoostingClassifier(
        max_iter=100, min_samples_leaf=40, monotonic_cst=monotonic, random_state=0
    )
    estimator.fit(features[:split], labels[:split])
    metrics = {"positive_rate": sum(labels) / len(labels)}
    if len(set(labels[split:])) == 2:
        predicted = estimator.predict_proba(features[split:])[:, 1]
        metrics["holdout_auc"] = float(roc_auc_score(labels[split:], predicted))
    estimator.fit(features, labels)  # the served model learns from every example
    log.info("trained on %d examples (%d features): %s", len(rows), len(PAIR_FEATURES), metrics)
    return RankingModel(
        estimator,
        {name: repo.service_version(name) for name in (USER_SERVICE, ITEM_SERVICE)},
        catalog,
        candidates,
        metrics,
        training_rows=len(rows),
    )
