"""Resolving feature selections and laying out vectors (pure: no Redis)."""

from __future__ import annotations

import pytest

from demo import feature_repo as demo
from feature_core.definitions import FeatureRepo
from feature_core.local_views import speed_tiles
from feature_core.merge import ValueStatus
from feature_core.reference import evaluate
from feature_core.windows import MINUTE_MS
from online_store.views import EntityViews, ViewsSnapshot
from serving_layer.vectors import NotFoundError, RequestError, build_vectors, select

REPO = FeatureRepo.from_module(demo)
T0 = 1_800_000_000_000


def test_a_service_resolves_to_its_features_in_order_with_defaults():
    selection = select(REPO, feature_service="ranking_features")
    assert selection.feature_names == list(demo.ranking_features.features)
    assert selection.join_keys == ("user_id",)
    assert [g.name for g in selection.groups] == [
        "user_activity",
        "user_purchases",
        "user_browsing",
    ]
    defaults = {r.qualified_name: r.default for r in selection.refs if r.has_default}
    assert defaults == dict(demo.ranking_features.defaults)


@pytest.mark.parametrize(
    ("service", "features", "error", "message"),
    [
        (None, None, RequestError, "exactly one"),
        ("ranking_features", ("user_activity:event_count_1h",), RequestError, "exactly one"),
        ("nope", None, NotFoundError, "unknown feature service 'nope'"),
        (None, ("event_count_1h",), RequestError, "is not 'group:feature'"),
        (None, ("nogroup:x",), RequestError, "unknown feature group 'nogroup'"),
        (None, ("user_activity:nofeature",), RequestError, "has no feature 'nofeature'"),
        (
            None,
            ("user_activity:event_count_1h", "user_activity:event_count_1h"),
            RequestError,
            "more than once",
        ),
    ],
)
def test_bad_selections_name_the_problem(service, features, error, message):
    with pytest.raises(error, match=message):
        select(REPO, service, features)


def _snapshot(selection, entity_views):
    return ViewsSnapshot(None, {}, entity_views)


def test_vectors_follow_the_selection_order_and_fill_defaults_only_for_nulls():
    features = ("user_browsing:last_item_1h", "user_activity:event_count_1h")
    selection = select(REPO, features=features)
    event = {
        "user_id": "u1",
        "event_type": "view",
        "event_time": T0 - MINUTE_MS,
        "item_id": "i9",
        "category": "books",
    }
    groups = {g.name: g for g in selection.groups}
    views = []
    for entity in ("u1", "ghost"):
        for group in selection.groups:
            events = [event] if entity == "u1" else []
            views.append(EntityViews(None, speed_tiles(groups[group.name], events)))
    vectors = build_vectors(selection, _snapshot(selection, views), ["u1", "ghost"], T0)

    want = {
        name: evaluate(groups[name.split(":")[0]], [event], T0)["u1"][name.split(":")[1]]
        for name in features
    }
    assert vectors[0].entity_id == "u1"
    assert vectors[0].values == [want[name] for name in features] == ["i9", 1]
    assert vectors[0].statuses == [ValueStatus.PRESENT, ValueStatus.PRESENT]
    # An unknown entity is not an error: identities, status no_data.
    assert vectors[1].values == [None, 0]
    assert vectors[1].statuses == [ValueStatus.NO_DATA, ValueStatus.NO_DATA]


def test_a_service_default_replaces_a_null_but_not_a_natural_zero():
    selection = select(REPO, feature_service="ranking_features")
    views = [EntityViews(None, {}) for _ in selection.groups]
    [vector] = build_vectors(selection, _snapshot(selection, views), ["ghost"], T0)
    pairs = zip(vector.values, vector.statuses, strict=True)
    by_name = dict(zip(selection.feature_names, pairs, strict=True))
    assert by_name["user_browsing:last_item_1h"] == ("", ValueStatus.DEFAULT)
    assert by_name["user_purchases:avg_order_value_30d"] == (0.0, ValueStatus.DEFAULT)
    assert by_name["user_activity:event_count_1h"] == (0, ValueStatus.NO_DATA)
