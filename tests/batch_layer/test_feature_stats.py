"""Feature statistics recorded by batch runs and training set builds, and their drift."""

import logging
import random
import shutil
import time

import orjson
import pytest
import redis

from batch_layer.feature_stats import entity_priority, priority_below, priority_bound
from batch_layer.job import run_batch
from batch_layer.lake import append_with_offsets
from feature_core.definitions import Aggregation, Entity, FeatureGroup, FeatureRepo, FeatureService
from feature_core.journals import Journal
from feature_core.reference import evaluate
from feature_core.settings import Settings
from feature_core.sources import EventSource, Field
from feature_core.stats import (
    Drift,
    RunFeatureStats,
    TrainingFeatureStats,
    declared_kind,
    feature_stats,
)
from feature_core.statuses import ValueStatus
from feature_core.windows import DAY_MS, HOUR_MS, align_cutoff
from online_store import open_store
from tests.batch_layer.helpers import lake_settings

pytestmark = pytest.mark.spark

SOURCE = EventSource(
    "readings",
    event_time="t",
    fields=[
        Field("user", "string", required=True),
        Field("t", "timestamp", required=True),
        Field("amount", "float"),
        Field("color", "string"),
    ],
)
GROUP = FeatureGroup(
    "g",
    Entity("user", "user"),
    SOURCE,
    [
        Aggregation("count", windows=["1h", "lifetime"]),
        Aggregation("mean", "amount", windows=["1d", "lifetime"]),
        Aggregation("count_by", "color", windows=["lifetime"], max_keys=10),
        Aggregation("last", "color", windows=["1d"]),
        Aggregation("max", "t", windows=["lifetime"]),  # a time: not compared
    ],
)
REPO = FeatureRepo([GROUP], [FeatureService("s", [f"g:{f.name}" for f in GROUP.features])])
USERS = 300


def _events(rng: random.Random, cutoff: int, amount_mean: float, colors: list[str]) -> list:
    """Each user's events over 10 days before the cutoff, a third of them without any in
    the last day; amounts and colors sometimes missing."""
    events = []
    for u in range(USERS):
        recent = u % 3 != 0
        for _ in range(rng.randrange(1, 6)):
            back = (
                rng.randrange(0, DAY_MS)
                if recent
                else rng.randrange(DAY_MS + 2 * HOUR_MS, 10 * DAY_MS)
            )
            events.append(
                {
                    "user": f"u{u}",
                    "t": cutoff - 1 - back,
                    "amount": None if rng.random() < 0.2 else rng.gauss(amount_mean, 10),
                    "color": None if rng.random() < 0.1 else rng.choice(colors),
                }
            )
    return events


def _append(settings: Settings, events: list, first_offset: int) -> None:
    rows = [(SOURCE.parse(orjson.dumps(e)), 0, first_offset + i) for i, e in enumerate(events)]
    append_with_offsets(settings.table_uri(SOURCE.table_name), SOURCE, rows, "t", {0: first_offset})


def _direct(events: list, cutoff: int) -> dict[str, tuple[list, list]]:
    """Every entity's values (the reference evaluator) and statuses (an event in the
    window or not), per feature: computed from the events, not by the batch job."""
    values = evaluate(GROUP, events, cutoff)
    times: dict[str, list[int]] = {}
    for event in events:
        times.setdefault(event["user"], []).append(event["t"])
    found = {}
    for feature in GROUP.features:
        column_values, statuses = [], []
        for user, features in values.items():
            in_window = feature.window.events_in(sorted(times[user]), cutoff)
            some = any(in_window(t) for t in times[user] if t < cutoff)
            column_values.append(features[feature.name])
            statuses.append(ValueStatus.PRESENT if some else ValueStatus.NO_DATA)
        found[f"g:{feature.name}"] = (column_values, statuses)
    return found


def _records(settings: Settings, kind: Journal) -> list[bytes]:
    store = open_store(settings)
    try:
        return store.journal(kind)
    finally:
        store.close()


