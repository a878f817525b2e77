"""The Feast endpoint's pure parts: timestamps as Feast prints them, typed join keys."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from feature_core.definitions import FeatureRepo
from feature_core.merge import ValueStatus
from serving_layer.feast import feast_timestamp, feast_value, typed_keys
from serving_layer.vectors import RequestError

REPO = FeatureRepo.from_module("tests.integration.both_workloads")


def test_timestamps_print_as_protobuf_json_does() -> None:
    assert feast_timestamp(0) == "1970-01-01T00:00:00Z"
    assert feast_timestamp(1796173200000) == "2026-12-02T01:00:00Z"
    assert feast_timestamp(1796173200123) == "2026-12-02T01:00:00.123Z"
    assert feast_timestamp(1796173200007) == "2026-12-02T01:00:00.007Z"


@given(st.integers(min_value=0, max_value=253402300799999))
def test_timestamps_parse_back_to_the_same_millisecond(ms: int) -> None:
    stamp = datetime.fromisoformat(feast_timestamp(ms).replace("Z", "+00:00"))
    assert round(stamp.timestamp() * 1000) == ms


def test_join_keys_take_their_declared_type_and_unknown_keys_are_dropped() -> None:
    typed = typed_keys(REPO, {"user_id": [7, "u"], "nope": [1], "card_id": ["c"]})
    assert typed == {"user_id": ["7", "u"], "card_id": ["c"]}


def test_an_integer_join_key_rejects_text_that_is_not_a_number() -> None:
    from dataclasses import replace

    from feature_core.definitions import Aggregation, Entity, FeatureGroup
    from feature_core.sources import EventSource, Field

    source = EventSource(
        "ints",
        topic="ints",
        event_time="t",
        fields=[Field("k", "integer", required=True), Field("t", "timestamp", required=True)],
    )
    group = FeatureGroup("g", Entity("e", "k"), source, aggregations=[Aggregation("count")])
    repo = replace(REPO, groups=(group,), services=(), derived_views=(), declared_request_fields=())
    assert typed_keys(repo, {"k": ["42", 7]}) == {"k": [42, 7]}
    with pytest.raises(RequestError, match="k: integer values expected"):
        typed_keys(repo, {"k": ["4x"]})


@pytest.mark.parametrize("empty", [None, [], {}])
def test_a_null_or_an_empty_list_or_map_is_a_null_value(empty) -> None:
    # Feast's SDK types a value from its JSON and cannot type an empty one.
    assert feast_value(empty, ValueStatus.PRESENT) == (None, "NULL_VALUE")


@pytest.mark.parametrize(
    "value", [0, 0.0, False, "", [0], [False], ["x"], [0.5], {"red": 0}, {"": 3}]
)
def test_falsy_scalars_and_non_empty_lists_and_maps_are_values(value) -> None:
    assert feast_value(value, ValueStatus.PRESENT) == (value, "PRESENT")
    assert feast_value(value, ValueStatus.NO_DATA) == (value, "PRESENT")
    assert feast_value(value, ValueStatus.SPEED_ONLY) == (value, "OUTSIDE_MAX_AGE")
