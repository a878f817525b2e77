"""How a run plans a group (batch_layer.tile_runs), and how it reads the late days of a
session group: only the dates its entities need, each filtered by their keys in Parquet."""

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batch_layer.lake import DeltaFiles
from batch_layer.spark import PARQUET_IN_VALUES_MAX
from batch_layer.tile_runs import late_day_events
from feature_core.settings import Settings
from feature_core.sources import EventSource, Field

pytestmark = pytest.mark.spark

SOURCE = EventSource(
    "visits",
    event_time="t",
    fields=[
        Field("shop", "integer", required=True),
        Field("user", "string", required=True),
        Field("t", "timestamp", required=True),
    ],
)
DATES = ("2026-11-01", "2026-11-02", "2026-11-03")


def _day_files(root: Path) -> DeltaFiles:
    """One file per date, sorted by user in row groups of 10 rows (as the lake's
    optimization leaves it): users u00..u39, shops 1..2, times before the cutoff and one
    after it per date."""
    uris, dates = [], []
    for d, date in enumerate(DATES):
        rows = [(1 + i % 2, f"u{i:02d}", 1_000 * d + i) for i in range(40)]
        rows.append((1, "u00", 10_000_000))  # after the cutoff: never read
        table = pa.table(
            {
                "shop": [r[0] for r in rows],
                "user": [r[1] for r in rows],
                "t": [r[2] for r in rows],
            }
        )
        path = root / f"event_date={date}" / "part-0.parquet"
        path.parent.mkdir(parents=True)
        pq.write_table(table, path, row_group_size=10)
        uris.append(str(path))
        dates.append(date)
    return DeltaFiles(new=tuple(uris), band=(), bytes=0, new_dates=tuple(dates))


def test_a_late_day_is_read_for_its_entities_only(spark_factory, tmp_path) -> None:
    spark = spark_factory(Settings(_env_file=None))
    files = _day_files(tmp_path)
    keys = {"2026-11-01": [["1", "u02"]], "2026-11-03": [["2", "u31"], ["1", "u34"]]}
    frame = late_day_events(spark, SOURCE, ("shop", "user"), files, 5_000_000, keys)
    got = sorted((r["shop"], r["user"], r["t"]) for r in frame.collect())
    # One scan of the dates some entity needs, each key column filtered by the values
    # of every date (a superset of the pairs, matched exactly by the advance); the
    # second date is not read, nor the rows after the cutoff.
    users = [(2, "u31", 31), (1, "u02", 2), (1, "u34", 34)]
    assert got == sorted((s, u, 1_000 * d + i) for d in (0, 2) for s, u, i in users)
    plan = frame._jdf.queryExecution().executedPlan().toString()
    assert "In(user, [u02,u31,u34])" in plan, plan
    assert "event_date=2026-11-02" not in plan


def test_more_keys_than_parquet_takes_still_filter_the_rows(spark_factory, tmp_path) -> None:
    """Past PARQUET_IN_VALUES_MAX, Parquet gets one range, and Spark still keeps only the
    rows of the keys."""
    spark = spark_factory(Settings(_env_file=None))
    files = _day_files(tmp_path)
    many = [["1", f"x{i}"] for i in range(PARQUET_IN_VALUES_MAX)] + [["1", "u04"]]
    frame = late_day_events(spark, SOURCE, ("shop", "user"), files, 5_000_000, {DATES[1]: many})
    assert {(r["shop"], r["user"], r["t"]) for r in frame.collect()} == {(1, "u04", 1_004)}


def test_files_without_dates_are_refused(spark_factory, tmp_path) -> None:
    spark = spark_factory(Settings(_env_file=None))
    files = _day_files(tmp_path).model_copy(update={"new_dates": None})
    with pytest.raises(ValueError, match="no recorded dates"):
        late_day_events(spark, SOURCE, ("shop", "user"), files, 5_000_000, {})


