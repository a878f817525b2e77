"""Pair features and the model artifact (pure: no stack)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from sklearn.linear_model import LogisticRegression

from demo.ranking import PAIR_FEATURES, RankingModel, pair_features

NOW = 1_700_000_000_000
ITEM = {
    "item_popularity:interactions_1d": 30,
    "item_popularity:interactions_7d": 100,
    "item_clicks:clicks_1d": 10,
    "item_clicks:clicks_7d": 20,
}


def features(**user) -> dict[str, float]:
    return dict(zip(PAIR_FEATURES, pair_features(user, ITEM, "i1", "toys", NOW), strict=True))


def test_affinity_is_the_smoothed_share_of_the_category_in_history() -> None:
    assert features()["category_affinity"] == pytest.approx(1 / 6)
    mostly = features(**{"user_browsing:category_history_7d": ["toys"] * 3 + ["books"]})
    assert mostly["category_affinity"] == pytest.approx((3 + 1 / 6) / 5)
    none = features(**{"user_browsing:category_history_7d": ["books"] * 4})
    assert none["category_affinity"] < mostly["category_affinity"]


def test_session_share_is_the_smoothed_share_of_the_category_in_the_sessions_views() -> None:
    assert features()["category_share_session"] == pytest.approx(1 / 6)
    burst = {
        "user_views:views_by_category_session_30m": {"toys": 15, "books": 1},
        "user_views:items_viewed_session_30m": 16,
    }
    assert features(**burst)["category_share_session"] == pytest.approx((15 + 1 / 6) / 17)
    # A category the map left out (past max_keys) counts as unseen; the total still holds.
    unseen = {
        "user_views:views_by_category_session_30m": {"books": 3},
        "user_views:items_viewed_session_30m": 9,
    }
    assert features(**unseen)["category_share_session"] == pytest.approx((1 / 6) / 10)


def test_session_items_viewed_is_log_scaled_and_zero_without_a_session() -> None:
    assert features()["session_items_viewed"] == 0.0
    engaged = features(**{"user_views:items_viewed_session_30m": 7})
    assert engaged["session_items_viewed"] == pytest.approx(math.log1p(7))


def test_ctr_counts_views_as_interactions_minus_clicks() -> None:
    values = features()
    assert values["item_ctr_1d"] == pytest.approx((10 + 1) / (20 + 10))
    assert values["item_ctr_7d"] == pytest.approx((20 + 1) / (80 + 10))


def test_recency_and_last_item() -> None:
    recent = features(**{"user_browsing:last_event_time_lifetime": NOW - 60_000})
    idle = features(**{"user_browsing:last_event_time_lifetime": NOW - 3_600_000})
    assert recent["minutes_since_last_event"] < idle["minutes_since_last_event"]
    assert features(**{"user_browsing:last_item_1h": "i1"})["is_last_item"] == 1.0
    assert features(**{"user_browsing:last_item_1h": "i2"})["is_last_item"] == 0.0


def test_saved_model_scores_like_the_original(tmp_path: Path) -> None:
    rows = [
        pair_features({}, {**ITEM, "item_clicks:clicks_7d": c}, "i", "toys", NOW) for c in range(20)
    ]
    labels = [int(c >= 10) for c in range(20)]
    model = RankingModel(
        LogisticRegression().fit(rows, labels),
        {"recommender_user": "abc", "recommender_item": "def"},
        {"a": "toys", "b": "toys"},
        ["a", "b"],
        {"holdout_auc": 0.9},
    )
    model.save(tmp_path)
    loaded = RankingModel.load(tmp_path)
    items = [
        ("a", {**ITEM, "item_clicks:clicks_7d": 2}),
        ("b", {**ITEM, "item_clicks:clicks_7d": 18}),
    ]
    assert [s.item_id for s in loaded.score({}, items, NOW)] == ["b", "a"]
    assert loaded.score({}, items, NOW) == model.score({}, items, NOW)
    assert loaded.services == model.services and loaded.metrics == {"holdout_auc": 0.9}
    model.save(tmp_path)
    model.save(tmp_path)
    assert len(list(tmp_path.glob("estimator-*.joblib"))) <= 2


def test_missing_model_says_how_to_get_one(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="lfp demo train"):
        RankingModel.load(tmp_path)
