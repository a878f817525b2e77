"""Derived features through the ``/v1`` endpoints on an in-memory store (no Redis): values
equal the expressions over the aggregates served beside them, statuses carry through,
request context is checked, and a vector may span several entity types."""

from __future__ import annotations

import math
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from feature_core import derived as fx
from feature_core.definitions import FeatureRepo, FeatureService
from serving_layer.app import create_app
from tests.serving_layer.test_routes import KEYS, NOW, REPO, MemoryStore, _settings

groups = {g.name: g for g in REPO.groups}
purchases, views = groups["user_purchases"], groups["user_views"]
browsing, clicks, popularity = (
    groups["user_browsing"],
    groups["item_clicks"],
    groups["item_popularity"],
)
category = fx.RequestField("candidate_category", "string")
spent = fx.RequestField("spent", "float")
VIEW = fx.DerivedFeatures(
    "pair",
    features={
        "order_value": purchases["spend_30d"] / purchases["purchases_30d"],
        "affinity": views["views_by_category_7d"].get(category, 0) / views["views_7d"],
        "idle_s": fx.seconds_since(browsing["last_event_time_lifetime"]),
        "ctr_1d": clicks["clicks_1d"] / popularity["interactions_1d"],
        "log_ctr": fx.log1p(fx.feature("pair:ctr_1d")),
        "spent_over_avg": spent / purchases["avg_order_value_30d"],
        "big": fx.when(spent > 100, True, False),
    },
)
NAMES = [f"pair:{n}" for n in VIEW.features]
INPUTS = [
    "user_purchases:spend_30d",
    "user_purchases:purchases_30d",
    "user_purchases:avg_order_value_30d",
    "user_views:views_by_category_7d",
    "user_views:views_7d",
    "user_browsing:last_event_time_lifetime",
    "item_clicks:clicks_1d",
    "item_popularity:interactions_1d",
]
SERVICE = FeatureService("pairs", features=[*NAMES, *INPUTS], defaults={"pair:order_value": -1.0})
DERIVED_REPO = FeatureRepo(REPO.groups, (SERVICE,), (), (VIEW,))


@pytest.fixture
def frozen_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("serving_layer.online.time", SimpleNamespace(time=lambda: NOW / 1000))


@pytest.fixture
def client(request: pytest.FixtureRequest, frozen_time: None) -> Iterator[TestClient]:
    with_batch_view = request.param
    settings = {} if with_batch_view else {"api_serve_speed_only": True}
    app = create_app(_settings(**settings), DERIVED_REPO)
    with TestClient(app) as test_client:
        app.state.store = app.state.online.store = MemoryStore(with_batch_view)
        yield test_client


