"""Batch runs over a real delta-rs lake into a real Redis: the first run builds the tiles,
later ones advance them (new events, late ones into earlier days and weeks back, before
the 5m tiles a session group keeps, cutoffs across hour and day edges), and every served
document equals the shared contract's (feature_core.local_views) over all the lake's
events, as a full run's does. Runs that cannot be incremental say why."""

import logging
import random
import time

import orjson
import pytest
from deltalake.exceptions import CommitFailedError

from batch_layer.assembly import fine_floor
from batch_layer.job import run_batch
from batch_layer.lake import append_with_offsets
from batch_layer.tiles import read_state, tile_files, tiles_uri
from feature_core import local_views
from feature_core.definitions import FeatureRepo, FeatureService
from feature_core.settings import Settings
from feature_core.windows import DAY_MS, HOUR_MS, align_cutoff, floor_to
from online_store import open_store
from tests.batch_layer.helpers import lake_settings

pytestmark = pytest.mark.spark

WINDOWS = ["5m", "1h", "1d", "7d", "lifetime", "session:30m"]


def _events(rng: random.Random, start: int, end: int, count: int) -> list[dict]:
    from tests.feature_core.aggregations import catalog

    users = ["hot"] * 8 + [f"u{i}" for i in range(25)]
    return [
        {
            "k": rng.choice(users),
            "t": rng.randrange(start, end),
            "x": rng.choice([None, rng.uniform(-50, 50)]),
            "n": rng.choice([None, rng.randrange(-5, 6)]),
            "s": rng.choice([None, *catalog.LABELS]),
            "b": rng.choice([None, True, False]),
            "c": rng.choice([None, "red", "green", "blue"]),
        }
        for _ in range(count)
    ]


class _Lake:
    def __init__(self, settings: Settings) -> None:
        from tests.feature_core.aggregations import catalog

        self.settings, self.source = settings, catalog.SOURCE
        self.events: list[dict] = []

    def append(self, events: list[dict]) -> None:
        offset = len(self.events)
        rows = [(self.source.parse(orjson.dumps(e)), 0, offset + i) for i, e in enumerate(events)]
        uri = self.settings.table_uri(self.source.table_name)
        append_with_offsets(uri, self.source, rows, "t", {0: offset})
        self.events.extend(events)


def _served(settings: Settings, group, entities) -> dict:
    store = open_store(settings)
    try:
        pointer = store.pointer()
        assert pointer is not None
        return store.read_base(pointer.version, group.name, sorted(entities))
    finally:
        store.close()


def _check(settings: Settings, group, events: list[dict], cutoff: int) -> None:
    from tests.feature_core.aggregations.catalog import close

    served = _served(settings, group, {e["k"] for e in events})
    for entity, doc in served.items():
        mine = [e for e in events if e["k"] == entity]
        want = local_views.batch_doc(group, mine, cutoff, settings.batch_horizon_s * 1000)
        assert close(doc or {}, want), (entity, doc, want)


