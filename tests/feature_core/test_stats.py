"""Feature statistics and PSI (feature_core.stats): properties over generated values."""

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feature_core.stats import (
    EMPTY_MAP,
    PSI_EPSILON,
    QUANTILE_LEVELS,
    Drift,
    FeatureStats,
    RunFeatureStats,
    TrainingFeatureStats,
    declared_kind,
    feature_stats,
    psi,
)
from feature_core.statuses import ValueStatus

numbers = st.one_of(
    st.none(),
    st.integers(-1_000_000, 1_000_000),
    st.floats(-1e9, 1e9, allow_nan=False, allow_infinity=False),
)
number_lists = st.lists(numbers, min_size=1, max_size=300)
words = st.sampled_from(["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n"])
text_lists = st.lists(st.one_of(st.none(), words), min_size=1, max_size=300)
map_lists = st.lists(
    st.one_of(st.none(), st.dictionaries(words, st.integers(0, 9), max_size=5)),
    min_size=1,
    max_size=200,
)
any_lists = st.one_of(number_lists, text_lists, map_lists, st.lists(st.booleans(), min_size=1))


@settings(deadline=None)
@given(any_lists)
def test_psi_of_values_against_their_own_statistics_is_zero(values):
    stats = feature_stats(values)
    assert psi(stats, values) == 0.0
    assert psi(stats, stats) == 0.0


@settings(deadline=None)
@given(any_lists, any_lists)
def test_psi_is_never_negative(baseline, current):
    stats = feature_stats(baseline)
    for value in (psi(stats, current), psi(stats, feature_stats(current))):
        assert value is None or value >= 0.0


@settings(deadline=None)
@given(any_lists)
def test_statistics_survive_json(values):
    """The journal stores JSON: a record read back bins and compares the same."""
    stats = feature_stats(values)
    again = FeatureStats.model_validate_json(stats.model_dump_json())
    assert again == stats
    assert psi(again, values) == 0.0


@settings(deadline=None, max_examples=50)
@given(st.integers(0, 2**32 - 1), st.floats(0.25, 1.0))
def test_a_larger_shift_gives_a_larger_psi(seed, step):
    """Steps of a quarter to one standard deviation. A smaller shift is within the
    sampling noise of two samples of 5,000 (in CI a small step's PSI, 0.0086, fell below
    the unshifted sample's, 0.0087); far larger ones put nearly every value past the
    baseline's top decile, one bin, and PSI stops growing."""
    rng = np.random.default_rng(seed)
    baseline = rng.normal(0.0, 1.0, 5000).tolist()
    stats = feature_stats(baseline)
    fresh = rng.normal(0.0, 1.0, 5000)
    shifts = [psi(stats, (fresh + shift).tolist()) for shift in (0.0, step, 2 * step)]
    assert shifts[0] < shifts[1] < shifts[2]
    assert shifts[0] < 0.02  # same distribution, another sample
    assert shifts[2] > 0.1 * step  # two steps of at least 0.1 sd move mass across deciles


@settings(deadline=None, max_examples=50)
@given(st.integers(0, 2**32 - 1))
def test_a_shifted_category_mix_gives_a_larger_psi(seed):
    rng = random.Random(seed)
    names = ["red", "green", "blue", "grey"]
    baseline = rng.choices(names, weights=[4, 3, 2, 1], k=4000)
    stats = feature_stats(baseline)
    near = rng.choices(names, weights=[4, 3, 2, 1], k=4000)
    moved = rng.choices(names, weights=[3, 3, 2, 2], k=4000)
    far = rng.choices(names, weights=[1, 2, 3, 4], k=4000)
    values = [psi(stats, near), psi(stats, moved), psi(stats, far)]
    assert values[0] < values[1] < values[2]
    assert values[2] > 0.25


@settings(deadline=None)
@given(st.lists(st.floats(-1e12, 1e12, allow_nan=False), min_size=1, max_size=500))
def test_quantiles_and_mean_equal_numpy_on_the_same_values(values):
    stats = feature_stats(values)
    want = np.quantile(np.array(values), QUANTILE_LEVELS)
    assert stats.quantiles is not None
    assert [stats.quantiles[str(level)] for level in QUANTILE_LEVELS] == [float(q) for q in want]
    assert stats.mean == pytest.approx(float(np.mean(values)), rel=1e-9, abs=1e-6)
    assert (stats.min, stats.max) == (min(values), max(values))


@settings(deadline=None)
@given(number_lists, st.lists(st.sampled_from(list(ValueStatus)), min_size=300, max_size=300))
def test_count_null_and_no_data_rates(values, statuses):
    statuses = statuses[: len(values)]
    stats = feature_stats(values, statuses, kind="numeric")
    assert stats.count == len(values)
    assert stats.null_rate == sum(v is None for v in values) / len(values)
    assert stats.no_data_rate == statuses.count(ValueStatus.NO_DATA) / len(values)
    assert stats.fractions is not None
    assert math.isclose(sum(stats.fractions), 0.0 if stats.null_rate == 1.0 else 1.0)


def test_empty_and_all_null_inputs():
    empty = feature_stats([], [], kind="numeric")
    assert (empty.count, empty.null_rate, empty.no_data_rate, empty.mean) == (0, 0.0, 0.0, None)
    assert psi(empty, [1.0, 2.0]) is None  # no baseline values: nothing to compare with
    assert psi(feature_stats([1.0, 2.0]), []) is None

    nulls = feature_stats([None] * 10, kind="numeric")
    assert (nulls.count, nulls.null_rate, nulls.quantiles, nulls.mean) == (10, 1.0, None, None)
    assert psi(nulls, [None] * 3) == 0.0
    # Every value null, then every value present: all the mass moved out of the null bin.
    turned = psi(nulls, [1.0] * 10)
    want = (1 - PSI_EPSILON) * math.log(1 / PSI_EPSILON) * 2
    assert turned == pytest.approx(want)
    # and a feature that turns null drifts by the same
    assert psi(feature_stats([1.0] * 10), [None] * 10) == pytest.approx(want)