def test_the_files_of_some_dates_book_their_own_bytes_and_rows() -> None:
    files = DeltaFiles(
        new=("a", "b", "c"),
        band=(),
        bytes=60,
        rows=6,
        new_dates=DATES,
        new_bytes=(10, 20, 30),
        new_rows=(1, 2, 3),
    )
    some = files.of_dates({DATES[0], DATES[2]})
    assert (some.new, some.new_dates, some.bytes, some.rows) == (
        ("a", "c"),
        (DATES[0], DATES[2]),
        40,
        4,
    )
    assert files.model_copy(update={"new_rows": (1, None, 3)}).of_dates({DATES[1]}).rows is None
    with pytest.raises(ValueError, match="not recorded"):
        files.model_copy(update={"new_bytes": None}).of_dates({DATES[0]})


def _run(group, **overrides):
    """A run's context over one group whose tiles (v3 of the view, lake v5) are at
    ``CUTOFF``; ``overrides`` change the run."""
    from batch_layer.tile_runs import RunContext
    from batch_layer.tiles import GroupState, LakeState, TileTableState, spec_tag
    from feature_core.tiles import tile_spec_fingerprint

    table = group.source.table_name
    state = GroupState(
        lakes={table: LakeState(version=5, table_tag=1)},
        cutoff_ms=CUTOFF,
        view_version=3,
        spec_tag=spec_tag(tile_spec_fingerprint(group)),
    )
    fields = {
        "requested": None,
        "incremental": True,
        "tiles": TileTableState(version=1, table_id="t", view_version=3, groups={"g": state}),
        "pointer": None,
        "version": 4,
        "serving": 3,
        "cutoff": CUTOFF,
        "horizon_ms": 0,
        "pinned": {table: 5},
    }
    return RunContext(**{**fields, **overrides})


CUTOFF = 20_000 * 86_400_000


@pytest.mark.parametrize(
    ("overrides", "window_by_window", "reason"),
    [
        ({"incremental": False}, True, "LFP_BATCH_INCREMENTAL=false"),
        ({"pinned": None}, True, "no lake table"),
        ({"cutoff": CUTOFF - 300_000}, True, "before the stored tiles' cutoff"),
        ({"pinned": 4}, True, "is older than the tiles' v5"),
        ({"requested": "full"}, False, "--full"),
        ({"tiles": None}, False, "no stored tiles"),
        # LFP_BATCH_TILES_MIN_EVENTS: a small table goes window by window, even --full;
        # at the threshold, or with rows its log does not count, tiles as usual.
        ({"rows": 999, "tiles_min_events": 1000}, True, "holds 999 events, under"),
        ({"rows": 999, "tiles_min_events": 1000, "requested": "full"}, True, "--full; "),
        ({"rows": 1000, "tiles_min_events": 1000, "tiles": None}, False, "no stored tiles"),
        ({"rows": None, "tiles_min_events": 1000, "tiles": None}, False, "no stored tiles"),
    ],
)
def test_a_run_behind_the_tiles_goes_window_by_window_and_keeps_them(
    overrides, window_by_window, reason
):
    """Tiles ahead of the run (its cutoff or lake version older) still serve the runs
    after it: the group is computed window by window and they are left alone. Without
    usable tiles, or asked for --full, the tiles are rebuilt."""
    from batch_layer.tile_runs import REBUILD, plan_group
    from batch_layer.tiles import TileTableState
    from tests.feature_core.aggregations import catalog

    group = catalog.group(["1h", "lifetime"])
    assert group.name == "g"
    if "pinned" in overrides:  # the lake version this run reads
        overrides["pinned"] = {group.source.table_name: overrides["pinned"]}
    if "rows" in overrides:  # the events in that version
        overrides["rows"] = {group.source.table_name: overrides["rows"]}
    if overrides.get("tiles", "") is None:
        overrides["tiles"] = TileTableState(
            version=None, table_id=None, view_version=None, groups={}
        )
    plan = plan_group(Settings(_env_file=None), group, _run(group, **overrides))
    assert plan.mode == REBUILD and plan.reason is not None and reason in plan.reason
    assert plan.window_by_window is window_by_window
