"""A Flink aggregate computing a group's whole tile IR with the shared algebra.

Used for groups with primitives Flink SQL has no native form for (last, last_k, hll).
Flink cannot mix Python and Java aggregates in one GROUP BY, so such a group's tiles are
computed entirely here, by the same ``lift``/``merge`` code the reference evaluator uses.
"""

from __future__ import annotations

from typing import Any

import orjson
from pyflink.table import AggregateFunction, DataTypes
from pyflink.table.udf import udaf

from feature_core.aggregations import identity, lift, merge, normalize
from feature_core.definitions import FeatureGroup
from feature_core.events import EVENT_COLUMNS
from speed_layer.sql import udaf_columns

_FLINK_TYPES = {str: DataTypes.STRING(), int: DataTypes.BIGINT(), float: DataTypes.DOUBLE()}


class TilePartials(AggregateFunction):
    """Accumulator: the tile's IR as JSON (one string, so Flink can checkpoint it)."""

    def __init__(self, group: FeatureGroup) -> None:
        self.primitives = group.primitives
        columns = udaf_columns(group)
        self.arg_index = [
            None if c.column is None else columns.index(c.column) for c in group.tile_columns
        ]

    def create_accumulator(self) -> list[str]:
        return [orjson.dumps(identity(self.primitives)).decode()]

    def accumulate(self, accumulator: list[str], event_time: int, *values: Any) -> None:
        ir = normalize(self.primitives, orjson.loads(accumulator[0]))
        event_ir = tuple(
            lift((p,), True if i is None else values[i], event_time)[0]
            for p, i in zip(self.primitives, self.arg_index, strict=True)
        )
        accumulator[0] = orjson.dumps(merge(self.primitives, ir, event_ir)).decode()

    def merge(self, accumulator: list[str], accumulators: list[list[str]]) -> None:
        ir = normalize(self.primitives, orjson.loads(accumulator[0]))
        for other in accumulators:
            ir = merge(self.primitives, ir, normalize(self.primitives, orjson.loads(other[0])))
        accumulator[0] = orjson.dumps(ir).decode()

    def get_value(self, accumulator: list[str]) -> str:
        return accumulator[0]

    def get_result_type(self) -> DataTypes:
        return DataTypes.STRING()

    def get_accumulator_type(self) -> DataTypes:
        return DataTypes.ARRAY(DataTypes.STRING())


def tile_udaf(group: FeatureGroup):
    input_types = [DataTypes.BIGINT()] + [
        _FLINK_TYPES[EVENT_COLUMNS[c]] for c in udaf_columns(group)
    ]
    return udaf(
        TilePartials(group),
        input_types=input_types,
        result_type=DataTypes.STRING(),
        accumulator_type=DataTypes.ARRAY(DataTypes.STRING()),
        func_type="general",
    )