@pytest.mark.parametrize("incremental", [False, True], ids=["window-by-window", "tiles"])
def test_a_batch_run_records_the_served_values_statistics_and_flags_drift(
    spark_factory, redis_process, tmp_path, caplog, incremental
):
    """Both ways of running: runs after the first are incremental with tiles, and their
    sample reads the served documents; a reassembling run samples what it writes."""
    settings = lake_settings(redis_process, tmp_path, batch_incremental=incremental)
    spark = spark_factory(settings)
    cutoff = align_cutoff(int(time.time() * 1000) - 2 * HOUR_MS)
    rng = random.Random(31)
    events = _events(rng, cutoff, 50.0, ["red", "green", "blue"])
    _append(settings, events, 0)

    first = run_batch(spark, settings, REPO, cutoff, run_id="first")
    (raw,) = _records(settings, Journal.FEATURE_STATS)
    record = RunFeatureStats.model_validate_json(raw)
    assert (record.run_id, record.view_version, record.cutoff) == ("first", first.version, cutoff)
    assert record.entities == {"g": USERS} and record.sampled == {"g": USERS}
    assert record.previous_run_id is None
    assert set(record.features) == {f"g:{f.name}" for f in GROUP.features}
    for reference, (values, statuses) in _direct(events, cutoff).items():
        got = record.features[reference]
        (feature,) = [f for f in GROUP.features if f"g:{f.name}" == reference]
        kind, of = declared_kind(*feature.value_type(SOURCE))
        want = feature_stats(values, statuses, kind, of)
        assert (got.kind, got.count) == (want.kind, USERS), reference
        assert got.null_rate == want.null_rate, reference
        assert got.no_data_rate == want.no_data_rate, reference
        if want.mean is not None:
            assert got.mean == pytest.approx(want.mean, rel=1e-9), reference
        assert got.top == want.top, reference
    # Windows of a day: a third of the users had no event in it (status no_data, and a
    # mean of nothing is null), lifetime: every user had some.
    assert record.features["g:amount_mean_1d"].no_data_rate == pytest.approx(1 / 3)
    assert record.features["g:count_lifetime"].no_data_rate == 0.0
    assert record.features["g:color_count_by_lifetime"].categories_of == "keys"
    assert record.drift["g:count_lifetime"].previous_run is None

    # A training set of the same values is a baseline: a run over the same lake and
    # cutoff is at PSI 0 against both.
    store = open_store(settings)
    training = TrainingFeatureStats(
        at_ms=record.at_ms + 1,
        training_set="/models/t1",
        rows=USERS,
        sampled=USERS,
        features=record.features,
    )
    store.append_journal(
        Journal.TRAINING_STATS, training.model_dump_json().encode(), training.at_ms, 10
    )
    store.close()
    # With tiles, every document assembled from them (`--reassemble`).
    mode = "reassemble" if incremental else None
    rerun = run_batch(spark, settings, REPO, cutoff, run_id="again", mode=mode)
    assert rerun.mode == ("reassemble" if incremental else "full")
    again = RunFeatureStats.model_validate_json(_records(settings, Journal.FEATURE_STATS)[-1])
    assert again.previous_run_id == "first"
    assert again.entities == {"g": USERS} and again.sampled == {"g": USERS}
    assert again.training_sets["g:amount_mean_lifetime"] == "/models/t1"
    assert {r: (d.previous_run, d.training) for r, d in again.drift.items()} == {
        r: (None, None) if r == "g:t_max_lifetime" else (0.0, 0.0) for r in record.features
    }
    assert again.flagged() == {"previous_run": [], "training": []}

    # Upstream changes: amounts ten times larger, one color gone, another new: the
    # features reading them drift over the threshold.
    later = cutoff + HOUR_MS
    changed = _events(rng, later, 500.0, ["red", "purple"])
    changed = [e for e in changed if e["t"] >= later - 3 * DAY_MS]
    _append(settings, changed, len(events))
    run_batch(spark, settings, REPO, later, run_id="changed")
    moved = RunFeatureStats.model_validate_json(_records(settings, Journal.FEATURE_STATS)[-1])
    flagged = moved.flagged()
    assert moved.previous_run_id == "again"
    for reference in ("g:amount_mean_1d", "g:amount_mean_lifetime", "g:color_last_1d"):
        assert reference in flagged["previous_run"], (reference, moved.drift[reference])
        assert reference in flagged["training"], (reference, moved.drift[reference])
    assert moved.drift["g:amount_mean_1d"].previous_run > 1.0
    # Times move forward with every run: summarized, never compared.
    assert moved.features["g:t_max_lifetime"].mean > record.features["g:t_max_lifetime"].mean
    assert moved.drift["g:t_max_lifetime"] == Drift(previous_run=None, training=None)

    # A statistics failure (the journal's key holds something else) leaves the run
    # switched and says so in the log.
    client = redis.Redis(host="127.0.0.1", port=redis_process.port)
    journal_key = store.keys.journal(Journal.FEATURE_STATS)
    client.delete(journal_key)
    client.set(journal_key, b"not a journal")
    with caplog.at_level(logging.WARNING, logger="batch_layer.job"):
        result = run_batch(spark, settings, REPO, later, run_id="broken")
    assert result.switched
    assert f"feature statistics off for batch view v{result.version}" in caplog.text
    assert client.get(journal_key) == b"not a journal"
    # Failing after the sample was taken (the training journal is the broken one): the
    # same, said by the other step.
    client.delete(journal_key)
    training_key = store.keys.journal(Journal.TRAINING_STATS)
    client.delete(training_key)
    client.set(training_key, b"not a journal")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="batch_layer.job"):
        result = run_batch(spark, settings, REPO, later, run_id="broken too")
    assert result.switched
    assert f"feature statistics of batch view v{result.version} not recorded" in caplog.text
    assert client.exists(journal_key) == 0


