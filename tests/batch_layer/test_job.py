"""The Spark compilation of the batch layout agrees with the shared Python definition."""

import random

import pytest

from batch_layer.job import bucket_sql
from feature_core.settings import Settings
from feature_core.windows import DAY_MS, FINEST_HOP_MS, Window, batch_layout

pytestmark = pytest.mark.spark


@pytest.mark.parametrize("text", ["5m", "1h", "1d", "7d", "30d", "90d", "lifetime"])
def test_spark_buckets_equal_the_python_layout(spark_factory, text):
    spark = spark_factory(Settings(_env_file=None))
    window = Window.parse(text)
    cutoff = 20_000 * DAY_MS // 7 // FINEST_HOP_MS * FINEST_HOP_MS
    rng = random.Random(text)
    times = [cutoff - rng.randrange(0, 120 * DAY_MS) for _ in range(300)] + [cutoff, cutoff - 1]
    frame = spark.createDataFrame([(t,) for t in times], "event_time BIGINT")
    rows = frame.selectExpr(
        "event_time", f"{bucket_sql(window, cutoff, DAY_MS, 'event_time')} AS b"
    )
    layout = batch_layout(window, cutoff, DAY_MS)
    for row in rows.collect():
        expected = layout.bucket(row["event_time"], window.hop_ms)
        assert row["b"] == (None if expected is None else str(expected)), row["event_time"]


def test_spark_irs_equal_the_shared_algebra_for_every_aggregation(spark_factory):
    from batch_layer.job import group_irs, to_partial
    from demo.feature_repo import events as shop
    from feature_core.aggregations import identity, lift, merge
    from feature_core.definitions import Aggregation, Entity, FeatureGroup

    group = FeatureGroup(
        "all_kinds",
        Entity("user", "user_id"),
        shop,
        aggregations=[
            Aggregation("count", windows=["1h", "lifetime"]),
            Aggregation("sum", "amount", windows=["1d"]),
            Aggregation("mean", "amount", windows=["7d"]),
            Aggregation("min", "amount", windows=["lifetime"]),
            Aggregation("max", "amount", windows=["lifetime"]),
            Aggregation("last", "item_id", windows=["1h", "lifetime"]),
            Aggregation("last_k", "category", windows=["1d"], k=3),
            Aggregation("approx_count_distinct", "item_id", windows=["30d"]),
        ],
        filter={"event_type": ["view", "purchase"]},
    )
    spark = spark_factory(Settings(_env_file=None))
    rng = random.Random(3)
    cutoff = 19_000 * DAY_MS
    rows = []
    for i in range(400):
        kind = rng.choice(["view", "purchase", "click"])
        rows.append(
            (
                f"e{i}",
                f"u{rng.randrange(5)}",
                kind,
                cutoff - rng.randrange(0, 40 * DAY_MS),
                rng.choice([None, f"i{rng.randrange(30)}"]),
                rng.choice(["a", "b", "c"]),
                round(rng.uniform(1, 50), 2) if kind == "purchase" else None,
                0,
                i,
            )
        )
    frame = spark.createDataFrame(rows, shop.spark_ddl())
    got = {}
    for row in group_irs(frame, group, cutoff, DAY_MS).collect():
        for item in row["buckets"]:
            partials = [
                to_partial(p, r) for p, r in zip(group.primitives, item["partials"], strict=True)
            ]
            got[(row["__k0"], item["window"], item["bucket"])] = partials

    expected = {}
    names = [*shop.columns, "kafka_partition", "kafka_offset"]
    for raw in rows:
        event = dict(zip(names, raw, strict=True))
        if not group.accepts(event):
            continue
        ir = tuple(
            lift((c.primitive,), event[c.column] if c.column else True, event["event_time"])[0]
            for c in group.tile_columns
        )
        for window in group.windows:
            bucket = batch_layout(window, cutoff, DAY_MS).bucket(event["event_time"], window.hop_ms)
            if bucket is not None:
                key = (event["user_id"], window.name, str(bucket))
                expected[key] = merge(
                    group.primitives, expected.get(key, identity(group.primitives)), ir
                )
    assert set(got) == set(expected)
    for key, partials in expected.items():
        for primitive, want, have in zip(group.primitives, partials, got[key], strict=True):
            if isinstance(want, float):
                assert have == pytest.approx(want, rel=1e-9), (key, primitive)
            else:
                assert have == want, (key, primitive)


def test_filter_values_with_backslashes_and_quotes_match_as_in_python(spark_factory):
    from batch_layer.job import group_irs
    from feature_core.definitions import Aggregation, Entity, FeatureGroup
    from feature_core.sources import EventSource, Field

    source = EventSource(
        "files",
        event_time="t",
        fields=[
            Field("owner", "string", required=True),
            Field("path", "string", required=True),
            Field("t", "timestamp", required=True),
        ],
    )
    odd = ["C:\\tmp", "it's", "x\\"]
    group = FeatureGroup(
        "g", Entity("owner", "owner"), source, [Aggregation("count")], filter={"path": odd}
    )
    cutoff = 19_000 * DAY_MS
    rows = [("o", p, cutoff - 1000 - i, 0, i) for i, p in enumerate([*odd, "C:\tmp", "x"])]
    frame = spark_factory(Settings(_env_file=None)).createDataFrame(rows, source.spark_ddl())
    (row,) = group_irs(frame, group, cutoff, DAY_MS).collect()
    (bucket,) = row["buckets"]
    kept = [r for r in rows if group.accepts(dict(zip(["owner", "path", "t"], r, strict=False)))]
    assert len(kept) == 3 and bucket["partials"][0] == len(kept)
