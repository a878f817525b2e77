"""approx_percentile's DDSketch: the relative-accuracy bound against the exact sorted
percentile, bucket keys against exact rational arithmetic, and one canonical sketch
whatever the merge order or split."""

from __future__ import annotations

import base64
import math
import random
from fractions import Fraction

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from feature_core import ddsketch
from feature_core.aggregations import Options, Primitive, aggregation_kind
from feature_core.aggregations.percentile import ApproxPercentile, suffix_of
from feature_core.definitions import Aggregation, DefinitionError, Entity, FeatureGroup
from tests.feature_core.aggregations.catalog import SOURCE

SMALLEST_NORMAL = 2.0**-1022

#: Finite doubles of every magnitude, with many zeros, subnormals and repeats.
DOUBLES = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(-1e6, 1e6, allow_nan=False),
    st.sampled_from(
        [0.0, -0.0, 5e-324, -5e-324, SMALLEST_NORMAL, 1.0, -1.0, 1.7976931348623157e308]
    ),
    st.integers(-(2**63), 2**63 - 1).map(float),
)
PERCENTILES = st.floats(0, 1, exclude_min=True, exclude_max=True)


def percentile_kind(percentiles, precision=None) -> ApproxPercentile:
    kind = aggregation_kind(
        "approx_percentile", percentiles=tuple(percentiles), precision=precision
    )
    assert isinstance(kind, ApproxPercentile)
    return kind


@settings(max_examples=400, deadline=None)
@given(
    values=st.lists(DOUBLES, min_size=1, max_size=200).flatmap(
        lambda vs: st.lists(st.sampled_from(vs), min_size=len(vs), max_size=2 * len(vs))
    ),
    percentiles=st.lists(PERCENTILES, min_size=1, max_size=4, unique_by=suffix_of),
    precision=st.sampled_from([None, 1, 8, 10, 25, 100]),
)
@example(values=[1.0, 2.0, 3.0], percentiles=[0.5], precision=None)
@example(values=[-1e300, 0.0, 5e-324, 1e-300], percentiles=[0.25, 0.75], precision=8)
def test_every_percentile_is_within_the_relative_accuracy_of_the_exact_one(
    values, percentiles, precision
):
    """Against the sorted values' ``floor(q * (n-1))``-th, exactly as the issue defines
    it; precision 8 makes ``1/(2m+1)`` equal the accuracy (m = 62), the tightest case."""
    kind = percentile_kind(percentiles, precision)
    alpha = (precision or ddsketch.DEFAULT_ACCURACY) / 1000
    assert ddsketch.relative_accuracy(kind.m) <= alpha
    (primitive,) = kind.primitives
    sketch = primitive.from_pairs((0, v) for v in values)
    ordered = sorted(values)
    for output, q in enumerate(kind.percentiles):
        exact = ordered[math.floor(q * (len(ordered) - 1))]
        got = kind.finalize_output((sketch,), 0, output)
        if abs(exact) < SMALLEST_NORMAL:  # zeros and subnormals are the zero count
            assert got == 0.0
        else:
            # The bound, plus the representative's own rounding to a double.
            assert abs(got - exact) <= (alpha + 2.0**-50) * abs(exact), (q, got, exact)
            assert math.copysign(1.0, got) == math.copysign(1.0, exact)


def _exact_key(value: float, m: int) -> tuple[int, int]:
    """(sign, key) by exact rational arithmetic: |x| = mantissa * 2^e, mantissa in [1, 2),
    key = e*m + floor((mantissa - 1) * m)."""
    if value == 0 or abs(value) < SMALLEST_NORMAL:
        return 0, 0
    mantissa, e = math.frexp(abs(value))  # [0.5, 1) * 2^e, exact
    mantissa, e = Fraction(mantissa) * 2, e - 1
    return (1 if value > 0 else -1), e * m + math.floor((mantissa - 1) * m)


