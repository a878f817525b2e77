"""The serving merge over simulated batch and speed views equals the reference evaluator."""

from hypothesis import given, settings
from hypothesis import strategies as st

from demo.feature_repo import events as SHOP_EVENTS
from feature_core import local_views
from feature_core.definitions import Aggregation, Entity, FeatureGroup
from feature_core.merge import BatchPointer, ValueStatus, merge_group, values_match
from feature_core.reference import default_values, evaluate
from feature_core.windows import DAY_MS, HOUR_MS, SPEED_TILE_MS
from tests.feature_core.aggregations import catalog

GROUP = FeatureGroup(
    "g",
    Entity("user", "user_id"),
    SHOP_EVENTS,
    aggregations=[
        Aggregation("count", windows=["5m", "1h", "1d", "7d", "30d", "lifetime"]),
        Aggregation("sum", "amount", windows=["1h", "7d", "lifetime"]),
        Aggregation("mean", "amount", windows=["1d"]),
        Aggregation("min", "amount", windows=["1h", "30d"]),
        Aggregation("max", "amount", windows=["1d", "lifetime"]),
        Aggregation("last", "item_id", windows=["1h", "lifetime"]),
        Aggregation("last_k", "item_id", windows=["7d"], k=3),
        Aggregation("approx_count_distinct", "item_id", windows=["1d", "30d"]),
    ],
)
BASE = 1000 * DAY_MS


def batch_doc(events, cutoff, horizon):
    return local_views.batch_doc(GROUP, events, cutoff, horizon)


def speed_tiles(events, cutoff):
    return local_views.speed_tiles(GROUP, events, cutoff)


