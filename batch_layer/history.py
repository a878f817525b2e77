"""Batch run history: in the online store for the CLI, the API and the on-call, and in
the lake.

The online store keeps it next to the views it describes, so every reader that can reach
the views sees how they were made. Every save is also appended to a Delta table in the
lake (``_lfp_batch_runs``), the durable copy: a store that lost its data gets the
history back from there (:meth:`RunHistory.restore`).
"""

from __future__ import annotations

import logging
import time

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import TableNotFoundError

from feature_core.runs import RunRecord
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
    """The newest ``keep`` run records; with ``lake_uri``, every save is also kept there."""

    def __init__(
        self,
        store: OnlineStore,
        keep: int = 200,
        lake_uri: str | None = None,
    ) -> None:
        self.store = store
        self.keep = keep
        self.lake_uri = lake_uri

    def save(self, record: RunRecord) -> None:
        if self.lake_uri is not None:
            row = {"run_id": [record.run_id], "saved_at": [time.time()]}
            row["record"] = [record.model_dump_json()]
            write_deltalake(self.lake_uri, pa.table(row, schema=_SCHEMA), mode="append")
        self._put([record])

    def _put(self, records: list[RunRecord]) -> None:
        self.store.save_runs(
            ((r.run_id, r.model_dump_json(), r.started_at) for r in records), self.keep
        )

    def from_lake(self) -> list[RunRecord]:
        """The newest ``keep`` runs in the lake, each as last saved; newest first."""
        if self.lake_uri is None:
            return []
        try:
            rows = DeltaTable(self.lake_uri).to_pyarrow_table().to_pylist()
        except TableNotFoundError:
            return []
        latest: dict[str, dict] = {}
        for row in rows:
            seen = latest.get(row["run_id"])
            if seen is None or row["saved_at"] >= seen["saved_at"]:
                latest[row["run_id"]] = row
        records = [RunRecord.model_validate_json(row["record"]) for row in latest.values()]
        return sorted(records, key=lambda r: r.started_at, reverse=True)[: self.keep]

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
        """Newest first (restored from the lake first if the store lost it)."""
        self.restore()
        return [RunRecord.model_validate_json(r) for r in self.store.recent_runs(limit)]