def _expected(inputs: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """The derived values written out by hand over the served inputs."""

    def divide(a: Any, b: Any) -> Any:
        return None if a is None or b is None or b == 0 else a / b

    ctr = divide(inputs["item_clicks:clicks_1d"], inputs["item_popularity:interactions_1d"])
    by_category = inputs["user_views:views_by_category_7d"] or {}
    last = inputs["user_browsing:last_event_time_lifetime"]
    return {
        "pair:order_value": divide(
            inputs["user_purchases:spend_30d"], inputs["user_purchases:purchases_30d"]
        ),
        "pair:affinity": divide(
            by_category.get(context["candidate_category"], 0), inputs["user_views:views_7d"]
        ),
        "pair:idle_s": None if last is None else (NOW - last) / 1000.0,
        "pair:ctr_1d": ctr,
        "pair:log_ctr": None if ctr is None else math.log1p(ctr),
        "pair:spent_over_avg": divide(
            context["spent"], inputs["user_purchases:avg_order_value_30d"]
        ),
        "pair:big": context["spent"] > 100,
    }


def _post(client: TestClient, entities: list[Any], context: Any) -> Any:
    return client.post(
        "/v1/features", json={"feature_service": "pairs", "entities": entities, "context": context}
    )


@pytest.mark.parametrize("client", [True, False], indirect=True)
def test_derived_values_equal_their_expressions_over_the_served_inputs(
    client: TestClient,
) -> None:
    entities = [
        {"user_id": KEYS["user_id"], "item_id": KEYS["item_id"]},
        {"user_id": KEYS["user_id"], "item_id": "unknown-item"},
        {"user_id": "unknown-user", "item_id": KEYS["item_id"]},
    ]
    context = [
        {"candidate_category": "books", "spent": 250.0},
        {"candidate_category": "games", "spent": 20.0},
        {"candidate_category": "books", "spent": 0.5},
    ]
    response = _post(client, entities, context)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["feature_names"] == [*NAMES, *INPUTS]
    for vector, one_context in zip(body["vectors"], context, strict=True):
        got = dict(zip(body["feature_names"], vector["values"], strict=True))
        statuses = dict(zip(body["feature_names"], vector["statuses"], strict=True))
        want = _expected(got, one_context)
        for name in NAMES:
            if name == "pair:order_value" and want[name] is None:
                assert got[name] == -1.0 and statuses[name] == "default"
            elif want[name] is None:
                assert got[name] is None, name
            else:
                assert got[name] == pytest.approx(want[name], rel=1e-12), name
        assert all(not isinstance(v, float) or math.isfinite(v) for v in vector["values"])
    # The known user with the known item: every aggregate input has data.
    first = dict(zip(body["feature_names"], body["vectors"][0]["statuses"], strict=True))
    speed_only = body["batch"] is None
    assert first["pair:affinity"] == ("speed_only" if speed_only else "present")
    # An unknown item: its click-through rate divides zero by zero.
    second = dict(zip(body["feature_names"], body["vectors"][1]["statuses"], strict=True))
    assert second["pair:ctr_1d"] == "undefined"
    assert second["pair:log_ctr"] == "undefined"
    # An unknown user: no input had data (speed-only says the history is missing).
    third = dict(zip(body["feature_names"], body["vectors"][2]["statuses"], strict=True))
    assert third["pair:idle_s"] == ("speed_only" if speed_only else "no_data")
    assert third["pair:order_value"] == "default"


@pytest.mark.parametrize("client", [True], indirect=True)
def test_one_context_object_serves_every_entity(client: TestClient) -> None:
    entities = [{"user_id": KEYS["user_id"], "item_id": i} for i in (KEYS["item_id"], "x")]
    shared = _post(client, entities, {"candidate_category": "books", "spent": 5.0}).json()
    listed = _post(client, entities, [{"candidate_category": "books", "spent": 5.0}] * 2).json()
    assert shared["vectors"] == listed["vectors"]


@pytest.mark.parametrize("client", [True], indirect=True)
@pytest.mark.parametrize(
    ("context", "message"),
    [
        (None, "missing request context: these features need candidate_category (string)"),
        ({"spent": 1.0}, "context: missing request field(s) candidate_category (string)"),
        ([{"candidate_category": "b", "spent": 1.0}] * 2, "lists 2 objects for 1 entities"),
        ({"candidate_category": "b", "spent": "lots"}, "context.spent should be a number"),
        ({"candidate_category": "b", "spent": math.inf}, "context.spent should be a finite number"),
    ],
)
def test_bad_context_is_a_422_naming_the_field(
    client: TestClient, context: Any, message: str
) -> None:
    entity = {"user_id": KEYS["user_id"], "item_id": KEYS["item_id"]}
    if context is not None and not isinstance(context, list) and math.inf in context.values():
        response = client.post(
            "/v1/features",
            content='{"feature_service": "pairs", "entities": [{"user_id": "u1", '
            '"item_id": "i1"}], "context": {"candidate_category": "b", "spent": Infinity}}',
            headers={"content-type": "application/json"},
        )
    else:
        response = _post(client, [entity], context)
    assert response.status_code == 422
    assert message in response.json()["detail"]


@pytest.mark.parametrize("client", [True], indirect=True)
def test_a_multi_entity_vector_needs_every_join_key(client: TestClient) -> None:
    response = _post(client, [{"user_id": "u1"}], {"candidate_category": "b", "spent": 1.0})
    assert response.status_code == 422
    assert (
        "give exactly the join keys ['user_id', 'item_id']; missing ['item_id']"
        in (response.json()["detail"])
    )


@pytest.mark.parametrize("client", [True, False], indirect=True)
def test_the_derived_view_endpoint_serves_what_the_vector_endpoint_serves(
    client: TestClient,
) -> None:
    context = {"candidate_category": "books", "spent": 250.0}
    vector = _post(
        client, [{"user_id": KEYS["user_id"], "item_id": KEYS["item_id"]}], context
    ).json()
    by_name = dict(zip(vector["feature_names"], vector["vectors"][0]["values"], strict=True))
    statuses = dict(zip(vector["feature_names"], vector["vectors"][0]["statuses"], strict=True))
    response = client.get(
        "/v1/features/pair",
        params={"user_id": KEYS["user_id"], "item_id": KEYS["item_id"], **context},
    )
    assert response.status_code == 200, response.text
    group = response.json()
    assert group["group"] == "pair"
    for name in VIEW.features:
        if f"pair:{name}" != "pair:order_value":  # the service's default is not the view's
            assert group["features"][name] == by_name[f"pair:{name}"], name
            assert group["statuses"][name] == statuses[f"pair:{name}"], name
    missing = client.get(
        "/v1/features/pair", params={"user_id": KEYS["user_id"], "item_id": KEYS["item_id"]}
    )
    assert missing.status_code == 422
    assert "candidate_category (string)" in missing.json()["detail"]
    wrong = client.get(
        "/v1/features/pair",
        params={"user_id": "u1", "item_id": "i1", "candidate_category": "b", "spent": "x"},
    )
    assert wrong.status_code == 422
    assert "spent: 'x' is not a float value" in wrong.json()["detail"]


@pytest.mark.parametrize("client", [True], indirect=True)
def test_the_service_description_lists_derived_features_and_request_fields(
    client: TestClient,
) -> None:
    info = client.get("/v1/feature-services/pairs").json()
    assert info["join_keys"] == ["user_id", "item_id"]
    assert info["request_fields"] == {"candidate_category": "string", "spent": "float"}
    first = info["features"][0]
    assert first["function"] == "derived" and first["window"] is None
    assert first["expression"] == "(user_purchases:spend_30d / user_purchases:purchases_30d)"
    assert first["value_type"] == "number"


@pytest.mark.parametrize("client", [True], indirect=True)
def test_feast_endpoint_serves_derived_features_as_on_demand_features(
    client: TestClient,
) -> None:
    entities = [{"user_id": KEYS["user_id"], "item_id": i} for i in (KEYS["item_id"], "x")]
    context = [{"candidate_category": c, "spent": 50.0} for c in ("books", "games")]
    vectors = _post(client, entities, context).json()
    wanted = ["pair:affinity", "pair:ctr_1d", "user_views:views_7d"]
    response = client.post(
        "/get-online-features",
        json={
            "features": wanted,
            "entities": {
                "user_id": [e["user_id"] for e in entities],
                "item_id": [e["item_id"] for e in entities],
                "candidate_category": ["books", "games"],
                "spent": [50.0, 50.0],
            },
            "full_feature_names": True,
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    names = body["metadata"]["feature_names"]
    assert names == ["user_id", "item_id", "user_views__views_7d", "pair__affinity", "pair__ctr_1d"]
    columns = dict(zip(names, body["results"], strict=True))
    for i, vector in enumerate(vectors["vectors"]):
        served = dict(zip(vectors["feature_names"], vector["values"], strict=True))
        for name in wanted:
            assert columns[name.replace(":", "__")]["values"][i] == served[name], name
    # The unknown item's click-through rate is undefined: a null, as Feast marks one.
    assert columns["pair__ctr_1d"]["statuses"] == ["PRESENT", "NULL_VALUE"]
    assert columns["pair__affinity"]["event_timestamps"] == ["1970-01-01T00:00:00Z"] * 2
    missing = client.post(
        "/get-online-features",
        json={"features": ["pair:affinity"], "entities": {"user_id": ["u1"], "item_id": ["i1"]}},
    )
    assert missing.status_code == 422
    assert "request data column(s) ['candidate_category']" in missing.json()["detail"]


@pytest.mark.parametrize("client", [True], indirect=True)
def test_derived_features_without_request_fields_need_no_context(client: TestClient) -> None:
    response = client.post(
        "/v1/features",
        json={"features": ["pair:order_value", "pair:idle_s"], "entities": [KEYS["user_id"]]},
    )
    assert response.status_code == 200, response.text
    values = response.json()["vectors"][0]["values"]
    assert values[1] is not None and values[1] >= 0
