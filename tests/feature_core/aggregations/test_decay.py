"""decayed_count and decayed_sum: within 1e-9 of the plain reference (each event's weight
computed directly, summed with math.fsum) for events spread over decades and half-lives
from a second to years, however the events are split into partials and merged, with no
inf or nan on the way."""

from __future__ import annotations

import math
import random
from decimal import Decimal, localcontext

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feature_core.aggregations import Primitive, aggregation_kind
from feature_core.aggregations.decay import MIN_HALF_LIFE_MS, scaled
from feature_core.definitions import Aggregation, DefinitionError
from feature_core.windows import DAY_MS, MINUTE_MS

YEAR_MS = 365 * DAY_MS
#: 1970 .. 2060 in epoch milliseconds.
TIMES = st.integers(0, 90 * YEAR_MS)
HALF_LIVES = st.one_of(
    st.integers(MIN_HALF_LIFE_MS, 10 * YEAR_MS),
    st.sampled_from([MIN_HALF_LIFE_MS, MINUTE_MS, 3_600_000, DAY_MS, 30 * DAY_MS, YEAR_MS]),
)
WEIGHTS = st.one_of(
    st.floats(-1e15, 1e15, allow_nan=False),
    st.integers(-(2**53), 2**53),
    st.sampled_from([1e-300, -1e-300, 1e300, 0.0]),
)
#: The bound this module promises: relative to the decayed sum of |values|.
REL = 1e-9
#: A power of two below 2^-1022 is subnormal, good to 2^-1074 absolute only: the plain
#: reference's term w * 2^x is then good to |w| * 2^-1074 (and so is any engine's).
SUBNORMAL = 2.0**-1070
TINY = 1e-300


def within_bound(got: float, want: float, events, t: int, half_life: int) -> bool:
    """|got - want| within 1e-9 of the decayed sum of |values| (for decayed_count: of the
    value itself), plus what terms in the subnormal range lose."""
    scale = math.fsum(abs(w) * 2.0 ** ((time - t) / half_life) for time, w in events)
    slack = math.fsum(abs(w) for _, w in events) * SUBNORMAL + TINY
    return math.isfinite(got) and abs(got - want) <= REL * scale + slack


@st.composite
def splits(draw, values) -> tuple[int, list[tuple[int, object]], list[list[int]], list[int]]:
    """A half-life, events, the events dealt into parts (each part's own order), and the
    order the merges take (indexes into a shrinking list of partials)."""
    half_life = draw(HALF_LIVES)
    spread = draw(st.sampled_from([TIMES, st.integers(2_000_000_000_000, 2_000_000_600_000)]))
    events = draw(st.lists(st.tuples(spread, values), min_size=1, max_size=40))
    seed = draw(st.integers(0, 2**32))
    rng = random.Random(seed)
    parts: list[list[int]] = [[] for _ in range(rng.randint(1, len(events)))]
    for i in range(len(events)):
        rng.choice(parts).append(i)
    for part in parts:
        rng.shuffle(part)
    merges = [rng.randrange(n - 1) for n in range(len(parts), 1, -1)]
    return half_life, events, parts, merges


def merged_in_pieces(primitive: Primitive, events, parts, merges) -> tuple[object, list]:
    """Each part folded event by event, then neighbouring partials merged in the drawn
    order (any tree): the result, and every partial formed on the way."""
    seen: list = []
    partials = []
    for part in parts:
        partial = primitive.identity
        for i in part:
            time, value = events[i]
            partial = primitive.merge(partial, primitive.lift(value, time))
            seen.append(partial)
        partials.append(partial)
    for at in merges:
        pair = primitive.merge(partials[at], partials[at + 1])
        partials[at : at + 2] = [pair]
        seen.append(pair)
    (result,) = partials
    return result, seen


def assert_finite(partials) -> None:
    for partial in partials:
        assert partial is None or (math.isfinite(partial[1]) and isinstance(partial[0], int))


