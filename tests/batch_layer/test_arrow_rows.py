"""Arrow batches as Python rows, column by column: exactly what to_pylist gives."""

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from batch_layer.arrow_rows import array_values, batch_rows

LEAVES = [
    pa.int64(),
    pa.int32(),
    pa.uint64(),
    pa.string(),
    pa.large_string(),
    pa.bool_(),
    pa.float64(),
    pa.float32(),
    pa.timestamp("ms"),
]


def _types(depth: int) -> st.SearchStrategy[pa.DataType]:
    leaf = st.sampled_from(LEAVES)
    if depth == 0:
        return leaf
    inner = _types(depth - 1)
    return st.one_of(
        leaf,
        inner.map(pa.list_),
        inner.map(pa.large_list),
        st.lists(inner, min_size=0, max_size=3).map(
            lambda fields: pa.struct([(f"f{i}", t) for i, t in enumerate(fields)])
        ),
        st.tuples(st.sampled_from([pa.string(), pa.int64()]), leaf).map(lambda kv: pa.map_(*kv)),
    )


def _values(kind: pa.DataType) -> st.SearchStrategy:
    if pa.types.is_int64(kind):
        value = st.integers(-(2**63), 2**63 - 1)
    elif pa.types.is_timestamp(kind):  # milliseconds Python's datetime can hold
        value = st.integers(-(10**12), 10**13)
    elif pa.types.is_int32(kind):
        value = st.integers(-(2**31), 2**31 - 1)
    elif pa.types.is_uint64(kind):
        value = st.integers(0, 2**64 - 1)
    elif pa.types.is_float32(kind):
        value = st.floats(allow_nan=False, width=32)
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        value = st.text(max_size=5)
    elif pa.types.is_boolean(kind):
        value = st.booleans()
    elif pa.types.is_floating(kind):
        value = st.floats(allow_nan=False)
    elif pa.types.is_struct(kind):
        value = st.fixed_dictionaries({f.name: _values(f.type) for f in kind})
    elif pa.types.is_map(kind):
        value = st.dictionaries(
            _values(kind.key_type).filter(lambda k: k is not None),
            _values(kind.item_type),
            max_size=3,
        ).map(lambda d: list(d.items()))
    else:
        value = st.lists(_values(kind.value_type), max_size=4)
    return st.none() | value


@st.composite
def _arrays(draw) -> pa.Array:
    kind = draw(_types(3))
    values = draw(st.lists(_values(kind), max_size=12))
    array = pa.array(values, type=kind)
    start = draw(st.integers(0, len(values)))
    return array.slice(start, draw(st.integers(0, len(values) - start)))


@settings(max_examples=300, deadline=None)
@given(_arrays())
def test_an_array_converts_as_to_pylist_does(array) -> None:
    """Any nesting of structs, lists and maps, nulls at any level, and slices."""
    assert array_values(array) == array.to_pylist()


def test_a_batch_converts_as_to_pylist_does() -> None:
    tiles = pa.struct([("series", pa.string()), ("start", pa.int64()), ("events", pa.int64())])
    batch = pa.RecordBatch.from_pydict(
        {
            "entity": ["a", "b", None],
            "rows": [
                [{"series": "5m", "start": 0, "events": 2}],
                [],
                [{"series": "1h", "start": None, "events": 1}, None],
            ],
        },
        schema=pa.schema([("entity", pa.string()), ("rows", pa.list_(tiles))]),
    )
    assert batch_rows(batch) == batch.to_pylist()
    assert batch_rows(batch.slice(1)) == batch.slice(1).to_pylist()
