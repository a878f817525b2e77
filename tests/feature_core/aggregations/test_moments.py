"""variance and stddev: within 1e-9 relative of the two-pass reference however the values
are merged (one by one, in any tree, by the sweep's windows, by Spark's finishing), values
with a large common offset included."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feature_core.aggregations import Options, Ranges, aggregation_kind
from feature_core.aggregations.moments import MOMENTS, combine_moments
from feature_core.definitions import Aggregation, DefinitionError, Entity, FeatureGroup
from feature_core.sweep import column_events
from tests.feature_core.aggregations.catalog import SOURCE

KINDS = [
    aggregation_kind(name, Options(population=population))
    for name in ("variance", "stddev")
    for population in (False, True)
]
KIND_IDS = ["variance", "variance_pop", "stddev", "stddev_pop"]


def _offset(offset: float, scale: float) -> st.SearchStrategy[float]:
    return st.floats(-1, 1).map(lambda noise: offset + scale * noise)


def _values(max_size: int = 40) -> st.SearchStrategy[list[float | int]]:
    """Values of one family per list: the issue's case (1e9 + noise in [-1, 1]) and its
    relatives (other offsets, signs and noise scales; timestamps in ms are 1.7e12 plus
    noise), ordinary floats, integers."""
    families = [
        st.lists(_offset(1e9, 1.0), max_size=max_size),
        st.tuples(
            st.sampled_from([1e9, -1e9, 1.7e12, 1e15]), st.sampled_from([1e-3, 1.0, 1e3])
        ).flatmap(lambda f: st.lists(_offset(*f), max_size=max_size)),
        st.lists(st.floats(-1e6, 1e6), max_size=max_size),
        st.lists(st.integers(-(10**12), 10**12), max_size=max_size),
        st.lists(st.integers(1_700_000_000_000, 1_700_000_000_000 + 10**6), max_size=max_size),
    ]
    return st.one_of(families)


def within(got: float | None, want: float | None) -> bool:
    """At most 1e-9 relative (both null, or both zero, count as equal)."""
    if want is None or got is None:
        return got is None and want is None
    return abs(got - want) <= 1e-9 * abs(want)


def _fold(values) -> object:
    partial = MOMENTS.identity
    for value in values:
        partial = MOMENTS.merge(partial, MOMENTS.lift(value, 0))
    return partial


def _check_all(partial, values) -> None:
    events = [(0, v) for v in values]
    for kind in KINDS:
        got, want = kind.finalize((partial,)), kind.reference(events, 0, 0)
        assert within(got, want), (kind.name, kind.options.population, got, want)


@settings(max_examples=300, deadline=None)
@given(_values())
def test_the_reference_is_the_exact_variance(values):
    """The truth the engines are held to: within 1e-14 of rational arithmetic."""
    if len(values) < 2:
        return
    exact_values = [Fraction(float(v)) for v in values]
    mean = sum(exact_values) / len(values)
    exact = sum((v - mean) ** 2 for v in exact_values) / (len(values) - 1)
    got = KINDS[0].reference([(0, v) for v in values], 0, 0)
    # A squared deviation below 2^-1022 is subnormal, good to 2^-1075 absolute only (the
    # variance of [0.0, 5e-253] is 1.4e-505: 0.0 is the nearest float).
    underflow = len(values) * Fraction(2) ** -1074
    assert abs(Fraction(got) - exact) <= Fraction(1, 10**14) * exact + underflow


@settings(max_examples=300, deadline=None)
@given(_values())
def test_folding_one_value_at_a_time_is_within_1e_9_of_the_reference(values):
    _check_all(_fold(values), values)


@settings(max_examples=300, deadline=None)
@given(_values(), st.randoms(use_true_random=False))
def test_merging_in_any_tree_is_within_1e_9_of_the_reference(values, rng):
    """Partials of random runs of values, merged pairwise at random: merge order as
    tiles, buckets and two-phase engines have it."""
    parts = []
    start = 0
    while start < len(values):
        end = start + rng.randint(1, 6)
        parts.append(_fold(values[start:end]))
        start = end
    rng.shuffle(parts)
    while len(parts) > 1:
        i = rng.randrange(len(parts) - 1)
        parts[i : i + 2] = [MOMENTS.merge(parts[i], parts[i + 1])]
    _check_all(parts[0] if parts else MOMENTS.identity, values)


@settings(max_examples=300, deadline=None)
@given(_values(max_size=200))
def test_spark_finishing_two_pass_is_within_1e_9_of_the_reference(values):
    """What the batch job does with a bucket's collected values (and from_pairs)."""
    _check_all(MOMENTS.from_spark(list(map(float, values))), values)
    _check_all(MOMENTS.from_pairs((0, v) for v in values), values)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_the_windowed_form_is_within_1e_9_of_the_reference(data):
    """The sweep's two-stack form over sliding ranges, nulls and ties included."""
    values = data.draw(_values(max_size=60))
    with_nulls = [None if data.draw(st.integers(0, 9)) == 0 else v for v in values]
    times = np.array(
        sorted(
            data.draw(st.lists(st.integers(0, 100), min_size=len(values), max_size=len(values)))
        ),
        dtype=np.int64,
    )
    column = column_events(times, with_nulls)
    ends = np.array(sorted(data.draw(st.lists(st.integers(0, 110), min_size=1, max_size=12))))
    width = data.draw(st.integers(1, 120))
    lo = np.maximum.accumulate(np.searchsorted(times, ends - width, side="left"))
    hi = np.searchsorted(times, ends, side="left")
    partials = MOMENTS.windowed(column, Ranges(lo, hi))
    for partial, start, end in zip(partials, lo.tolist(), hi.tolist(), strict=True):
        _check_all(partial, [v for v in column.values[start:end] if v is not None])