def test_a_sample_is_the_entities_with_the_smallest_hashes(spark_factory, redis_process, tmp_path):
    """LFP_FEATURE_STATS_SAMPLE entities of more: the record summarizes exactly the
    entities with the smallest keyed hashes of their ids, as computed from the events."""
    sample = 40
    settings = lake_settings(
        redis_process, tmp_path, feature_stats_sample=sample, batch_incremental=True
    )
    cutoff = align_cutoff(int(time.time() * 1000) - 2 * HOUR_MS)
    events = _events(random.Random(8), cutoff, 50.0, ["red", "green", "blue"])
    _append(settings, events, 0)
    spark = spark_factory(settings)
    # The first run writes every document; the second only those an edge moved, and
    # picks its sample's candidates in Spark SQL (the same hash): the same entities.
    for run, at in (("sampled", cutoff), ("again", cutoff + 5 * 60_000)):
        result = run_batch(spark, settings, REPO, at, run_id=run)
        assert result.mode == ("full" if run == "sampled" else "incremental")
        raw = _records(settings, Journal.FEATURE_STATS)[-1]
        record = RunFeatureStats.model_validate_json(raw)
        assert record.entities == {"g": USERS} and record.sampled == {"g": sample}
        chosen = set(sorted({e["user"] for e in events}, key=entity_priority)[:sample])
        direct = _direct([e for e in events if e["user"] in chosen], at)
        for reference, (values, statuses) in direct.items():
            got = record.features[reference]
            want = feature_stats(values, statuses, got.kind, got.categories_of)
            assert (got.count, got.null_rate, got.no_data_rate) == (
                sample,
                want.null_rate,
                want.no_data_rate,
            ), (run, reference)
            assert got.top == want.top and got.edges == pytest.approx(want.edges), reference


def test_spark_sql_orders_entities_as_the_sample_does(spark_factory):
    """``priority_below`` (the JVM's SHA-256) picks exactly the ids whose
    ``entity_priority`` is under the bound, whatever their characters."""
    spark = spark_factory(Settings(_env_file=None))
    ids = [f"e{i}" for i in range(2000)] + ["", "ü-ß", "用户:7", "a|b", "x" * 300]
    frame = spark.createDataFrame([(i,) for i in ids], "entity STRING")
    for bound in (None, 0, 2**63, priority_bound(100, 2000), entity_priority("e7") + 1):
        want = {i for i in ids if bound is None or entity_priority(i) < bound}
        got = {r.entity for r in frame.where(priority_below("entity", bound)).collect()}
        assert got == want, bound


def test_the_hash_bound_lets_about_the_sample_through():
    assert priority_bound(100, 100) is None and priority_bound(100, 50) is None
    bound = priority_bound(1000, 100_000)
    assert bound is not None
    through = sum(entity_priority(f"e{i}") < bound for i in range(100_000))
    assert 1000 < through < 1300


def test_a_training_set_build_records_its_features_statistics(
    spark_factory, redis_process, tmp_path
):
    from batch_layer.training import build_training_set, feature_columns, write_training_set

    settings = lake_settings(redis_process, tmp_path, feature_stats_sample=50)
    spark = spark_factory(settings)
    cutoff = 20_000 * DAY_MS
    events = _events(random.Random(5), cutoff, 50.0, ["red", "green"])
    _append(settings, events, 0)
    spine = spark.createDataFrame(
        [(f"u{u}", cutoff - h * HOUR_MS, u % 2) for u in range(40) for h in (0, 30)],
        "user STRING, timestamp BIGINT, label INT",
    )
    service = REPO.service("s")
    frame = build_training_set(spark, settings, REPO, service, spine)
    assert set(feature_columns(frame)) == {f"g__{f.name}" for f in GROUP.features}
    assert feature_columns(frame)["g__color_count_by_lifetime"][1:] == ("integer", "map")
    for output_format in ("parquet", "delta"):
        path = str(tmp_path / f"out-{output_format}")
        rows = write_training_set(frame, path, output_format, settings, service="s")
        assert rows == 80
        record = TrainingFeatureStats.model_validate_json(
            _records(settings, Journal.TRAINING_STATS)[-1]
        )
        assert (record.training_set, record.service, record.rows, record.sampled) == (
            path,
            "s",
            80,
            50,
        )
        assert set(record.features) == {f"g:{f.name}" for f in GROUP.features}
        assert all(s.count == 50 and s.no_data_rate is None for s in record.features.values())
    # Every row (a sample as large as the set): the figures are the set's own.
    whole = settings.model_copy(update={"feature_stats_sample": 1000})
    write_training_set(frame, str(tmp_path / "all"), "parquet", whole, service="s")
    record = TrainingFeatureStats.model_validate_json(
        _records(settings, Journal.TRAINING_STATS)[-1]
    )
    collected = frame.collect()
    for reference, stats in record.features.items():
        column = reference.replace(":", "__")
        values = [r[column] for r in collected]
        assert stats.count == 80
        assert stats.null_rate == sum(v is None for v in values) / 80, reference
    # No settings (a caller that does not record): nothing more in the journal.
    before = len(_records(settings, Journal.TRAINING_STATS))
    write_training_set(frame, str(tmp_path / "quiet"), "parquet")
    assert len(_records(settings, Journal.TRAINING_STATS)) == before


