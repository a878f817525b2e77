"""The tile table's commit path: Spark-written partition files committed by delta-rs in one
transaction with every group's state, read back as written; replaced partitions' files
removed; a commit against a version others moved past fails."""

import json
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError
from hypothesis import given, settings
from hypothesis import strategies as st

from batch_layer.tiles import (
    DATA_SCHEMA,
    GroupCommit,
    GroupState,
    LakeState,
    StaleTilesError,
    TileTableState,
    commit_tiles,
    last_commit,
    newest_rows,
    newest_tiles,
    read_state,
    read_tiles,
    read_tiles_arrow,
    spec_tag,
    tile_files,
    write_staged,
)
from feature_core.settings import Settings

pytestmark = pytest.mark.spark

DAY = 86_400_000
D0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z
GROUPS = {"clicks": ["raw_events"], "sessions": ["raw_events", "orders"]}


def _tile(group: str, entity: str, start: int, series: str = "1d", **extra) -> dict:
    date = f"2024-01-{1 + (start - D0) // DAY:02d}"
    row = {f.name: None for f in DATA_SCHEMA}
    row.update(
        group=group,
        tile_date=date,
        series=series,
        entity=entity,
        keys=[entity, "k2"],
        start=start,
        partials=json.dumps([start % 97, [entity]]),
        events=start % 5 + 1,
    )
    row.update(extra)
    return row


def _state(view: int, cutoff: int, lake_version: int, spec: str = "spec-1") -> GroupState:
    return GroupState(
        lakes={"raw_events": LakeState(version=lake_version, table_tag=11)},
        cutoff_ms=cutoff,
        view_version=view,
        spec_tag=spec_tag(spec),
    )


def _sessions_state(view: int, cutoff: int) -> GroupState:
    state = _state(view, cutoff, 4)
    lakes = {**state.lakes, "orders": LakeState(version=2, table_tag=12)}
    return state.model_copy(update={"lakes": lakes})


def _stage(spark, uri: str, rows: list[dict], run: str) -> str:
    frame = spark.createDataFrame(
        [tuple(r[c] for c in _COLUMNS) for r in rows],
        "`group` STRING, tile_date STRING, series STRING, entity STRING, keys ARRAY<STRING>, "
        "start BIGINT, partials STRING, events BIGINT, first_ms BIGINT, last_ms BIGINT, "
        "frag_start_ms BIGINT, has_gap BOOLEAN, prev_last_ms BIGINT",
    )
    staged = write_staged(frame, uri, run)
    written = [p.name for p in (Path(uri) / staged).rglob("*") if p.is_file()]
    assert written and all(n.startswith("part-") and n.endswith(".parquet") for n in written)
    return staged


_COLUMNS = ["group", "tile_date", *DATA_SCHEMA.names]


def _key(row: dict) -> tuple:
    return tuple(json.dumps(row[c]) for c in _COLUMNS)


def _rows(table: pa.Table) -> list[dict]:
    return sorted(table.select(_COLUMNS).to_pylist(), key=_key)


def _log(uri: str, version: int) -> list[dict]:
    text = (Path(uri) / "_delta_log" / f"{version:020d}.json").read_text()
    return [json.loads(line) for line in text.splitlines()]


FIRST = [
    _tile("clicks", "u1", D0),
    _tile("clicks", "u2", D0, series="1h"),
    _tile("clicks", "u1", D0 + DAY),
    _tile("sessions", "u1", D0, series="s30m", first_ms=D0 + 5, last_ms=D0 + 9, has_gap=True),
    _tile("sessions", "u3", D0, series="5m", frag_start_ms=D0 + 1),
]


def _first_run(spark, uri: str) -> TileTableState:
    start = read_state(uri, GROUPS)
    assert start == TileTableState(version=None, table_id=None, view_version=None, groups={})
    staged = _stage(spark, uri, FIRST, "run-1")
    done = commit_tiles(
        uri,
        start,
        staged,
        {
            "clicks": GroupCommit(
                state=_state(1, D0 + DAY + 60_000, 4), spec="spec-1", mode="full"
            ),
            "sessions": GroupCommit(
                state=_sessions_state(1, D0 + DAY + 60_000), spec="spec-1", mode="full"
            ),
        },
        run_id="run-1",
        view_version=1,
        pointer='{"version": 1}',
        metadata={"lfp.tiles.rows": 5},
    )
    assert (done.version, done.files_added, done.files_removed) == (0, 3, 0)
    assert (done.rows_added, done.partitions_written) == (5, 3)
    return read_state(uri, GROUPS)