def test_text_and_boolean_top_values_and_other_bin():
    values = ["a"] * 50 + ["b"] * 30 + [f"rare{i}" for i in range(20)] + [None] * 100
    stats = feature_stats(values)
    assert (stats.kind, stats.categories_of, stats.null_rate, stats.distinct) == (
        "categorical",
        "values",
        0.5,
        22,
    )
    assert stats.top is not None and [(t.value, t.share) for t in stats.top[:2]] == [
        ("a", 0.5),
        ("b", 0.3),
    ]
    assert stats.categories is not None and len(stats.categories) == 10
    assert stats.fractions is not None and stats.fractions[-1] == pytest.approx(0.12)  # 12 rare
    flags = feature_stats([True, True, False, None])
    assert flags.top is not None and [(t.value, t.share) for t in flags.top] == [
        ("true", 2 / 3),
        ("false", 1 / 3),
    ]
    assert psi(flags, [False, False, False, None]) > 0.25


def test_maps_are_summarized_by_their_keys():
    values = [{"x": 1, "y": 2}, {"x": 3}, {}, None]
    stats = feature_stats(values)
    assert (stats.kind, stats.categories_of, stats.null_rate) == ("categorical", "keys", 0.25)
    assert stats.top is not None
    shares = {t.value: t.share for t in stats.top}
    # of the three maps: two hold x, one y, one is empty
    assert shares == {"x": 2 / 3, "y": 1 / 3, EMPTY_MAP: 1 / 3}
    assert psi(stats, values) == 0.0
    assert psi(stats, [{"z": 1}] * 4) > 0.25  # keys never seen land in the other bin
    assert psi(stats, [{"x": 1}, {"y": 2}, {"x": 2}, None]) < psi(stats, [{}] * 4)


def test_kinds_that_differ_are_not_comparable():
    assert psi(feature_stats([1, 2, 3]), feature_stats(["a", "b"])) is None
    assert psi(feature_stats(["a"]), feature_stats([{"a": 1}])) is None
    lists = feature_stats([[1, 2], None], kind="other")
    assert (lists.kind, lists.null_rate, psi(lists, [[1]])) == ("other", 0.5, None)


def test_declared_kinds():
    assert declared_kind("integer", "scalar") == ("numeric", None)
    assert declared_kind("timestamp", "scalar") == ("numeric", None)
    assert declared_kind("boolean", "scalar") == ("categorical", "values")
    assert declared_kind("float", "map") == ("categorical", "keys")
    assert declared_kind("string", "list") == ("other", None)


def test_text_in_a_numeric_feature_and_nan_count_as_null():
    stats = feature_stats([1.0, float("nan"), "x", None, 3.0], kind="numeric")
    assert stats.null_rate == 0.6 and stats.mean == 2.0


@settings(deadline=None, max_examples=30)
@given(st.integers(0, 2**32 - 1))
def test_psi_between_two_records_approximates_psi_of_the_values(seed):
    """Binned alike it is exact; else read from the quantiles it stays close."""
    rng = np.random.default_rng(seed)
    baseline = feature_stats(rng.normal(0, 1, 4000).tolist())
    values = rng.normal(0.7, 1.3, 4000).tolist()
    exact = psi(baseline, values)
    estimated = psi(baseline, feature_stats(values))
    assert exact is not None and estimated is not None
    assert estimated == pytest.approx(exact, rel=0.25)


def test_records_round_trip_and_name_the_flagged_features():
    stats = feature_stats([1.0, 2.0])
    record = RunFeatureStats(
        at_ms=1,
        run_id="r",
        view_version=3,
        cutoff=0,
        entities={"g": 2},
        sampled={"g": 2},
        features={"g:a": stats, "g:b": stats},
        drift={"g:a": Drift(previous_run=0.3, training=None), "g:b": Drift(previous_run=0.01)},
        threshold=0.2,
    )
    assert RunFeatureStats.model_validate_json(record.model_dump_json()) == record
    assert record.flagged() == {"previous_run": ["g:a"], "training": []}
    assert record.flagged(0.5) == {"previous_run": [], "training": []}
    training = TrainingFeatureStats(
        at_ms=2, training_set="/t", rows=2, sampled=2, features={"g:a": stats}
    )
    assert TrainingFeatureStats.model_validate_json(training.model_dump_json()) == training
    with pytest.raises(ValueError):
        RunFeatureStats.model_validate({**record.model_dump(), "surprise": 1})


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(-(2**80), 2**80),
            st.floats(allow_nan=True, allow_infinity=True),
            st.sampled_from(["1.5", "x", ""]),
        ),
        max_size=60,
    )
)
def test_numbers_in_one_numpy_call_are_those_value_by_value(values: list) -> None:
    """The fast path (plain numbers and nulls through NumPy at once) keeps exactly the
    finite numbers the value-by-value path keeps: booleans, text, NaN and infinities
    count as null either way."""
    from feature_core.stats import _number, _numbers

    one_by_one = [n for n in map(_number, values) if n is not None]
    assert _numbers(values).tolist() == one_by_one
    plain = [v for v in values if type(v) in (int, float, type(None))]
    assert _numbers(plain).tolist() == [n for n in map(_number, plain) if n is not None]
