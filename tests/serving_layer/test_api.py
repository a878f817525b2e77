"""The HTTP API on the live stack: vectors, the Feast shape, ops endpoints, auth, CORS."""

from __future__ import annotations

import time
from datetime import datetime

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from feature_core.definitions import FeatureRepo
from feature_core.merge import values_match
from feature_core.reference import evaluate
from feature_core.windows import MINUTE_MS, align_cutoff
from serving_layer.app import create_app
from serving_layer.models import FeastResponse, FeaturesResponse, Readiness
from tests.conftest import wait_for
from tests.integration.helpers import entities_for, make_event, produce

pytestmark = pytest.mark.integration

REPO = FeatureRepo.from_module("demo.feature_repo")
SERVICE = REPO.service("user_features")


def now_ms() -> int:
    return int(time.time() * 1000)


def post(settings, path: str, body, **kwargs) -> httpx.Response:
    return httpx.post(f"{settings.api_url}{path}", json=body, timeout=10, **kwargs)


@pytest.fixture(scope="module")
def served_users(stack):
    """Three users with fresh events, served by the speed layer; and their events."""
    _, ids = entities_for("api", users=3, items=0)
    users = ids["user_id"]
    t = now_ms()
    events = []
    for i, user in enumerate(users):
        for k in range(i + 2):
            events.append(make_event(user, t - (k + 1) * 1000, "view"))
        # One event of each kind a user group filters on: every group has data.
        events.append(make_event(user, t - 700, "click"))
        events.append(make_event(user, t - 600, "add_to_cart"))
        events.append(make_event(user, t - 500, "purchase", amount=10.0 * (i + 1)))
    produce(stack.settings, events)

    def all_served() -> dict | None:
        # Every group's job writes on its own schedule: wait until the whole vector of
        # every user equals the reference, not just one group's counts.
        body = post(
            stack.settings, "/v1/features", {"feature_service": SERVICE.name, "entities": users}
        ).json()
        for vector in body["vectors"]:
            own = [e for e in events if e["user_id"] == vector["entity_id"]]
            for name, got in zip(body["feature_names"], vector["values"], strict=True):
                group_name, feature = name.split(":")
                reference = evaluate(REPO.group(group_name), own, body["as_of"])
                if not values_match(got, reference[vector["entity_id"]][feature]):
                    return None
        return body

    wait_for(all_served, 60, "the speed layer to serve the new users' events")
    return users, events


def test_service_vectors_equal_the_reference_in_service_order(stack, served_users):
    users, events = served_users
    ghost = "ghost-user-never-seen"
    body = post(
        stack.settings,
        "/v1/features",
        {"feature_service": SERVICE.name, "entities": [*users, ghost]},
    ).json()
    response = FeaturesResponse.model_validate(body)
    assert response.feature_names == list(SERVICE.features)
    assert [v.entity_id for v in response.vectors] == [*users, ghost]
    assert set(response.speed_watermarks) == {
        "user_activity",
        "user_purchases",
        "user_browsing",
        "user_views",
        "user_clicks",
        "user_carts",
    }
    for vector in response.vectors[:-1]:
        own = [e for e in events if e["user_id"] == vector.entity_id]
        for name, got, status in zip(
            response.feature_names, vector.values, vector.statuses, strict=True
        ):
            group_name, feature = name.split(":")
            want = evaluate(REPO.group(group_name), own, response.as_of)[vector.entity_id][feature]
            assert values_match(got, want), (
                f"{vector.entity_id} {name}: served {got}, reference {want}"
            )
            assert status in {"present", "no_data"}
    assert set(response.vectors[-1].statuses) == {"no_data"}


def test_an_ad_hoc_feature_list_is_served_in_the_order_asked(stack, served_users):
    users, _ = served_users
    features = ["user_purchases:spend_7d", "user_activity:event_count_1h"]
    body = post(stack.settings, "/v1/features", {"features": features, "entities": users}).json()
    assert body["feature_names"] == features
    assert body["feature_service"] is None
    assert [v["values"][0] for v in body["vectors"]] == [10.0, 20.0, 30.0]
    # i + 2 views, a click, an add-to-cart and a purchase for user i.
    assert [v["values"][1] for v in body["vectors"]] == [5, 6, 7]


