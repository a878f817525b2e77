"""Lake ingest's correction tiles: after each commit, the tiles of its late records.

See :mod:`feature_core.corrections` for why a commit's records dated before its
threshold are exactly what the batch views that did not read it lack. The online store
records, per lake table, the last version whose corrections are written; a version
after it (the process stopped between its commit and its corrections, or Redis did not
answer) is done again from the records the commit added to the lake, so a correction is
never lost, and writing one again is harmless (tiles are upserted whole).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from batch_layer.lake import ingest_commits_after, open_table, records_added
from feature_core.corrections import correction_tiles, late_threshold, reach
from feature_core.definitions import FeatureGroup
from feature_core.settings import Settings
from feature_core.sources import EventSource
from online_store import STORE_ERRORS
from online_store.base import OnlineStore

log = logging.getLogger(__name__)


@dataclass
class CorrectionStats:
    written: int = 0  # correction tile fields written
    records: int = 0  # late records in them (per group)
    too_old: int = 0  # late records older than any window they could change (per group)
    retired: int = 0  # correction tile fields dropped once a batch view read them
    behind: int = 0  # commits whose corrections wait for the online store


class CorrectionWriter:
    """Writes the correction tiles of the groups reading each source."""

    def __init__(
        self, settings: Settings, groups: Sequence[FeatureGroup], store: OnlineStore
    ) -> None:
        self.settings = settings
        self.store = store
        self.groups: dict[str, list[FeatureGroup]] = defaultdict(list)
        for group in groups:
            self.groups[group.source.name].append(group)
        max_age = settings.late_events_max_age_s
        self.max_age_ms = None if max_age is None else max_age * 1000
        self.stats = CorrectionStats()
        self._pending: set[str] = set()  # sources whose written mark is behind the lake
        self._tables = {g.source.name: g.source.table_name for g in groups}
        self._retired: dict[str, int] = {}  # table -> the version retired up to

    def after_commit(
        self, source: EventSource, version: int, records: Iterable[Mapping[str, Any]]
    ) -> None:
        """Called right after commit ``version`` of ``source``'s table landed."""
        if not self.groups.get(source.name):
            return
        if source.name in self._pending and not self.catch_up(source):
            return  # earlier commits first: the mark moves in order
        try:
            self._write(source, version, records)
        except STORE_ERRORS as error:
            log.warning("corrections of %s v%s wait for Redis: %r", source.name, version, error)
            self._pending.add(source.name)
            self.stats.behind += 1

    def catch_up(self, source: EventSource) -> bool:
        """Write the corrections of every ingest commit after the written mark, from the
        lake. True when none is left."""
        if not self.groups.get(source.name):
            return True
        uri = self.settings.table_uri(source.table_name)
        try:
            mark = self.store.corrections_written(source.table_name)
            if mark is None:
                # Nothing recorded (a new store, or one that lost its data along with
                # every view): views built from now on read all the lake holds now.
                table = open_table(uri)
                if table is not None:
                    self.store.set_corrections_written(source.table_name, table.version())
                self._pending.discard(source.name)
                return True
            for version in ingest_commits_after(uri, mark):
                log.info("writing the correction tiles of %s v%s again", source.table_name, version)
                self._write(source, version, records_added(uri, source, version))
        except STORE_ERRORS as error:
            log.warning("correction tiles of %s wait for Redis: %r", source.name, error)
            self._pending.add(source.name)
            return False
        self._pending.discard(source.name)
        self.stats.behind = 0
        return True

    def _write(
        self, source: EventSource, version: int, records: Iterable[Mapping[str, Any]]
    ) -> None:
        # After the commit landed: a view that did not read it has a cutoff at most this
        # threshold (feature_core.corrections).
        now_ms = int(time.time() * 1000)
        threshold = late_threshold(now_ms)
        rows = list(records)
        for group in self.groups[source.name]:
            tiles, late, too_old = correction_tiles(
                group, rows, threshold, reach(group, now_ms, self.max_age_ms), now_ms
            )
            self.stats.records += late
            self.stats.too_old += too_old
            if tiles:
                self.stats.written += self.store.write_corrections(
                    group.name, source.table_name, version, tiles, self.settings.speed_tile_ttl_s
                )
        self.store.set_corrections_written(source.table_name, version)

    def retire(self) -> None:
        """Drop the correction tiles the serving batch view has read (each table once
        per view)."""
        try:
            pointer = self.store.pointer()
            if pointer is None or pointer.delta_versions is None:
                return
            for source_name in self.groups:
                table = self._tables[source_name]
                covered = pointer.delta_versions.get(table)
                if covered is None or self._retired.get(table) == covered:
                    continue
                self.stats.retired += self.store.retire_corrections(table, covered)
                self._retired[table] = covered
        except STORE_ERRORS as error:
            log.debug("retiring correction tiles skipped: %r", error)
