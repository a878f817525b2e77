"""Helpers for driving the stack from tests: produce, read the lake, query the API."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import orjson
import pyarrow.compute as pc

from batch_layer.lake import open_table
from demo.feature_repo import events as SHOP
from feature_core.settings import Settings
from feature_core.sources import EventSource
from runtime.kafka import producer


def make_event(
    user: str, event_time: int, event_type: str = "view", amount: float | None = None
) -> dict:
    event: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "user_id": user,
        "event_type": event_type,
        "event_time": event_time,
        "item_id": "item_1",
        "category": "books",
    }
    if amount is not None:
        event["amount"] = amount
    if event_type == "add_to_cart":
        event["price"] = 9.99  # the shop's rule: an add-to-cart carries the item's price
    return event


def produce(settings: Settings, records: list[dict | bytes], source: EventSource = SHOP) -> None:
    out = producer(settings)
    for record in records:
        value = record if isinstance(record, bytes) else orjson.dumps(record)
        out.send(source.topic_name, value=value)
    out.flush()
    out.close()


def lake_rows(settings: Settings, source: EventSource, columns: list[str]) -> list[dict]:
    table = open_table(settings.table_uri(source.table_name))
    if table is None:
        return []
    return table.to_pyarrow_table(columns=columns).to_pylist()


def lake_event_ids(
    settings: Settings,
    user_prefix: str,
    source: EventSource = SHOP,
    id_field: str = "event_id",
    key_field: str = "user_id",
) -> list[str]:
    """``id_field`` of every lake row whose ``key_field`` starts with the prefix
    (duplicates kept)."""
    table = open_table(settings.table_uri(source.table_name))
    if table is None:
        return []
    data = table.to_pyarrow_table(columns=[id_field, key_field])
    mask = pc.starts_with(data[key_field], user_prefix)
    return data.filter(mask)[id_field].to_pylist()


def get_features(settings: Settings, group: str, entity: str) -> dict:
    response = httpx.get(f"{settings.api_url}/v1/features/{group}/{entity}", timeout=10)
    response.raise_for_status()
    return response.json()


def wait_in_lake(settings: Settings, prefix: str, count: int) -> None:
    """Wait until the lake holds at least ``count`` events of users starting with ``prefix``."""
    from tests.conftest import wait_for

    wait_for(
        lambda: len(lake_event_ids(settings, prefix)) >= count,
        120,
        f"{count} {prefix}* events in the lake",
    )


def entities_for(prefix: str, users: int, items: int) -> tuple[str, dict[str, list[str]]]:
    """Fresh user and item ids no other test touches, and the prefix they all share."""
    tag = f"{prefix}-{uuid.uuid4().hex[:8]}"
    return tag, {
        "user_id": [f"{tag}-u{i}" for i in range(users)],
        "item_id": [f"{tag}-i{i}" for i in range(items)],
    }