def test_the_group_endpoint_agrees_with_the_vector_endpoint(stack, served_users):
    users, _ = served_users
    group = httpx.get(f"{stack.settings.api_url}/v1/features/user_purchases/{users[2]}").json()
    assert group["features"]["spend_7d"] == 30.0
    assert group["statuses"]["spend_7d"] == "present"


def test_provenance_names_the_views_and_tiles_each_window_merged(stack, served_users):
    users, events = served_users
    api = stack.settings.api_url
    body = httpx.get(f"{api}/v1/provenance/user_purchases", params={"user_id": users[2]}).json()
    group = httpx.get(f"{api}/v1/features/user_purchases/{users[2]}").json()
    assert body["features"] == group["features"] and body["statuses"] == group["statuses"]
    readyz = httpx.get(f"{api}/readyz").json()
    assert body["batch"] == readyz["batch"]
    assert set(body["speed_watermarks"]) == {"user_purchases"}
    windows = {w["window"]: w for w in body["windows"]}
    assert windows and {w["group"] for w in body["windows"]} == {"user_purchases"}
    purchase = next(e for e in events if e["user_id"] == users[2] and e.get("amount"))
    tile = purchase["event_time"] - purchase["event_time"] % (5 * MINUTE_MS)
    cutoff = body["batch"]["cutoff"] if body["batch"] else 0
    for window in windows.values():
        assert all(cutoff <= start < body["as_of"] for start in window["speed_tiles"])
        assert tile in window["speed_tiles"], window  # every window holds the fresh purchase
    unknown = httpx.get(
        f"{api}/v1/provenance/card_merchant_history",
        params={"card_id": "nobody", "merchant_id": "nowhere"},
    ).json()
    assert all(not w["speed_tiles"] and not w["batch_buckets"] for w in unknown["windows"])
    missing = httpx.get(f"{api}/v1/provenance/card_merchant_history", params={"card_id": "c"})
    assert missing.status_code == 422 and "missing ['merchant_id']" in missing.json()["detail"]


def assert_feast_format(parsed: dict, join_key: str, entity_values: list, names: list[str]):
    """The checks of Feast's own feature server test, for several entities."""
    FeastResponse.model_validate(parsed)
    feature_names = parsed["metadata"]["feature_names"]
    assert feature_names == [join_key, *names]
    results = parsed["results"]
    assert len(results) == len(feature_names)
    for result in results:
        assert len(result["values"]) == len(entity_values)
        assert len(result["statuses"]) == len(entity_values)
        assert len(result["event_timestamps"]) == len(entity_values)
        for stamp in result["event_timestamps"]:  # how Feast's remote client parses them
            datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert results[feature_names.index(join_key)]["values"] == entity_values
    assert set(results[0]["statuses"]) == {"PRESENT"}


