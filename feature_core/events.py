"""The event schema, and the one validator every layer uses.

Lake ingest and the speed layer both call :func:`parse_event` on the raw Kafka value,
so an event is accepted or rejected identically online and offline: a record the lake
rejects (and sends to the dead-letter topic) never reaches a speed tile either.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

#: Events dated further than this into the future are rejected (clock skew guard).
MAX_FUTURE_SKEW_MS = 5 * 60 * 1000


class EventType(StrEnum):
    VIEW = "view"
    CLICK = "click"
    ADD_TO_CART = "add_to_cart"
    PURCHASE = "purchase"


NonEmpty = Annotated[str, Field(min_length=1, max_length=256)]


class Event(BaseModel):
    """One e-commerce interaction. ``event_time`` is epoch milliseconds (UTC)."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    event_id: NonEmpty
    user_id: NonEmpty
    event_type: EventType
    event_time: Annotated[int, Field(gt=0)]
    item_id: NonEmpty | None = None
    category: NonEmpty | None = None
    amount: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _ints_are_floats_for_amount(cls, data: Any) -> Any:
        # JSON has one number type; strict mode would reject ``"amount": 3``.
        if (
            isinstance(data, dict)
            and isinstance(data.get("amount"), int)
            and not isinstance(data.get("amount"), bool)
        ):
            data = {**data, "amount": float(data["amount"])}
        return data

    @model_validator(mode="after")
    def _amount_only_on_purchases(self) -> Event:
        if self.event_type is EventType.PURCHASE and self.amount is None:
            raise ValueError("purchase events need an amount")
        if self.event_type is not EventType.PURCHASE and self.amount is not None:
            raise ValueError(f"{self.event_type.value} events must not carry an amount")
        return self


class InvalidEvent(ValueError):
    """Raised with a one-line, human-readable reason for the dead-letter record."""


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_url=False):
        where = ".".join(str(p) for p in item["loc"]) or "event"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def parse_event(raw: bytes | str | None, now_ms: int | None = None) -> Event:
    """Validate one raw Kafka value; raise :class:`InvalidEvent` saying why not."""
    if raw is None:
        raise InvalidEvent("empty record (null value)")
    try:
        event = Event.model_validate_json(raw)
    except ValidationError as error:
        if any(item["type"] == "json_invalid" for item in error.errors()):
            raise InvalidEvent("not valid JSON") from None
        if any(item["type"] == "model_type" for item in error.errors()):
            raise InvalidEvent("not a JSON object") from None
        raise InvalidEvent(_describe(error)) from None
    if now_ms is not None and event.event_time > now_ms + MAX_FUTURE_SKEW_MS:
        raise InvalidEvent("event_time is more than 5 minutes in the future")
    return event


#: Arrow schema of the raw events Delta table (``event_date`` is the partition column).
RAW_EVENTS_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("event_type", pa.string(), nullable=False),
        pa.field("event_time", pa.int64(), nullable=False),
        pa.field("item_id", pa.string()),
        pa.field("category", pa.string()),
        pa.field("amount", pa.float64()),
        pa.field("event_date", pa.string(), nullable=False),
        pa.field("kafka_partition", pa.int32(), nullable=False),
        pa.field("kafka_offset", pa.int64(), nullable=False),
    ]
)

#: Columns a feature may aggregate or filter on (the event's own fields).
EVENT_COLUMNS: dict[str, type] = {
    "event_id": str,
    "user_id": str,
    "event_type": str,
    "event_time": int,
    "item_id": str,
    "category": str,
    "amount": float,
}
