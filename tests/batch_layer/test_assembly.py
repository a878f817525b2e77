"""Spark's rebuild of a group from raw events equals the Python model's: the same
documents as the shared contract (feature_core.local_views) and the same stored tiles as
feature_core.tiles.LocalTileStore, for every aggregation kind and window type."""

import random

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyspark.sql import functions as F

from batch_layer.assembly import (
    DOC_SERIES,
    advance,
    documents,
    edge_dates,
    fine_floor,
    late_days_needed,
    rebuild,
)
from batch_layer.event_tiles import event_tiles
from batch_layer.tiles import SESSION_COLUMNS
from feature_core import local_views
from feature_core.aggregations import normalize
from feature_core.settings import Settings
from feature_core.sources import event_date
from feature_core.tiles import (
    SESSION_SERIES_PREFIX,
    LocalLake,
    LocalTileStore,
    SessionDay,
    retention_floor,
)
from feature_core.windows import DAY_MS, HOUR_MS, align_cutoff, edge_bands, floor_to

pytestmark = pytest.mark.spark

WINDOWS = ["5m", "1h", "1d", "7d", "30d", "lifetime", "session:30m", "session:1d"]


def _events(catalog, cutoff: int, count: int, seed: int) -> list[tuple]:
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        ago = rng.choice(
            [
                rng.randrange(0, 45 * DAY_MS),
                rng.randrange(0, 3 * HOUR_MS),
                rng.randrange(0, 600_000),
            ]
        )
        time = cutoff - ago
        rows.append(
            (
                rng.choice(["hot"] * 6 + ["u1", "u2", "u3", "u4"]),
                time - time % rng.choice([1, 60_000]),  # ties at one millisecond
                rng.choice([None, rng.uniform(-50, 50)]),
                rng.choice([None, rng.randrange(-5, 6)]),
                rng.choice([None, *catalog.LABELS]),
                rng.choice([None, True, False]),
                rng.choice([None, "red", "green", "blue"]),
                0,
                i,
            )
        )
    return rows


def test_rebuild_equals_the_contract_and_the_model(spark_factory) -> None:
    from tests.feature_core.aggregations import catalog
    from tests.feature_core.aggregations.catalog import close

    group = catalog.group(WINDOWS)
    spark = spark_factory(Settings(_env_file=None))
    cutoff = 19_000 * DAY_MS + 13 * HOUR_MS + 25 * 60_000
    rows = _events(catalog, cutoff, 600, seed=5)
    frame = spark.createDataFrame(rows, catalog.SOURCE.spark_ddl())
    out = rebuild(frame, group, cutoff, DAY_MS).collect()

    names = [*catalog.SOURCE.columns, "kafka_partition", "kafka_offset"]
    events = [dict(zip(names, raw, strict=True)) for raw in rows]
    docs = dict(documents(iter(out)))
    for entity in {e["k"] for e in events}:
        want = local_views.batch_doc(group, [e for e in events if e["k"] == entity], cutoff, DAY_MS)
        assert close(orjson.loads(docs[entity]), want), entity

    lake = LocalLake(group.event_time)
    lake.append(events)
    model = LocalTileStore([group], DAY_MS)
    model.run(lake, cutoff)
    got = {
        (row["series"], row["entity"], row["start"]): row
        for row in out
        if row["series"] != DOC_SERIES
    }
    expected = {
        (series, entity, start): raw
        for (_, series, entity), tiles in model.tiles.items()
        for start, raw in tiles.items()
    }
    assert set(got) == set(expected)
    assert any(series.startswith(SESSION_SERIES_PREFIX) for series, _, _ in got)
    for key, raw in expected.items():
        row = got[key]
        assert row["tile_date"] == event_date(key[2])
        if key[0].startswith(SESSION_SERIES_PREFIX):
            want = SessionDay.from_json(group, orjson.loads(raw))
            have = tuple(row[c] for c in SESSION_COLUMNS)
            assert have == (*want.to_json()[:4], want.prev_last_ms), key
            assert close(normalize(group.primitives, orjson.loads(row["partials"])), want.partials)
        else:
            want_partials = list(normalize(group.primitives, orjson.loads(raw)))
            have_partials = list(normalize(group.primitives, orjson.loads(row["partials"])))
            assert close(have_partials, want_partials), key
            assert row["events"] > 0, key


def _tile_rows(rows) -> dict:
    return {(r["series"], r["entity"], r["start"]): r for r in rows if r["series"] != DOC_SERIES}


