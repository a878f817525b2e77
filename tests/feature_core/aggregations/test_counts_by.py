"""count_by: options, served maps, and the truncated partial's independence of how events
are split into partials and in which order those are merged."""

from __future__ import annotations

import random
from collections import Counter

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feature_core.aggregations import Primitive, Result, aggregation_kind
from feature_core.aggregations.counts_by import CountBy, CountByKind
from feature_core.definitions import Aggregation, DefinitionError
from tests.feature_core.aggregations.catalog import SOURCE, group

# Hostile text: quotes, backslashes, control characters, every plane (no lone surrogates:
# they are not valid JSON text).
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=6)
VALUES_OF_A_TYPE = st.one_of(
    st.lists(TEXT | st.sampled_from(["", "a", "b", '"', "\\", "\U0001f600"]), max_size=40),
    st.lists(st.integers(-(2**63), 2**63 - 1) | st.integers(-12, 12), max_size=40),
    st.lists(st.booleans(), max_size=40),
)


def smallest_counts(values: list, max_keys: int | None) -> list[list]:
    """Plainly: every value's count, the max_keys smallest values, ascending."""
    counts = Counter(values)
    return [[v, counts[v]] for v in sorted(counts)[:max_keys]]


def test_max_keys_is_required_without_declared_values():
    with pytest.raises(ValueError, match="count_by needs max_keys") as raised:
        aggregation_kind("count_by")
    assert "\n" not in str(raised.value)
    with pytest.raises(DefinitionError, match="s_count_by: count_by needs max_keys"):
        group(["lifetime"], [Aggregation("count_by", "s")]).validate()


@pytest.mark.parametrize("max_keys", [0, -1, True, 2.5])
def test_max_keys_below_one_or_not_an_integer_is_refused(max_keys):
    with pytest.raises(ValueError, match="max_keys must be an integer >= 1"):
        aggregation_kind("count_by", max_keys=max_keys)


@pytest.mark.parametrize("field", ["x", "t"])
def test_float_and_timestamp_fields_are_refused(field):
    with pytest.raises(DefinitionError, match="count_by needs a string, integer or boolean"):
        group(["lifetime"], [Aggregation("count_by", field, max_keys=3)]).validate()


def test_declared_values_need_no_max_keys_and_are_never_truncated():
    group(["lifetime"], [Aggregation("count_by", "c")]).validate()
    kind = Aggregation("count_by", "c", max_keys=1).kind_for(SOURCE)
    assert kind.primitives == (Primitive("count_by", None),)


def test_declared_values_are_served_in_declared_order_with_zeros():
    kind = Aggregation("count_by", "c").kind_for(SOURCE)
    (primitive,) = kind.primitives
    partial = primitive.from_pairs([(1, "blue"), (2, "blue"), (3, "red")])
    served = kind.finalize((partial,))
    assert list(served.items()) == [("red", 1), ("green", 0), ("blue", 2)]
    assert list(kind.finalize((None,)).items()) == [("red", 0), ("green", 0), ("blue", 0)]


def test_integers_order_by_value_and_are_keyed_by_their_decimal_text():
    kind = aggregation_kind("count_by", max_keys=3)
    (primitive,) = kind.primitives
    events = [(0, v) for v in [10, 9, 10, -2, 100, 11, 9, 10]]
    served = kind.finalize((primitive.from_pairs(events),))
    assert list(served.items()) == [("-2", 1), ("9", 2), ("10", 3)]  # 10 after 9
    assert served == kind.reference(events, 0, 0)
    assert kind.finalize((None,)) == {} == kind.reference([], 0, 0)


def test_booleans_are_keyed_true_and_false():
    kind = aggregation_kind("count_by", max_keys=2)
    (primitive,) = kind.primitives
    events = [(0, True), (1, False), (2, True)]
    assert list(kind.finalize((primitive.from_pairs(events),)).items()) == [
        ("false", 1),
        ("true", 2),
    ]
    one = aggregation_kind("count_by", max_keys=1)
    assert one.finalize((one.primitives[0].from_pairs(events),)) == {"false": 1}


def test_declared_integer_and_boolean_values_are_keyed_as_text():
    kind = aggregation_kind("count_by", values=(3, 1, 3, 2))
    (primitive,) = kind.primitives
    served = kind.finalize((primitive.from_pairs([(0, 1), (0, 1), (0, 2)]),))
    assert list(served.items()) == [("3", 0), ("1", 2), ("2", 1)]
    flags = aggregation_kind("count_by", values=(True, False))
    assert list(flags.finalize((None,)).items()) == [("true", 0), ("false", 0)]


@settings(max_examples=300, deadline=None)
@given(
    values=VALUES_OF_A_TYPE,
    max_keys=st.one_of(st.none(), st.integers(1, 6)),
    seed=st.integers(0, 2**32),
)
def test_any_split_merged_in_any_order_gives_the_same_exact_partial(values, max_keys, seed):
    """Events split arbitrarily into partials, merged pairwise in a random order (a random
    tree, not a left fold): always the counts of the max_keys smallest values, exact."""
    primitive = CountBy("count_by", max_keys)
    rng = random.Random(seed)
    parts: list = []
    for value in values:  # each part folded from its events
        if not parts or rng.random() < 0.3:
            parts.append(primitive.identity)
        at = rng.randrange(len(parts))
        parts[at] = primitive.merge(parts[at], primitive.lift(value, 0))
    parts.append(primitive.identity)
    rng.shuffle(parts)
    while len(parts) > 1:
        i = rng.randrange(len(parts) - 1)
        left, right = parts.pop(i), parts.pop(i)
        parts.insert(
            i, primitive.merge(left, right) if rng.random() < 0.5 else primitive.merge(right, left)
        )
    want = smallest_counts(values, max_keys) or None
    assert parts[0] == want
    assert primitive.merge_many(rng.sample(parts, len(parts))) == want
    assert primitive.from_pairs((0, v) for v in values) == want
    assert primitive.from_spark(values) == want  # COLLECT_LIST's raw values


@settings(max_examples=200, deadline=None)
@given(values=VALUES_OF_A_TYPE, max_keys=st.one_of(st.none(), st.integers(1, 6)))
def test_the_partial_round_trips_through_json(values, max_keys):
    primitive = CountBy("count_by", max_keys)
    partial = primitive.from_pairs((0, v) for v in values)
    assert primitive.normalize(orjson.loads(orjson.dumps(partial))) == partial
    assert primitive.from_flink(orjson.dumps(partial)) == partial


def test_normalize_restores_the_canonical_form_of_any_pair_list():
    primitive = CountBy("count_by", 2)
    assert primitive.normalize([[10, 1], [9, 2], [10, 3], [11, 1]]) == [[9, 2], [10, 4]]
    assert primitive.normalize([]) is None
    assert primitive.normalize(None) is None


def test_kind_is_registered_with_its_result_type():
    kind = aggregation_kind("count_by", max_keys=5)
    assert isinstance(kind, CountByKind)
    assert kind.result == Result("integer", "map")
    assert kind.primitives[0].key == "count_by5"
