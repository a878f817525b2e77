"""first and first_k mirror last and last_k: the smallest [time, value] pairs where those
keep the largest, so ties at one millisecond go to the smallest value."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feature_core.aggregations import Primitive, aggregation_kind
from feature_core.aggregations.pairs import ordered_pairs

# Few times, so many events share a millisecond; every value type a column can have.
_TIMES = st.integers(0, 3)
_VALUES = st.one_of(
    st.lists(st.tuples(_TIMES, st.text(max_size=3))),
    st.lists(st.tuples(_TIMES, st.integers(-5, 5))),
    st.lists(st.tuples(_TIMES, st.floats(-10, 10, allow_nan=False))),
    st.lists(st.tuples(_TIMES, st.booleans())),
)


def finalized(name: str, events: list[tuple[int, object]], **options: object) -> object:
    kind = aggregation_kind(name, **options)
    (primitive,) = kind.primitives
    return kind.finalize((primitive.from_pairs(events),))


def test_ties_at_one_millisecond_go_to_the_smallest_value_as_last_takes_the_largest():
    events = [(7, "m"), (5, "b"), (5, "a"), (5, "c"), (9, "z")]
    assert finalized("first", events) == "a"
    assert finalized("first_k", events, k=3) == ["a", "b", "c"]
    at_five = [e for e in events if e[0] == 5]
    assert finalized("last", at_five) == "c"
    assert finalized("last_k", at_five, k=3) == ["c", "b", "a"]
    assert finalized("first", [(5, True), (5, False)]) is False
    assert finalized("last", [(5, False), (5, True)]) is True


def test_strings_order_by_code_point_as_in_every_engine():
    # UTF-16 would put the astral character before U+FFFF.
    assert finalized("first", [(1, "\U0001f600"), (1, "\uffff")]) == "\uffff"


@settings(max_examples=300, deadline=None)
@given(events=_VALUES, k=st.integers(1, 6))
def test_first_k_is_last_k_reversed_when_both_keep_every_event(events, k):
    everything = len(events) or 1
    first_all = finalized("first_k", events, k=everything)
    assert first_all == finalized("last_k", events, k=everything)[::-1]
    assert finalized("first_k", events, k=k) == first_all[:k]
    assert finalized("first", events) == (first_all[0] if events else None)


@settings(max_examples=300, deadline=None)
@given(events=_VALUES, k=st.integers(1, 4))
def test_partials_survive_json_and_split_merges(events, k):
    for primitive in (Primitive("first"), Primitive("first_k", k)):
        halves = [events[::2], events[1::2]]
        partials = [primitive.from_pairs(half) for half in halves]
        whole = primitive.from_pairs(events)
        assert primitive.merge(*partials) == whole == primitive.merge_many(partials)
        assert primitive.normalize(orjson.loads(orjson.dumps(whole))) == whole


def test_the_k_way_merge_stops_after_k_pairs():
    partials = [[[1, "a"], [4, "d"]], [], [[2, "b"], [3, "c"]], None]
    assert ordered_pairs(partials, 3, newest=False) == [[1, "a"], [2, "b"], [3, "c"]]
    assert ordered_pairs(partials, None, newest=False) == [[1, "a"], [2, "b"], [3, "c"], [4, "d"]]


@pytest.mark.parametrize("k", [None, 0, -2])
def test_first_k_needs_a_positive_k(k):
    with pytest.raises(ValueError, match=r"first_k needs k >= 1"):
        aggregation_kind("first_k", k=k)


def _spark_raw(primitive: Primitive, events: list[tuple[int, object]]) -> object:
    """What Spark's aggregate of ``events`` returns: MAX (MIN) of the pair structs, or the
    sorted slice of k of them."""
    structs = sorted(({"t": t, "v": v} for t, v in events), key=lambda s: (s["t"], s["v"]))
    newest = primitive.kind.startswith("last")
    if primitive.param is None:
        return (structs[-1] if newest else structs[0]) if structs else None
    ordered = structs[::-1] if newest else structs
    return ordered[: primitive.param] if structs else None


@settings(max_examples=300, deadline=None)
@given(events=_VALUES, k=st.integers(1, 4))
def test_spark_aggregates_convert_to_what_the_pairs_merge_gives(events, k):
    for primitive in (
        Primitive("last"),
        Primitive("first"),
        Primitive("last_k", k),
        Primitive("first_k", k),
    ):
        raw = _spark_raw(primitive, events)
        assert primitive.from_spark(raw) == primitive.from_pairs(events)