# --- options -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["decayed_count", "decayed_sum"])
@pytest.mark.parametrize("half_life_ms", [None, 0, -1, -DAY_MS])
def test_a_missing_zero_or_negative_half_life_is_one_clear_line(name, half_life_ms):
    with pytest.raises(ValueError) as error:
        aggregation_kind(name, half_life_ms=half_life_ms)
    assert str(error.value) == f"{name}: half_life must be a positive duration such as '1d'"


def test_definitions_parse_the_half_life_and_name_the_aggregation():
    assert Aggregation("decayed_count", half_life="1d").kind.options.half_life_ms == DAY_MS
    assert Aggregation("decayed_sum", "x", half_life="90m").kind.options.half_life_ms == 90 * 60_000
    for declared in (Aggregation("decayed_count"), Aggregation("decayed_count", half_life="0s")):
        with pytest.raises(DefinitionError) as error:
            declared.kind  # noqa: B018
        message = str(error.value)
        assert message.endswith("half_life must be a positive duration such as '1d'")
        assert "\n" not in message
    with pytest.raises(DefinitionError, match="half_life: bad duration"):
        Aggregation("decayed_sum", "x", half_life="-1d").kind  # noqa: B018


def test_half_lives_under_a_second_are_refused():
    aggregation_kind("decayed_count", half_life_ms=MIN_HALF_LIFE_MS)
    with pytest.raises(ValueError, match=r"^decayed_sum: half_life must be at least 1s"):
        aggregation_kind("decayed_sum", half_life_ms=MIN_HALF_LIFE_MS - 1)


def test_both_kinds_are_time_dependent_floats_that_are_zero_over_no_events():
    for name in ("decayed_count", "decayed_sum"):
        kind = aggregation_kind(name, half_life_ms=DAY_MS)
        assert kind.time_dependent and kind.result.scalar == "float"
        assert kind.finalize((None,), 123) == 0.0 == kind.reference([], 123, 0)
    assert not aggregation_kind("decayed_count", half_life_ms=DAY_MS).needs_column
    assert aggregation_kind("decayed_sum", half_life_ms=DAY_MS).needs_column


def test_a_value_halves_every_half_life_and_queries_see_their_own_time():
    kind = aggregation_kind("decayed_sum", half_life_ms=DAY_MS)
    (primitive,) = kind.primitives
    partial = primitive.from_pairs([(0, 8.0), (DAY_MS, 4.0)])
    assert partial == [DAY_MS, 8.0]  # 8 one half-life old is 4 at the newer anchor
    assert kind.finalize((partial,), DAY_MS) == 8.0
    assert kind.finalize((partial,), 3 * DAY_MS) == 2.0
    # A decayed_count with a column counts its non-null values.
    count = aggregation_kind("decayed_count", half_life_ms=DAY_MS)
    (counted,) = count.primitives
    assert counted.from_pairs([(0, None), (0, "a"), (DAY_MS, 0)]) == [DAY_MS, 1.5]


# --- scaled: value * 2^x rounded once -----------------------------------------------


def exact_scaled(value: float, exponent: float) -> float:
    with localcontext() as context:
        context.prec = 60
        return float(Decimal(value) * Decimal(2) ** Decimal(exponent))


@settings(max_examples=400, deadline=None)
@given(
    st.floats(allow_nan=False, allow_infinity=False).filter(lambda v: abs(v) > 1e-290),
    st.floats(-1100, 1100, allow_nan=False),
)
def test_scaled_is_the_product_to_two_roundings_where_the_power_alone_leaves_the_range(
    value, exponent
):
    want = exact_scaled(value, exponent)
    got = scaled(value, exponent)
    if math.isinf(want) or abs(want) > 1.7e308:
        assert math.isinf(got) or abs(got) > 1.7e308
    elif abs(want) < 1e-300:
        assert abs(got - want) <= 1e-300
    else:
        # Two roundings: 2^(fraction) and the product; the shift is exact.
        assert math.isclose(got, want, rel_tol=4 * 2.0**-52)