events_strategy = st.lists(
    st.fixed_dictionaries(
        {
            "user_id": st.just("u"),
            "event_time": st.integers(BASE - 40 * DAY_MS, BASE + 2 * DAY_MS),
            "amount": st.one_of(st.none(), st.floats(0, 1000, allow_nan=False)),
            "item_id": st.one_of(st.none(), st.sampled_from(["i1", "i2", "i3", "i4", "i5"])),
        }
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(events_strategy, st.integers(0, DAY_MS // SPEED_TILE_MS), st.integers(0, DAY_MS))
def test_merge_is_exact_within_the_horizon(events, cutoff_steps, offset):
    cutoff = BASE + cutoff_steps * SPEED_TILE_MS
    t = cutoff + offset
    seen = [e for e in events if e["event_time"] < t]
    pointer = BatchPointer(1, cutoff, DAY_MS)
    merged = merge_group(
        GROUP, t, pointer, batch_doc(seen, cutoff, DAY_MS), speed_tiles(seen, cutoff)
    )
    assert all(v.status is not ValueStatus.STALE_BATCH_VIEW for v in merged.values())
    _assert_reference_values(merged, events, t)


def _assert_reference_values(merged, events, t):
    expected = evaluate(GROUP, [e for e in events if e["event_time"] < t], t).get("u")
    for feature in GROUP.features:
        value = merged[feature.name]
        want = expected[feature.name] if expected else value.value
        if isinstance(want, float):
            assert abs(value.value - want) <= 1e-9 * max(1.0, abs(want)), feature.name
        else:
            assert value.value == want, feature.name


@settings(max_examples=200, deadline=None)
@given(
    events_strategy,
    st.integers(0, DAY_MS // SPEED_TILE_MS),
    st.lists(st.integers(0, DAY_MS - 1), min_size=2, max_size=4),
)
def test_a_memo_kept_with_the_batch_view_serves_later_query_times_exactly(
    events, cutoff_steps, offsets
):
    """The serving cache keeps one memo per batch view and reuses it at every query
    time: batch rows kept for one 5-minute step must never leak into another."""
    cutoff = BASE + cutoff_steps * SPEED_TILE_MS
    pointer = BatchPointer(1, cutoff, DAY_MS)
    doc = batch_doc([e for e in events if e["event_time"] < cutoff], cutoff, DAY_MS)
    memo: dict = {}
    for t in sorted(cutoff + offset for offset in offsets):
        seen = [e for e in events if e["event_time"] < t]
        merged = merge_group(GROUP, t, pointer, doc, speed_tiles(seen, cutoff), memo)
        assert len(memo) == 1  # only the current step's rows are kept
        _assert_reference_values(merged, events, t)


@settings(max_examples=300, deadline=None)
@given(
    events_strategy,
    st.lists(st.integers(-2 * SPEED_TILE_MS, SPEED_TILE_MS - 1), max_size=20),
    st.integers(0, DAY_MS // SPEED_TILE_MS),
    st.lists(
        st.tuples(st.one_of(st.just(0), st.integers(0, SPEED_TILE_MS - 1)), st.booleans()),
        min_size=2,
        max_size=6,
    ),
)
def test_a_memo_returns_its_last_result_only_where_the_merge_would_give_it(
    events, recent, cutoff_steps, queries
):
    """Within one 5-minute step (one memo entry), in any order of query times: a memo
    gives what a merge without it gives, whether the speed tiles changed since its last
    result or not, and also at the step's first instant, when the tile starting then
    must be left out."""
    cutoff = BASE + cutoff_steps * SPEED_TILE_MS
    step = cutoff + SPEED_TILE_MS
    events = events + [
        {"user_id": "u", "event_time": step + ms, "amount": 1.0, "item_id": f"i{ms % 7}"}
        for ms in recent
    ]
    pointer = BatchPointer(1, cutoff, DAY_MS)
    doc = batch_doc([e for e in events if e["event_time"] < cutoff], cutoff, DAY_MS)
    latest = step + max(offset for offset, _ in queries)
    memo: dict = {}
    for offset, fresh in queries:
        t = step + offset
        # fresh: the tiles as of t; else as of the latest query (tiles ahead of t)
        seen = [e for e in events if e["event_time"] < (t if fresh else latest)]
        tiles = speed_tiles(seen, cutoff)
        merged = merge_group(GROUP, t, pointer, doc, tiles, memo)
        assert merged == merge_group(GROUP, t, pointer, doc, tiles)
        if fresh:
            _assert_reference_values(merged, events, t)


def test_past_the_horizon_long_windows_are_marked_stale():
    cutoff = BASE
    t = cutoff + 3 * DAY_MS
    events = [{"user_id": "u", "event_time": cutoff - 29 * DAY_MS, "amount": 1.0}]
    merged = merge_group(
        GROUP, t, BatchPointer(1, cutoff, DAY_MS), batch_doc(events, cutoff, DAY_MS), {}
    )
    assert merged["count_30d"].status is ValueStatus.STALE_BATCH_VIEW
    assert merged["count_1h"].status is ValueStatus.NO_DATA
    assert merged["count_lifetime"].status is ValueStatus.PRESENT


def test_no_views_gives_identities_with_no_data_status():
    merged = merge_group(GROUP, BASE, None, None, {})
    assert merged["count_1h"].value == 0 and merged["count_1h"].status is ValueStatus.NO_DATA
    assert merged["amount_sum_lifetime"].value == 0.0
    assert merged["amount_max_1d"].value is None


def test_speed_tiles_before_the_cutoff_are_ignored():
    cutoff = BASE + HOUR_MS
    stale_tile = {BASE: [5.0] + [None] * (len(GROUP.tile_columns) - 1)}
    merged = merge_group(GROUP, cutoff + 1, BatchPointer(1, cutoff, DAY_MS), {}, stale_tile)
    assert merged["count_lifetime"].value == 0


def test_values_match_is_tolerant_for_floats_only() -> None:
    from feature_core.merge import values_match

    assert values_match(0.1 + 0.2, 0.3)
    assert not values_match(0.31, 0.3)
    assert values_match([1.0, "a"], [1.0 + 1e-12, "a"])
    assert not values_match([1.0], [1.0, 2.0])
    assert not values_match("1", 1.0) and not values_match(True, 1.0)
    assert values_match(None, None) and not values_match(None, 0)
    assert values_match(0.3, 0.30001, rel_tol=1e-3)


@settings(max_examples=200, deadline=None)
@given(
    events_strategy,
    st.integers(0, DAY_MS // SPEED_TILE_MS),
    st.integers(0, HOUR_MS),
    st.integers(1, 5 * 60_000),
    st.integers(0, 6 * 60_000),
)
def test_events_dated_ahead_are_not_served_before_their_time(
    events, cutoff_steps, produced_after, wait, ahead
):
    """Events produced at ``produced`` may be dated up to 5 minutes later (clock skew).
    A query at any ``t > produced`` (a query that sees a tile comes after its records were
    produced) counts exactly the events before ``t``, as the reference does: those dated
    ahead are kept under their exact time, not in a tile; those dated at ``produced``
    stay in their tile."""
    cutoff = BASE + cutoff_steps * SPEED_TILE_MS
    produced = cutoff + produced_after
    t = produced + wait
    # What exists at `produced`: everything before it, and some events dated ahead of it.
    arrived = [e for e in events if e["event_time"] < produced]
    arrived += [{**e, "event_time": produced + (e["event_time"] % (ahead + 1))} for e in events[:5]]
    pointer = BatchPointer(1, cutoff, DAY_MS)
    merged = merge_group(
        GROUP,
        t,
        pointer,
        batch_doc([e for e in arrived if e["event_time"] < cutoff], cutoff, DAY_MS),
        local_views.speed_tiles(GROUP, arrived, cutoff, produced_at=produced),
    )
    expected = evaluate(GROUP, arrived, t).get("u")
    from feature_core.merge import values_match

    for name, (value, _) in merged.items():
        want = expected[name] if expected else local_views_default(name)
        assert values_match(value, want), (name, value, want)


def local_views_default(name):
    from feature_core.reference import default_values

    return default_values(GROUP)[name]


CATALOG_WINDOWS = ["5m", "1h", "1d", "7d", "lifetime", "session:30m", "session:2h"]
CATALOG_GROUP = catalog.group(CATALOG_WINDOWS)
# Clustered times: sessions that span the cutoff, end before it, or are still open.
catalog_times = st.one_of(
    st.integers(BASE - 3 * DAY_MS, BASE + DAY_MS),
    st.integers(BASE - 3 * HOUR_MS, BASE + 3 * HOUR_MS),
    st.sampled_from([BASE - 1, BASE, BASE - 30 * 60_000, BASE + 29 * 60_000]),
)
catalog_events = st.lists(
    st.fixed_dictionaries(
        {
            "k": st.just("u"),
            "t": catalog_times,
            **{name: catalog.VALUES[name] for name in ("x", "n", "s", "b", "c")},
        }
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(
    catalog_events,
    st.integers(0, 12 * HOUR_MS // SPEED_TILE_MS),
    st.integers(0, DAY_MS),
)
def test_every_kind_and_window_merges_exactly_over_batch_and_speed_views(
    events, cutoff_steps, offset
):
    """Every kind of the catalog, sliding, lifetime and session windows: the batch view's
    buckets and the speed tiles merge into the reference's values, and a session that
    ended is served as no data."""
    cutoff = BASE - 6 * HOUR_MS + cutoff_steps * SPEED_TILE_MS
    t = cutoff + offset
    seen = [e for e in events if e["t"] < t]
    merged = merge_group(
        CATALOG_GROUP,
        t,
        BatchPointer(1, cutoff, DAY_MS),
        local_views.batch_doc(CATALOG_GROUP, seen, cutoff, DAY_MS),
        local_views.speed_tiles(CATALOG_GROUP, seen, cutoff),
    )
    expected = evaluate(CATALOG_GROUP, seen, t).get("u") or default_values(CATALOG_GROUP)
    newest = max((e["t"] for e in seen), default=None)
    for feature in CATALOG_GROUP.features:
        got = merged[feature.name]
        assert values_match(got.value, expected[feature.name]), (feature.name, got)
        if feature.window.is_session and (newest is None or t - newest >= feature.window.gap_ms):
            assert got.status is ValueStatus.NO_DATA, feature.name


@settings(max_examples=200, deadline=None)
@given(
    catalog_events,
    st.integers(0, 6 * HOUR_MS // SPEED_TILE_MS),
    st.lists(st.integers(0, SPEED_TILE_MS - 1), min_size=2, max_size=6),
)
def test_a_memo_finalizes_again_what_moves_with_the_query_time(events, cutoff_steps, offsets):
    """Sessions end and decayed values fade within one 5-minute step: with a memo, each
    query time in the step still gets what a merge without one gives (the memo keeps the
    merged rows, not the values), in any order of query times."""
    assert any(f.window.is_session for f in CATALOG_GROUP.features)
    cutoff = BASE - 6 * HOUR_MS + cutoff_steps * SPEED_TILE_MS
    step = cutoff + 2 * HOUR_MS
    seen = [e for e in events if e["t"] < step]
    pointer = BatchPointer(1, cutoff, DAY_MS)
    doc = local_views.batch_doc(CATALOG_GROUP, seen, cutoff, DAY_MS)
    tiles = local_views.speed_tiles(CATALOG_GROUP, seen, cutoff)
    memo: dict = {}
    for offset in offsets:
        t = step + offset
        merged = merge_group(CATALOG_GROUP, t, pointer, doc, tiles, memo)
        # Premerged batch buckets add floats in another order: equal to rounding.
        for name, plain in merge_group(CATALOG_GROUP, t, pointer, doc, tiles).items():
            assert merged[name].status is plain.status, name
            assert values_match(merged[name].value, plain.value), (name, merged[name], plain)
