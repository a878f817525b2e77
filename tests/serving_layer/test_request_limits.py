"""Requests cost what their size says: caps answered with a 422 naming them, and the
worst bodies of LFP_API_MAX_BODY_BYTES answered by status alone (no Redis: every check
here happens before the read; `make bench-serving ARGS=--hostile` times them)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import orjson
import pytest
from fastapi.testclient import TestClient

from feature_core.definitions import Aggregation, Entity, FeatureGroup, FeatureRepo
from feature_core.keys import entity_id
from feature_core.settings import Settings
from feature_core.sources import EventSource, Field
from serving_layer.app import create_app
from serving_layer.feast import typed_keys
from serving_layer.vectors import RequestError, select

DEMO = FeatureRepo.from_module("demo.feature_repo")
REF = "user_activity:event_count_1h"
JSON = {"content-type": "application/json"}


def _settings(**values: object) -> Settings:
    # Port 1: nothing listens, so a request that got as far as Redis would answer 503.
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        feature_repo="demo.feature_repo",
        api_routers=[],
        redis_url="redis://127.0.0.1:1/0",
        **values,
    )


@pytest.fixture(scope="module")
def api() -> Iterator[TestClient]:
    with TestClient(create_app(_settings(api_max_features=50, api_max_entities=20))) as client:
        yield client


def _post(api: TestClient, path: str, body: object) -> tuple[int, str]:
    response = api.post(path, content=orjson.dumps(body), headers=JSON)
    return response.status_code, response.json()["detail"]


def _one_megabyte(item: str, key: str, rest: dict) -> dict:
    """``rest`` with ``key`` a list of ``item`` filling a body of 1 MiB."""
    n = (1_048_576 - len(orjson.dumps({**rest, key: []})) - 64) // (len(item) + 3)
    return {**rest, key: [item] * n}


def test_a_features_list_over_the_cap_is_a_422_naming_it(api: TestClient) -> None:
    status, detail = _post(api, "/v1/features", {"features": [REF] * 51, "entities": ["u"]})
    assert status == 422
    assert detail.startswith("too many features: 51 > 50 (LFP_API_MAX_FEATURES)")


def test_entities_over_the_cap_are_a_422_naming_it(api: TestClient) -> None:
    status, detail = _post(api, "/v1/features", {"features": [REF], "entities": ["u"] * 21})
    assert (status, detail.split(";")[0]) == (
        422,
        "too many entities: 21 > 20 (LFP_API_MAX_ENTITIES)",
    )
    body = {"features": [REF], "entities": {"user_id": ["u"] * 21}}
    status, detail = _post(api, "/get-online-features", body)
    assert status == 422 and "(LFP_API_MAX_ENTITIES)" in detail


def test_the_feast_endpoint_caps_its_features_list(api: TestClient) -> None:
    body = {"features": [REF] * 51, "entities": {"user_id": ["u"]}}
    status, detail = _post(api, "/get-online-features", body)
    assert status == 422 and "(LFP_API_MAX_FEATURES)" in detail


def test_a_repeated_reference_under_the_cap_names_it_once(api: TestClient) -> None:
    status, detail = _post(api, "/v1/features", {"features": [REF] * 50, "entities": ["u"]})
    assert (status, detail) == (422, f"features listed more than once: {REF!r}")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        # The body: the shortest valid reference, repeated to fill 1 MiB.
        ("/v1/features", _one_megabyte("a:b", "features", {"entities": ["u"]})),
        ("/v1/features", _one_megabyte(REF, "features", {"entities": ["u"]})),
        ("/v1/features", _one_megabyte("u", "entities", {"features": [REF]})),
        ("/get-online-features", _one_megabyte("a:b", "features", {"entities": {"u": ["1"]}})),
        (
            "/get-online-features",
            _one_megabyte("u", "user_id", {"features": [REF]}) | {"features": [REF]},
        ),
    ],
    ids=["short-refs", "one-ref", "entities", "feast-refs", "feast-entities"],
)
def test_the_worst_bodies_of_a_megabyte_are_refused_by_their_cap(
    api: TestClient, path: str, body: dict
) -> None:
    if path == "/get-online-features" and "user_id" in body:
        body = {"features": body["features"], "entities": {"user_id": body["user_id"]}}
    status, detail = _post(api, path, body)
    assert status == 422 and "(LFP_API_MAX_" in detail


def test_a_megabyte_of_wrong_items_names_one_problem_not_every_item(api: TestClient) -> None:
    body = {"features": [1] * 200_000, "entities": ["u"]}
    status, detail = _post(api, "/v1/features", body)
    assert status == 422 and detail == "body.features.0: Input should be a valid string"
    keys = {f"k{i}": [True] for i in range(50_000)}
    status, detail = _post(api, "/get-online-features", {"features": [REF], "entities": keys})
    assert status == 422 and "at most 64 join keys, got 50000" in detail


def test_a_megabyte_entity_object_is_one_problem_not_two_per_key(api: TestClient) -> None:
    """An entity object of 80,000 keys with a wrong value each cost 160,000 problem
    reports (half a second of the event loop) before its size was checked."""
    entity = {f"k{i}": True for i in range(70_000)}  # just under 1 MiB
    status, detail = _post(api, "/v1/features", {"features": [REF], "entities": [entity]})
    assert status == 422 and "at most 64 join keys, got 70000" in detail
    assert len(detail) < 1000


def test_a_problem_never_echoes_a_huge_key_of_the_body(api: TestClient) -> None:
    body = {"features": [REF], "entities": ["u"], "x" * 500_000: 1}
    response = api.post("/v1/features", content=orjson.dumps(body), headers=JSON)
    assert response.status_code == 422 and len(response.content) < 1000


def test_an_integer_entity_past_64_bits_is_refused_like_a_long_text(api: TestClient) -> None:
    body = b'{"features": ["%s"], "entities": [%s]}' % (REF.encode(), b"9" * 4000)
    response = api.post("/v1/features", content=body, headers=JSON)
    assert response.status_code == 422 and "body.entities.0" in response.json()["detail"]


def test_the_feast_features_list_is_capped_beside_a_feature_service(api: TestClient) -> None:
    body = {"feature_service": "x", "features": [REF] * 51, "entities": {"user_id": ["u"]}}
    status, detail = _post(api, "/get-online-features", body)
    assert status == 422 and "(LFP_API_MAX_FEATURES)" in detail


def test_many_distinct_unknown_references_stop_at_the_first(api: TestClient) -> None:
    body = {"features": [f"g{i}:f" for i in range(50)], "entities": ["u"]}
    status, detail = _post(api, "/v1/features", body)
    assert status == 422 and detail.startswith("unknown feature group 'g0'")


# --- integer join keys: one canonical form on every endpoint -----------------------------

_INTS = EventSource(
    "ints",
    topic="ints",
    event_time="t",
    fields=[Field("k", "integer", required=True), Field("t", "timestamp", required=True)],
)
INT_REPO = replace(
    DEMO,
    groups=(FeatureGroup("g", Entity("e", "k"), _INTS, aggregations=[Aggregation("count")]),),
    services=(),
    extra_sources=(),
    derived_views=(),
    declared_request_fields=(),
)


def test_v1_and_feast_name_an_integer_key_given_as_text_or_number_alike() -> None:
    selection = select(INT_REPO, features=("g:count_lifetime",))
    ids = selection.entity_ids(["007", 7, {"k": "+7"}, {"k": 7}])
    feast = typed_keys(INT_REPO, {"k": ["007", 7]})["k"]
    assert list(ids) == ["7"] * 4
    assert [entity_id([v]) for v in feast] == ["7", "7"]


@pytest.mark.parametrize("value", ["4x", "7.0", " 7", "1_000", "\u0667", "9" * 20, True])
def test_an_integer_key_refuses_what_is_not_a_64_bit_integer(value: object) -> None:
    selection = select(INT_REPO, features=("g:count_lifetime",))
    with pytest.raises(RequestError, match=r"entities\[0\]\.k: integer values expected"):
        selection.entity_ids([{"k": value}] if value is True else [value])


def test_a_non_integer_for_an_integer_key_is_a_422_naming_the_key_on_every_endpoint() -> None:
    with TestClient(create_app(_settings(), INT_REPO)) as api:
        status, detail = _post(
            api, "/v1/features", {"features": ["g:count_lifetime"], "entities": ["x"]}
        )
        assert (status, detail) == (
            422,
            "entities[0].k: integer values expected (the join key is declared integer)",
        )
        body = {"features": ["g:count_lifetime"], "entities": {"k": ["x"]}}
        status, detail = _post(api, "/get-online-features", body)
        assert status == 422 and detail.startswith("entities.k: integer values expected")
        for path in ("/v1/features/g/x", "/v1/features/g?k=x"):
            response = api.get(path)
            assert response.status_code == 422
            assert response.json()["detail"].startswith("k: integer values expected")


def test_a_megabyte_of_unknown_fields_is_one_problem(api: TestClient) -> None:
    body = {f"k{i:06d}": True for i in range(60_000)}  # just under 1 MiB
    status, detail = _post(api, "/v1/features", body)
    assert status == 422 and "60000 unknown fields ('k000000', 'k000001', 'k000002', ...)" in detail
    status, detail = _post(api, "/v1/features", {"features": [REF], "entities": ["u"], "x": 1})
    assert status == 422 and detail == "body.x: Extra inputs are not permitted"
