"""An entity's stored tiles, decoded only when a value is read (no Spark)."""

from hypothesis import given
from hypothesis import strategies as st

from batch_layer.assembly import _DecodedOnRead

OPS = st.lists(
    st.tuples(st.sampled_from(["raw", "set", "get", "del"]), st.integers(0, 6)), max_size=30
)


@given(OPS)
def test_it_behaves_as_a_dict_of_decoded_values(ops) -> None:
    """Keys, order, values and membership as a dict filled the same way (a raw row is
    the decoded value's stand-in until read)."""
    decoded = []

    def decode(row):
        decoded.append(row["n"])
        return row["n"] * 10

    lazy, plain = _DecodedOnRead(decode), {}
    for op, key in ops:
        if op == "raw":
            lazy.keep_raw(key, {"n": key})
            plain.pop(key, None)  # a kept row replaces a value, in the stored position
            plain[key] = key * 10
        elif op == "set":
            lazy[key] = -key
            plain[key] = -key
        elif op == "get":
            assert lazy.get(key) == plain.get(key)
        elif key in plain:
            del lazy[key]
            del plain[key]
    assert len(lazy) == len(plain)
    assert sorted(lazy) == sorted(plain)
    assert {k: lazy[k] for k in lazy} == plain


def test_a_row_is_decoded_once_and_only_when_read() -> None:
    decoded = []
    lazy = _DecodedOnRead(lambda row: decoded.append(row) or row["n"])
    for start in (0, 300_000, 600_000):
        lazy.keep_raw(start, {"n": start})
    assert [s for s in lazy if s >= 300_000] == [300_000, 600_000] and decoded == []
    assert lazy[300_000] == lazy[300_000] == 300_000
    assert decoded == [{"n": 300_000}]
    assert list(lazy) == [0, 300_000, 600_000]