def test_staged_tiles_read_back_as_written_with_every_groups_state(spark_factory, tmp_path):
    spark = spark_factory(Settings(_env_file=None))
    uri = str(tmp_path / "_lfp_tiles")
    state = _first_run(spark, uri)

    assert state.version == 0 and state.view_version == 1
    assert state.groups == {
        "clicks": _state(1, D0 + DAY + 60_000, 4),
        "sessions": _sessions_state(1, D0 + DAY + 60_000),
    }
    # A group reading a table it did not read then has no state to go on.
    assert read_state(uri, {"clicks": ["raw_events", "orders"]}).groups == {}
    expected = sorted(FIRST, key=_key)
    assert _rows(read_tiles_arrow(uri)) == expected
    assert _rows(DeltaTable(uri).to_pyarrow_table()) == expected  # delta-rs reads them too
    frame = read_tiles(spark, uri, 0)
    assert sorted((r.asDict() for r in frame.collect()), key=_key) == expected
    only = read_tiles(spark, uri, partitions=[("clicks", "2024-01-02")])
    assert [(r.group, r.tile_date, r.entity) for r in only.collect()] == [
        ("clicks", "2024-01-02", "u1")
    ]

    record = last_commit(uri)
    assert record is not None
    assert (record.version, record.run, record.view_version) == (0, "run-1", 1)
    assert json.loads(record.pointer) == {"version": 1}
    assert record.specs == {"clicks": "spec-1", "sessions": "spec-1"}
    assert record.modes == {"clicks": "full", "sessions": "full"}
    assert record.metadata == {"lfp.tiles.rows": 5}
    # Each add carries statistics read from its Parquet footer.
    adds = [a["add"] for a in _log(uri, 0) if "add" in a]
    assert len(adds) == 3 and all(a["dataChange"] for a in adds)
    by_partition = {
        (a["partitionValues"]["group"], a["partitionValues"]["tile_date"]): a for a in adds
    }
    stats = json.loads(by_partition[("clicks", "2024-01-01")]["stats"])
    assert stats["numRecords"] == 2
    assert (stats["minValues"]["start"], stats["maxValues"]["start"]) == (D0, D0)
    assert (stats["minValues"]["entity"], stats["maxValues"]["entity"]) == ("u1", "u2")
    assert stats["nullCount"]["has_gap"] == 2


def test_a_run_adds_its_tiles_beside_the_stored_ones_and_the_newest_row_wins(
    spark_factory, tmp_path
):
    spark = spark_factory(Settings(_env_file=None))
    uri = str(tmp_path / "_lfp_tiles")
    state = _first_run(spark, uri)
    before = {(f.group, f.tile_date): f.path for f in tile_files(uri)}

    merged = [_tile("clicks", "u1", D0, events=9), _tile("clicks", "u4", D0 + 2 * DAY)]
    staged = _stage(spark, uri, merged, "run-2")
    clicks = _state(2, D0 + 2 * DAY + 60_000, 6)
    done = commit_tiles(
        uri,
        state,
        staged,
        {"clicks": GroupCommit(state=clicks, spec="spec-1", mode="incremental")},
        run_id="run-2",
        view_version=2,
        pointer='{"version": 2}',
    )
    assert (done.version, done.files_added, done.files_removed) == (1, 2, 0)
    assert not [a for a in _log(uri, 1) if "remove" in a]
    assert before[("clicks", "2024-01-01")] in {f.path for f in tile_files(uri)}
    # The clicks u1 tile now has two rows: the one counting more events is read.
    assert len(read_tiles(spark, uri, groups=["clicks"]).where("entity = 'u1'").collect()) == 3
    after = read_state(uri, GROUPS)
    assert after.view_version == 2
    assert after.groups["clicks"] == clicks
    assert after.groups["sessions"] == state.groups["sessions"]  # untouched
    superseded = (FIRST[0]["group"], FIRST[0]["entity"], FIRST[0]["start"])
    assert superseded == ("clicks", "u1", D0) and FIRST[0]["events"] < 9
    expected = sorted([*FIRST[1:], *merged], key=_key)
    assert _rows(read_tiles_arrow(uri)) == expected
    assert _rows(read_tiles_arrow(uri, 0)) == sorted(FIRST, key=_key)  # time travel

    # A rebuild of one group and a dropped date of another, with no new files for it.
    rebuilt = [_tile("sessions", "u9", D0 + DAY, series="s30m", first_ms=D0 + DAY)]
    staged = _stage(spark, uri, rebuilt, "run-3")
    sessions = _sessions_state(3, D0 + 3 * DAY).model_copy(update={"spec_tag": spec_tag("spec-2")})
    done = commit_tiles(
        uri,
        after,
        staged,
        {
            "sessions": GroupCommit(
                state=sessions, spec="spec-2", mode="rebuild", replace_all=True
            ),
            "clicks": GroupCommit(
                state=_state(3, D0 + 3 * DAY, 7),
                spec="spec-1",
                mode="incremental",
                drop_dates=("2024-01-01",),
            ),
        },
        run_id="run-3",
        view_version=3,
        pointer='{"version": 3}',
    )
    assert (done.files_added, done.files_removed) == (1, 3)  # clicks' 2024-01-01: 2 files
    keep = [r for r in expected if r["group"] == "clicks" and r["tile_date"] != "2024-01-01"]
    assert _rows(read_tiles_arrow(uri)) == sorted([*keep, *rebuilt], key=_key)
    assert read_state(uri, GROUPS).groups["sessions"] == sessions
    record = last_commit(uri)
    assert record is not None and record.modes == {"sessions": "rebuild", "clicks": "incremental"}


