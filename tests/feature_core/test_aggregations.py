from hypothesis import given
from hypothesis import strategies as st

from feature_core.aggregations import AGGREGATIONS, Primitive, identity, lift, merge, merge_all

PRIMS = tuple(Primitive)
values = st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False), st.integers(-(10**6), 10**6))
irs = st.lists(values, min_size=len(PRIMS), max_size=len(PRIMS)).map(
    lambda vs: tuple(lift(PRIMS, v)[i] for i, v in enumerate(vs))
)


def close(a, b):
    for x, y in zip(a, b, strict=True):
        if x is None or y is None:
            assert x is y
        else:
            assert abs(x - y) <= 1e-9 * max(1.0, abs(x), abs(y))
    return True


@given(irs, irs, irs)
def test_merge_is_associative(a, b, c):
    assert close(merge(PRIMS, merge(PRIMS, a, b), c), merge(PRIMS, a, merge(PRIMS, b, c)))


@given(irs, irs)
def test_merge_is_commutative(a, b):
    assert close(merge(PRIMS, a, b), merge(PRIMS, b, a))


@given(irs)
def test_identity_is_neutral(a):
    assert merge(PRIMS, identity(PRIMS), a) == a
    assert merge(PRIMS, a, identity(PRIMS)) == a


@given(st.lists(values, max_size=40), st.integers(0, 40))
def test_split_anywhere_then_merge_equals_whole(items, cut):
    cut = min(cut, len(items))
    whole = merge_all(PRIMS, (lift(PRIMS, v) for v in items))
    left = merge_all(PRIMS, (lift(PRIMS, v) for v in items[:cut]))
    right = merge_all(PRIMS, (lift(PRIMS, v) for v in items[cut:]))
    assert close(merge(PRIMS, left, right), whole)


def test_finalize_of_identity_is_the_documented_default():
    assert AGGREGATIONS["count"].finalize((0,)) == 0
    assert AGGREGATIONS["sum"].finalize((None,)) == 0.0
    assert AGGREGATIONS["mean"].finalize((None, 0)) is None
    assert AGGREGATIONS["min"].finalize((None,)) is None


def test_count_counts_non_null_values_only():
    assert merge_all((Primitive.COUNT,), [lift((Primitive.COUNT,), v) for v in (1, None, 2)]) == (
        2,
    )
