"""Correction tiles: over any interleaving of arrivals (late ones up to 35 days), lake
commits, speed progress, batch runs and view switches, the served values equal the
reference over exactly the events the layers hold: each counted once, none missed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from feature_core import local_views
from feature_core.corrections import (
    correction_tiles,
    field_name,
    late_threshold,
    reach,
    tile_width,
)
from feature_core.definitions import Aggregation, FeatureGroup
from feature_core.merge import BatchPointer, ValueStatus, group_merger, merge_group
from feature_core.reference import evaluate
from feature_core.windows import DAY_MS, HOUR_MS, MINUTE_MS, SPEED_TILE_MS, align_cutoff
from tests.feature_core.test_merge import BASE, GROUP

HORIZON = 2 * DAY_MS
TABLE = GROUP.source.table_name
ENTITIES = ("u", "v")


@dataclass
class Commit:
    version: int
    records: list[dict[str, Any]]
    corrections: dict[str, list[tuple[int, int, list[Any]]]]


@dataclass
class World:
    """The log, the lake's commits, the speed job's position and the batch views."""

    clock: int = BASE
    log: list[dict[str, Any]] = field(default_factory=list)
    ingested: int = 0  # records of the log in the lake
    processed: int = 0  # records of the log the speed job has written
    commits: list[Commit] = field(default_factory=list)
    runs: list[tuple[BatchPointer, dict[str, Any]]] = field(default_factory=list)
    serving: tuple[BatchPointer, dict[str, Any]] | None = None
    group: FeatureGroup = GROUP

    def arrive(self, lateness: int, entity: str, amount: float | None, item: str | None) -> None:
        event_time = self.clock - 1 - lateness
        record = {"user_id": entity, "event_time": event_time, "amount": amount, "item_id": item}
        self.log.append(record)

    def commit(self, upto: int) -> None:
        """Lake ingest commits the next records; their corrections follow the commit."""
        end = min(len(self.log), self.ingested + upto)
        if end == self.ingested:
            return
        records = self.log[self.ingested : end]
        self.ingested = end
        version = len(self.commits) + 1
        tiles, _, _ = correction_tiles(
            self.group,
            records,
            late_threshold(self.clock),
            reach(self.group, self.clock),
            self.clock,
        )
        by_entity = {
            entity: [(start, version, p) for (start, _), p in by_tile.items()]
            for entity, by_tile in tiles.items()
        }
        self.commits.append(Commit(version, records, by_entity))

    def run(self, settle: int) -> None:
        """A batch run reads the lake now (cutoff as the batch job clamps it)."""
        cutoff = align_cutoff(min(self.clock - settle, self.clock))
        version = len(self.commits)
        read = [r for c in self.commits for r in c.records]
        docs = {
            entity: local_views.batch_doc(
                self.group, [r for r in read if r["user_id"] == entity], cutoff, HORIZON
            )
            for entity in ENTITIES
        }
        pointer = BatchPointer(
            len(self.runs) + 1, cutoff, HORIZON, version, delta_versions={TABLE: version}
        )
        self.runs.append((pointer, docs))

    def switch(self, which: int) -> None:
        if not self.runs:
            return
        run = self.runs[which % len(self.runs)]
        if self.serving is None or run[0].version > self.serving[0].version:
            self.serving = run

    def served(self, entity: str) -> dict[str, Any]:
        pointer, docs = self.serving if self.serving else (None, {})
        floor = pointer.cutoff if pointer else None
        mine = [r for r in self.log[: self.processed] if r["user_id"] == entity]
        tiles = local_views.speed_tiles(self.group, mine, floor)
        corrections = [c for commit in self.commits for c in commit.corrections.get(entity, [])]
        return merge_group(
            self.group, self.clock, pointer, docs.get(entity), tiles, corrections=corrections
        )

    def held(self) -> list[dict[str, Any]]:
        """What the layers hold: before the cutoff, what reached the lake (the view, or
        corrections); from it on, what the speed job wrote."""
        if self.serving is None:
            return self.log[: self.processed]
        cutoff = self.serving[0].cutoff
        lake = [r for r in self.log[: self.ingested] if r["event_time"] < cutoff]
        speed = [r for r in self.log[: self.processed] if r["event_time"] >= cutoff]
        return lake + speed


lateness = st.one_of(
    st.integers(0, 10_000),  # fresh
    st.integers(MINUTE_MS, 10 * MINUTE_MS),  # a phone in a tunnel
    st.integers(HOUR_MS, 7 * DAY_MS),  # a partner's hourly or weekly upload
    st.integers(7 * DAY_MS, 35 * DAY_MS),
)
steps = st.one_of(
    st.tuples(
        st.just("arrive"),
        lateness,
        st.sampled_from(ENTITIES),
        st.one_of(st.none(), st.floats(0, 1000, allow_nan=False)),
        st.one_of(st.none(), st.sampled_from(["i1", "i2", "i3"])),
    ),
    st.tuples(st.just("tick"), st.integers(1, 20 * MINUTE_MS)),
    st.tuples(st.just("commit"), st.integers(1, 8)),
    st.tuples(st.just("speed"), st.integers(1, 8)),
    st.tuples(st.just("run"), st.integers(0, 6 * MINUTE_MS)),
    st.tuples(st.just("switch"), st.integers(0, 5)),
)


def _play(world: World, ops: list[tuple]) -> None:
    for op, *args in ops:
        if op == "arrive":
            world.arrive(*args)
        elif op == "tick":
            world.clock += args[0]
        elif op == "commit":
            world.commit(args[0])
        elif op == "speed":
            world.processed = min(len(world.log), world.processed + args[0])
        elif op == "run":
            world.run(args[0])
        else:
            world.switch(args[0])
        _assert_served_equals_reference(world)
    # Once everything reached the lake and the speed job, every event is served.
    world.commit(len(world.log))
    world.processed = len(world.log)
    assert sorted(map(id, world.held())) == sorted(map(id, world.log))
    _assert_served_equals_reference(world)


@settings(max_examples=300, deadline=None)
@given(st.lists(steps, max_size=40))
def test_every_event_is_served_once_whatever_the_interleaving(ops):
    _play(World(), ops)


SESSIONS = FeatureGroup(
    "s",
    GROUP.entity,
    GROUP.source,
    aggregations=[
        Aggregation("count", windows=["session:30m"]),
        Aggregation("sum", "amount", windows=["session:30m"]),
    ],
)


#: Windows that all hop by hours or days: the group that once got hour-wide correction
#: tiles straddling the cutoff.
COARSE = FeatureGroup(
    "coarse",
    GROUP.entity,
    GROUP.source,
    aggregations=[
        Aggregation("count", windows=["1d", "30d", "lifetime"]),
        Aggregation("sum", "amount", windows=["1d"]),
    ],
)


@settings(max_examples=300, deadline=None)
@given(st.lists(steps, max_size=40))
def test_coarse_windows_count_every_event_once_whatever_the_interleaving(ops):
    _play(World(group=COARSE), ops)


@settings(max_examples=300, deadline=None)
@given(st.lists(steps, max_size=40))
def test_session_values_are_exact_or_marked_stale_whatever_the_interleaving(ops):
    _play(World(group=SESSIONS), ops)


def test_a_late_event_bridging_to_a_session_the_view_closed_is_marked_stale():
    world = World(group=SESSIONS)
    for minutes_ago in (90, 70, 30, 10):  # two sessions: the view keeps the second
        world.arrive(minutes_ago * MINUTE_MS, "u", 1.0, None)
    world.commit(10)
    world.processed = 4
    world.clock += MINUTE_MS
    world.run(0)
    world.switch(0)
    world.arrive(50 * MINUTE_MS, "u", 1.0, None)  # between them: one session of 5
    world.commit(1)
    served = world.served("u")
    assert {v.status for v in served.values()} == {ValueStatus.STALE_BATCH_VIEW}
    world.run(0)  # the next view reads it: exact again
    world.switch(1)
    assert world.served("u")[SESSIONS.features[0].name].value == 5


@settings(max_examples=200, deadline=None)
@given(st.lists(steps, max_size=40), st.sampled_from([GROUP, COARSE, SESSIONS]))
def test_the_inputs_each_window_lists_are_all_it_merges(ops, group):
    """Merging only what ``inputs`` lists for a window gives that window's values, and a
    window lists nothing outside its range: the console's provenance is the merge's."""
    world = World(group=group)
    _play(world, ops)
    pointer, docs = world.serving if world.serving else (None, {})
    merger = group_merger(group)
    for entity in ENTITIES:
        mine = [r for r in world.log if r["user_id"] == entity]
        tiles = local_views.speed_tiles(group, mine, pointer.cutoff if pointer else None)
        corrections = [c for commit in world.commits for c in commit.corrections.get(entity, [])]
        doc = docs.get(entity)
        served = merge_group(group, world.clock, pointer, doc, tiles, corrections=corrections)
        for window in merger.inputs(world.clock, pointer, doc, tiles, corrections):
            assert all(start < world.clock for start in window.speed_tiles)
            listed = set(window.correction_tiles)
            only = merge_group(
                group,
                world.clock,
                pointer,
                {window.window: {b: doc[window.window][b] for b in window.batch_buckets}}
                if window.batch_buckets
                else None,
                {start: tiles[start] for start in window.speed_tiles},
                corrections=[c for c in corrections if (c[0], c[1]) in listed],
            )
            for feature in group.window_features[_window(group, window.window)]:
                assert only[feature.name] == served[feature.name], (window, feature.name)


def _window(group: FeatureGroup, name: str) -> Any:
    return next(w for w in group.window_features if w.name == name)


def _assert_served_equals_reference(world: World) -> None:
    group = world.group
    expected = evaluate(group, world.held(), world.clock)
    for entity in ENTITIES:
        merged = world.served(entity)
        want = expected.get(entity)
        for feature in group.features:
            value = merged[feature.name]
            if value.status is ValueStatus.STALE_BATCH_VIEW:
                assert group is SESSIONS  # only a late bridge to a closed session
                continue
            if want is None:
                assert value.status is ValueStatus.NO_DATA, feature.name
                continue
            expected_value = want[feature.name]
            if isinstance(expected_value, float):
                tolerance = 1e-9 * max(1.0, abs(expected_value))
                assert abs(value.value - expected_value) <= tolerance, feature.name
            else:
                assert value.value == expected_value, (feature.name, value, expected_value)


def test_a_correction_field_sorts_apart_from_speed_tiles():
    assert field_name(1_700_000_100_000, 42, SPEED_TILE_MS) == "[1700000100000,42,300000]"


def test_correction_tiles_are_five_minutes_wide_whatever_the_windows_hop():
    """A wider tile starting before the (5-minute aligned) cutoff could hold events after
    it, which the speed tiles count too."""
    assert tile_width(GROUP, 10 * MINUTE_MS) == SPEED_TILE_MS
    assert tile_width(COARSE, 10 * MINUTE_MS) == SPEED_TILE_MS
    assert tile_width(COARSE, 13 * DAY_MS) == SPEED_TILE_MS


def test_only_records_before_the_commit_threshold_are_corrected():
    now = BASE + 7 * SPEED_TILE_MS + 1234
    records = [
        {"user_id": "u", "event_time": now - 10, "amount": 1.0, "item_id": "i1"},
        {"user_id": "u", "event_time": now - 2 * SPEED_TILE_MS, "amount": 2.0, "item_id": "i2"},
        {"user_id": None, "event_time": now - 3 * SPEED_TILE_MS, "amount": 3.0, "item_id": "i3"},
    ]
    tiles, late, too_old = correction_tiles(GROUP, records, late_threshold(now))
    assert late == 1 and too_old == 0
    assert list(tiles) == ["u"]
    assert list(tiles["u"]) == [(align_cutoff(now - 2 * SPEED_TILE_MS), SPEED_TILE_MS)]


def test_events_older_than_every_window_are_counted_not_corrected():
    short = FeatureGroup(
        "short", GROUP.entity, GROUP.source, aggregations=[Aggregation("count", windows=["1h"])]
    )
    now = BASE
    old = {"user_id": "u", "event_time": now - 2 * HOUR_MS, "amount": 1.0, "item_id": "i1"}
    within = {"user_id": "u", "event_time": now - 30 * MINUTE_MS, "amount": 1.0, "item_id": "i1"}
    _, late, too_old = correction_tiles(
        short, [old, within], late_threshold(now), reach(short, now)
    )
    assert (late, too_old) == (1, 1)
    assert reach(GROUP, now) is None  # a lifetime window: any age matters
    assert reach(GROUP, now, max_age_ms=DAY_MS) == now - DAY_MS


def test_a_view_older_than_the_speed_jobs_lateness_marks_the_windows_reaching_back_stale():
    """Events dated after the cutoff that arrive more than the allowed lateness late are in
    no view (the speed job skips them): windows reaching back there are stale_batch_view."""
    cutoff = BASE
    pointer = BatchPointer(1, cutoff, HORIZON, speed_lateness_ms=HOUR_MS)
    fresh = merge_group(GROUP, cutoff + 30 * MINUTE_MS, pointer, None, {})
    assert {v.status for v in fresh.values()} == {ValueStatus.NO_DATA}
    old = merge_group(GROUP, cutoff + 2 * HOUR_MS, pointer, None, {})
    assert old["count_5m"].status is ValueStatus.NO_DATA  # starts after the skipped range
    assert old["count_1d"].status is ValueStatus.STALE_BATCH_VIEW
    assert old["count_lifetime"].status is ValueStatus.STALE_BATCH_VIEW


def test_windows_reaching_into_a_gap_in_the_speed_tiles_are_stale():
    pointer = BatchPointer(1, BASE, HORIZON, speed_gap_before=BASE + 10 * MINUTE_MS)
    merged = merge_group(GROUP, BASE + 20 * MINUTE_MS, pointer, None, {})
    assert merged["count_5m"].status is ValueStatus.NO_DATA  # starts after the gap
    assert merged["count_1h"].status is ValueStatus.STALE_BATCH_VIEW
    covered = BatchPointer(
        2, BASE + 10 * MINUTE_MS, HORIZON, speed_gap_before=BASE + 10 * MINUTE_MS
    )
    merged = merge_group(GROUP, BASE + 20 * MINUTE_MS, covered, None, {})
    assert merged["count_1h"].status is ValueStatus.NO_DATA