@settings(max_examples=200, deadline=None)
@given(_values())
def test_a_partial_reads_back_from_json_as_itself(values):
    partial = _fold(values)
    assert MOMENTS.normalize(orjson.loads(orjson.dumps(partial))) == partial
    assert MOMENTS.from_flink(orjson.dumps(partial).decode()) == partial


def test_the_counts_below_which_the_value_is_null():
    """Sample forms (VAR_SAMP, STDDEV_SAMP) are null under two values, population forms
    (VAR_POP, STDDEV_POP) without values, as in SQL."""
    variance, variance_pop, stddev, stddev_pop = KINDS
    one = (MOMENTS.lift(3.5, 0),)
    for kind in KINDS:
        assert kind.finalize((None,)) is None and kind.reference([], 0, 0) is None
    assert variance.finalize(one) is None and stddev.finalize(one) is None
    assert variance_pop.finalize(one) == 0.0 == stddev_pop.finalize(one)
    two = (MOMENTS.merge(one[0], MOMENTS.lift(5.5, 1)),)
    assert variance.finalize(two) == 2.0 and variance_pop.finalize(two) == 1.0
    assert stddev.finalize(two) == math.sqrt(2.0) and stddev_pop.finalize(two) == 1.0


def test_an_integer_column_is_computed_in_floats():
    partial = _fold([2**53 + 1, 2**53 + 3])
    assert partial == [2, float(2**53 + 2), 8.0, 0.0]  # as doubles they are 2^53 and 2^53 + 4


def test_merging_is_chans_formula():
    left, right = _fold([1.0, 2.0, 3.0]), _fold([10.0, 20.0])
    n, mean, m2, low = combine_moments(left, right)
    values = [1.0, 2.0, 3.0, 10.0, 20.0]
    assert (n, mean + low) == (5, sum(values) / 5)
    assert m2 == pytest.approx(sum((v - 7.2) ** 2 for v in values), rel=1e-15)


@pytest.mark.parametrize("function", ["variance", "stddev"])
def test_only_numeric_columns_and_a_boolean_population(function):
    def group(column: str) -> FeatureGroup:
        return FeatureGroup("g", Entity("thing", "k"), SOURCE, [Aggregation(function, column)])

    for column in ("x", "n", "t"):
        group(column).validate()
    for column in ("s", "b", "c"):
        with pytest.raises(DefinitionError, match="needs a numeric column"):
            group(column).validate()
    with pytest.raises(DefinitionError, match="population must be true or false"):
        Aggregation(function, "x", population="yes").kind_for(SOURCE)  # type: ignore[arg-type]