def test_incremental_runs_serve_what_a_full_run_does(
    spark_factory, redis_process, tmp_path, monkeypatch, caplog
):
    from tests.feature_core.aggregations import catalog

    group = catalog.group(WINDOWS)
    repo = FeatureRepo([group], [FeatureService("s", [f"g:{f.name}" for f in group.features])])
    settings = lake_settings(
        redis_process, tmp_path, feature_stats_sample=0, batch_incremental=True
    )
    spark = spark_factory(settings)
    rng = random.Random(17)
    now = align_cutoff(int(time.time() * 1000))
    cutoff = now - 3 * DAY_MS + 23 * HOUR_MS + 35 * 60_000
    lake = _Lake(settings)
    # "idle" was last seen 10 days ago: its last session is on a day whose 5m tiles no
    # state keeps, and late events extend it (one each run, within 30 minutes of it).
    noon = floor_to(cutoff - 10 * DAY_MS, DAY_MS) + 12 * HOUR_MS
    idle = [
        {**e, "k": "idle", "t": noon + i * 10 * 60_000} for i, e in enumerate(_events(rng, 0, 1, 3))
    ]
    lake.append(_events(rng, cutoff - 20 * DAY_MS, cutoff + 2 * HOUR_MS, 600) + idle)

    first = run_batch(spark, settings, repo, cutoff)
    assert first.mode == "full" and first.mode_reasons == {"g": "no stored tiles"}
    _check(settings, group, lake.events, cutoff)

    steps = [25 * 60_000, 40 * 60_000, 26 * HOUR_MS, 5 * 60_000]
    for i, step in enumerate(steps):
        floor = fine_floor(group, cutoff)
        cutoff += step
        fresh = _events(rng, cutoff - HOUR_MS, cutoff + HOUR_MS, 80)
        late = _events(rng, cutoff - DAY_MS, cutoff - 2 * HOUR_MS, 10)
        # Weeks late, some on days with old events of the same entity.
        weeks = _events(rng, cutoff - 18 * DAY_MS, cutoff - 4 * DAY_MS, 2)
        extends = {**_events(rng, 0, 1, 1)[0], "k": "idle", "t": noon + (3 + i) * 10 * 60_000}
        assert floor is not None and extends["t"] < floor
        lake.append(fresh + late + weeks + [extends])
        stored = {f.path for f in tile_files(tiles_uri(settings))}
        result = run_batch(spark, settings, repo, cutoff)
        assert result.mode == "incremental", (i, result.mode_reasons)
        assert result.group_modes == {"g": "incremental"}
        assert result.rows_read < len(lake.events) / 3, result
        assert result.tiles_written and result.keys_written is not None
        # Only the tiles the new events changed are written, beside the stored files
        # (none rewritten): a 5m, 1h and 1d tile and a session day per event at most.
        assert stored <= {f.path for f in tile_files(tiles_uri(settings))}
        arrived = [e for e in lake.events if cutoff - step <= e["t"] < cutoff]
        arrived += [e for e in fresh + late + weeks + [extends] if e["t"] < cutoff - step]
        assert result.tiles_written <= 4 * len(arrived), (result.tiles_written, len(arrived))
        _check(settings, group, lake.events, cutoff)

    full = run_batch(spark, settings, repo, cutoff + 5 * 60_000, mode="full")
    assert full.mode == "full" and full.mode_reasons == {"g": "--full"}
    _check(settings, group, lake.events, cutoff + 5 * 60_000)

    # A fold of the runs' files that fails (another compaction first) leaves the run
    # switched: the view already serves.
    def fold_fails(uri):
        raise CommitFailedError("another compaction committed first")

    monkeypatch.setattr("batch_layer.job.fold_run_files", fold_fails)
    with caplog.at_level(logging.WARNING, logger="batch_layer.job"):
        quiet = run_batch(spark, settings, repo, cutoff + 10 * 60_000)
    assert "runs' files not folded" in caplog.text and quiet.switched
    monkeypatch.undo()
    assert quiet.mode == "incremental"
    assert quiet.keys_written is not None and quiet.keys_written < full.keys_written
    _check(settings, group, lake.events, cutoff + 10 * 60_000)

    changed = catalog.group(["5m", "1h", "1d", "30d", "lifetime", "session:30m"])
    changed_repo = FeatureRepo(
        [changed], [FeatureService("s", [f"g:{f.name}" for f in changed.features])]
    )
    redefined = run_batch(spark, settings, changed_repo, cutoff + 15 * 60_000)
    assert redefined.mode == "full"
    assert "changed" in redefined.mode_reasons["g"], redefined.mode_reasons
    _check(settings, changed, lake.events, cutoff + 15 * 60_000)


