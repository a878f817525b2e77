"""A group's batch documents assembled from its tiles in Spark: the engine side of
:mod:`feature_core.tiles`, whose functions every task calls per entity.

A *rebuild* (no stored tiles, a changed tile spec, ``--full``) tiles every event of the
snapshot (:func:`batch_layer.event_tiles.raw_tiles`), then per entity derives every
day's session-day rows from its ``5m`` tiles, drops what retention no longer keeps and
assembles the document at the cutoff. A task returns its entities' tile rows to store
and one document row each (series :data:`DOC_SERIES`), so the tiles are converted once
for both.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any

import orjson
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from batch_layer.arrow_rows import batch_rows
from batch_layer.columns import key_columns
from batch_layer.event_tiles import canonical_partials, event_tiles, raw_tiles
from batch_layer.task_store import task_store
from batch_layer.tiles import (
    GROUP,
    SESSION_COLUMNS,
    TILE_DATE,
    TILE_DDL,
    TILE_SCHEMA,
    newest_rows,
)
from feature_core.aggregations import normalize
from feature_core.definitions import FeatureGroup
from feature_core.keys import entity_id
from feature_core.settings import Settings
from feature_core.sources import event_date, quoted
from feature_core.tiles import (
    SESSION_SERIES_PREFIX,
    DocAssembler,
    Piece,
    SessionDay,
    advance_doc,
    hop_series,
    merge_session_day,
    merge_tile_rows,
    needs_day_events,
    retention_floor,
    session_day,
    session_series,
    tile_piece,
    tile_pieces,
)
from feature_core.windows import DAY_MS, FINEST_HOP_MS, edge_bands, floor_to

#: The series of the row carrying an entity's document (never a tile series).
DOC_SERIES = "@doc"
#: SQL: the start of the day a tile row's ``start`` falls on.
_TILE_DAY = f"(start DIV {DAY_MS}) * {DAY_MS}"


def rebuild(events: DataFrame, group: FeatureGroup, cutoff: int, horizon_ms: int) -> DataFrame:
    """Per entity of ``events`` (the group's source rows): the tile rows the state at
    ``cutoff`` stores (session-day rows added, expired rows dropped) and its document row.

    Spark aggregates the tiles (:func:`~batch_layer.event_tiles.raw_tiles`, series a
    session window does not need skipped below their retention floor); they reach Python
    once, sorted by entity in each partition, so one task call converts, assembles and
    writes a whole partition's entities (a call per entity costs more than its work)."""
    floors = retention_floor(group, cutoff)
    if any(w.gap_ms is not None for w in group.windows):
        # Session-day rows of every day come from its 5m tiles.
        floors = {s: f for s, f in floors.items() if s != hop_series(FINEST_HOP_MS)}
    tiles = raw_tiles(events, group, cutoff, floors)
    ordered = tiles.repartition("keys").sortWithinPartitions("keys", "series", "start")
    return ordered.mapInArrow(_rebuild_partition(group, cutoff, horizon_ms), TILE_DDL)


def _rebuild_partition(
    group: FeatureGroup, cutoff: int, horizon_ms: int
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    gaps = sorted({w.gap_ms for w in group.windows if w.gap_ms is not None})
    floors = retention_floor(group, cutoff)
    fine = hop_series(FINEST_HOP_MS)
    # 5m tiles before this are read for their day's session rows alone: only their
    # event times are converted, and the partials of each day's last fragment.
    fine_floor_ms = floors.get(fine) if gaps else None
    primitives = group.primitives
    assemble_doc = DocAssembler(group, cutoff, horizon_ms)
    times = group.session_time_indices
    first_at, last_at = times if times is not None else (0, 0)

    def canonical(partials: list[Any] | Mapping[str, Any]) -> list[Any]:
        """A tile's partials: converted already (a list), or Spark's raw struct."""
        return partials if isinstance(partials, list) else canonical_partials(primitives, partials)

    def fine_piece(partials: list[Any] | Mapping[str, Any]) -> Piece | None:
        """A 5m tile as a session piece, a raw struct's event times alone converted
        (the struct itself only if its day's last fragment holds it)."""
        if isinstance(partials, list):
            return tile_piece(group, partials)
        first = primitives[first_at].from_spark(partials[f"p{first_at}"])
        last = primitives[last_at].from_spark(partials[f"p{last_at}"])
        return tile_piece(group, partials, (first, last))

    def assemble(keys: list[str], rows: list[dict[str, Any]], out: _Rows) -> None:
        tiles: dict[str, dict[int, Any]] = defaultdict(dict)
        old_fine: dict[int, Mapping[str, Any]] = {}  # raw partials of 5m tiles kept no more
        counts: dict[tuple[str, int], int] = {}
        for row in rows:
            series, start = row["series"], row["start"]
            counts[(series, start)] = row["events"]
            if fine_floor_ms is not None and series == fine and start < fine_floor_ms:
                old_fine[start] = row["partials"]
            else:
                # Canonical already: event_tiles stores these partials as they are.
                tiles[series][start] = canonical_partials(primitives, row["partials"])
        if gaps:
            by_day: dict[int, list[tuple[int, Piece]]] = defaultdict(list)
            day_events: dict[int, int] = defaultdict(int)
            for start, partials in [*tiles.get(fine, {}).items(), *old_fine.items()]:
                day = floor_to(start, DAY_MS)
                day_events[day] += counts[(fine, start)]
                piece = fine_piece(partials)
                if piece is not None:
                    by_day[day].append((start, piece))
            ordered = {
                day: [piece for _, piece in sorted(found, key=lambda f: f[0])]
                for day, found in by_day.items()
            }
            for gap in gaps:
                series = session_series(gap)
                for day, pieces in ordered.items():
                    found = session_day(group, gap, pieces, canonical)
                    if found is not None:
                        tiles[series][day] = found
                        counts[(series, day)] = day_events[day]
        kept = _retained(tiles, floors)
        doc = assemble_doc(kept)
        entity = entity_id(keys)
        for series, by_start in kept.items():
            for start, value in by_start.items():
                out.tile(entity, keys, series, start, value, counts.get((series, start)))
        out.doc(entity, keys, doc)

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        keys: list[str] | None = None
        rows: list[dict[str, Any]] = []
        for batch in batches:
            out = _Rows(group.name)
            for row in batch_rows(batch):
                if row["keys"] != keys:
                    if rows:
                        assert keys is not None
                        assemble(keys, rows, out)
                    keys, rows = row["keys"], []
                rows.append(row)
            if out.rows:
                yield out.batch()
        if rows:  # the partition's last entity
            assert keys is not None
            out = _Rows(group.name)
            assemble(keys, rows, out)
            yield out.batch()

    return run


def _retained(
    tiles: Mapping[str, Mapping[int, Any]], floors: Mapping[str, int | None]
) -> dict[str, dict[int, Any]]:
    """The tiles a state keeps: each series' from its retention floor on."""
    kept: dict[str, dict[int, Any]] = {}
    for series, by_start in tiles.items():
        floor = floors.get(series)
        kept[series] = {s: v for s, v in by_start.items() if floor is None or s >= floor}
    return kept


class _Rows:
    """Output rows of a task (one or more entities), in the tile table's shape."""

    def __init__(self, group: str) -> None:
        self.group = group
        self.rows = 0
        self.columns: dict[str, list[Any]] = {name: [] for name in TILE_SCHEMA.names}

    def _append(
        self,
        entity: str,
        keys: list[str],
        series: str,
        start: int,
        date: str,
        partials: str,
        **extra: Any,
    ) -> None:
        columns = self.columns
        columns[GROUP].append(self.group)
        columns[TILE_DATE].append(date)
        columns["series"].append(series)
        columns["entity"].append(entity)
        columns["keys"].append(keys)
        columns["start"].append(start)
        columns["partials"].append(partials)
        columns["events"].append(extra.get("events"))
        for name in SESSION_COLUMNS:
            columns[name].append(extra.get(name))
        self.rows += 1

    def tile(
        self,
        entity: str,
        keys: list[str],
        series: str,
        start: int,
        value: Any,
        events: int | None,
    ) -> None:
        date = _tile_date(start // DAY_MS)
        if series.startswith(SESSION_SERIES_PREFIX):
            assert isinstance(value, SessionDay)
            self._append(
                entity,
                keys,
                series,
                start,
                date,
                orjson.dumps(value.partials).decode(),
                events=events,  # the day's: a later row of the day counts more
                first_ms=value.first_ms,
                last_ms=value.last_ms,
                frag_start_ms=value.frag_start_ms,
                has_gap=value.has_gap,
                prev_last_ms=value.prev_last_ms,
            )
        else:
            partials = orjson.dumps(value).decode()
            self._append(entity, keys, series, start, date, partials, events=events)

    def doc(self, entity: str, keys: list[str], doc: dict) -> None:
        self._append(entity, keys, DOC_SERIES, 0, "", orjson.dumps(doc).decode())

    def batch(self) -> pa.RecordBatch:
        return pa.RecordBatch.from_pydict(self.columns, schema=TILE_SCHEMA)


@functools.lru_cache(maxsize=4096)
def _tile_date(day: int) -> str:
    """The date partition of a tile starting on ``day`` (days since the epoch)."""
    return event_date(day * DAY_MS)


def documents(rows: Iterator[Any]) -> Iterator[tuple[str, bytes]]:
    """(entity, document JSON) of the document rows among ``rows`` (empty documents
    left out: an entity with nothing in any window has no view)."""
    for row in rows:
        if row["series"] == DOC_SERIES and row["partials"] != "{}":
            yield row["entity"], row["partials"].encode()


# --- advancing a group from its stored tiles --------------------------------------------

#: Reads the documents the serving view shows for entities (None: none), in a task.
BaseReader = Callable[[list[str]], Mapping[str, Mapping[str, Any] | None]]


def edge_dates(group: FeatureGroup, before: int, after: int, horizon_ms: int) -> list[str]:
    """The tile dates holding every tile :func:`edge_condition` can select: the only
    partitions a run reads to find the entities an edge moved past."""
    dates: set[str] = set()
    for window in group.windows:
        if window.length_ms is None:
            continue
        bands = edge_bands(window, before, after, horizon_ms)
        for low, high in (bands.leaving, bands.crossing):
            for day in range(floor_to(low, DAY_MS), high, DAY_MS):
                dates.add(_tile_date(day // DAY_MS))
    return sorted(dates)


def edge_condition(group: FeatureGroup, before: int, after: int, horizon_ms: int) -> str:
    """SQL over tile rows: a tile of a sliding window's hop series in a band the cutoff
    move sweeps (``EdgeBands.touches``); its entity's document changes with the cutoff."""
    terms = []
    for window in group.windows:
        if window.length_ms is None:
            continue
        bands = edge_bands(window, before, after, horizon_ms)
        ranges = " OR ".join(
            f"(start >= {low} AND start < {high})"
            for low, high in (bands.leaving, bands.crossing)
            if low < high
        )
        if ranges:
            terms.append(f"(series = '{hop_series(window.hop_ms)}' AND ({ranges}))")
    return " OR ".join(terms) or "FALSE"


def advance(
    stored: DataFrame,
    delta_tiles: DataFrame,
    group: FeatureGroup,
    before: int,
    after: int,
    horizon_ms: int,
    base: BaseReader | None,
    days: DataFrame | None = None,
    edge_rows: DataFrame | None = None,
) -> DataFrame:
    """A group's state moved from cutoff ``before`` to ``after``: ``stored`` is its tile
    rows (every date) at ``before``, ``delta_tiles`` the tiles of the events the new state
    adds (late ones included), ``edge_rows`` the stored rows the edges are looked for in
    (those on :func:`edge_dates` suffice; None: ``stored``).

    The entities with new tiles or a tile an edge moved past get their tiles merged and
    their document advanced from the one ``base`` reads (:func:`advance_doc`). With no
    ``base`` (a reassembling run: the served documents cannot be trusted), every entity
    of the group is a candidate and its document is assembled from its tiles alone. The
    result holds the candidates' document rows and the tile rows the new events changed,
    each merged with its stored row: the commit adds them beside the stored ones
    (:mod:`batch_layer.tiles`, rows of one tile), so nothing else is rewritten.

    A session group derives the session-day rows of each day a new event falls on from
    that day's ``5m`` tiles. The state at ``before`` keeps those from :func:`fine_floor`
    on; for a day below it (a late event), the stored row takes the day's new events
    (:func:`~feature_core.tiles.merge_session_day`) unless ``days`` holds source rows of
    the lake snapshot for that entity and date (every event, not only the new ones: the
    days :func:`late_days_needed` names), whose tiles the row is then computed from. Those
    tiles serve the session rows only: they are not stored, and neither edges nor
    documents read them."""
    flagged = delta_tiles.withColumn("__delta", F.lit(True)).withColumn("__day", F.lit(False))
    everyone = base is None
    if everyone:
        mine = stored
    else:
        edged = (stored if edge_rows is None else edge_rows).unionByName(delta_tiles)
        edged = edged.where(edge_condition(group, before, after, horizon_ms))
        candidates = delta_tiles.select("entity").union(edged.select("entity")).distinct()
        # Broadcast: the candidates are the entities with new events or a moved edge, a
        # few ids (MBs for a million); the stored tiles would be shuffled whole otherwise.
        mine = stored.join(F.broadcast(candidates), "entity", "left_semi")
    rows = mine.withColumn("__delta", F.lit(False)).withColumn("__day", F.lit(False))
    rows = rows.unionByName(flagged)
    floor = fine_floor(group, before)
    if floor is not None and days is not None:
        day_tiles = _late_day_tiles(days, delta_tiles, group, floor, after)
        rows = rows.unionByName(
            day_tiles.withColumn("__delta", F.lit(False)).withColumn("__day", F.lit(True))
        )
    structs = F.collect_list(F.struct(*[c for c in rows.columns if c not in (GROUP, "entity")]))
    per_entity = rows.groupBy("entity").agg(F.first("keys").alias("keys"), structs.alias("rows"))
    task = _advance_entities(group, before, after, horizon_ms, base)
    if not everyone:
        # The candidates are few; each shuffle partition would be a Python task (~0.3 s,
        # and a Redis connection for the base documents) however few its entities.
        per_entity = per_entity.coalesce(per_entity.sparkSession.sparkContext.defaultParallelism)
    return per_entity.mapInArrow(task, TILE_DDL)


def fine_floor(group: FeatureGroup, before: int) -> int | None:
    """The first day whose ``5m`` tiles the state at ``before`` keeps, for a group with
    session windows (None: no sessions). The session-day rows of a day before it that
    new events touch are derived from the day's events in the lake (see :func:`advance`)."""
    if not any(w.gap_ms is not None for w in group.windows):
        return None
    return retention_floor(group, before)[hop_series(FINEST_HOP_MS)]


#: Late (entity, day) pairs a run looks at one by one in the driver; more than this, the
#: late days are read whole (a backfill touching most entities).
LATE_PAIRS_MAX = 100_000


def late_days_needed(
    delta_tiles: DataFrame,
    group: FeatureGroup,
    before: int,
    stored_on: Callable[[set[str]], DataFrame],
) -> dict[str, list[list[str]]] | None:
    """Per date before :func:`fine_floor` that new events of the group fall on, the join
    keys (as text) of the entities whose session-day row of that date cannot take the
    new events alone (:func:`~feature_core.tiles.needs_day_events`: one joins the day's
    last fragment to an earlier one): the lake rows :func:`advance` needs. Usually
    none; every other late day's row is merged with its new events. ``stored_on`` gives
    the stored tile rows of a set of dates. None: more than :data:`LATE_PAIRS_MAX` pairs
    (the late days are read whole)."""
    floor = fine_floor(group, before)
    if floor is None:
        return {}
    fine = hop_series(FINEST_HOP_MS)
    late = delta_tiles.where((F.col("series") == fine) & (F.col("start") < floor))
    # A 5m tile's first and last event times alone: the decision reads no partials.
    first_at, last_at = group.session_time_indices or (0, 0)
    times = late.select(
        "entity",
        "keys",
        F.expr(_TILE_DAY).alias("day"),
        F.get_json_object("partials", f"$[{first_at}]").cast("double").cast("long").alias("first"),
        F.get_json_object("partials", f"$[{last_at}]").cast("double").cast("long").alias("last"),
    )
    pieces: dict[tuple[str, int], list[Piece]] = defaultdict(list)
    keys_of: dict[tuple[str, int], list[str]] = {}
    collected = times.limit(LATE_PAIRS_MAX * 10 + 1).collect()
    for row in collected:
        pair = (row["entity"], row["day"])
        keys_of[pair] = list(row["keys"])
        if row["last"] is not None:
            pieces[pair].append(Piece(row["first"], row["last"], []))
    if len(keys_of) > LATE_PAIRS_MAX or len(collected) > LATE_PAIRS_MAX * 10:
        return None
    if not keys_of:
        return {}
    gaps = sorted({w.gap_ms for w in group.windows if w.gap_ms is not None})
    pairs = late.select("entity", F.expr(_TILE_DAY).alias("start"))
    stored = (
        stored_on({event_date(day) for _, day in keys_of})
        .where(F.col("series").isin([session_series(g) for g in gaps]))
        # Broadcast: the late pairs are few, the dates' session rows many.
        .join(F.broadcast(pairs.distinct()), ["entity", "start"], "left_semi")
        .select("entity", "series", "start", "events", *SESSION_COLUMNS)
    )
    by_entity: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in stored.collect():
        by_entity[row["entity"]].append(row.asDict())
    held = {
        (entity, series, start): _session_day_row(row, [])
        for entity, rows in by_entity.items()
        for (series, start), row in newest_rows(rows).items()
    }
    needed: dict[str, list[list[str]]] = defaultdict(list)
    for (entity, day), found in pieces.items():
        if any(
            needs_day_events(held.get((entity, session_series(gap), day)), found, gap)
            for gap in gaps
        ):
            needed[event_date(day)].append(keys_of[(entity, day)])
    return dict(needed)


def _session_day_row(row: Mapping[str, Any], partials: list[Any]) -> SessionDay:
    """A stored session-day row (:data:`~batch_layer.tiles.SESSION_COLUMNS`) with its
    partials (decoded by the caller, or none for a decision by event times)."""
    return SessionDay(
        row["first_ms"],
        row["last_ms"],
        row["frag_start_ms"],
        row["has_gap"],
        partials,
        row["prev_last_ms"],
    )


def _late_day_tiles(
    days: DataFrame, delta_tiles: DataFrame, group: FeatureGroup, floor: int, after: int
) -> DataFrame:
    """The ``5m`` tiles of every event (of ``days``, the lake's rows) of each (entity,
    day) before ``floor`` that a new event falls on: the entity's whole day, old events
    and new, as :class:`feature_core.tiles.LocalTileStore` reads them from its lake."""
    fine = hop_series(FINEST_HOP_MS)
    touched = (
        delta_tiles.where((F.col("series") == fine) & (F.col("start") < floor))
        .select(F.col("keys").alias("__keys"), F.expr(_TILE_DAY).alias("__day_start"))
        .distinct()
    )
    time = quoted(group.event_time)
    keys = [F.col(f"__k{i}") for i in range(len(group.join_keys))]
    events = (
        days.selectExpr("*", *key_columns(group))
        .withColumn("__keys", F.array(*keys))
        .withColumn("__day_start", F.expr(f"({time} DIV {DAY_MS}) * {DAY_MS}"))
        # Broadcast: the touched (entity, day) pairs are few, the days' events many (a
        # shuffle of every event of weeks of days otherwise).
        .join(F.broadcast(touched), ["__keys", "__day_start"], "left_semi")
        .select(*days.columns)
    )
    # The 5m series alone: the days are most of the lake when late events spread over
    # weeks, and every other series would scan them again to be dropped.
    return event_tiles(events, group, after, only=fine)


def _advance_entities(
    group: FeatureGroup,
    before: int,
    after: int,
    horizon_ms: int,
    base: BaseReader | None,
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    gaps = sorted({w.gap_ms for w in group.windows if w.gap_ms is not None})
    floors = retention_floor(group, after)
    fine = hop_series(FINEST_HOP_MS)
    kept_from = fine_floor(group, before)
    primitives = group.primitives

    def partials_of(row: Mapping[str, Any]) -> list[Any]:
        return list(normalize(primitives, orjson.loads(row["partials"])))

    def session_day_of(row: Mapping[str, Any]) -> SessionDay:
        return _session_day_row(row, partials_of(row))

    def decoders(series: str) -> Callable[[Mapping[str, Any]], Any]:
        return session_day_of if series.startswith(SESSION_SERIES_PREFIX) else partials_of

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            entities = batch_rows(batch)
            docs = {} if base is None else base([e["entity"] for e in entities])
            out = _Rows(group.name)
            for entity in entities:
                _advance_one(entity, docs.get(entity["entity"]), out)
            if out.rows:
                yield out.batch()

    def _merge_late_day(
        entity: str,
        day: int,
        new_fine: Mapping[int, Any],
        tiles: Mapping[str, MutableMapping[int, Any]],
        counts: dict[tuple[str, int], int],
        changed: set[tuple[str, int]],
    ) -> None:
        """A late day's session rows with its new events (``5m`` tiles) merged in."""
        starts = [s for s in new_fine if day <= s < day + DAY_MS]
        pieces = tile_pieces(group, {s: new_fine[s] for s in starts})
        added = sum(counts.get((fine, s), 0) for s in starts)
        for gap in gaps:
            series = session_series(gap)
            merged = merge_session_day(group, gap, tiles[series].get(day), pieces)
            if merged is None:
                raise RuntimeError(
                    f"{group.name}: no events of {event_date(day)} read for {entity}'s session "
                    "rows, and its new events join two of the day's sessions"
                )
            tiles[series][day] = merged
            counts[(series, day)] = counts.get((series, day), 0) + added
            changed.add((series, day))

    def _advance_one(
        entity: Mapping[str, Any], base_doc: Mapping[str, Any] | None, out: _Rows
    ) -> None:
        stored: list[Mapping[str, Any]] = []
        tiles: dict[str, MutableMapping[int, Any]] = _SeriesTiles(decoders)
        delta: dict[str, dict[int, Any]] = defaultdict(dict)
        # 5m tiles of all the events of days the state keeps none of (late events): for
        # those days' session rows only.
        day_tiles: dict[int, Any] = {}
        counts: dict[tuple[str, int], int] = {}
        changed: set[tuple[str, int]] = set()
        for row in entity["rows"]:
            if row["__day"]:
                day_tiles[row["start"]] = list(normalize(primitives, orjson.loads(row["partials"])))
                counts[("__day", row["start"])] = row["events"] or 0
            elif not row["__delta"]:
                stored.append(row)
        for (series, start), row in newest_rows(stored).items():
            # Decoded when read: a document reads its tails, edges and sessions, not
            # every tile of its history.
            tiles[series].keep_raw(start, row)
            counts[(series, start)] = row["events"] or 0
        for row in entity["rows"]:
            if not row["__delta"]:
                continue
            series, start = row["series"], row["start"]
            partials = list(normalize(primitives, orjson.loads(row["partials"])))
            delta[series][start] = partials
            tiles[series][start] = merge_tile_rows(group, [tiles[series].get(start), partials])
            counts[(series, start)] = counts.get((series, start), 0) + (row["events"] or 0)
            changed.add((series, start))
        days = {floor_to(s, DAY_MS) for s in delta.get(fine, {})}
        for day in days if gaps else ():
            late = kept_from is not None and day < kept_from
            source, counted = (day_tiles, "__day") if late else (tiles[fine], fine)
            of_day = {s: source[s] for s in source if day <= s < day + DAY_MS}
            if late and not of_day:
                # No lake rows read for the day: its rows take the new events as they are.
                _merge_late_day(entity["entity"], day, delta[fine], tiles, counts, changed)
                continue
            day_events = sum(counts.get((counted, s), 0) for s in of_day)
            pieces = tile_pieces(group, of_day)
            for gap in gaps:
                found = session_day(group, gap, pieces)
                if found is not None:
                    series = session_series(gap)
                    tiles[series][day] = found
                    counts[(series, day)] = day_events
                    changed.add((series, day))
        # On the tiles before their retention drop: a step longer than the retention's
        # slack sweeps a crossing band below the new floor, and its tiles still make the
        # entity a crosser (assembly reads nothing below the floors otherwise).
        doc = advance_doc(group, base_doc, tiles, delta, before, after, horizon_ms)
        name, keys = entity["entity"], entity["keys"]
        for series, start in sorted(changed):
            floor = floors.get(series)
            if floor is None or start >= floor:
                out.tile(name, keys, series, start, tiles[series][start], counts[(series, start)])
        out.doc(name, keys, doc)

    return run


class _DecodedOnRead(MutableMapping[int, Any]):
    """One series of an entity's tiles, by start: stored rows are kept as read and
    decoded (by ``decode``) the first time their value is asked for; keys alone cost
    nothing. Iterates in the order a dict filled the same way would."""

    def __init__(self, decode: Callable[[Mapping[str, Any]], Any]) -> None:
        self._decode = decode
        self._raw: dict[int, Mapping[str, Any]] = {}
        self._values: dict[int, Any] = {}  # decoded, or set

    def keep_raw(self, start: int, row: Mapping[str, Any]) -> None:
        self._values.pop(start, None)
        self._raw[start] = row

    def __getitem__(self, start: int) -> Any:
        if start in self._values:
            return self._values[start]
        value = self._values[start] = self._decode(self._raw[start])
        return value

    def __setitem__(self, start: int, value: Any) -> None:
        self._values[start] = value

    def __delitem__(self, start: int) -> None:
        if start not in self:
            raise KeyError(start)
        self._raw.pop(start, None)
        self._values.pop(start, None)

    def __contains__(self, start: object) -> bool:
        return start in self._raw or start in self._values

    def __iter__(self) -> Iterator[int]:
        # Reading a value while iterating only adds a key of _raw to _values.
        yield from self._raw
        yield from (start for start in self._values if start not in self._raw)

    def __len__(self) -> int:
        return len(self._raw.keys() | self._values.keys())


class _SeriesTiles(dict[str, _DecodedOnRead]):
    """An entity's tiles by series, each series decoded on read by its own decoder."""

    def __init__(self, decoders: Callable[[str], Callable[[Mapping[str, Any]], Any]]) -> None:
        super().__init__()
        self._decoders = decoders

    def __missing__(self, series: str) -> _DecodedOnRead:
        tiles = self[series] = _DecodedOnRead(self._decoders(series))
        return tiles


class BaseDocuments:
    """Reads, in a task, the documents the serving view shows: what an incremental run
    advances (a picklable :data:`BaseReader`)."""

    def __init__(self, settings: Settings, serving: int, group: str) -> None:
        self.settings, self.serving, self.group = settings, serving, group

    def __call__(self, entities: list[str]) -> Mapping[str, Mapping[str, Any] | None]:
        with task_store(self.settings) as store:
            return store.read_base(self.serving, self.group, entities)
