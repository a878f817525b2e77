"""The model artifact and scoring (pure: no stack). The model's features are declared in
``demo.feature_repo`` and computed by the platform (see test_features)."""

from __future__ import annotations

import math
from pathlib import Path

import orjson
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from demo.ranking import METADATA_FILE, SERVICE, RankingModel, model_input
from feature_core.definitions import FeatureRepo

FEATURES = list(FeatureRepo.from_module("demo.feature_repo").service(SERVICE).features)
CTR = FEATURES.index("ranking:item_ctr_7d")


def vector(ctr: float) -> list[float]:
    values = [0.0] * len(FEATURES)
    values[CTR] = ctr
    return values


def test_the_model_takes_the_served_vector_as_is_with_nulls_as_nan() -> None:
    assert model_input([1, 2.5, None, True]) == [
        1.0,
        2.5,
        pytest.approx(math.nan, nan_ok=True),
        1.0,
    ]
    rows = [model_input(vector(c / 20)) for c in range(20)] + [[math.nan] * len(FEATURES)]
    labels = [int(c >= 10) for c in range(20)] + [0]
    model = RankingModel(
        HistGradientBoostingClassifier(min_samples_leaf=2).fit(rows, labels),
        {SERVICE: "abc"},
        FEATURES,
        {"a": "toys", "b": "books"},
        ["a", "b"],
    )
    with_null = vector(0.9)
    with_null[0] = None
    scored = model.score([("a", vector(0.1)), ("b", with_null)])
    assert [s.item_id for s in scored] == ["b", "a"] and scored[0].category == "books"
    with pytest.raises(ValueError, match=f"takes {len(FEATURES)} features"):
        model.score([("a", [0.0])])


def test_saved_model_scores_like_the_original(tmp_path: Path) -> None:
    rows = [vector(c / 20) for c in range(20)]
    labels = [int(c >= 10) for c in range(20)]
    model = RankingModel(
        LogisticRegression().fit(rows, labels),
        {SERVICE: "abc"},
        FEATURES,
        {"a": "toys", "b": "toys"},
        ["a", "b"],
        {"holdout_auc": 0.9, "holdout_auc_raw": 0.6},
    )
    model.save(tmp_path)
    loaded = RankingModel.load(tmp_path)
    items = [("a", vector(0.1)), ("b", vector(0.9))]
    assert [s.item_id for s in loaded.score(items)] == ["b", "a"]
    assert loaded.score(items) == model.score(items)
    assert loaded.services == model.services and loaded.features == FEATURES
    assert loaded.metrics == {"holdout_auc": 0.9, "holdout_auc_raw": 0.6}
    model.save(tmp_path)
    model.save(tmp_path)
    assert len(list(tmp_path.glob("estimator-*.joblib"))) <= 2


def test_a_model_of_pair_features_computed_in_the_demo_is_refused(tmp_path: Path) -> None:
    model = RankingModel(
        LogisticRegression().fit([vector(0.1), vector(0.9)], [0, 1]),
        {SERVICE: "abc"},
        FEATURES,
        {"a": "toys"},
        ["a"],
    )
    model.save(tmp_path)
    meta = orjson.loads((tmp_path / METADATA_FILE).read_bytes())
    del meta["features"]
    meta["pair_features"] = ["category_affinity"]
    meta["services"] = {"recommender_user": "abc", "recommender_item": "def"}
    (tmp_path / METADATA_FILE).write_bytes(orjson.dumps(meta))
    with pytest.raises(ValueError, match=f"not trained on the {SERVICE} feature service"):
        RankingModel.load(tmp_path)


def test_missing_model_says_how_to_get_one(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="lfp demo train"):
        RankingModel.load(tmp_path)