def test_lost_or_untrusted_views_are_reassembled_from_the_tiles(
    spark_factory, redis_process, tmp_path
):
    """Redis flushed after a run (its views lost, the tiles sound in the lake): the next
    run reads only the new events, advances the tiles and writes every entity's document
    from them; a run after one that did not finish, one with another horizon and
    `--reassemble` do the same. A run at an earlier cutoff is computed window by window
    and leaves the tiles as they were. The run after is incremental again. Every served
    document equals the contract's."""
    import redis

    from tests.feature_core.aggregations import catalog

    group = catalog.group(WINDOWS)
    repo = FeatureRepo([group], [FeatureService("s", [f"g:{f.name}" for f in group.features])])
    settings = lake_settings(
        redis_process, tmp_path, feature_stats_sample=0, batch_incremental=True
    )
    spark = spark_factory(settings)
    rng = random.Random(29)
    # Hour and day edges at the same places whenever the test runs.
    cutoff = floor_to(int(time.time() * 1000), DAY_MS) - 2 * DAY_MS + 7 * HOUR_MS + 5 * 60_000
    lake = _Lake(settings)
    lake.append(_events(rng, cutoff - 15 * DAY_MS, cutoff + HOUR_MS, 500))
    first = run_batch(spark, settings, repo, cutoff)
    assert first.group_modes == {"g": "rebuild"}
    _check(settings, group, lake.events, cutoff)

    def step(minutes: int) -> int:
        moved = cutoff + minutes * 60_000
        fresh = _events(rng, moved - HOUR_MS, moved + HOUR_MS, 60)
        late = _events(rng, moved - 6 * DAY_MS, moved - 3 * HOUR_MS, 6)
        lake.append(fresh + late)
        return moved

    client = redis.Redis(host="127.0.0.1", port=redis_process.port, socket_timeout=10)
    try:
        client.flushdb()
    finally:
        client.close()
    cutoff = step(25)
    lost = run_batch(spark, settings, repo, cutoff)
    assert lost.mode == "reassemble" and lost.group_modes == {"g": "reassemble"}
    assert "view lost" in lost.mode_reasons["g"], lost.mode_reasons
    assert lost.rows_read < len(lake.events) / 4, lost
    everyone = {e["k"] for e in lake.events}
    assert lost.entities_written == len(everyone) and lost.tiles_written
    _check(settings, group, lake.events, cutoff)

    # A run that began and never finished: its documents may be partly written.
    store = open_store(settings)
    try:
        assert store.begin_views(store.next_version()) == lost.version
    finally:
        store.close()
    cutoff = step(40)
    unfinished = run_batch(spark, settings, repo, cutoff)
    assert unfinished.group_modes == {"g": "reassemble"}
    assert unfinished.mode_reasons == {"g": f"a run after v{lost.version} did not finish"}
    assert unfinished.rows_read < len(lake.events) / 4
    _check(settings, group, lake.events, cutoff)

    # A run at an earlier cutoff than the tiles': window by window, the tiles kept as
    # they are for the runs after it.
    earlier = cutoff - 30 * 60_000
    back = run_batch(spark, settings, repo, earlier)
    assert back.group_modes == {"g": "rebuild"} and not back.tiles_written
    assert "window by window, the tiles kept" in back.mode_reasons["g"], back.mode_reasons
    kept = read_state(tiles_uri(settings), {"g": [catalog.SOURCE.table_name]}).groups["g"]
    assert kept.cutoff_ms == cutoff and kept.view_version == unfinished.version
    _check(settings, group, lake.events, earlier)

    cutoff = step(65)
    asked = run_batch(spark, settings, repo, cutoff, mode="reassemble")
    assert asked.mode == "reassemble" and asked.mode_reasons == {"g": "--reassemble"}
    assert asked.rows_read < len(lake.events) / 4
    assert asked.entities_written == len({e["k"] for e in lake.events})
    _check(settings, group, lake.events, cutoff)

    cutoff = step(20)
    settings = settings.model_copy(update={"batch_horizon_s": 2 * settings.batch_horizon_s})
    widened = run_batch(spark, settings, repo, cutoff)
    assert widened.mode_reasons == {"g": "LFP_BATCH_HORIZON_S changed"}
    assert widened.rows_read < len(lake.events) / 4
    _check(settings, group, lake.events, cutoff)

    cutoff = step(30)
    after = run_batch(spark, settings, repo, cutoff)
    assert after.mode == "incremental" and not after.mode_reasons
    assert after.entities_written < asked.entities_written
    _check(settings, group, lake.events, cutoff)
