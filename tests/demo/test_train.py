"""Training the demo model: the shop's own examples, catalog and candidates out of a lake
shared with other workloads (whose ids may start as the shop's do), features from before
each example's time and none a proxy of its label, a holdout AUC that is measured or says
why not, and the training set written with its statistics recorded as the drift
baseline."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from sklearn.metrics import roc_auc_score

from batch_layer.lake import append_backfill
from batch_layer.training import column_name
from demo.feature_repo import events as shop_events
from demo.generator import CATEGORIES, Shop, ShopConfig, encode
from demo.ranking import BASELINE_SERVICE, SERVICE
from demo.train import (
    TrainingConfig,
    holdout_report,
    rank_candidates,
    shop_only,
    train_model,
    training_service,
    training_set_path,
)
from feature_core.definitions import FeatureRepo
from feature_core.journals import Journal
from feature_core.settings import Settings
from feature_core.stats import TrainingFeatureStats
from feature_core.synthetic import random_record
from feature_core.windows import DAY_MS, align_cutoff
from online_store import open_store


def test_each_category_gives_its_most_viewed_items_and_no_more() -> None:
    counts = [
        ("a1", "toys", 9, 5),
        ("a2", "toys", 9, 7),
        ("a3", "toys", 3, 1),
        ("b1", "books", 2, 2),
        ("b2", "books", 2, 2),  # a tie: by id
        ("b3", "books", 1, 1),
    ]
    catalog, candidates = rank_candidates(counts, 2)
    assert catalog == {item: category for item, category, _, _ in counts}
    assert candidates == ["a1", "a2", "b1", "b2"]
    # However large the catalog, the candidates are per_category per category.
    many = [(f"i{n}", CATEGORIES[n % 6], 1, n % 13) for n in range(5000)]
    catalog, candidates = rank_candidates(many, 15)
    assert len(catalog) == 5000 and len(candidates) == 15 * 6
    with pytest.raises(ValueError, match="at least 1"):
        rank_candidates(counts, 0)


def test_an_item_whose_events_disagree_takes_the_category_most_of_them_carry() -> None:
    catalog, candidates = rank_candidates([("x", "toys", 2, 2), ("x", "books", 5, 1)], 5)
    assert catalog == {"x": "books"} and candidates == ["x"]


def test_a_measured_holdout_auc_is_printed_and_an_unmeasured_one_says_why() -> None:
    measured = {"holdout_auc": 0.7123, "holdout_auc_raw": 0.6512, "positive_rate": 0.25}
    assert holdout_report(measured, 100).startswith(
        "holdout AUC 0.712 with the derived features, 0.651 on the raw aggregates alone"
    )
    # 100 examples, 25 clicks, none of them among the 20 latest (the holdout).
    one_class = {"positive_rate": 0.25, "holdout_examples": 20.0, "holdout_clicks": 0.0}
    text = holdout_report(one_class, 100)
    assert "not measured" in text and "nan" not in text.lower()
    assert "the 20 latest examples (the holdout) hold 0 clicks" in text
    assert "the 80 before them 25" in text
    nan = {**measured, "holdout_auc": float("nan"), **one_class}
    assert "not measured" in holdout_report(nan, 100)


def _settings(redis_process, tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        feature_repo="demo.feature_repo",
        data_dir=tmp_path,
        lake_uri=str(tmp_path / "lake"),
        model_dir=tmp_path / "models",
        redis_url=f"redis://127.0.0.1:{redis_process.port}/0",
        redis_password_file=Path(os.devnull),
    )


def _foreign_events(start: int, end: int, count: int) -> list[dict]:
    """Another workload's events in the same table (a benchmark's): other ids, other
    categories, views only, dated after the shop's history (they would be the holdout)."""
    rng = random.Random(3)
    return [
        {
            "event_id": f"bench-{n}",
            "user_id": f"u{rng.randrange(500)}",
            "event_type": "view",
            "event_time": rng.randrange(start, end),
            "item_id": f"i{n}",  # every one a new item: thousands of them
            "category": f"c{rng.randrange(20)}",
        }
        for n in range(count)
    ]


def _generated_events(start: int, end: int, count: int) -> list:
    """Schema-random events of the shop's source, as `lfp generate` and the benchmarks
    write them (feature_core.synthetic): ids ``user_id_N`` and ``item_id_N``, which start
    with the shop's default prefixes ``user_`` and ``item_``."""
    rng = random.Random(11)
    return [random_record(shop_events, rng, rng.randrange(start, end)) for _ in range(count)]


