"""Incremental tiles against full recomputes and the reference, without an engine.

A Hypothesis state machine drives a local lake (appends with late events weeks back,
events past the cutoff, ties, nulls, skewed entities; optimize rewrites; hand-run deletes)
and the reference tile store through incremental and full runs with cutoff steps across
hour and day edges. After every run, for every entity of every group: the stored document
equals ``local_views.batch_doc`` over all events of the state, equals a full assembly
from the stored tiles, serves the reference evaluator's values at several query times in
``[B, B + H]``, and an entity the run did not rewrite kept its document (the claim that a
run writes only the entities with new events or a moved edge).
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from feature_core import local_views
from feature_core.definitions import Aggregation, FeatureGroup
from feature_core.merge import BatchPointer, GroupMerger, values_match
from feature_core.reference import evaluate
from feature_core.tiles import (
    SESSION_SERIES_PREFIX,
    LocalLake,
    LocalTileStore,
    Piece,
    SessionDay,
    assemble_doc,
    delta_events,
    event_pieces,
    hop_widths,
    merge_session_day,
    merge_tile_rows,
    needs_day_events,
    retention_floor,
    sawtooth,
    series_reach,
    session_day,
    tile_series,
    tile_spec_fingerprint,
)
from feature_core.windows import (
    DAY_MS,
    FINEST_HOP_MS,
    HOUR_MS,
    MINUTE_MS,
    Window,
    batch_layout,
    edge_bands,
    floor_to,
)
from tests.feature_core.aggregations import catalog

WINDOWS = ["5m", "1h", "1d", "7d", "30d", "lifetime", "session:30m", "session:1d"]
#: Every kind over every window shape.
EVERY_KIND = catalog.group(WINDOWS)
#: A few kinds over sliding windows only, filtered: no session series, another retention.
SLIDING = FeatureGroup(
    "sliding",
    EVERY_KIND.entity,
    catalog.SOURCE,
    aggregations=[
        Aggregation("count", name="rows", windows=("1h", "2d", "30d")),
        Aggregation("sum", "x", windows=("1h", "2d", "30d")),
        Aggregation("last_k", "n", k=2, windows=("2d",)),
        Aggregation("decayed_sum", "x", half_life="1h", windows=("1h", "30d")),
    ],
    filter={"b": [True, False]},  # events with a null b are not read
)
GROUPS = [EVERY_KIND, SLIDING]
BASE = 20_000 * DAY_MS
ENTITIES = ["hot"] * 5 + ["warm"] * 2 + ["a", "b", "c"]

# Derandomized (the same programs every run, about 20 s); LFP_TILES_EXAMPLES,
# LFP_TILES_STEPS and LFP_TILES_RANDOM=1 explore further.
settings.register_profile(
    "tiles",
    max_examples=int(os.environ.get("LFP_TILES_EXAMPLES", "40")),
    stateful_step_count=int(os.environ.get("LFP_TILES_STEPS", "20")),
    deadline=None,
    derandomize=not os.environ.get("LFP_TILES_RANDOM"),
    phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _events_of(rows: list[dict[str, Any]], entity: str) -> list[dict[str, Any]]:
    return [row for row in rows if row["k"] == entity]


class IncrementalRuns(RuleBasedStateMachine):
    """Appends, rewrites, deletes and runs; every run checked against full recomputes."""

    def __init__(self) -> None:
        super().__init__()
        self.lake = LocalLake(catalog.SOURCE.event_time)
        self.cutoff = BASE
        self.store: LocalTileStore | None = None
        self.serial = 0
        self.runs = 0

    @initialize(
        horizon=st.sampled_from([DAY_MS, FINEST_HOP_MS, 2 * HOUR_MS]),
        start=st.integers(0, DAY_MS // FINEST_HOP_MS - 1),
        data=st.data(),
        size=st.integers(10, 40),
    )
    def start(self, horizon: int, start: int, data: st.DataObject, size: int) -> None:
        """Weeks of events, then a first run (a rebuild: there is no state yet)."""
        self.horizon = horizon
        self.cutoff = BASE + start * FINEST_HOP_MS
        self.store = LocalTileStore(GROUPS, horizon)
        self.append(data, size)
        self._run(self.cutoff, full=False, data=data)

    # The lake.

    def _time(self, data: st.DataObject) -> int:
        b = self.cutoff
        edges = [
            b - 1,
            b,
            b - FINEST_HOP_MS,
            floor_to(b, HOUR_MS),
            floor_to(b, HOUR_MS) - 1,
            floor_to(b, DAY_MS),
            floor_to(b, DAY_MS) - 1,
            floor_to(b, DAY_MS) + DAY_MS,
            b - 7 * DAY_MS,
            b - 30 * DAY_MS,
        ]
        return data.draw(
            st.one_of(
                st.integers(b - 3 * HOUR_MS, b + 3 * HOUR_MS),  # around the cutoff
                st.integers(b - 40 * DAY_MS, b),  # late, up to weeks back
                st.integers(b, b + 3 * DAY_MS),  # after the cutoff
                st.sampled_from(edges),  # ties on the edges
            )
        )

    @rule(data=st.data(), size=st.integers(1, 12))
    def append(self, data: st.DataObject, size: int) -> None:
        rows = []
        for _ in range(size):
            self.serial += 1
            rows.append(
                {
                    "k": data.draw(st.sampled_from(ENTITIES)),
                    "t": self._time(data),
                    **{column: data.draw(values) for column, values in catalog.VALUES.items()},
                }
            )
        if rows and data.draw(st.booleans()):
            rows.append({**rows[0], "x": 1.0})  # a tie at one millisecond
        self.lake.append(rows)
        if data.draw(st.integers(0, 3)) == 0:
            self.lake.optimize()  # rewrites files, rows unchanged (dataChange false)

    @rule(entity=st.sampled_from(["a", "c"]))
    def delete(self, entity: str) -> None:
        self.lake.delete(lambda row: row["k"] != entity)

    # Runs.

    def _step(self, data: st.DataObject) -> int:
        b = self.cutoff
        to_hour = floor_to(b, HOUR_MS) + HOUR_MS - b
        to_day = floor_to(b, DAY_MS) + DAY_MS - b
        return data.draw(
            st.one_of(
                st.sampled_from([0, FINEST_HOP_MS, 15 * MINUTE_MS, self.horizon]),
                st.integers(1, 3 * DAY_MS // FINEST_HOP_MS).map(lambda n: n * FINEST_HOP_MS),
                st.sampled_from([0, FINEST_HOP_MS, HOUR_MS]).map(lambda d: to_hour + d),
                st.sampled_from([0, FINEST_HOP_MS, HOUR_MS, DAY_MS]).map(lambda d: to_day + d),
            )
        )

    @rule(data=st.data(), size=st.integers(0, 8))
    def run_incremental(self, data: st.DataObject, size: int) -> None:
        if size:
            self.append(data, size)
        self._run(self.cutoff + self._step(data), full=False, data=data)

    @rule(data=st.data(), step=st.sampled_from([0, FINEST_HOP_MS, DAY_MS]))
    def run_full(self, data: st.DataObject, step: int) -> None:
        self._run(self.cutoff + step, full=True, data=data)

    def _run(self, cutoff: int, full: bool, data: st.DataObject) -> None:
        store = self.store
        assert store is not None
        before = dict(store.docs)
        previous = store.state
        runs = store.run(self.lake, cutoff, full=full)
        self.cutoff = cutoff
        self.runs += 1
        rows = self.lake.rows(self.lake.version)
        rows_before = [r for r in rows if r["t"] < cutoff]
        expect_rebuild = full or previous is None
        for group in GROUPS:
            run = runs[group.name]
            entities = store.entities(group)
            event(f"{group.name} {run.mode}: {len(run.changed)} of {len(entities)} changed")
            if run.days_read:
                event(f"{group.name}: session rows of {len(run.days_read)} days from the lake")
            self._check_session_rows(group, rows_before)
            if expect_rebuild:
                assert run.mode == "rebuild"
            assert run.written <= run.changed or run.mode == "rebuild"
            merger = GroupMerger(group)
            pointer = BatchPointer(store.state.view_version, cutoff, self.horizon)
            query_times = sorted(
                {
                    cutoff,
                    cutoff + self.horizon,
                    data.draw(st.integers(cutoff, cutoff + self.horizon)),
                }
            )
            reference = {
                t: evaluate(group, [r for r in rows if r["t"] < t], t) for t in query_times
            }
            for entity in sorted(set(ENTITIES) | store.entities(group)):
                own = _events_of(rows_before, entity)
                want = local_views.batch_doc(group, own, cutoff, self.horizon)
                got = store.doc(group, entity)
                assert catalog.close(got, want), (group.name, entity, cutoff, got, want)
                tiles = store.entity_tiles(group, entity)
                assembled = assemble_doc(group, tiles, cutoff, self.horizon)
                assert catalog.close(assembled, want), (group.name, entity, "assembled")
                if run.mode == "incremental" and entity not in run.changed:
                    # Not rewritten: the very document of the previous run.
                    assert store.docs.get((group.name, entity)) is before.get((group.name, entity))
                    assert entity not in run.written
                for t in query_times:
                    later = [r for r in _events_of(rows, entity) if r["t"] < t]
                    speed = local_views.speed_tiles(group, later, cutoff)
                    values, _ = merger.merge(t, pointer, got or None, speed)
                    expected = reference[t].get(entity)
                    if expected is None:
                        continue
                    for feature, value in zip(group.features, values, strict=True):
                        assert values_match(value, expected[feature.name]), (
                            group.name,
                            entity,
                            t,
                            feature.name,
                            value,
                            expected[feature.name],
                        )

    def _check_session_rows(self, group: FeatureGroup, rows_before: list[dict[str, Any]]) -> None:
        """Every stored session-day row is the one of all its day's events (a late event
        merged into it included), not only the last session a document reads."""
        store = self.store
        assert store is not None
        for entity in store.entities(group):
            own = _events_of(rows_before, entity)
            for series, rows in store.entity_tiles(group, entity).items():
                if not series.startswith(SESSION_SERIES_PREFIX):
                    continue
                gap = Window.parse(f"session:{series[1:]}").gap_ms
                for day, row in rows.items():
                    of_day = [r for r in own if floor_to(r["t"], DAY_MS) == day]
                    want = session_day(group, gap, event_pieces(group, of_day))
                    assert want is not None and catalog.close(row.to_json(), want.to_json()), (
                        group.name,
                        entity,
                        series,
                        day,
                        row,
                        want,
                    )

    @rule(data=st.data())
    def run_after_rewrite(self, data: st.DataObject) -> None:
        """An optimize between two runs compacting files added since the last one."""
        self.append(data, 3)
        self.lake.optimize()
        self._run(self.cutoff + self._step(data), full=False, data=data)


IncrementalRuns.TestCase.settings = settings.get_profile("tiles")
TestIncrementalRuns = IncrementalRuns.TestCase


# --- unit tests -------------------------------------------------------------------------


SESSION_GROUP = catalog.group(["session:30m"])
GAP = 30 * MINUTE_MS


def _day_events(minutes: list[int]) -> list[dict[str, Any]]:
    return [{"k": "u", "t": BASE + m * MINUTE_MS, "x": float(m)} for m in minutes]


@settings(max_examples=300, deadline=None)
@given(
    stored=st.lists(st.integers(0, 24 * 60 - 1), max_size=12),
    late=st.lists(st.integers(0, 24 * 60 - 1), min_size=1, max_size=4),
)
def test_late_events_merge_into_a_session_row_exactly_or_ask_for_the_day(stored, late):
    """A day's row merged with late events is the row of all the day's events, or None
    (the day's events needed) exactly when a late event joins the last fragment to an
    earlier one; the driver's decision from event times alone agrees."""
    group = SESSION_GROUP
    row = session_day(group, GAP, event_pieces(group, _day_events(stored)))
    pieces = event_pieces(group, _day_events(late))
    merged = merge_session_day(group, GAP, row, pieces)
    want = session_day(group, GAP, event_pieces(group, _day_events(stored + late)))
    assert needs_day_events(row, pieces, GAP) == (merged is None)
    if merged is not None:
        assert catalog.close(merged.to_json(), want.to_json()), (merged, want)
    else:
        assert row is not None and row.has_gap
        event("the day's events needed")


def test_a_late_event_before_the_last_session_merges_and_one_bridging_two_does_not():
    group = SESSION_GROUP
    # Sessions at 10:00-10:20 and 11:05-11:20 (minutes of the day), 45 minutes apart.
    row = session_day(group, GAP, event_pieces(group, _day_events([600, 620, 665, 680])))
    assert row is not None and row.has_gap
    assert (row.frag_start_ms, row.prev_last_ms) == (BASE + 665 * MINUTE_MS, BASE + 620 * MINUTE_MS)

    def late(minute: int) -> SessionDay | None:
        return merge_session_day(group, GAP, row, event_pieces(group, _day_events([minute])))

    early = late(300)  # 05:00: a session of its own, long before
    assert early is not None and early.first_ms == BASE + 300 * MINUTE_MS
    assert (early.frag_start_ms, early.partials) == (row.frag_start_ms, row.partials)
    joined = late(652)  # 10:52: 13 min before the last session, 32 after the one before
    assert joined is not None and joined.frag_start_ms == BASE + 652 * MINUTE_MS
    assert joined.prev_last_ms == row.prev_last_ms and joined.partials != row.partials
    after = late(720)  # 12:00: a new last session
    assert after is not None and after.prev_last_ms == BASE + 680 * MINUTE_MS
    assert after.frag_start_ms == after.last_ms == BASE + 720 * MINUTE_MS
    # 10:40: 20 min after the first session, 25 before the last: one session of the
    # two, whose first part's partials the row does not keep.
    assert late(640) is None
    assert needs_day_events(row, [Piece(BASE + 640 * MINUTE_MS, BASE + 640 * MINUTE_MS, [])], GAP)


def test_tile_series_per_window_shape():
    assert tile_series(catalog.group(["30d"])) == ("1d",)
    assert tile_series(catalog.group(["7d"])) == ("1h", "1d")
    assert tile_series(catalog.group(["lifetime"])) == ("1d",)
    assert tile_series(catalog.group(["1h"])) == ("5m", "1h", "1d")
    assert tile_series(catalog.group(["session:30m", "session:1d"])) == (
        "5m",
        "1h",
        "1d",
        "s30m",
        "s1d",
    )
    assert hop_widths(EVERY_KIND) == (FINEST_HOP_MS, HOUR_MS, DAY_MS)


def test_series_reach_and_retention_keep_what_windows_read():
    # 1h (hop 5m) reads 5m, 1h, 1d; 2d (hop 1h) reads 1h and 1d; 30d (hop 1d) reads 1d.
    assert series_reach(SLIDING) == {
        "5m": HOUR_MS + FINEST_HOP_MS,
        "1h": 2 * DAY_MS + HOUR_MS,
        "1d": 31 * DAY_MS,
    }
    assert series_reach(EVERY_KIND)["1d"] is None  # a lifetime window reads every day
    assert series_reach(EVERY_KIND)["s30m"] is None
    names = {FINEST_HOP_MS: "5m", HOUR_MS: "1h", DAY_MS: "1d"}
    for cutoff in (BASE, BASE + 13 * HOUR_MS + 5 * MINUTE_MS, BASE + DAY_MS - FINEST_HOP_MS):
        floors = retention_floor(SLIDING, cutoff)
        assert all(f is not None and f % DAY_MS == 0 for f in floors.values())
        for window in SLIDING.windows:
            tail_start = batch_layout(window, cutoff, DAY_MS).tail_start
            for width in hop_widths(SLIDING):
                if width >= window.hop_ms:
                    assert floors[names[width]] <= tail_start, (window, width)
        later = retention_floor(SLIDING, cutoff + 5 * DAY_MS)
        assert all(later[s] >= floors[s] for s in floors)  # monotone: nothing comes back


def test_tile_spec_fingerprint_follows_tiles_not_features():
    renamed = catalog.group(["1h", "7d"], [Aggregation("count", name="events")])
    assert tile_spec_fingerprint(catalog.group(["1h", "7d"], [Aggregation("count")])) == (
        tile_spec_fingerprint(renamed)
    )
    assert tile_spec_fingerprint(catalog.group(["1h"])) != tile_spec_fingerprint(
        catalog.group(["1h", "30d"])
    )
    assert tile_spec_fingerprint(catalog.group(["7d"])) != tile_spec_fingerprint(
        catalog.group(["8d"])
    ), "a longer window keeps its series longer"


D, H, M = DAY_MS, HOUR_MS, MINUTE_MS


@pytest.mark.parametrize(
    ("window", "before", "after", "horizon", "leaving", "crossing"),
    [
        # 7d (hop 1h), H = 1d, cutoff 10:05 -> 11:00 on the same day
        ("7d", 10 * H + 5 * M, 11 * H, D, (-7 * D + 10 * H, -7 * D + 11 * H),
         (-6 * D + 10 * H, -6 * D + 11 * H)),
        # 30d (hop 1d) across midnight
        ("30d", -5 * M, 5 * M, D, (-31 * D, -30 * D), (-30 * D, -29 * D)),
        # 1h (hop 5m) at H = 1d: no collapsed part, the crossing band is the entering one
        ("1h", 0, 10 * M, D, (-H, -H + 10 * M), (0, 10 * M)),
        # 1h at H = 5m: one tail tile, the collapsed part starts 55 minutes back
        ("1h", 0, 10 * M, FINEST_HOP_MS, (-H, -50 * M), (-55 * M, -45 * M)),
    ],
)  # fmt: skip
def test_edge_bands(window, before, after, horizon, leaving, crossing):
    bands = edge_bands(Window.parse(window), BASE + before, BASE + after, horizon)
    assert bands.leaving == (BASE + leaving[0], BASE + leaving[1])
    assert bands.crossing == (BASE + crossing[0], BASE + crossing[1])
    assert bands.entering == (BASE + before, BASE + after)


@pytest.mark.parametrize("window", ["lifetime", "session:30m"])
def test_windows_without_edges_have_empty_bands(window):
    bands = edge_bands(Window.parse(window), BASE, BASE + DAY_MS, DAY_MS)
    assert not bands.touches(BASE - 1) and not bands.touches(BASE)
    assert bands.entering == (BASE, BASE + DAY_MS)


def test_edge_bands_refuse_a_cutoff_moving_back():
    with pytest.raises(ValueError, match="forward"):
        edge_bands(Window.parse("1d"), BASE, BASE - FINEST_HOP_MS, DAY_MS)


@pytest.mark.parametrize("window", ["5m", "1h", "11h", "1d", "7d", "12d", "30d"])
@pytest.mark.parametrize("horizon", [FINEST_HOP_MS, HOUR_MS, DAY_MS, 2 * DAY_MS])
def test_edge_bands_are_what_the_layouts_differ_by(window, horizon):
    """Tails keep [ts, cs): the old ones minus the leaving band are the new ones minus
    the crossing band, tile by tile, for any step."""
    w = Window.parse(window)
    for before in (BASE + 55 * MINUTE_MS, BASE + 23 * HOUR_MS + 55 * MINUTE_MS):
        for step in (0, FINEST_HOP_MS, HOUR_MS, DAY_MS, 3 * DAY_MS + 5 * MINUTE_MS):
            after = before + step
            bands = edge_bands(w, before, after, horizon)
            old, new = batch_layout(w, before, horizon), batch_layout(w, after, horizon)
            old_tails = set(range(old.tail_start, old.collapsed_start, w.hop_ms))
            new_tails = set(range(new.tail_start, new.collapsed_start, w.hop_ms))
            leaving = {s for s in old_tails if bands.touches(s) and s < bands.leaving[1]}
            crossing = {s for s in new_tails if bands.crossing[0] <= s < bands.crossing[1]}
            assert old_tails - leaving == new_tails - crossing


def test_sawtooth_uses_the_coarsest_aligned_tiles():
    start = BASE + 22 * HOUR_MS + 50 * MINUTE_MS
    end = BASE + 2 * DAY_MS + 30 * MINUTE_MS
    cover = sawtooth([FINEST_HOP_MS, HOUR_MS, DAY_MS], start, end)
    assert cover == [
        (FINEST_HOP_MS, start),
        (FINEST_HOP_MS, start + FINEST_HOP_MS),
        (HOUR_MS, BASE + 23 * HOUR_MS),
        (DAY_MS, BASE + DAY_MS),
        (DAY_MS, BASE + 2 * DAY_MS),
    ]
    assert sawtooth([HOUR_MS], end, end) == []


def test_merge_tile_rows_is_each_columns_merge():
    group = catalog.group(["1h"])
    events = [
        {"k": "e", "t": BASE + i, "x": float(i), "n": i, "s": "ab"[i % 2], "b": None, "c": "red"}
        for i in range(6)
    ]
    whole = local_views.event_ir(group, events[0])
    rows = [list(local_views.event_ir(group, e)) for e in events]
    merged = merge_tile_rows(group, [rows[0], None, *rows[1:]])
    folded = list(whole)
    for row in rows[1:]:
        folded = [p.merge(a, b) for p, a, b in zip(group.primitives, folded, row, strict=True)]
    assert catalog.close(merged, folded)
    assert merge_tile_rows(group, [None]) is None


def test_the_band_is_read_from_the_old_versions_files():
    """An optimize between two runs compacts a file added since the first with older ones.
    Reading the band from the new version's other files (design 1.3 as written) reads
    the new rows twice and misses the ones of the compacted new file; reading it from the
    old version's files is exact."""
    lake = LocalLake("t")
    day = BASE
    lake.append([{"k": "e", "t": day + HOUR_MS}])  # v1: before the first cutoff
    old_version, before = lake.version, day + 2 * HOUR_MS
    lake.append([{"k": "e", "t": day + 3 * HOUR_MS}])  # v2: in the band [B0, B1)
    lake.append([{"k": "e", "t": day + 30 * MINUTE_MS}])  # v3: late, before B0
    lake.optimize()  # v4: the date's three files in one (dataChange false)
    after = day + 4 * HOUR_MS
    new_files = lake.changes(old_version, lake.version)
    assert new_files is not None
    new_paths = {f.path for f in new_files}
    as_written = [
        row
        for file in lake.files(lake.version)
        if file.path not in new_paths
        for row in file.rows
        if before <= row["t"] < after
    ] + [
        row
        for file in lake.files(lake.version)
        if file.path in new_paths
        for row in file.rows
        if row["t"] < after
    ]
    assert sorted(r["t"] for r in as_written) == [day + 3 * HOUR_MS]  # the late one missed
    got = delta_events(lake, old_version, lake.version, before, after)
    assert got is not None
    assert sorted(r["t"] for r in got) == [day + 30 * MINUTE_MS, day + 3 * HOUR_MS]


def test_a_delete_in_the_lake_makes_the_next_run_rebuild():
    lake = LocalLake("t")
    lake.append([{"k": "a", "t": BASE - HOUR_MS, "x": 1.0}, {"k": "b", "t": BASE - 1, "x": 2.0}])
    store = LocalTileStore([SLIDING], DAY_MS)
    store.run(lake, BASE)
    lake.delete(lambda row: row["k"] != "a")
    assert delta_events(lake, 1, lake.version, BASE, BASE) is None
    runs = store.run(lake, BASE + FINEST_HOP_MS)
    assert runs["sliding"].mode == "rebuild"
    assert store.doc(SLIDING, "a") == {}


def test_a_long_step_finds_crossers_below_the_new_retention_floor():
    """A step longer than the retention's one-day slack: the crossing band of a 7-day
    window (H = 5 minutes: no tails, the collapsed part starts at the window's start)
    lies partly below the new state's 1h floor. The entity's tile there must still make
    it a crosser (design: crossers are found before the run drops retired dates)."""
    group = catalog.group(["7d"], [Aggregation("count", name="rows")])
    lake = LocalLake("t")
    old_event = BASE - 6 * DAY_MS - 7 * HOUR_MS - 55 * MINUTE_MS
    lake.append([{"k": "e", "t": old_event}, {"k": "e", "t": BASE + HOUR_MS}])
    store = LocalTileStore([group], FINEST_HOP_MS)
    before, after = BASE + 16 * HOUR_MS + 5 * MINUTE_MS, BASE + 3 * DAY_MS + 10 * HOUR_MS
    store.run(lake, before)
    assert store.doc(group, "e") == {"7d": {"c": [2]}}
    assert retention_floor(group, after)["1h"] > floor_to(old_event, HOUR_MS)
    runs = store.run(lake, after)
    assert runs["g"].edge == {"e"}
    assert store.doc(group, "e") == {"7d": {"c": [1]}}
    assert store.entity_tiles(group, "e")["1h"] == {BASE + HOUR_MS: [1]}  # then dropped