def _boundary_values(m: int) -> st.SearchStrategy[float]:
    """Doubles whose mantissa is the first (or the last) of a bucket: f = ceil(j*2^52/m)."""

    def build(j: int, e: int, before: bool, negative: bool) -> float:
        f = -(-(j << 52) // m) - (1 if before and j else 0)
        bits = ((e + 1023) << 52) | f | (1 << 63 if negative else 0)
        return ddsketch._DOUBLE.unpack(ddsketch._BITS.pack(bits))[0]

    return st.builds(
        build, st.integers(0, m - 1), st.integers(-1022, 1023), st.booleans(), st.booleans()
    )


@settings(max_examples=500, deadline=None)
@given(data=st.data(), m=st.sampled_from([1, 2, 5, 50, 62, 500]))
def test_keys_are_the_exact_buckets_and_the_representative_is_within_them(data, m):
    value = data.draw(st.one_of(DOUBLES, _boundary_values(m)))
    sign, key = ddsketch.key_of(value, m) or (None, None)
    assert (sign, key) == _exact_key(value, m)
    if sign:
        e, j = divmod(key, m)
        lo = Fraction(2) ** e * Fraction(m + j, m)
        hi = Fraction(2) ** e * Fraction(m + j + 1, m)
        assert lo <= Fraction(abs(value)) < hi
        exact_representative = 2 * lo * hi / (lo + hi)
        assert ddsketch.representative(key, m) == float(exact_representative)  # correctly rounded
        assert (hi - lo) / (hi + lo) <= Fraction(1, 2 * m + 1)


def test_nan_and_infinities_are_skipped():
    m = 50
    assert ddsketch.key_of(math.nan, m) is None
    assert ddsketch.sketch_of([math.nan, math.inf, -math.inf], m) is None
    assert ddsketch.sketch_of([1.0, math.inf], m) == ddsketch.sketch_of([1.0], m)
    assert Primitive("ddsketch", m).lift(math.nan, 0) is None


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(DOUBLES, min_size=1, max_size=120),
    seed=st.integers(0, 2**32),
    m=st.sampled_from([5, 50, 500]),
)
def test_any_split_and_merge_order_gives_the_same_bytes(values, seed, m):
    rng = random.Random(seed)
    primitive = Primitive("ddsketch", m)
    whole = primitive.from_pairs((0, v) for v in values)
    parts: list[list[float]] = [[] for _ in range(rng.randint(1, 6))]
    for value in values:
        rng.choice(parts).append(value)
    partials = [primitive.from_pairs((0, v) for v in part) for part in parts]
    rng.shuffle(partials)
    while len(partials) > 1:  # a random merge tree
        i = rng.randrange(len(partials) - 1)
        partials[i : i + 2] = [primitive.merge(partials[i], partials[i + 1])]
    assert partials[0] == whole
    assert (
        primitive.merge_many(
            rng.sample([*map(lambda v: primitive.lift(v, 0), values)], len(values))
        )
        == whole
    )
    # The sketch is its bucket contents: decoding and encoding again, or a JSON round
    # trip, changes no byte.
    assert ddsketch.decode(whole).encode() == whole
    assert primitive.normalize(orjson.loads(orjson.dumps(whole))) == whole
    assert primitive.from_spark(values) == whole


def test_the_serialized_form_is_the_documented_varints():
    """-3.0 (e=1, j=25 at m=50: key 75), two zeros, 1.0 (key 0) and 1.5 twice (key 25):
    zero count 2; negatives [(zigzag 75 = 150, 1)]; positives [(0, 1), (zigzag 25 = 50, 2)].
    150 takes two varint bytes."""
    sketch = ddsketch.sketch_of([-3.0, 0.0, -0.0, 1.0, 1.5, 1.5], 50)
    body = bytes([2, 1, 0x96, 0x01, 1, 2, 0, 1, 50, 2])
    assert sketch == "dd50:" + base64.b64encode(body).decode()
    assert ddsketch.sketch_of([0.5], 50) == ddsketch.sketch_of([0.5], 50)
    # A negative key: 0.5 is e=-1, key -50, zigzag 99.
    assert ddsketch.decode(ddsketch.sketch_of([0.5], 50)).positive == {-50: 1}


