"""The aggregation algebra: one class per aggregation kind and per primitive partial.

See :mod:`feature_core.aggregations.base` for the two levels and the engine forms each
class carries. Every module of this package registers its classes on import; engines
look them up here (:func:`aggregation_kind`, :data:`PRIMITIVES`), never by name.

=====================  ===============================  =================================
primitive              partial (JSON)                   merge
=====================  ===============================  =================================
count                  int                              sum
sum                    number or null                   sum (null is the identity)
min / max              number or null                   min / max
last                   [time, value] or null            the later one; ties: larger value
last_k                 [[time, value], ...]             the k latest, newest first
first                  [time, value] or null            the earlier one; ties: smaller value
first_k                [[time, value], ...]             the k earliest, oldest first
hll                    sketch string or null            register-wise max (sketches)
moments                [n, mean, m2, mean_low] or null  Chan et al.; mean as double-double
ddsketch               sketch string or null            bucket counts added (ddsketch)
decayed_count / _sum   [anchor, value] or null          rebased to the later anchor, +
top_k / bottom_k       [value, ...]                     the k largest / smallest, in order
count_by               [[value, count], ...] or null    counts summed; the max_keys smallest
=====================  ===============================  =================================
"""

from __future__ import annotations

from typing import Any

from feature_core.aggregations import (  # noqa: F401
    counting,
    counts_by,
    decay,
    distinct,
    extremes,
    moments,
    pairs,
    percentile,
    ranked,
)
from feature_core.aggregations.base import (
    IR,
    KINDS,
    NUMERIC,
    PRIMITIVES,
    AggregationKind,
    ColumnEvents,
    FlinkColumns,
    FlinkForm,
    Options,
    Partial,
    Primitive,
    Ranges,
    Result,
    SparkColumns,
    identity,
    lift,
    merge,
    merge_all,
    normalize,
)

__all__ = [
    "IR",
    "KINDS",
    "NUMERIC",
    "PRIMITIVES",
    "AggregationKind",
    "ColumnEvents",
    "FlinkColumns",
    "FlinkForm",
    "Options",
    "Partial",
    "Primitive",
    "Ranges",
    "Result",
    "SparkColumns",
    "aggregation_kind",
    "identity",
    "lift",
    "merge",
    "merge_all",
    "normalize",
]


def aggregation_kind(name: str, options: Options | None = None, **given: Any) -> AggregationKind:
    """The kind ``name`` with its options (``KeyError``: unknown name; ``ValueError``:
    options it cannot take)."""
    return KINDS[name](options or Options(**given))
