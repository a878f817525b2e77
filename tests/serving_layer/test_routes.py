"""The ``/v1`` routes on an in-memory store (no Redis): a group endpoint answers what the
vector endpoint answers for the group's features, and the schema names the repo's
groups, services and join keys."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator, Sequence
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from demo.feature_repo import EVENT_TYPES
from feature_core.definitions import FeatureGroup, FeatureRepo
from feature_core.keys import entity_id
from feature_core.local_views import batch_doc, speed_tiles
from feature_core.merge import BatchPointer, merge_group
from feature_core.settings import Settings
from feature_core.windows import DAY_MS, HOUR_MS, MINUTE_MS, align_cutoff
from online_store.views import EntityViews, ViewsRequest, ViewsSnapshot
from serving_layer.app import create_app
from serving_layer.models import MAX_KEY_LENGTH

#: One-key and composite entities, integer-free: the demo shop and the fraud example.
REPO_MODULE = "tests.integration.both_workloads"
REPO = FeatureRepo.from_module(REPO_MODULE)
#: Query time, fixed so that time-dependent values (sessions, decay) match across calls.
NOW = int(time.time() * 1000)
CUTOFF = align_cutoff(NOW - HOUR_MS)
KEYS = {"user_id": "u1", "item_id": "i1", "card_id": "c1", "merchant_id": "m1", "account_id": "a1"}


def _events() -> list[dict[str, Any]]:
    """Events naming the entity of every group (each group reads its own fields), some
    before the batch cutoff and some after it."""
    events = []
    times = [CUTOFF - 3 * DAY_MS, CUTOFF - 2 * HOUR_MS, CUTOFF + MINUTE_MS, NOW - 1]
    for i, (t, kind) in enumerate(itertools.product(times, EVENT_TYPES)):
        events.append(
            {
                **KEYS,
                "event_id": f"e{i}",
                "transaction_id": f"t{i}",
                "login_id": f"l{i}",
                "event_type": kind,
                "category": ("books", "games")[i % 2],
                "amount": 10.0 * (i + 1),
                "currency": "EUR",
                "channel": "online",
                "country": "DE",
                "success": i % 2 == 0,
                "event_time": t,
                "ts": t,
                "login_time": t,
            }
        )
    return events


class MemoryStore:
    """Reads views built from :func:`_events` for the entity of :data:`KEYS` (any other
    entity has none), under a batch view or none."""

    def __init__(self, with_batch_view: bool) -> None:
        self.pointer = BatchPointer(1, CUTOFF, DAY_MS) if with_batch_view else None
        events = _events()
        self.views = {
            (group.name, entity_id([KEYS[k] for k in group.join_keys])): EntityViews(
                batch_doc(group, [e for e in events if e["ts"] < CUTOFF], CUTOFF, DAY_MS)
                if self.pointer
                else None,
                speed_tiles(group, events),
            )
            for group in REPO.groups
        }
        self.watermarks = {group.name: NOW - 1 for group in REPO.groups}

    def views_of(self, group: str, entity: str) -> EntityViews:
        return self.views.get((group, entity)) or EntityViews(None, {})

    async def read(self, parts: Sequence[ViewsRequest] = ()) -> ViewsSnapshot:
        entities = [
            self.views_of(group, entity)
            for groups, entity_ids in parts
            for entity in entity_ids
            for group in groups
        ]
        return ViewsSnapshot(self.pointer, self.watermarks, entities)


@pytest.fixture
def frozen_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("serving_layer.online.time", SimpleNamespace(time=lambda: NOW / 1000))


def _settings(feature_repo: str = REPO_MODULE, **values: Any) -> Settings:
    # Port 1: nothing listens; the store is replaced by a MemoryStore once started.
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        feature_repo=feature_repo,
        api_routers=[],
        redis_url="redis://127.0.0.1:1/0",
        **values,
    )


@pytest.fixture
def client(request: pytest.FixtureRequest, frozen_time: None) -> Iterator[TestClient]:
    with_batch_view, settings = request.param
    app = create_app(_settings(**settings), REPO)
    with TestClient(app) as test_client:
        app.state.store = app.state.online.store = MemoryStore(with_batch_view)
        yield test_client


def _entity(group: FeatureGroup, entity: dict[str, str]) -> dict[str, str] | str:
    keys = group.join_keys
    return entity[keys[0]] if len(keys) == 1 else {k: entity[k] for k in keys}


@pytest.mark.parametrize(
    "client",
    [
        pytest.param((True, {}), id="batch_view"),
        # No batch view serving and speed-only values allowed: every status speed_only.
        pytest.param((False, {"api_serve_speed_only": True}), id="speed_only"),
        # A group is served whole whatever LFP_API_MAX_FEATURES says (a features list is not).
        pytest.param((True, {"api_max_features": 1}), id="max_features_1"),
    ],
    indirect=True,
)
@pytest.mark.parametrize("group", REPO.groups, ids=lambda g: g.name)
@pytest.mark.parametrize("entity", [KEYS, dict.fromkeys(KEYS, "ghost")], ids=["known", "ghost"])
def test_a_group_endpoint_serves_what_the_vector_endpoint_serves(
    client: TestClient, group: FeatureGroup, entity: dict[str, str]
) -> None:
    store: MemoryStore = client.app.state.store  # type: ignore[attr-defined]
    query = {k: entity[k] for k in group.join_keys}
    answers = [client.get(f"/v1/features/{group.name}", params=query)]
    if len(group.join_keys) == 1:
        answers.append(client.get(f"/v1/features/{group.name}/{entity[group.join_keys[0]]}"))
    for answer in answers:
        assert answer.status_code == 200, answer.text
    by_keys = answers[0].json()
    assert all(answer.json() == by_keys for answer in answers)
    assert list(by_keys["features"]) == list(group.feature_names)

    names = [f.qualified_name for f in group.features]
    max_features = client.app.state.online.max_features  # type: ignore[attr-defined]
    if len(names) <= max_features:
        body = {"features": names, "entities": [_entity(group, entity)]}
        served = client.post("/v1/features", json=body)
        assert served.status_code == 200, served.text
        vector = served.json()
        [one] = vector["vectors"]
        assert one["entity_id"] == _entity(group, entity)  # as the body gave it
        assert list(by_keys["features"].values()) == one["values"]
        assert list(by_keys["statuses"].values()) == one["statuses"]
        assert by_keys["as_of"] == vector["as_of"] == NOW
        batch = vector["batch"] or {}
        assert by_keys["batch_cutoff"] == batch.get("cutoff")
        assert by_keys["batch_version"] == batch.get("version")
        assert by_keys["speed_watermark"] == vector["speed_watermarks"][group.name]

    # And what the merge of the group's views gives, as the group endpoint computed it alone.
    key = entity_id([entity[k] for k in group.join_keys])
    views = store.views_of(group.name, key)
    merged = merge_group(group, NOW, store.pointer, views.batch_doc, views.speed_tiles)
    assert by_keys["entity_id"] == key
    assert by_keys["features"] == {name: v.value for name, v in merged.items()}
    if store.pointer is None:
        assert set(by_keys["statuses"].values()) == {"speed_only"}
        assert by_keys["batch_cutoff"] is None and by_keys["batch_version"] is None
    else:
        assert by_keys["statuses"] == {name: v.status.value for name, v in merged.items()}
        assert (by_keys["batch_cutoff"], by_keys["batch_version"]) == (CUTOFF, 1)
    if entity is KEYS:
        assert "present" in by_keys["statuses"].values() or store.pointer is None


@pytest.mark.parametrize("client", [pytest.param((True, {}), id="batch_view")], indirect=True)
def test_group_requests_the_group_cannot_serve_name_the_problem(client: TestClient) -> None:
    unknown = client.get("/v1/features/nogroup/u1")
    assert unknown.status_code == 404
    assert unknown.json()["detail"].startswith("unknown feature group 'nogroup'; known: ")
    assert "card_merchant_history" in unknown.json()["detail"]
    assert client.get("/v1/features/nogroup", params={"user_id": "u1"}).status_code == 404

    composite = client.get("/v1/features/card_merchant_history/c1")
    assert composite.status_code == 422
    assert composite.json()["detail"] == (
        "card_merchant_history is keyed by ['card_id', 'merchant_id']: use "
        "GET /v1/features/card_merchant_history?card_id=...&merchant_id=..."
    )
    missing = client.get("/v1/features/card_merchant_history", params={"card_id": "c1"})
    assert missing.status_code == 422
    assert missing.json()["detail"] == (
        "card_merchant_history is keyed by ['card_id', 'merchant_id']; missing ['merchant_id']"
    )
    long = client.get("/v1/features/card_spend", params={"card_id": "x" * (MAX_KEY_LENGTH + 1)})
    assert long.status_code == 422
    assert long.json()["detail"] == (
        f"join key values must be 1 to {MAX_KEY_LENGTH} characters: ['card_id']"
    )
    # Another group's join key is no part of the entity: ignored when it is well-formed.
    other = client.get("/v1/features/card_spend", params={"card_id": "c1", "user_id": "u1"})
    assert other.status_code == 200 and other.json()["entity_id"] == "c1"


def _parameters(app: FastAPI, path: str) -> list[dict[str, Any]]:
    return app.openapi()["paths"][path]["get"]["parameters"]


def test_the_schema_names_the_repos_groups_services_and_join_keys() -> None:
    app = create_app(_settings(), REPO)
    groups = sorted(g.name for g in REPO.groups)
    for path in ("/v1/features/{group}/{entity_id}", "/v1/features/{group}"):
        parameters = _parameters(app, path)
        places = [(p["in"], p["name"]) for p in parameters]
        assert len(places) == len(set(places)), places  # each parameter documented once
        group = parameters[0]
        assert (group["in"], group["name"], group["required"]) == ("path", "group", True)
        assert group["schema"]["enum"] == groups
        assert group["description"] == "A feature group."
    entity = _parameters(app, "/v1/features/{group}/{entity_id}")[1]
    assert (entity["in"], entity["name"]) == ("path", "entity_id")
    assert entity["schema"]["maxLength"] == MAX_KEY_LENGTH

    queries = [p for p in _parameters(app, "/v1/features/{group}") if p["in"] == "query"]
    assert [p["name"] for p in queries] == sorted(REPO.join_key_types)
    assert {"card_id", "merchant_id", "user_id"} <= {p["name"] for p in queries}
    for parameter in queries:
        assert not parameter["required"]
        assert parameter["schema"] == {"type": "string", "minLength": 1, "maxLength": 256}

    [service] = _parameters(app, "/v1/feature-services/{name}")
    assert (service["in"], service["name"]) == ("path", "name")
    assert service["schema"]["enum"] == sorted(s.name for s in REPO.services)

    # Another repo, another app: its own names (nothing kept from the first).
    demo = FeatureRepo.from_module("demo.feature_repo")
    other = create_app(_settings("demo.feature_repo"), demo)
    [group, _] = _parameters(other, "/v1/features/{group}/{entity_id}")
    assert group["schema"]["enum"] == sorted(g.name for g in demo.groups)
    queries = [p["name"] for p in _parameters(other, "/v1/features/{group}") if p["in"] == "query"]
    assert queries == ["item_id", "user_id"]
    assert _parameters(app, "/v1/features/{group}")[0]["schema"]["enum"] == groups