def test_feast_compatible_endpoint_answers_feast_shape_with_the_same_values(stack, served_users):
    users, _ = served_users
    features = [
        "user_purchases:spend_7d",
        "user_activity:event_count_1h",
        "user_browsing:last_item_1h",
    ]
    request = {"features": features, "entities": {"user_id": [*users, "ghost"]}}
    parsed = post(stack.settings, "/get-online-features", request).json()
    short = ["spend_7d", "event_count_1h", "last_item_1h"]
    assert_feast_format(parsed, "user_id", [*users, "ghost"], short)
    v1 = post(stack.settings, "/v1/features", {"features": features, "entities": users}).json()
    for i, _name in enumerate(features):
        column = parsed["results"][i + 1]
        served = [v["values"][i] for v in v1["vectors"]]
        # Feast's meaning: a null (or empty list) is NULL_VALUE; an unknown entity is
        # NOT_FOUND with a null value and the epoch, not the aggregation's identity.
        assert column["values"] == [None if v in (None, []) else v for v in served] + [None]
        assert column["statuses"] == [
            "NULL_VALUE" if v in (None, []) else "PRESENT" for v in served
        ] + ["NOT_FOUND"]
        assert column["event_timestamps"][3] == "1970-01-01T00:00:00Z"
    # A recent event stamps the column with the speed watermark, not the epoch.
    stamp = datetime.fromisoformat(
        parsed["results"][1]["event_timestamps"][0].replace("Z", "+00:00")
    )
    assert stamp.timestamp() * 1000 > now_ms() - 10 * MINUTE_MS

    full = post(stack.settings, "/get-online-features", {**request, "full_feature_names": True})
    assert full.json()["metadata"]["feature_names"][1:] == [f.replace(":", "__") for f in features]

    by_service = post(
        stack.settings,
        "/get-online-features",
        {"feature_service": "ranking_features", "entities": {"user_id": users[:1]}},
    ).json()
    ranking = REPO.service("ranking_features")
    assert_feast_format(
        by_service, "user_id", users[:1], [f.split(":")[1] for f in ranking.features]
    )


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        (
            "/v1/features",
            {"feature_service": "nope", "entities": ["u"]},
            404,
            "unknown feature service 'nope'",
        ),
        (
            "/v1/features",
            {"features": ["user_activity:nope"], "entities": ["u"]},
            422,
            "has no feature 'nope'",
        ),
        ("/v1/features", {"features": ["nocolon"], "entities": ["u"]}, 422, "not 'group:feature'"),
        ("/v1/features", {"entities": ["u"]}, 422, "exactly one of"),
        ("/v1/features", {"feature_service": "ranking_features", "entities": []}, 422, "entities"),
        (
            "/v1/features",
            {"feature_service": "ranking_features", "entities": [4.2]},
            422,
            "entities.0",
        ),
        (
            "/v1/features",
            {"feature_service": "ranking_features", "entities": [""]},
            422,
            "entities.0",
        ),
        (
            "/v1/features",
            {"feature_service": "ranking_features", "entities": "u1"},
            422,
            "entities",
        ),
        (
            "/v1/features",
            {"feature_service": "ranking_features", "entities": ["u"] * 1001},
            422,
            "too many entities",
        ),
        (
            "/v1/features",
            {"feature_service": "ranking_features", "entities": ["u"], "x": 1},
            422,
            "body.x",
        ),
        (
            "/v1/features",
            {
                "features": ["user_activity:event_count_1h", "item_popularity:interactions_1h"],
                "entities": ["u"],
            },
            422,
            "the entity has join keys ['user_id', 'item_id']: give an object with each",
        ),
        (
            "/get-online-features",
            {"features": ["user_activity:event_count_1h"], "entities": {"driver_id": [1]}},
            422,
            "entities lacks join key(s) ['user_id'] of user_activity",
        ),
        (
            "/get-online-features",
            {
                "features": ["card_merchant_history:pair_count_30d"],
                "entities": {"card_id": ["c1", "c2"], "merchant_id": ["m1"]},
            },
            422,
            "every join key's list in 'entities' must have the same length",
        ),
        (
            "/v1/features",
            {"feature_service": "fraud_card_merchant", "entities": ["c1"]},
            422,
            "entities[0]: the entity has join keys ['card_id', 'merchant_id']: give an object",
        ),
        (
            "/v1/features",
            {"feature_service": "fraud_card_merchant", "entities": [{"card_id": "c1"}]},
            422,
            "entities[0]: give exactly the join keys ['card_id', 'merchant_id']",
        ),
        (
            "/get-online-features",
            {"features": ["user_activity:event_count_1h"], "entities": {"user_id": [1.5]}},
            422,
            "user_id",
        ),
        (
            "/get-online-features",
            {"feature_service": "nope", "entities": {"user_id": ["u"]}},
            404,
            "unknown feature service",
        ),
    ],
)
def test_bad_requests_get_a_4xx_that_names_the_problem(stack, path, body, status, message):
    response = post(stack.settings, path, body)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]
    assert "Traceback" not in response.text


def test_a_composite_entity_by_its_join_keys_as_query_parameters(stack):
    api = f"{stack.settings.api_url}/v1/features/card_merchant_history"
    by_path = httpx.get(f"{api}/c1")
    assert by_path.status_code == 422
    assert "?card_id=...&merchant_id=..." in by_path.json()["detail"]
    missing = httpx.get(api, params={"card_id": "c1"})
    assert missing.status_code == 422 and "missing ['merchant_id']" in missing.json()["detail"]
    unknown = httpx.get(api, params={"card_id": "nobody", "merchant_id": "nowhere"})
    assert unknown.status_code == 200, unknown.text
    body = unknown.json()
    assert body["entity_id"] == '["nobody","nowhere"]'
    assert set(body["statuses"].values()) == {"no_data"}
    one_key = httpx.get(f"{stack.settings.api_url}/v1/features/card_spend", params={"card_id": "x"})
    assert one_key.status_code == 200 and one_key.json()["entity_id"] == "x"


