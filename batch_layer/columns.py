"""Spark SQL of a feature group's parts that every batch computation shares: its join
keys as text, its filter, and each tile column's partial aggregate."""

from __future__ import annotations

from pyspark.sql import Column
from pyspark.sql import functions as F

from feature_core.aggregations import SparkColumns
from feature_core.definitions import FeatureGroup, TileColumn
from feature_core.sources import quoted

#: The column holding each event's batch bucket's end (every event of it is before).
BUCKET_END = "__bucket_end"


def partial_sql(column: TileColumn, time_column: str) -> str:
    """Spark SQL computing one tile column's partial (the raw form the primitive's
    ``from_spark`` turns into its partial)."""
    value = quoted(column.column) if column.column else None
    return column.primitive.spark_sql(SparkColumns(value, quoted(time_column), BUCKET_END))


def filter_column(group: FeatureGroup) -> Column:
    """The group's filter as a Spark column. Values go in as literals through the API, not
    as SQL text: Spark's parser reads backslashes in string literals as escapes, Flink's
    and Python's do not."""
    condition = F.lit(True)
    for flt in group.filters:
        condition &= F.col(flt.column).isin(list(flt.values))
    return condition


def key_columns(group: FeatureGroup) -> list[str]:
    """SQL of the group's join keys as text, one per key (``k0``, ``k1``, ...)."""
    return [f"CAST({quoted(k)} AS STRING) AS __k{i}" for i, k in enumerate(group.join_keys)]