LEAVING = FeatureGroup(
    "h",
    Entity("user", "user"),
    SOURCE,
    [
        Aggregation("count", windows=["1h"]),
        Aggregation("mean", "amount", windows=["1h"]),
        Aggregation("last", "color", windows=["1h"]),
    ],
)
SESSIONS = FeatureGroup(
    "s",
    Entity("user", "user"),
    SOURCE,
    [
        Aggregation("count", windows=["session:30m"]),
        Aggregation("count_by", "color", windows=["session:30m"], max_keys=10),
        Aggregation("sum", "amount", windows=["1h"]),
    ],
)
CARRIED_REPO = FeatureRepo(
    [GROUP, LEAVING, SESSIONS],
    [
        FeatureService(
            "c", [f"{g.name}:{f.name}" for g in (GROUP, LEAVING, SESSIONS) for f in g.features]
        )
    ],
)


def _recent(rng: random.Random, users: range, start: int, end: int) -> list:
    """1 to 3 events per user, at times in [start, end)."""
    return [
        {
            "user": f"u{u}",
            "t": rng.randrange(start, end),
            "amount": None if rng.random() < 0.2 else rng.gauss(50, 10),
            "color": rng.choice(["red", "green", "blue"]),
        }
        for u in users
        for _ in range(rng.randrange(1, 4))
    ]


def test_an_incremental_run_carries_the_sample_and_it_equals_a_fresh_one(
    spark_factory, redis_process, tmp_path, caplog
):
    """Runs after the first carry each advanced group's sample: the previous values of
    the entities they did not write, the written ones' new values, and for sessions
    (values that move with the query time) every carried entity merged again. The
    statistics equal those of a sample drawn afresh at the same cutoff, including after
    entities left a group's view (its 1h windows emptied) and came back."""
    sample = 40
    settings = lake_settings(
        redis_process, tmp_path, feature_stats_sample=sample, batch_incremental=True
    )
    spark = spark_factory(settings)
    cutoff = align_cutoff(int(time.time() * 1000) - 3 * HOUR_MS)
    rng = random.Random(5)
    events = _recent(rng, range(USERS), cutoff - 2 * HOUR_MS, cutoff)
    _append(settings, events, 0)
    run_batch(spark, settings, CARRIED_REPO, cutoff, run_id="first")
    samples = tmp_path / "lake" / "_lfp_tiles" / "_lfp_samples"
    left = []
    for step in range(1, 4):
        before, cutoff = cutoff, cutoff + 20 * 60_000
        # New events for a few users, and late ones (before the last cutoff) for others.
        fresh = _recent(rng, range(step * 40, step * 40 + 60), before, cutoff)
        late = _recent(rng, range(200, 230), before - HOUR_MS, before)
        _append(settings, fresh + late, len(events))
        events += fresh + late
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="batch_layer.job"):
            carried = run_batch(spark, settings, CARRIED_REPO, cutoff, run_id=f"carried {step}")
        assert carried.mode == "incremental"
        assert "sample carried for g, h, s" in caplog.text, step
        with_carry = RunFeatureStats.model_validate_json(
            _records(settings, Journal.FEATURE_STATS)[-1]
        )
        # The same cutoff again, the kept candidates deleted: drawn afresh from the tiles.
        shutil.rmtree(samples)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="batch_layer.job"):
            fresh_run = run_batch(spark, settings, CARRIED_REPO, cutoff, run_id=f"fresh {step}")
        assert fresh_run.mode == "incremental" and "sample carried" not in caplog.text
        drawn = RunFeatureStats.model_validate_json(_records(settings, Journal.FEATURE_STATS)[-1])
        assert with_carry.entities == drawn.entities, step
        assert with_carry.sampled == drawn.sampled == {"g": sample, "h": sample, "s": sample}
        assert with_carry.features == drawn.features, step
        left.append(with_carry.entities["h"])
    # Entities left the 1h view as the cutoff moved past their events (tombstones).
    assert min(left) < USERS and len(set(left)) > 1, left