def test_scaled_never_raises_or_makes_nan():
    assert scaled(1.0, 5000.0) == math.inf and scaled(-1.0, 5000.0) == -math.inf
    assert scaled(1e300, -1e12) == 0.0 and scaled(0.0, 1e12) == 0.0
    for value, exponent in ((1e-300, 1100.5), (1e300, -1100.25), (-3.0, -1000.75), (1.7e308, -1.5)):
        assert math.isclose(scaled(value, exponent), exact_scaled(value, exponent), rel_tol=1e-15)
    assert scaled(math.inf, -1.0) == math.inf and math.isnan(scaled(math.nan, 1.0))


# --- the algebra against the reference ----------------------------------------------


@pytest.mark.parametrize("name", ["decayed_count", "decayed_sum"])
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_split_and_merge_order_is_within_1e9_of_the_reference(name, data):
    half_life, events, parts, merges = data.draw(splits(WEIGHTS))
    kind = aggregation_kind(name, half_life_ms=half_life)
    (primitive,) = kind.primitives
    newest = max(time for time, _ in events)
    t = newest + data.draw(st.one_of(st.integers(0, 10 * half_life), st.integers(0, 40 * YEAR_MS)))
    result, seen = merged_in_pieces(primitive, events, parts, merges)
    assert_finite(seen)
    assert result[0] == newest  # anchored at the newest event
    weighted = [(time, 1.0 if name == "decayed_count" else value) for time, value in events]
    want = kind.reference(events, t, 0)
    got = kind.finalize((result,), t)
    assert within_bound(got, want, weighted, t, half_life), (got, want)
    # merge_many (the serving merge) and from_pairs (the engines' finish) agree too.
    for other in (
        primitive.merge_many([primitive.lift(v, time) for time, v in events]),
        primitive.from_pairs(events),
    ):
        assert other[0] == newest
        assert within_bound(kind.finalize((other,), t), want, weighted, t, half_life)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_decayed_count_is_within_1e9_relative(data):
    """All weights are positive: the bound is relative to the value itself."""
    half_life, events, parts, merges = data.draw(splits(st.just(True)))
    kind = aggregation_kind("decayed_count", half_life_ms=half_life)
    (primitive,) = kind.primitives
    t = max(time for time, _ in events) + data.draw(st.integers(0, 1000 * half_life))
    result, seen = merged_in_pieces(primitive, events, parts, merges)
    assert_finite(seen)
    want = kind.reference(events, t, 0)
    got = kind.finalize((result,), t)
    assert abs(got - want) <= REL * want + len(events) * SUBNORMAL + TINY, (got, want)


@pytest.mark.parametrize("name", ["decayed_count", "decayed_sum"])
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_a_query_up_to_a_speed_tile_before_the_newest_event_is_exact_and_finite(name, data):
    """The serving merge reads every speed tile starting before the query time, so an
    event up to 5 minutes after it can be in a value: weighted up, never inf."""
    half_life = data.draw(st.integers(MIN_HALF_LIFE_MS, DAY_MS))
    events = data.draw(
        st.lists(
            st.tuples(st.integers(10**12, 10**12 + 5 * MINUTE_MS), st.floats(-1e12, 1e12)),
            min_size=1,
            max_size=30,
        )
    )
    kind = aggregation_kind(name, half_life_ms=half_life)
    (primitive,) = kind.primitives
    newest = max(time for time, _ in events)
    t = newest - data.draw(st.integers(0, 5 * MINUTE_MS))
    got = kind.finalize((primitive.from_pairs(events),), t)
    want = kind.reference(events, t, 0)
    weighted = [(time, 1.0 if name == "decayed_count" else value) for time, value in events]
    assert within_bound(got, want, weighted, t, half_life), (got, want)