@pytest.mark.parametrize(
    ("step", "horizon", "weeks_late", "reassemble"),
    [
        (25 * 60_000, DAY_MS, 0, False),
        (26 * HOUR_MS + 5 * 60_000, DAY_MS, 0, False),
        (3 * DAY_MS + 10 * HOUR_MS, 5 * 60_000, 0, False),  # crossers below the new floor
        (25 * 60_000, DAY_MS, 12, False),  # events on days whose 5m tiles the state dropped
        (26 * HOUR_MS + 5 * 60_000, 5 * 60_000, 12, False),
        # No served documents: every entity's document from its tiles, the same tiles.
        (26 * HOUR_MS + 5 * 60_000, DAY_MS, 12, True),
        (3 * DAY_MS + 10 * HOUR_MS, 5 * 60_000, 0, True),
    ],
)
def test_advance_equals_a_rebuild_and_the_contract(
    spark_factory, step, horizon, weeks_late, reassemble
) -> None:
    """A rebuild at B0, then events appended (late ones into earlier days, ones after B0
    already in the lake) and the state advanced to B1: every entity's document (advanced,
    or left as it was) equals the contract's at B1, only entities with new events or a
    moved edge are rewritten, and the stored tiles (session-day rows included) equal the
    model's after the same runs. With ``weeks_late``, that many new events fall up to
    three weeks back, on days the state keeps no ``5m`` tiles of: their session rows come
    from the days' events in the lake. With ``reassemble`` (no base documents), every
    entity is rewritten, its document assembled from its tiles."""
    from tests.feature_core.aggregations import catalog
    from tests.feature_core.aggregations.catalog import close

    group = catalog.group(WINDOWS)
    spark = spark_factory(Settings(_env_file=None))
    before = 19_000 * DAY_MS + 23 * HOUR_MS + 40 * 60_000
    after = before + step
    names = [*catalog.SOURCE.columns, "kafka_partition", "kafka_offset"]
    old = [dict(zip(names, r, strict=True)) for r in _events(catalog, after, 500, seed=7)]
    rng = random.Random(8)
    new = []
    for i, raw in enumerate(_events(catalog, after, 120, seed=9)):
        event = dict(zip(names, raw, strict=True))
        event["k"] = rng.choice(["hot", "u1", "fresh"])
        event["t"] = after - rng.randrange(0, min(DAY_MS, after - before + 3 * HOUR_MS))
        if i < weeks_late and i % 2:  # within an hour of an old event of its entity
            event["k"] = old[i]["k"]
            event["t"] = min(old[i]["t"] + rng.randrange(-HOUR_MS, HOUR_MS), after - 1)
        elif i < weeks_late:
            event["t"] = before - rng.randrange(3 * DAY_MS, 21 * DAY_MS)
        event["kafka_offset"] = 10_000 + i
        new.append(event)
    if weeks_late:
        # Sessions at 10:00 and 10:45 ten days back, and a late event at 10:22 joining
        # them: that day's row needs the day's events from the lake.
        day = floor_to(before - 10 * DAY_MS, DAY_MS)
        at = [10 * HOUR_MS, 10 * HOUR_MS + 45 * 60_000, 10 * HOUR_MS + 22 * 60_000]
        bridge = [
            {**old[0], "k": "bridge", "t": day + t, "kafka_offset": 20_000 + i}
            for i, t in enumerate(at)
        ]
        old += bridge[:2]
        new.append(bridge[2])
    floor = fine_floor(group, before)
    assert floor is not None
    assert sum(e["t"] < floor for e in new) >= weeks_late // 2  # the even ones at least
    ddl = catalog.SOURCE.spark_ddl()

    def frame(events):
        return spark.createDataFrame([tuple(e[n] for n in names) for e in events], ddl)

    first = rebuild(frame(old), group, before, horizon).collect()
    docs = {e: orjson.loads(d) for e, d in documents(iter(first))}
    stored = spark.createDataFrame(
        [r for r in first if r["series"] != DOC_SERIES], schema=_tile_ddl()
    )
    delta_events = [e for e in new if e["t"] < after] + [e for e in old if before <= e["t"] < after]
    delta = event_tiles(frame(delta_events), group, after).cache()
    if reassemble:
        days = frame(old + new)  # the lake's snapshot: every late day's events are read
    else:
        # As a run does: the lake's events of the late days whose session rows cannot
        # take the new events alone; every other late day's rows merge them.
        needed = late_days_needed(
            delta, group, before, lambda dates: stored.where(F.col("tile_date").isin(dates))
        )
        assert needed is not None
        pairs = {(date, tuple(keys)) for date, found in needed.items() for keys in found}
        late_pairs = {(event_date(e["t"]), (e["k"],)) for e in new if e["t"] < floor}
        assert pairs <= late_pairs and (not weeks_late or len(pairs) < len(late_pairs))
        assert not weeks_late or (event_date(bridge[2]["t"]), ("bridge",)) in pairs
        days = frame([e for e in old + new if (event_date(e["t"]), (e["k"],)) in pairs])
    base = None if reassemble else _Docs(docs)
    out = advance(stored, delta, group, before, after, horizon, base, days).collect()
    advanced = {e: orjson.loads(d) for e, d in documents(iter(out))}
    written = {r["entity"] for r in out if r["series"] == DOC_SERIES}

    lake = LocalLake(group.event_time)
    lake.append(old)
    model = LocalTileStore([group], horizon)
    model.run(lake, before)
    lake.append(new)
    runs = model.run(lake, after)
    if reassemble:
        tiled = {r["entity"] for r in first if r["series"] != DOC_SERIES}
        assert written == tiled | {r["entity"] for r in delta.select("entity").collect()}
        assert written >= runs[group.name].changed
    else:
        assert written == runs[group.name].changed

    events = old + new
    for entity in {e["k"] for e in events}:
        want = local_views.batch_doc(group, [e for e in events if e["k"] == entity], after, horizon)
        have = advanced[entity] if entity in written else docs.get(entity, {})
        assert close(have, want), entity

    # The run adds only the tiles its events changed, each counting more events than
    # the row it supersedes (what makes it the newest: batch_layer.tiles).
    tiles = _tile_rows(first)
    added = _tile_rows(out)
    delta_keys = {(r["series"], r["entity"], r["start"]) for r in delta.collect()}
    for key, row in added.items():
        assert key in delta_keys or key[0].startswith(SESSION_SERIES_PREFIX), key
        superseded = tiles[key]["events"] if key in tiles else 0
        assert row["events"] > superseded, key
    floors = retention_floor(group, after)
    assert {k for k in delta_keys if k[2] >= (floors.get(k[0]) or 0)} <= set(added)
    tiles |= added
    expected = {
        (series, entity, start)
        for (_, series, entity), by_start in model.tiles.items()
        for start in by_start
    }
    kept_dates = {event_date(start) for _, _, start in expected}
    assert {k for k, r in tiles.items() if r["tile_date"] in kept_dates} >= expected
    for key in expected:
        want = model.tiles[(group.name, key[0], key[1])][key[2]]
        row = tiles[key]
        have = list(normalize(group.primitives, orjson.loads(row["partials"])))
        if key[0].startswith(SESSION_SERIES_PREFIX):
            day = SessionDay.from_json(group, orjson.loads(want))
            found = tuple(row[c] for c in SESSION_COLUMNS)
            assert found == (*day.to_json()[:4], day.prev_last_ms), key
            assert close(have, day.partials), key
        else:
            assert close(have, list(normalize(group.primitives, orjson.loads(want)))), key


