"""The lakehouse: raw events in Delta Lake (delta-rs), the batch layer's master dataset."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import TableNotFoundError

from feature_core.events import RAW_EVENTS_SCHEMA, Event


def ingest_app_id(topic: str, topic_id: str, partition: int) -> str:
    """Delta app-transaction id under which the next offset of a partition is stored.

    Includes the topic instance's id: offsets of a deleted-and-recreated topic (or of a
    restarted memory-only broker) start afresh instead of skipping the new log's records.
    """
    return f"lfp-ingest:{topic}:{topic_id}:{partition}"


def open_table(uri: str, version: int | None = None) -> DeltaTable | None:
    try:
        return DeltaTable(uri, version=version)
    except TableNotFoundError:
        return None


def committed_offsets(
    uri: str, topic: str, topic_id: str, partitions: Iterable[int]
) -> dict[int, int]:
    """Next offset to read per partition, as recorded in the Delta log (absent: none yet)."""
    table = open_table(uri)
    if table is None:
        return {}
    offsets = {}
    for partition in partitions:
        version = table.transaction_version(ingest_app_id(topic, topic_id, partition))
        if version is not None:
            offsets[partition] = version
    return offsets


def events_to_arrow(rows: list[tuple[Event, int, int]]) -> pa.Table:
    """(event, kafka partition, kafka offset) rows -> the raw events Arrow schema."""
    columns: dict[str, list] = {name: [] for name in RAW_EVENTS_SCHEMA.names}
    for event, partition, offset in rows:
        columns["event_id"].append(event.event_id)
        columns["user_id"].append(event.user_id)
        columns["event_type"].append(event.event_type.value)
        columns["event_time"].append(event.event_time)
        columns["item_id"].append(event.item_id)
        columns["category"].append(event.category)
        columns["amount"].append(event.amount)
        columns["event_date"].append(
            datetime.fromtimestamp(event.event_time / 1000, tz=UTC).strftime("%Y-%m-%d")
        )
        columns["kafka_partition"].append(partition)
        columns["kafka_offset"].append(offset)
    return pa.Table.from_pydict(columns, schema=RAW_EVENTS_SCHEMA)


def append_with_offsets(
    uri: str,
    rows: list[tuple[Event, int, int]],
    topic: str,
    topic_id: str,
    next_offsets: dict[int, int],
) -> None:
    """Append events and record the partitions' next offsets in the same Delta commit.

    The data and the offsets become visible atomically, so a crash either loses both
    (and the batch is re-read) or keeps both (and it is skipped): exactly once.
    """
    transactions = [
        Transaction(ingest_app_id(topic, topic_id, partition), offset)
        for partition, offset in sorted(next_offsets.items())
    ]
    write_deltalake(
        uri,
        events_to_arrow(rows),
        mode="append",
        partition_by=["event_date"],
        commit_properties=CommitProperties(app_transactions=transactions),
    )


#: ``kafka_partition``/``kafka_offset`` of events written straight to the lake (backfills).
BACKFILL = -1


def append_backfill(uri: str, events: Iterable[Event], chunk: int = 50_000) -> int:
    """Append back-dated events straight to the lake (they never pass through Kafka).

    For history that predates the stream: the batch layer reads them like ingested events;
    the speed layer never sees them, which is right as long as they are older than the
    next batch cutoff. Returns how many were written.
    """
    written = 0
    rows: list[tuple[Event, int, int]] = []
    for event in events:
        rows.append((event, BACKFILL, BACKFILL))
        if len(rows) >= chunk:
            write_deltalake(uri, events_to_arrow(rows), mode="append", partition_by=["event_date"])
            written += len(rows)
            rows.clear()
    if rows:
        write_deltalake(uri, events_to_arrow(rows), mode="append", partition_by=["event_date"])
        written += len(rows)
    return written


def count_rows(uri: str) -> int:
    """Rows in the latest version of a Delta table (0 if it does not exist yet)."""
    table = open_table(uri)
    return 0 if table is None else table.to_pyarrow_dataset().count_rows()