def test_terms_old_enough_to_underflow_are_the_ones_no_query_can_see():
    """Events from 1970 merged into a 2060 partial with a one-minute half-life vanish
    (2^-47 million), exactly as the reference has them."""
    kind = aggregation_kind("decayed_sum", half_life_ms=MINUTE_MS)
    (primitive,) = kind.primitives
    late = 90 * YEAR_MS
    events = [(0, 1e300), (1, -1e300), (late - MINUTE_MS, 3.0), (late, 5.0)]
    partial = primitive.from_pairs(events)
    assert partial == [late, 6.5]
    assert (
        kind.finalize((partial,), late + 2 * MINUTE_MS)
        == 6.5 / 4
        == kind.reference(events, late + 2 * MINUTE_MS, 0)
    )
    # Decades after the newest event everything has decayed to 0, without nan.
    assert kind.finalize((partial,), late + 40 * YEAR_MS) == 0.0


# --- the partial's laws --------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_merge_is_exactly_commutative_and_partials_survive_json(data):
    half_life, events, _, _ = data.draw(splits(WEIGHTS))
    primitive = Primitive("decayed_sum", half_life)
    a = primitive.from_pairs(events[: len(events) // 2])
    b = primitive.from_pairs(events[len(events) // 2 :])
    assert primitive.merge(a, b) == primitive.merge(b, a)
    for partial in (a, b, primitive.merge(a, b)):
        assert primitive.normalize(orjson.loads(orjson.dumps(partial))) == partial


def test_an_overflowed_sum_reads_back_as_nan_and_is_served_as_null():
    primitive = Primitive("decayed_sum", DAY_MS)
    partial = primitive.from_pairs([(0, 1.5e308), (0, 1.5e308)])
    assert partial == [0, math.inf]
    read = primitive.normalize(orjson.loads(orjson.dumps(partial)))
    assert read[0] == 0 and math.isnan(read[1])
    assert orjson.dumps(primitive.merge(read, primitive.lift(1.0, 5))) == b"[5,null]"


# --- the Spark finish ------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_a_bucket_summed_at_its_end_is_rebased_to_its_newest_event(data):
    """from_spark gets what the Spark SQL computes (each term anchored at the bucket's
    end, the newest weighted event time) and gives the algebra's partial. A term over
    1022 half-lives before the end is subnormal there (good to |w| * 2^-1074, as small at
    every query time from the end on, all of a batch view's)."""
    name = data.draw(st.sampled_from(["decayed_count", "decayed_sum"]))
    half_life = data.draw(HALF_LIVES)
    values = st.one_of(st.none(), st.floats(-1e15, 1e15), st.integers(-(2**53), 2**53))
    events = data.draw(st.lists(st.tuples(TIMES, values), min_size=1, max_size=30))
    end = max(time for time, _ in events) + 1 + data.draw(st.integers(0, DAY_MS))
    kind = aggregation_kind(name, half_life_ms=half_life)
    (primitive,) = kind.primitives
    weighted = [(time, primitive.weight(v)) for time, v in events if v is not None]
    raw = {  # what the SQL computes, plainly
        "end": end,
        "newest": max((time for time, _ in weighted), default=None),
        "total": math.fsum(w * 2.0 ** ((time - end) / half_life) for time, w in weighted)
        if weighted
        else None,
    }
    got = primitive.from_spark(raw)
    want = primitive.from_pairs(events)
    if want is None:
        assert got is None
        return
    assert got[0] == want[0] == raw["newest"]
    up = (end - want[0]) / half_life  # how far the sum is rebased up
    if up < 1000:
        scale = math.fsum(abs(w) * 2.0 ** ((time - want[0]) / half_life) for time, w in weighted)
        # A subnormal term is good to 2^-1075 absolute, whatever its weight: rebased up
        # by 2^up, each term's error is then up to 2^(up - 1075).
        slack = (
            math.fsum(abs(w) for _, w in weighted) * 2.0 ** (up - 1070)
            + len(weighted) * 2.0 ** (up - 1074)
            + TINY
        )
        assert abs(got[1] - want[1]) <= REL * scale + slack, (got, want)
    t = end + data.draw(st.integers(0, 10 * half_life))
    present = [(time, v) for time, v in events if v is not None]
    got_at_t = kind.finalize((got,), t)
    assert within_bound(got_at_t, kind.reference(present, t, 0), weighted, t, half_life)
