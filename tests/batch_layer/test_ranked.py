"""Spark's form of top_k and bottom_k keeps what the algebra keeps: SORT_ARRAY orders
strings by their UTF-8 bytes, which is code-point order, Python's order of str (UTF-16
order would put U+10000.. before U+E000..U+FFFF)."""

from __future__ import annotations

import random

import pytest

from feature_core.aggregations import Primitive, SparkColumns
from feature_core.settings import Settings

pytestmark = pytest.mark.spark

WORDS = [
    "",
    "a",
    "ab",
    "B",
    '"',
    "\\",
    "\x00",
    "\x7f",
    "\u00e9",
    "\ud7ff",
    "\ue000",
    "\uffff",
    "\U00010000",
    "\U0001f600",
    "\U0010ffff",
]


def test_spark_keeps_the_k_largest_and_smallest_values_as_the_algebra(spark_factory):
    spark = spark_factory(Settings(_env_file=None))
    rng = random.Random(9)

    def maybe(value: object) -> object:
        return None if rng.random() < 0.15 else value

    rows = [
        (
            f"g{rng.randrange(10)}",
            maybe(rng.choice(WORDS) + rng.choice(WORDS)),
            maybe(rng.choice([rng.uniform(-1e6, 1e6), 0.0, -0.0, 5e-324, 1.5])),
            maybe(rng.choice([rng.randrange(-(2**63), 2**63), rng.randrange(-3, 4)])),
        )
        for _ in range(800)
    ]
    rows += [("g-null", None, None, None)]  # no values: the identity
    frame = spark.createDataFrame(rows, "g STRING, s STRING, x DOUBLE, n BIGINT")
    columns = [
        (Primitive("top_k", 3), 1, "s"),
        (Primitive("bottom_k", 4), 1, "s"),
        (Primitive("top_k", 5), 2, "x"),
        (Primitive("bottom_k", 2), 2, "x"),
        (Primitive("top_k", 1), 3, "n"),
        (Primitive("bottom_k", 3), 3, "n"),
    ]
    sql = [p.spark_sql(SparkColumns(f"`{c}`", "`t`", "`end`")) for p, _, c in columns]
    got = {row[0]: row[1:] for row in frame.groupBy("g").agg(*map(_expr, sql)).collect()}

    assert set(got) == {r[0] for r in rows}
    for group, raws in got.items():
        mine = [r for r in rows if r[0] == group]
        for (primitive, field, column), raw in zip(columns, raws, strict=True):
            expected = primitive.from_pairs((0, r[field]) for r in mine if r[field] is not None)
            partial = primitive.from_spark(raw)
            assert partial == expected, (group, primitive, column)
            assert [type(v) for v in partial] == [type(v) for v in expected]


def test_spark_orders_strings_by_code_point(spark_factory):
    spark = spark_factory(Settings(_env_file=None))
    frame = spark.createDataFrame([(w,) for w in WORDS], "s STRING")
    top = Primitive("top_k", len(WORDS))
    raw = frame.agg(_expr(top.spark_sql(SparkColumns("`s`", "`t`", "`end`")))).collect()[0][0]
    assert top.from_spark(raw) == sorted(WORDS, reverse=True)
    assert top.from_spark(raw)[:3] == ["\U0010ffff", "\U0001f600", "\U00010000"]


def _expr(sql: str):
    from pyspark.sql import functions as F

    return F.expr(sql)