def test_a_commit_against_a_version_others_moved_past_fails(spark_factory, tmp_path):
    spark = spark_factory(Settings(_env_file=None))
    uri = str(tmp_path / "_lfp_tiles")
    state = _first_run(spark, uri)
    # Two runs read the same state; the first commits.
    mine = _stage(spark, uri, [_tile("clicks", "u5", D0 + 3 * DAY)], "run-a")
    commit_tiles(
        uri,
        state,
        mine,
        {
            "clicks": GroupCommit(
                state=_state(2, D0 + 4 * DAY, 5), spec="spec-1", mode="incremental"
            )
        },
        run_id="run-a",
        view_version=2,
        pointer="{}",
    )
    after = read_state(uri, GROUPS)
    rows = _rows(read_tiles_arrow(uri))
    # The second touches another group and removes nothing: it still conflicts.
    with pytest.raises(CommitFailedError):
        commit_tiles(
            uri,
            state,
            None,
            {
                "sessions": GroupCommit(
                    state=_sessions_state(2, D0 + 4 * DAY), spec="spec-1", mode="incremental"
                )
            },
            run_id="run-b",
            view_version=2,
            pointer="{}",
        )
    # And one replacing a partition the first replaced too.
    theirs = _stage(spark, uri, [_tile("clicks", "u6", D0)], "run-c")
    with pytest.raises(CommitFailedError):
        commit_tiles(
            uri,
            state,
            theirs,
            {
                "clicks": GroupCommit(
                    state=_state(2, D0 + 4 * DAY, 5), spec="spec-1", mode="incremental"
                )
            },
            run_id="run-c",
            view_version=2,
            pointer="{}",
        )
    assert read_state(uri, GROUPS) == after
    assert _rows(read_tiles_arrow(uri)) == rows
    # A run that saw no table cannot create it over one made meanwhile.
    with pytest.raises(StaleTilesError):
        commit_tiles(
            uri,
            TileTableState(version=None, table_id=None, view_version=None, groups={}),
            None,
            {},
            run_id="run-d",
            view_version=2,
            pointer="{}",
        )
    # The failed run's files were never referenced: a full vacuum deletes them (the
    # default one deletes only files a commit removed), and nothing the table holds.
    orphan = {str(p) for p in (Path(uri) / theirs).rglob("*.parquet")}
    assert len(orphan) == 1
    table = DeltaTable(uri)
    assert not orphan & set(table.vacuum(retention_hours=0, enforce_retention_duration=False))
    deleted = table.vacuum(
        retention_hours=0, dry_run=False, enforce_retention_duration=False, full=True
    )
    assert {str(Path(uri) / p) for p in deleted} == orphan
    assert not any(Path(p).exists() for p in orphan)
    assert _rows(read_tiles_arrow(uri)) == rows


_ROW_KEYS = st.tuples(
    st.sampled_from(["1d", "1h", "s30m"]), st.sampled_from(["a", "b"]), st.integers(0, 3)
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_ROW_KEYS, st.one_of(st.none(), st.integers(0, 6))), max_size=30))
def test_the_newest_row_of_a_tile_is_the_one_counting_the_most_events(rows):
    """``newest_tiles`` (Arrow, compaction) and ``newest_rows`` (a task's entity) keep the
    same row per tile: the most events (none counts as none), whichever file order."""
    table = pa.table(
        {
            "series": [k[0] for k, _ in rows],
            "entity": [k[1] for k, _ in rows],
            "start": pa.array([k[2] for k, _ in rows], pa.int64()),
            "events": pa.array([e for _, e in rows], pa.int64()),
            "partials": [str(i) for i in range(len(rows))],
        }
    )
    kept = newest_tiles(table).to_pylist()
    keys = [(r["series"], r["entity"], r["start"]) for r in kept]
    assert keys == sorted(set(keys)) and len(keys) == len({k for k, _ in rows})
    for row in kept:
        key = (row["series"], row["entity"], row["start"])
        most = max((e or 0) for k, e in rows if k == key)
        assert (row["events"] or 0) == most
    by_entity: dict[str, list[dict]] = {}
    for row in table.to_pylist():
        by_entity.setdefault(row["entity"], []).append(row)
    for entity, of_entity in by_entity.items():
        picked = newest_rows(of_entity)
        for (series, start), row in picked.items():
            (same,) = [
                r for r in kept if (r["series"], r["entity"], r["start"]) == (series, entity, start)
            ]
            assert (row["events"] or 0) == (same["events"] or 0)