def test_merging_sketches_of_different_accuracy_is_refused():
    with pytest.raises(ValueError, match="buckets per octave"):
        ddsketch.merge(ddsketch.sketch_of([1.0], 50), ddsketch.sketch_of([1.0], 5))


def test_memory_is_bounded_by_the_octaves_spanned():
    """m = 50, 100,000 values from 1e-2 to 1e6: about 27 octaves, at most 1,350 buckets."""
    rng = random.Random(3)
    values = [10 ** rng.uniform(-2, 6) for _ in range(100_000)]
    buckets = ddsketch.decode(ddsketch.sketch_of(values, 50))
    octaves = math.floor(math.log2(1e6)) - math.floor(math.log2(1e-2)) + 1
    assert octaves == 27
    assert len(buckets.positive) <= 50 * octaves
    assert buckets.total == len(values)


def test_no_values_serve_null_for_every_percentile():
    kind = percentile_kind([0.1, 0.5, 0.99])
    for output in range(3):
        assert kind.finalize_output((None,), 0, output) is None
        assert kind.reference([], 0, output) is None


def test_outputs_are_one_suffix_per_percentile_and_name_the_features():
    assert [suffix_of(q) for q in (0.5, 0.95, 0.999, 0.05, 0.001, 1e-7)] == [
        "_p50",
        "_p95",
        "_p99_9",
        "_p5",
        "_p0_1",
        "_p0_00001",
    ]
    group = FeatureGroup(
        "g",
        Entity("thing", "k"),
        SOURCE,
        aggregations=[
            Aggregation("approx_percentile", "x", windows=("1h",), percentiles=[0.5, 0.999])
        ],
    )
    assert [f.name for f in group.features] == [
        "x_approx_percentile_p50_1h",
        "x_approx_percentile_p99_9_1h",
    ]
    assert [f.output for f in group.features] == [0, 1]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "approx_percentile needs percentiles"),
        ({"percentiles": ()}, "approx_percentile needs percentiles"),
        ({"percentiles": (1.5,)}, "approx_percentile: percentile 1.5 is outside (0, 1)"),
        ({"percentiles": (0.5, 1)}, "approx_percentile: percentile 1 is outside (0, 1)"),
        ({"percentiles": (0.0,)}, "approx_percentile: percentile 0.0 is outside (0, 1)"),
        ({"percentiles": (math.nan,)}, "approx_percentile: percentile nan is outside (0, 1)"),
        ({"percentiles": ("0.5",)}, "approx_percentile: percentile '0.5' is not a number"),
        ({"percentiles": (True,)}, "approx_percentile: percentile True is not a number"),
        ({"percentiles": (0.5, 0.5)}, "approx_percentile: percentile 0.5 is listed twice"),
        ({"percentiles": (0.5,), "precision": 0}, "relative accuracy in thousandths"),
        ({"percentiles": (0.5,), "precision": 101}, "within 1..100"),
    ],
)
def test_bad_options_are_one_clear_line(options, message):
    with pytest.raises(ValueError) as raised:
        ApproxPercentile(Options(**options))
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_a_definition_with_bad_percentiles_names_the_aggregation():
    aggregation = Aggregation("approx_percentile", "x", percentiles=[0.5, 1.5])
    with pytest.raises(DefinitionError, match=r"percentile 1\.5 is outside \(0, 1\)"):
        aggregation.kind_for(SOURCE)


def test_precision_sets_the_buckets_per_octave():
    assert percentile_kind([0.5]).primitives == (Primitive("ddsketch", 50),)
    assert percentile_kind([0.5], precision=1).primitives == (Primitive("ddsketch", 500),)
    assert percentile_kind([0.5], precision=100).primitives == (Primitive("ddsketch", 5),)
    for precision in range(1, 101):
        m = ddsketch.buckets_per_octave(precision)
        assert Fraction(1, 2 * m + 1) <= Fraction(precision, 1000)
        assert m == 1 or Fraction(1, 2 * m - 1) > Fraction(precision, 1000)  # the fewest
