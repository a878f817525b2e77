"""Batch run history: in the online store for the CLI, the API and the on-call, and in
the lake.

The online store keeps it next to the views it describes, so every reader that can reach
the views sees how they were made. Every save is also appended to a Delta table in the
lake (``_lfp_batch_runs``), the durable copy: a store that lost its data gets the
history back from there (:meth:`RunHistory.restore`).

Both keep the newest ``LFP_BATCH_RUN_HISTORY`` runs: the store trims on every save, the
lake table is rewritten (latest record per kept run, one file) once a tenth of that many
saves were appended since. A run whose process is gone, or that was not renewed for
``LFP_BATCH_RUN_LEASE_S``, reads as ``abandoned`` (:func:`feature_core.runs.settled`).
"""

from __future__ import annotations

import logging
import threading
import time

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import TableNotFoundError

from feature_core.runs import RunRecord, RunStatus, settled, this_process
from online_store import STORE_ERRORS
from online_store.base import OnlineStore

log = logging.getLogger(__name__)

#: The lake table of run records (a name no declared source can take: they start with a
#: letter).
RUNS_TABLE = "_lfp_batch_runs"
_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("saved_at", pa.float64(), nullable=False),
        pa.field("record", pa.string(), nullable=False),
    ]
)


class RunHistory:
    """The newest ``keep`` run records; with ``lake_uri``, every save is also kept there.

    A save whose store write fails (Redis paused or down) is still in the lake, and is
    written to the store with the next save that gets through."""

    def __init__(
        self,
        store: OnlineStore,
        keep: int = 500,
        lake_uri: str | None = None,
        lease_s: float = 300.0,
    ) -> None:
        self.store = store
        self.keep = keep
        self.lake_uri = lake_uri
        self.lease_s = lease_s
        self._unstored: dict[str, RunRecord] = {}
        self._lock = threading.Lock()  # the run's lease renewal saves from its own thread

    def save(self, record: RunRecord) -> None:
        if self.lake_uri is not None:
            row = {"run_id": [record.run_id], "saved_at": [time.time()]}
            row["record"] = [record.model_dump_json()]
            write_deltalake(self.lake_uri, pa.table(row, schema=_SCHEMA), mode="append")
            self._compact_if_due()
        self.renew(record)

    def renew(self, record: RunRecord) -> bool:
        """Write ``record`` to the store only (the running run's lease renewal); False
        (logged, kept for the next write) if the store does not answer."""
        with self._lock:
            self._unstored[record.run_id] = record.model_copy()
            try:
                self._put(list(self._unstored.values()))
            except STORE_ERRORS as error:
                log.warning("run %s not recorded in the online store: %s", record.run_id, error)
                return False
            self._unstored.clear()
            return True

    def _put(self, records: list[RunRecord]) -> None:
        self.store.save_runs(
            ((r.run_id, r.model_dump_json(), r.started_at) for r in records), self.keep
        )

    def _rows(self) -> list[dict]:
        try:
            return DeltaTable(self.lake_uri).to_pyarrow_table().to_pylist()
        except TableNotFoundError:
            return []

    def _newest(self, rows: list[dict]) -> list[dict]:
        """The last saved row of each of the newest ``keep`` runs, newest first."""
        latest: dict[str, dict] = {}
        for row in rows:
            seen = latest.get(row["run_id"])
            if seen is None or row["saved_at"] >= seen["saved_at"]:
                latest[row["run_id"]] = row
        started = {
            run_id: RunRecord.model_validate_json(row["record"]).started_at
            for run_id, row in latest.items()
        }
        newest = sorted(latest, key=lambda run_id: started[run_id], reverse=True)[: self.keep]
        return [latest[run_id] for run_id in newest]

    def _compact_if_due(self) -> None:
        """Rewrite the lake table to the newest ``keep`` runs, one row each, once a tenth
        of ``keep`` saves (files) were appended since it was last rewritten; files it
        replaced are deleted an hour later (a reader may be reading them). Best effort:
        a failure is logged and the next save tries again."""
        try:
            table = DeltaTable(self.lake_uri)
            if len(table.file_uris()) <= max(1, self.keep // 10):
                return
            kept = self._newest(table.to_pyarrow_table().to_pylist())
            compacted = pa.Table.from_pylist(kept, schema=_SCHEMA)
            write_deltalake(self.lake_uri, compacted, mode="overwrite")
            table = DeltaTable(self.lake_uri)
            table.vacuum(retention_hours=1, enforce_retention_duration=False, dry_run=False)
            table.create_checkpoint()
            table.cleanup_metadata()
            log.info("run history in the lake compacted to the newest %d runs", len(kept))
        except Exception:
            log.exception("run history compaction failed; the next save tries again")

    def from_lake(self) -> list[RunRecord]:
        """The newest ``keep`` runs in the lake, each as last saved; newest first."""
        if self.lake_uri is None:
            return []
        return [RunRecord.model_validate_json(row["record"]) for row in self._newest(self._rows())]

    def restore(self) -> int:
        """If the store holds no history, copy it back from the lake; how many runs."""
        if self.store.has_runs():
            return 0
        records = self.from_lake()
        if records:
            self._put(records)
            log.warning("run history restored from the lake: %d runs", len(records))
        return len(records)

    def recent(self, limit: int = 20) -> list[RunRecord]:
        """Newest first (restored from the lake first if the store lost it); a run that
        cannot still be going reads as abandoned."""
        self.restore()
        return [
            settled(RunRecord.model_validate_json(r), self.lease_s)
            for r in self.store.recent_runs(limit)
        ]

    def settle_abandoned(self) -> list[RunRecord]:
        """Record as abandoned every run still ``running`` whose process is gone or whose
        lease ran out; the runs settled. Called by a scheduler before its first run, so a
        run recorded under its own ``host:pid`` (a container restarted with the same pid)
        is a killed predecessor's too."""
        self.restore()
        me = this_process()
        done = []
        for raw in self.store.recent_runs(self.keep):
            record = RunRecord.model_validate_json(raw)
            if record.status is not RunStatus.RUNNING:
                continue
            if record.owner == me:
                reason = "abandoned: its scheduler restarted mid-run (same host and pid)"
                error = f"{reason}; last error: {record.error}" if record.error else reason
                record = record.model_copy(update={"status": RunStatus.ABANDONED, "error": error})
            else:
                record = settled(record, self.lease_s)
            if record.status is RunStatus.ABANDONED:
                record.finished_at = record.renewed_at or record.started_at
                self.save(record)
                log.warning("batch run %s: %s", record.run_id, record.error)
                done.append(record)
        return done
