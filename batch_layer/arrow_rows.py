"""Arrow record batches as Python rows, a column at a time.

``RecordBatch.to_pylist`` builds every struct value through a Python-level scalar (about
28 µs per row of a list of tile structs: more than the tile work done with it in the
batch job's Arrow maps). Here each leaf column is converted whole and the rows are zipped
from the columns: the same values, dicts and lists as ``to_pylist``.
"""

from __future__ import annotations

import itertools
from typing import Any

import pyarrow as pa


def batch_rows(batch: pa.RecordBatch) -> list[dict[str, Any]]:
    """``batch.to_pylist()``, converted column by column."""
    names = batch.schema.names
    columns = [array_values(column) for column in batch.columns]
    return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]


def array_values(array: pa.Array) -> list[Any]:
    """``array.to_pylist()``: structs and lists recursively by their child arrays, any
    other type by Arrow's own conversion."""
    kind = array.type
    if pa.types.is_struct(kind):
        names = [kind.field(i).name for i in range(kind.num_fields)]
        # flatten() applies the struct's offset (a sliced array) to its children.
        fields = [array_values(child) for child in array.flatten()]
        values: list[Any] = [
            dict(zip(names, row, strict=True)) for row in zip(*fields, strict=True)
        ]
        if not fields:
            values = [{} for _ in range(len(array))]
    elif pa.types.is_list(kind) or pa.types.is_large_list(kind):
        # Offsets into the whole child array (a slice's included); flatten() would drop
        # the values behind null lists and shift every later list.
        offsets = array.offsets.to_pylist()
        base = offsets[0]
        flat = array_values(array.values.slice(base, offsets[-1] - base))
        values = [flat[s - base : e - base] for s, e in itertools.pairwise(offsets)]
    else:
        return _leaf_values(array)
    if array.null_count:
        valid = array.is_valid().to_pylist()
        values = [v if ok else None for v, ok in zip(values, valid, strict=True)]
    return values


def _leaf_values(array: pa.Array) -> list[Any]:
    """Numbers, booleans and text through NumPy (10-40 ns a value, where ``to_pylist``
    takes 200-450); other types by ``to_pylist``."""
    kind = array.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        # An object array of str, None for nulls.
        return array.to_numpy(zero_copy_only=False).tolist()
    numeric = pa.types.is_integer(kind) or pa.types.is_boolean(kind)
    if not (numeric or pa.types.is_float32(kind) or pa.types.is_float64(kind)):
        return array.to_pylist()
    if not array.null_count:
        return array.to_numpy(zero_copy_only=False).tolist()
    # NumPy has no null: converted filled, then None where Arrow has none.
    filled = array.fill_null(pa.scalar(False if pa.types.is_boolean(kind) else 0, kind))
    valid = array.is_valid().to_numpy(zero_copy_only=False).tolist()
    values = filled.to_numpy(zero_copy_only=False).tolist()
    return [v if ok else None for v, ok in zip(values, valid, strict=True)]