def test_malformed_json_oversized_bodies_and_unknown_groups(stack):
    api = stack.settings.api_url
    broken = httpx.post(
        f"{api}/v1/features", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert broken.status_code == 422 and "not valid JSON" in broken.json()["detail"]
    form = httpx.post(f"{api}/v1/features", content=b"entities=u1")  # no JSON content type
    assert form.status_code == 415 and "application/json" in form.json()["detail"]
    limit = stack.settings.api_max_body_bytes
    huge = httpx.post(
        f"{api}/v1/features",
        content=b" " * (limit + 1),
        headers={"content-type": "application/json"},
    )
    assert huge.status_code == 413 and "LFP_API_MAX_BODY_BYTES" in huge.json()["detail"]

    def chunks():  # no Content-Length: the limit is counted as the body arrives
        for _ in range(limit // 65536 + 2):
            yield b" " * 65536

    chunked = httpx.post(
        f"{api}/v1/features", content=chunks(), headers={"content-type": "application/json"}
    )
    assert chunked.status_code == 413 and f"over {limit} bytes" in chunked.json()["detail"]
    unknown = httpx.get(f"{api}/v1/features/nogroup/u1")
    assert unknown.status_code == 404 and "unknown feature group 'nogroup'" in unknown.text


def test_feature_service_metadata_lists_types_and_defaults(stack):
    api = stack.settings.api_url
    services = httpx.get(f"{api}/v1/feature-services").json()
    served = FeatureRepo.from_module(stack.settings.feature_repo)  # the demo and fraud
    assert {s["name"] for s in services} == {s.name for s in served.services}
    ranking = httpx.get(f"{api}/v1/feature-services/ranking_features").json()
    assert [f["name"] for f in ranking["features"]] == list(
        REPO.service("ranking_features").features
    )
    assert ranking["join_keys"] == ["user_id"] and ranking["entity_key"] == "user_id"
    pair = httpx.get(f"{api}/v1/feature-services/fraud_card_merchant").json()
    assert pair["join_keys"] == ["card_id", "merchant_id"]
    by_name = {f["name"]: f for f in ranking["features"]}
    assert by_name["user_activity:event_count_1h"]["value_type"] == "integer"
    assert by_name["user_browsing:last_item_1h"]["default"] == ""
    assert httpx.get(f"{api}/v1/feature-services/nope").status_code == 404


def test_consumer_lag_is_in_metrics_readyz_and_stack_status(stack):
    """Lake ingest and the speed job publish how far behind they are; past
    LFP_API_MAX_LAG_RECORDS the API is not ready and says which consumer."""
    import redis
    from typer.testing import CliRunner

    from infra.cli import app
    from online_store import open_store
    from online_store.keys import KeySpace

    api = stack.settings.api_url

    def lag_samples() -> dict:
        text = httpx.get(f"{api}/metrics").text
        return {
            (s.labels["consumer"], s.labels["topic"]): s.value
            for family in text_string_to_metric_families(text)
            if family.name == "lfp_consumer_lag_records"
            for s in family.samples
        }

    wait_for(
        lambda: {("lake-ingest", "events"), ("speed-job", "events")} <= set(lag_samples()),
        60,
        "both consumers' lag in /metrics",
    )
    store = open_store(stack.settings)
    try:
        store.publish_lag("slow-consumer", {"events": 10**9})

        def slow_named() -> httpx.Response | None:
            # /readyz reads Redis at most once per LFP_API_OPS_INTERVAL_S: the next read has it.
            response = httpx.get(f"{api}/readyz")
            return response if "slow-consumer" in response.text else None

        stuck = wait_for(slow_named, 10, "/readyz to name the slow consumer", 0.2)
        assert stuck.status_code == 503
        assert any(
            "slow-consumer is 1000000000 records behind" in p for p in stuck.json()["problems"]
        )
        assert stuck.json()["consumer_lag"]["slow-consumer/events"] == 10**9
    finally:
        lag_key = KeySpace(stack.settings.key_prefix).consumer_lag
        redis.Redis.from_url(stack.settings.redis_url).hdel(lag_key, "slow-consumer|events")
        store.close()
        # Leave /readyz as found for the next test: its shared answer lasts an interval.
        wait_for(
            lambda: "slow-consumer" not in httpx.get(f"{api}/readyz").text,
            10,
            "/readyz to forget the slow consumer",
            0.2,
        )
    status = CliRunner().invoke(app, ["stack", "status"], env={"COLUMNS": "200"})
    assert status.exit_code == 0 and "records behind" in status.output
    assert "events " in status.output.split("lake-ingest behind:")[1].splitlines()[0]


def test_readyz_reports_the_batch_view_and_its_age(stack):
    api = stack.settings.api_url
    assert httpx.get(f"{api}/healthz").json() == {"status": "ok"}

    def settled() -> httpx.Response | None:
        """/readyz once its only problem, if any, is a missing batch view. Earlier tests
        lose Redis twice: the speed job then replays its topics, and on this loaded
        machine can go a checkpoint or two past the session's 45 s LFP_CONSUMER_STALL_S
        without committing (reported, rightly, until it commits)."""
        answer = httpx.get(f"{api}/readyz")
        problems = answer.json()["problems"]
        if answer.status_code == 200 or problems == [p for p in problems if "no batch" in p]:
            return answer
        return None

    first = wait_for(settled, 180, "/readyz with no consumer problem")
    if first.status_code == 503:  # no batch run yet in this session
        assert "no batch view yet" in " ".join(first.json()["problems"])
        stack.run_batch(align_cutoff(now_ms()))
    ready = httpx.get(f"{api}/readyz")
    assert ready.status_code == 200, ready.text
    body = Readiness.model_validate(ready.json())
    assert body.ready and body.problems == [] and body.batch is not None
    assert 0 <= body.batch_age_s < stack.settings.batch_horizon_s
    assert body.batch_age_s == pytest.approx((now_ms() - body.batch.cutoff) / 1000, abs=30)


MetricKey = tuple[str, frozenset[tuple[str, str]]]


def _metric(name: str, **labels: str) -> MetricKey:
    return name, frozenset(labels.items())


def _metric_samples(settings) -> dict[MetricKey, float]:
    """Every sample /metrics exposes, parsed by prometheus_client's own parser."""
    text = httpx.get(f"{settings.api_url}/metrics").text
    return {
        _metric(sample.name, **sample.labels): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_expose_latency_entities_freshness_and_redis_errors(stack, served_users):
    users, _ = served_users
    before = _metric_samples(stack.settings)
    body = {"feature_service": "ranking_features", "entities": users}
    post(stack.settings, "/v1/features", body)
    served = post(stack.settings, "/v1/features", body).json()
    samples = _metric_samples(stack.settings)
    latency = _metric(
        "lfp_api_request_duration_seconds_count",
        endpoint="/v1/features",
        method="POST",
        status="200",
    )
    assert samples[latency] >= 1
    entities = _metric("lfp_api_entities_per_request_bucket", endpoint="/v1/features", le="5.0")
    assert samples[entities] >= 1
    speed = samples[_metric("lfp_feature_freshness_seconds", group="user_activity", view="speed")]
    assert 0 <= speed < 600
    assert _metric("lfp_api_redis_errors_total") in samples
    # Each view read (3 groups per user) is a cache hit or a miss; with a batch view
    # serving, the cache holds the views just read.
    lookups = [_metric(f"lfp_api_batch_cache_{m}_total") for m in ("hits", "misses")]
    assert sum(samples[m] - before[m] for m in lookups) >= 2 * 3 * len(users)
    if served["batch"] is not None:
        assert samples[_metric("lfp_api_batch_cache_entries")] >= 3 * len(users)


def test_openapi_documents_every_endpoint_with_examples(stack):
    spec = httpx.get(f"{stack.settings.api_url}/openapi.json").json()
    for path in [
        "/v1/features",
        "/v1/features/{group}/{entity_id}",
        "/v1/feature-services",
        "/v1/feature-services/{name}",
        "/get-online-features",
        "/healthz",
        "/readyz",
        "/metrics",
    ]:
        assert path in spec["paths"], path
    for path, model in [
        ("/v1/features", "FeaturesRequest"),
        ("/get-online-features", "FeastRequest"),
    ]:
        body = spec["paths"][path]["post"]["requestBody"]
        assert body["required"] and body["content"]["application/json"]["schema"]["title"] == model
        assert body["content"]["application/json"]["schema"]["examples"]
    assert spec["components"]["schemas"]["FeaturesResponse"]["examples"]
    assert "securitySchemes" not in spec["components"]  # auth off: nothing to document
    with _client(stack, api_token=SecretStr("t")) as client:
        secured = client.get("/openapi.json").json()
    assert "HTTPBearer" in secured["components"]["securitySchemes"]


def _client(stack, **overrides) -> TestClient:
    return TestClient(create_app(stack.settings.model_copy(update=overrides)))


def test_bearer_auth_is_off_by_default_and_enforced_when_a_token_is_set(stack):
    body = {"feature_service": "ranking_features", "entities": ["u"]}
    assert post(stack.settings, "/v1/features", body).status_code == 200  # stack: auth off
    with _client(stack, api_token=SecretStr("s3cret-token")) as client:
        missing = client.post("/v1/features", json=body)
        assert missing.status_code == 401 and "missing bearer token" in missing.json()["detail"]
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = client.post("/v1/features", json=body, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["detail"] == "invalid bearer token"
        feast = client.post(
            "/get-online-features",
            json={"feature_service": "ranking_features", "entities": {"user_id": ["u"]}},
        )
        assert feast.status_code == 401
        ok = client.post(
            "/v1/features", json=body, headers={"Authorization": "Bearer s3cret-token"}
        )
        assert ok.status_code == 200
        assert client.get("/healthz").status_code == 200  # probes stay open


def test_cors_is_closed_by_default_and_open_only_to_configured_origins(stack):
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    with _client(stack) as client:
        response = client.options("/v1/features", headers=preflight)
        assert "access-control-allow-origin" not in response.headers
    with _client(stack, api_cors_origins=["https://app.example"]) as client:
        allowed = client.options("/v1/features", headers=preflight)
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        other = client.options(
            "/v1/features", headers={**preflight, "Origin": "https://evil.example"}
        )
        assert "access-control-allow-origin" not in other.headers


def test_without_a_batch_view_features_are_503_unless_speed_only_values_are_allowed(
    stack, served_users
):
    """A namespace with speed tiles and no batch pointer (what a Redis that lost its data
    and got tiles again looks like): never a 200 with identities passed off as values."""
    import uuid

    import redis

    from online_store.keys import KeySpace

    users, _ = served_users
    prefix = f"nobatch-{uuid.uuid4().hex[:8]}"
    live, empty = KeySpace(stack.settings.key_prefix), KeySpace(prefix)
    client = redis.Redis.from_url(stack.settings.redis_url)
    tiles = client.hgetall(live.speed_tiles("user_activity", users[0]))
    assert tiles
    client.hset(empty.speed_tiles("user_activity", users[0]), mapping=tiles)
    body = {"features": ["user_activity:event_count_1h"], "entities": [users[0], "ghost"]}
    feast = {"features": ["user_activity:event_count_1h"], "entities": {"user_id": [users[0]]}}
    with _client(stack, key_prefix=prefix) as client_api:
        for response in (
            client_api.post("/v1/features", json=body),
            client_api.get(f"/v1/features/user_activity/{users[0]}"),
            client_api.post("/get-online-features", json=feast),
        ):
            assert response.status_code == 503
            detail = response.json()["detail"]
            assert "no batch view is serving" in detail and "lfp batch run" in detail
            assert "LFP_API_SERVE_SPEED_ONLY" in detail
    with _client(stack, key_prefix=prefix, api_serve_speed_only=True) as client_api:
        served = client_api.post("/v1/features", json=body).json()
        assert served["batch"] is None
        assert served["vectors"][0]["values"][0] >= 1  # the speed tiles' events
        assert {s for v in served["vectors"] for s in v["statuses"]} == {"speed_only"}
        group = client_api.get(f"/v1/features/user_activity/{users[0]}").json()
        assert set(group["statuses"].values()) == {"speed_only"}
    client.delete(empty.speed_tiles("user_activity", users[0]))
