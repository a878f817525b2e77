"""The batch job's form of the moments partial (a bucket's collected values, finished in
two passes): variances within 1e-9 of the two-pass reference, large offsets included."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feature_core.aggregations import Options, SparkColumns, aggregation_kind
from feature_core.aggregations.moments import MOMENTS
from feature_core.settings import Settings
from tests.feature_core.aggregations.test_moments import _values, within

pytestmark = pytest.mark.spark

KINDS = [
    aggregation_kind(name, Options(population=population))
    for name in ("variance", "stddev")
    for population in (False, True)
]


def test_spark_moments_are_within_1e_9_of_the_reference(spark_factory):
    """Groups of offset values (1e9 + noise in [-1, 1] and relatives), ordinary floats
    and integers, with nulls, through the SQL the batch job runs (``spark_sql``) and
    ``from_spark``."""
    from pyspark.sql import functions as F

    spark = spark_factory(Settings(_env_file=None))
    sql = {
        column: MOMENTS.spark_sql(SparkColumns(f"`{column}`", "`t`", "`end`"))
        for column in ("x", "n")
    }

    @settings(max_examples=12, deadline=None)
    @given(st.lists(_values(max_size=60), min_size=1, max_size=8), st.randoms())
    def check(groups: list[list[float | int]], rng) -> None:
        rows = []
        for i, values in enumerate(groups):
            for value in values:
                column = 2 if isinstance(value, int) else 1
                row: list = [f"g{i}", None, None, 0]
                row[column] = value
                rows.append(tuple(row))
            rows.append((f"g{i}", None, None, 0))  # nulls are skipped
        rng.shuffle(rows)
        frame = spark.createDataFrame(rows, "g STRING, x DOUBLE, n BIGINT, t BIGINT")
        result = frame.groupBy("g").agg(
            *(F.expr(form).alias(column) for column, form in sql.items())
        )
        got = {row["g"]: row for row in result.collect()}
        for i, values in enumerate(groups):
            for column, kind_of_value in (("x", float), ("n", int)):
                mine = [v for v in values if isinstance(v, kind_of_value)]
                partial = MOMENTS.from_spark(got[f"g{i}"][column])
                assert (partial[0] if partial else 0) == len(mine)
                for kind in KINDS:
                    have = kind.finalize((partial,))
                    want = kind.reference([(0, v) for v in mine], 0, 0)
                    assert within(have, want), (column, kind.name, have, want)

    check()
