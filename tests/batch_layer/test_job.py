"""The Spark compilation of the batch layout and of group filters agrees with the shared
Python definition (documents and tiles: test_assembly.py, test_event_tiles.py)."""

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


def test_filter_values_with_backslashes_and_quotes_match_as_in_python(spark_factory):
    from batch_layer.event_tiles import event_tiles
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
    (tile,) = event_tiles(frame, group, cutoff).where("series = '1d'").collect()
    kept = [r for r in rows if group.accepts(dict(zip(["owner", "path", "t"], r, strict=False)))]
    assert len(kept) == 3 and tile["events"] == len(kept) and tile["partials"] == "[3]"


def _runner(spark, concurrency: int):
    from batch_layer.job import _GroupRunner

    settings = Settings(_env_file=None, batch_group_concurrency=concurrency)
    return _GroupRunner(spark, settings, 1, 0, 0, 0, {}, None, {}, {}, {}, None, {})


@pytest.mark.parametrize("concurrency", [1, 2])
def test_groups_run_in_the_callers_job_group_and_come_back_in_order(spark_factory, concurrency):
    """Groups run ``LFP_BATCH_GROUP_CONCURRENCY`` at a time, each in a thread that takes
    the run's job group (the progress display and `make bench-batch` find its jobs by
    it); their outcomes come back in the repo's order."""
    import threading

    from batch_layer.job import _GroupOutcome

    spark = spark_factory(Settings(_env_file=None))
    context = spark.sparkContext
    seen: dict[str, tuple[str | None, str]] = {}
    runner = _runner(spark, concurrency)

    def run(group) -> _GroupOutcome:
        spark.range(10 + len(group.name)).count()  # a Spark job in the group's thread
        seen[group.name] = (
            context.getLocalProperty("spark.jobGroup.id"),
            threading.current_thread().name,
        )
        return _GroupOutcome(entities=len(group.name))

    runner.run = run
    groups = [type("G", (), {"name": name})() for name in ("a", "bb", "ccc", "dddd")]
    context.setJobGroup("test-run-group", "a run")
    try:
        outcomes = runner.run_all(groups)
    finally:
        context.setLocalProperty("spark.jobGroup.id", None)
    assert list(outcomes) == ["a", "bb", "ccc", "dddd"]
    assert [o.entities for o in outcomes.values()] == [1, 2, 3, 4]
    assert {job_group for job_group, _ in seen.values()} == {"test-run-group"}
    assert len(context.statusTracker().getJobIdsForGroup("test-run-group")) >= 4
    threads = {thread for _, thread in seen.values()}
    if concurrency > 1:
        assert all(t.startswith("lfp-batch-group") for t in threads)
    else:
        assert threads == {threading.current_thread().name}


def test_a_failing_group_fails_the_run_with_its_error(spark_factory):
    runner = _runner(spark_factory(Settings(_env_file=None)), 2)
    started: list[str] = []

    def run(group):
        started.append(group.name)
        if group.name == "bad":
            raise ValueError("group bad: no such column")
        from batch_layer.job import _GroupOutcome

        return _GroupOutcome()

    runner.run = run
    groups = [type("G", (), {"name": name})() for name in ("ok", "bad", "later")]
    with pytest.raises(ValueError, match="group bad: no such column"):
        runner.run_all(groups)
    assert "bad" in started