@pytest.mark.spark
def test_the_shop_s_ids_are_its_prefix_and_a_number_not_any_id_the_prefix_starts(
    spark_factory, tmp_path: Path
) -> None:
    spark = spark_factory(Settings(_env_file=None, data_dir=tmp_path))  # type: ignore[call-arg]
    pairs = [
        ("user_0", "item_0"),
        ("user_17", "item_299"),
        ("user_id_17", "item_4"),  # a generated user: not the shop's
        ("user_3", "item_id_4"),  # a generated item
        ("user_", "item_1"),  # no number
        ("user_1a", "item_1"),
        ("xuser_1", "item_1"),
    ]
    frame = spark.createDataFrame(pairs, "user_id string, item_id string")
    kept = {(r["user_id"], r["item_id"]) for r in shop_only(frame, TrainingConfig()).collect()}
    assert kept == {("user_0", "item_0"), ("user_17", "item_299")}


@pytest.mark.spark
def test_the_model_trains_on_the_shop_alone_and_records_its_training_set(
    spark_factory, redis_process, tmp_path: Path
) -> None:
    settings = _settings(redis_process, tmp_path)
    spark = spark_factory(settings)
    # The default prefixes, which generated events' ids start with too.
    shop = Shop(ShopConfig(users=40, items=80, seed=5))
    cutoff = align_cutoff(20_000 * DAY_MS)
    history = shop.history(3000, cutoff - 3 * DAY_MS, cutoff - DAY_MS // 2)
    foreign = _foreign_events(cutoff - DAY_MS // 2, cutoff - 3_600_000, 2500)
    # More generated views than the shop's, as in a lake benchmarks filled: taken for the
    # shop's, they were most examples, all unclicked (a holdout AUC of 0.97 here).
    generated = _generated_events(cutoff - 3 * DAY_MS, cutoff - 3_600_000, 40_000)
    uri = settings.table_uri(shop_events.table_name)
    records = [shop_events.parse(encode(e)) for e in history + foreign]
    append_backfill(uri, shop_events, records + generated)
    repo = FeatureRepo.from_module("demo.feature_repo")
    config = TrainingConfig(examples=400, candidates_per_category=3, seed=5)

    model = train_model(spark, settings, repo, cutoff, config)

    # Catalog and candidates: the shop's items only, three per category.
    seen = {e["item_id"] for e in history}
    assert set(model.catalog) == seen
    assert all(model.catalog[i] == shop.catalog[i] for i in seen)
    assert len(model.candidates) == 3 * len(CATEGORIES)
    assert set(model.candidates) <= seen
    # Examples: the shop's views alone, so the holdout is not the foreign views.
    assert 100 < model.training_rows <= 400
    assert model.metrics["holdout_examples"] == model.training_rows - int(
        model.training_rows * (1 - config.holdout)
    )
    assert 0 < model.metrics["holdout_clicks"] < model.metrics["holdout_examples"]
    assert 0 <= model.metrics["holdout_auc"] <= 1
    assert 0 <= model.metrics["holdout_auc_raw"] <= 1

    # The training set is written beside the model, its statistics the drift baseline.
    path = training_set_path(settings)
    written = spark.read.parquet(str(path))
    assert written.count() == model.training_rows
    rows = written.collect()
    assert {row["user_id"] for row in rows} <= {u.user_id for u in shop.users}
    assert {row["item_id"] for row in rows} <= seen
    # Every feature is as it was before the example's view: the user's last event and
    # last click, as the features saw them, are earlier than the view.
    for row in rows:
        for seen_at in (
            "user_browsing__last_event_time_lifetime",
            "user_clicks__last_click_time_lifetime",
        ):
            assert row[seen_at] is None or row[seen_at] < row["timestamp"]
    # No feature is a proxy of the label: none alone tells clicked views from the others
    # (views of another workload's ids, never clicked, once made any count one).
    labels = [row["label"] for row in rows]
    assert 0 < sum(labels) < len(labels)
    for name in model.features:
        column = column_name(name)
        present = [row[column] for row in rows if row[column] is not None]
        below = min(present, default=0.0) - 1.0  # a missing value ranks below every other
        auc = roc_auc_score(labels, [below if row[column] is None else row[column] for row in rows])
        assert max(auc, 1 - auc) < 0.9, f"{name} alone separates the labels: AUC {auc:.3f}"
    store = open_store(settings)
    try:
        (raw,) = store.journal(Journal.TRAINING_STATS)
    finally:
        store.close()
    record = TrainingFeatureStats.model_validate_json(raw)
    assert record.training_set == str(path)
    assert record.service == training_service(repo).name
    assert record.rows == model.training_rows
    assert set(repo.service(BASELINE_SERVICE).features) <= set(record.features)
    assert set(record.features) <= set(training_service(repo).features)
    assert set(model.features) == set(repo.service(SERVICE).features)
