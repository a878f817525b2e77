"""top_k and bottom_k: the k largest / smallest values, duplicates kept, in Python's order
(strings by code point), partials bounded by k and unchanged by a JSON round trip."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feature_core.aggregations import Primitive, Ranges, aggregation_kind, merge_all
from feature_core.definitions import Aggregation, DefinitionError, Entity, FeatureGroup
from feature_core.sweep import column_events
from tests.feature_core.aggregations.catalog import SOURCE

# Every plane of Unicode: Python orders str by code point, UTF-16 would put U+10000..
# (surrogate pairs, 0xD800..) before U+E000..U+FFFF.
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=6)
VALUES = {
    "integer": st.integers(-(2**63), 2**63 - 1),
    "float": st.floats(allow_nan=False, allow_infinity=False),
    "string": TEXT,
}


def fold(primitive: Primitive, values: list) -> list:
    return merge_all((primitive,), ((primitive.lift(v, 0),) for v in values))[0]


@pytest.mark.parametrize(
    ("name", "values", "k", "expected"),
    [
        ("top_k", [5, 3, 5], 2, [5, 5]),  # duplicates kept, as Chronon's TopK
        ("bottom_k", [5, 3, 5, 3], 3, [3, 3, 5]),
        ("top_k", [1.5, -2.0], 5, [1.5, -2.0]),  # fewer than k: all of them
        ("bottom_k", [], 2, []),
        ("top_k", ["a", "\uffff", "\U0001f600", "é"], 3, ["\U0001f600", "\uffff", "é"]),
        ("bottom_k", ["b", "", "ab", "B"], 2, ["", "B"]),
    ],
)
def test_the_k_largest_or_smallest_values_in_order(name, values, k, expected):
    kind = aggregation_kind(name, k=k)
    ir = merge_all(kind.primitives, ((p.lift(v, 0) for p in kind.primitives) for v in values))
    assert kind.finalize(tuple(ir)) == expected
    assert kind.reference([(0, v) for v in values], 0, 0) == expected


@pytest.mark.parametrize("k", [None, 0, -3, 2.5, True, "3"])
def test_k_must_be_an_integer_of_at_least_one(k):
    for name in ("top_k", "bottom_k"):
        with pytest.raises(ValueError, match=rf"{name} needs an integer k >= 1, got k="):
            aggregation_kind(name, k=k)


def test_a_definition_with_a_bad_k_or_column_says_so():
    def validate(aggregation: Aggregation) -> None:
        FeatureGroup("g", Entity("thing", "k"), SOURCE, aggregations=[aggregation]).validate()

    with pytest.raises(DefinitionError, match="top_k needs an integer k >= 1, got k=None"):
        validate(Aggregation("top_k", "x"))
    with pytest.raises(
        DefinitionError, match=r"bottom_k needs a .*string column; 'b' is a boolean"
    ):
        validate(Aggregation("bottom_k", "b", k=2))
    for column in ("x", "n", "s", "t"):  # float, integer, string, timestamp
        validate(Aggregation("top_k", column, k=2))


@settings(max_examples=200, deadline=None)
@given(
    data=st.data(),
    name=st.sampled_from(["top_k", "bottom_k"]),
    field=st.sampled_from(sorted(VALUES)),
    k=st.integers(1, 6),
)
def test_any_split_merges_to_the_plain_answer_and_survives_json(data, name, field, k):
    values = data.draw(st.lists(VALUES[field], max_size=20))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(values)), max_size=4)))
    primitive = Primitive(name, k)
    parts = [values[a:b] for a, b in zip([0, *cuts], [*cuts, len(values)], strict=True)]
    partials = [fold(primitive, part) for part in parts]
    assert all(len(p) <= k for p in partials)
    merged = primitive.merge_many(partials)
    expected = aggregation_kind(name, k=k).reference([(0, v) for v in values], 0, 0)
    assert merged == expected
    assert [type(v) for v in merged] == [type(v) for v in expected]
    stored = primitive.normalize(orjson.loads(orjson.dumps(merged)))
    assert stored == merged and [type(v) for v in stored] == [type(v) for v in merged]


@settings(max_examples=100, deadline=None)
@given(
    data=st.data(),
    name=st.sampled_from(["top_k", "bottom_k"]),
    k=st.integers(1, 4),
)
def test_the_sweep_windows_hold_the_k_best_of_their_own_events(data, name, k):
    """Sliding windows over strings of every plane: each window's partial is the plain
    answer over its events only (events leave the window as well as enter it)."""
    drawn = data.draw(st.lists(st.tuples(st.integers(0, 30), st.one_of(st.none(), TEXT))))
    events = sorted(drawn, key=lambda event: event[0])
    times = np.array([t for t, _ in events], dtype=np.int64)
    column = column_events(times, [v for _, v in events])
    ends = np.arange(0, 36, 3)
    width = data.draw(st.integers(1, 12))
    lo = np.searchsorted(times, ends - width, side="left")
    hi = np.searchsorted(times, ends, side="left")
    primitive = Primitive(name, k)
    reference = aggregation_kind(name, k=k).reference
    for partial, start, end in zip(
        primitive.windowed(column, Ranges(lo, hi)), lo.tolist(), hi.tolist(), strict=True
    ):
        inside = [(0, v) for v in column.values[start:end] if v is not None]
        assert partial == reference(inside, 0, 0)
