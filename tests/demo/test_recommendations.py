"""The recommendations router's model handling (no stack: loading touches no Redis)."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from sklearn.linear_model import LogisticRegression

from demo.ranking import PAIR_FEATURES, RankingModel
from feature_core.settings import Settings
from serving_layer.app import create_app
from tests.conftest import wait_for


def _save_model(directory: Path) -> RankingModel:
    rows = [[float(i)] * len(PAIR_FEATURES) for i in range(10)]
    model = RankingModel(
        LogisticRegression().fit(rows, [int(i >= 5) for i in range(10)]),
        {"recommender_user": "abc", "recommender_item": "def"},
        {"a": "toys"},
        ["a"],
    )
    model.save(directory)
    return model


def test_the_model_is_loaded_at_start_up_before_any_request(tmp_path: Path) -> None:
    saved = _save_model(tmp_path)
    app = create_app(Settings(model_dir=tmp_path))
    with TestClient(app):
        cache = app.state.ranking_model
        loaded = wait_for(lambda: cache.loaded, 60, "the model's background load")
    assert loaded.estimator_file == saved.estimator_file
    assert loaded.services == saved.services


def test_start_up_without_a_model_holds_none_and_requests_say_how_to_train(
    tmp_path: Path,
) -> None:
    app = create_app(Settings(model_dir=tmp_path / "none"))
    with TestClient(app) as api:
        response = api.get("/v1/recommendations/u1")
        assert app.state.ranking_model.loaded is None
    assert response.status_code == 503 and "lfp demo train" in response.json()["detail"]
