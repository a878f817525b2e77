"""The recommendations router's model handling (no stack: loading touches no Redis), and
its requests for more candidates than one request may name (a private redis-server)."""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from demo.generator import CATEGORIES
from demo.ranking import METADATA_FILE, SERVICE, ModelFileError, RankingModel
from demo.recommendations import chunked
from feature_core.definitions import FeatureRepo
from feature_core.settings import Settings
from serving_layer.app import create_app
from tests.conftest import wait_for

ROUTER = "demo.recommendations:router"


def _settings(model_dir: Path, routers: tuple[str, ...] = (ROUTER,)) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        feature_repo="demo.feature_repo",
        api_routers=list(routers),
        model_dir=model_dir,
    )


def _save_model(directory: Path) -> RankingModel:
    features = list(FeatureRepo.from_module("demo.feature_repo").service(SERVICE).features)
    rows = [[float(i)] * len(features) for i in range(10)]
    model = RankingModel(
        LogisticRegression().fit(rows, [int(i >= 5) for i in range(10)]),
        {SERVICE: "abc"},
        features,
        {"a": "toys"},
        ["a"],
    )
    model.save(directory)
    return model


def test_the_model_is_loaded_at_start_up_before_any_request(tmp_path: Path) -> None:
    saved = _save_model(tmp_path)
    app = create_app(_settings(tmp_path))
    with TestClient(app):
        cache = app.state.ranking_model
        loaded = wait_for(lambda: cache.loaded, 60, "the model's background load")
    assert loaded.estimator_file == saved.estimator_file
    assert loaded.services == saved.services


def test_start_up_without_a_model_holds_none_and_requests_say_how_to_train(
    tmp_path: Path,
) -> None:
    app = create_app(_settings(tmp_path / "none"))
    with TestClient(app) as api:
        response = api.get("/v1/recommendations/u1")
        assert app.state.ranking_model.loaded is None
    assert response.status_code == 503 and "lfp demo train" in response.json()["detail"]


def test_the_demo_router_is_mounted_only_when_asked(tmp_path: Path) -> None:
    assert Settings(_env_file=None).api_routers == []  # type: ignore[call-arg]
    with TestClient(create_app(_settings(tmp_path, routers=()))) as api:
        assert api.get("/v1/recommendations/u1").status_code == 404
        assert "/v1/recommendations/{user_id}" not in api.get("/openapi.json").json()["paths"]


class _Exploit:
    """A pickle that, once loaded, leaves a marker file: proof it was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def _point_at(directory: Path, name: str, sha256: str | None = None) -> None:
    meta = orjson.loads((directory / METADATA_FILE).read_bytes())
    meta["estimator_file"] = name
    if sha256 is not None:
        meta["estimator_sha256"] = sha256
    (directory / METADATA_FILE).write_bytes(orjson.dumps(meta))


def test_a_saved_model_records_its_file_hash_and_loads_by_it(tmp_path: Path) -> None:
    saved = _save_model(tmp_path)
    data = (tmp_path / saved.estimator_file).read_bytes()
    assert saved.estimator_sha256 == hashlib.sha256(data).hexdigest()
    meta = orjson.loads((tmp_path / METADATA_FILE).read_bytes())
    assert meta["estimator_sha256"] == saved.estimator_sha256
    assert RankingModel.load(tmp_path).estimator_sha256 == saved.estimator_sha256


@pytest.mark.parametrize("where", ["absolute", "dotdot", "subdir"])
def test_a_model_file_named_by_a_path_is_refused_unopened(tmp_path: Path, where: str) -> None:
    models, outside = tmp_path / "models", tmp_path / "elsewhere"
    _save_model(models)
    outside.mkdir()
    marker = tmp_path / "unpickled"
    evil = pickle.dumps(_Exploit(marker))
    (outside / "evil.joblib").write_bytes(evil)
    name = {
        "absolute": str(outside / "evil.joblib"),
        "dotdot": "../elsewhere/evil.joblib",
        "subdir": "sub/evil.joblib",
    }[where]
    if where == "subdir":
        (models / "sub").mkdir()
        (models / "sub" / "evil.joblib").write_bytes(evil)
    _point_at(models, name, hashlib.sha256(evil).hexdigest())  # even with its true hash
    with pytest.raises(ModelFileError, match="only a bare file name"):
        RankingModel.load(models)
    assert not marker.exists()


def test_a_model_file_whose_bytes_changed_is_a_503_and_never_unpickled(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    saved = _save_model(tmp_path)
    marker = tmp_path / "unpickled"
    (tmp_path / saved.estimator_file).write_bytes(pickle.dumps(_Exploit(marker)))
    caplog.set_level(logging.ERROR, logger="demo.recommendations")
    with TestClient(create_app(_settings(tmp_path))) as api:
        response = api.get("/v1/recommendations/u1")
    detail = response.json()["detail"]
    assert response.status_code == 503
    assert "does not match the sha256" in detail and "\n" not in detail
    assert any("does not match the sha256" in r.getMessage() for r in caplog.records)
    assert not marker.exists()


def test_a_model_without_a_recorded_hash_is_refused(tmp_path: Path) -> None:
    saved = _save_model(tmp_path)
    _point_at(tmp_path, saved.estimator_file, sha256="")
    with pytest.raises(ModelFileError, match="records no sha256"):
        RankingModel.load(tmp_path)


def test_candidates_are_split_in_order_into_parts_of_at_most_the_size() -> None:
    items = [f"i{n}" for n in range(23)]
    parts = chunked(items, 10)
    assert [len(p) for p in parts] == [10, 10, 3]
    assert [i for p in parts for i in p] == items
    assert chunked(items, 23) == [items] and chunked([], 10) == []
    with pytest.raises(ValueError, match="at least 1"):
        chunked(items, 0)


def test_more_candidates_than_the_entity_cap_are_all_scored_in_one_request(
    tmp_path: Path, redis_process
) -> None:
    """The model's candidates outnumber LFP_API_MAX_ENTITIES: the endpoint serves them in
    parts under the cap (one part over it would be a 422) and scores every one."""
    repo = FeatureRepo.from_module("demo.feature_repo")
    features = list(repo.service(SERVICE).features)
    rows = [[float(i % 7)] * len(features) for i in range(40)]
    catalog = {f"it{n}": CATEGORIES[n % len(CATEGORIES)] for n in range(25)}
    RankingModel(
        HistGradientBoostingClassifier(max_iter=5).fit(rows, [i % 2 for i in range(40)]),
        {SERVICE: repo.service_version(SERVICE)},
        features,
        catalog,
        sorted(catalog),
    ).save(tmp_path)
    settings = _settings(tmp_path).model_copy(
        update={
            "redis_url": f"redis://127.0.0.1:{redis_process.port}/0",
            "redis_password_file": Path(os.devnull),
            "api_max_entities": 10,
            "api_serve_speed_only": True,  # no batch run in this Redis
        }
    )
    with TestClient(create_app(settings)) as api:
        response = api.get("/v1/recommendations/u1", params={"k": 100})
        too_many = api.post(
            "/v1/features",
            json={
                "feature_service": SERVICE,
                "entities": [{"user_id": "u1", "item_id": i} for i in sorted(catalog)[:11]],
                "context": {"candidate_category": "toys"},
            },
        )
    assert too_many.status_code == 422 and "LFP_API_MAX_ENTITIES" in too_many.text
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert sorted(item["item_id"] for item in items) == sorted(catalog)
    assert all(item["category"] == catalog[item["item_id"]] for item in items)