class _Docs:
    """The serving view's documents of the first run, as a task reads them."""

    def __init__(self, docs: dict) -> None:
        self.docs = docs

    def __call__(self, entities: list[str]) -> dict:
        return {e: self.docs.get(e) for e in entities}


def _tile_ddl() -> str:
    from batch_layer.tiles import TILE_DDL

    return TILE_DDL


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 400 * DAY_MS),
    st.integers(0, 40 * DAY_MS),
    st.sampled_from([5 * 60_000, HOUR_MS, DAY_MS, 7 * DAY_MS]),
    st.lists(st.integers(-100 * DAY_MS, 2 * DAY_MS), max_size=40),
)
def test_edges_are_found_in_the_dates_edge_dates_names(offset, step, horizon, tiles):
    """Every tile the edge condition selects starts on a date ``edge_dates`` names, so a
    run reading only those partitions finds every entity an edge moved past."""
    from tests.feature_core.aggregations import catalog

    group = catalog.group(["5m", "1h", "1d", "7d", "30d", "90d", "lifetime"])
    before = align_cutoff(19_000 * DAY_MS + offset)
    after = align_cutoff(before + step)
    dates = set(edge_dates(group, before, after, horizon))
    for window in group.windows:
        if window.length_ms is None:
            continue
        bands = edge_bands(window, before, after, horizon)
        for low, high in (bands.leaving, bands.crossing):
            starts = [low, high - 1, *(before + t for t in tiles)]
            for start in (s for s in starts if low <= s < high):
                assert event_date(start) in dates, (window, start)
