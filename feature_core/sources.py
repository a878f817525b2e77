"""Declared event sources: one schema per source, compiled to every layer's form.

A source names its Kafka topic, its lake table, its event-time field and its fields
(type, nullable or required, simple constraints). From that one declaration come the
validator that lake ingest, the speed layer and ``lfp lake load`` all call, the Delta
(Arrow) schema, the Spark schema and the Flink columns, so an event is accepted or
rejected identically everywhere and no layer keeps a schema of its own.

Field types and what they accept (JSON in, canonical value out):

==========  ======================================  ==============  =====================
type        accepts                                 stored as       constraints
==========  ======================================  ==============  =====================
string      a JSON string                           string          values, min_length,
                                                                    max_length
integer     a JSON integer (not a boolean)          int64           values, min, max
float       a JSON number (an integer too), finite  float64         min, max
boolean     true or false                           bool            values
timestamp   epoch milliseconds, or ISO-8601 text    int64 epoch ms  min, max (epoch ms)
            with a UTC offset or ``Z``
==========  ======================================  ==============  =====================

Cross-field rules run after the fields are checked. :class:`RequiredWhen` declares the
common one (a field required when another holds certain values), which every engine checks
natively (the speed job in the JVM). Any other rule is a plain function in the user's
repo, ``rule(record) -> reason or None``; a source with one is parsed in Python by the
speed job too, which is slower.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import orjson
import pyarrow as pa

#: Events dated further than this into the future are rejected (clock skew guard).
MAX_FUTURE_SKEW_MS = 5 * 60 * 1000

#: Lake columns the platform adds to every source's table (not declarable as fields).
EVENT_DATE = "event_date"  # partition column: the event time's UTC date
KAFKA_PARTITION = "kafka_partition"  # -1 for records loaded from files
KAFKA_OFFSET = "kafka_offset"
LAKE_COLUMNS = (EVENT_DATE, KAFKA_PARTITION, KAFKA_OFFSET)

# Matched with fullmatch: ``$`` would also accept a trailing newline ("name\n").
_IDENTIFIER = re.compile(r"[a-z][a-z0-9_]*")
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,200}")


class SourceError(ValueError):
    """A source declaration is invalid; the message names the source and the problem."""


class InvalidRecord(ValueError):
    """A record breaks its source's schema; the message is the reason, on one line."""


Record = dict[str, Any]
#: A cross-field rule: the reason a checked record is rejected, or None to accept it.
Rule = Callable[[Mapping[str, Any]], str | None]


def typed(value: Any) -> tuple[type, Any]:
    """A value with its type, for membership tests where ``True`` must not equal ``1``
    (Python's bool is an int): allowed values and filters compare these."""
    return type(value), value


def quoted(name: str) -> str:
    """A field name as a SQL identifier: Spark SQL and Flink SQL both take backticks,
    so a field may be called ``timestamp`` or ``value``."""
    return f"`{name}`"


# --- field types: each carries its engine forms and its check, in one place -------------


def _iso_to_ms(text: str) -> int:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRecord("not an ISO-8601 timestamp") from None
    if moment.tzinfo is None:
        raise InvalidRecord("ISO-8601 timestamp needs a UTC offset or Z (e.g. ...T12:00:00Z)")
    return int(moment.timestamp() * 1000)


def _check_string(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidRecord("should be a string")
    return value


def _check_integer(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidRecord("should be an integer")
    if not -(2**63) <= value < 2**63:
        raise InvalidRecord("is outside 64-bit integers")
    return value


def _check_float(value: Any) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise InvalidRecord("should be a number")
    number = float(value)
    if not math.isfinite(number):
        raise InvalidRecord("should be a finite number")
    return number


def _check_boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise InvalidRecord("should be true or false")
    return value


def _check_timestamp(value: Any) -> int:
    if isinstance(value, str):
        value = _iso_to_ms(value)
    elif not isinstance(value, int) or isinstance(value, bool):
        raise InvalidRecord("should be epoch milliseconds or ISO-8601 text")
    if not 0 < value < 2**63:
        raise InvalidRecord("should be positive epoch milliseconds")
    return value


@dataclass(frozen=True)
class FieldType:
    """A field type: its Python check and its form in the lake, Spark and Flink."""

    name: str
    check: Callable[[Any], Any]
    arrow: pa.DataType
    sql: str  # Spark SQL and Flink SQL share these type names
    python: type  # what aggregations see (column type checks)
    ordered: bool  # min/max constraints apply
    enumerable: bool  # allowed-values constraints apply

    def literal(self, value: Any) -> str:
        """A value of this type as a SQL literal (filters)."""
        if self.python is bool:
            return "TRUE" if value else "FALSE"
        if self.python is str:
            return "'" + str(value).replace("'", "''") + "'"
        return repr(self.check(value))


FIELD_TYPES: dict[str, FieldType] = {
    t.name: t
    for t in (
        FieldType("string", _check_string, pa.string(), "STRING", str, False, True),
        FieldType("integer", _check_integer, pa.int64(), "BIGINT", int, True, True),
        FieldType("float", _check_float, pa.float64(), "DOUBLE", float, True, False),
        FieldType("boolean", _check_boolean, pa.bool_(), "BOOLEAN", bool, False, True),
        FieldType("timestamp", _check_timestamp, pa.int64(), "BIGINT", int, True, False),
    )
}


def _check_allowed(kind: FieldType, values: Sequence[Any], where: str) -> None:
    """Allowed values (a field's, or a rule's for the field it looks at): a non-empty list
    of valid values of a type that can be enumerated."""
    if not kind.enumerable:
        raise SourceError(f"{where}: allowed values need a string, integer or boolean")
    if not values:
        raise SourceError(f"{where}: allowed values must not be empty")
    for value in values:
        try:
            kind.check(value)
        except InvalidRecord as error:
            raise SourceError(f"{where}: allowed value {value!r} {error}") from None


@dataclass(frozen=True)
class Field:
    """One field of a source: a type, nullable unless ``required``, and constraints.

    ``values``: the only values allowed; ``min``/``max``: inclusive bounds (numbers, or
    epoch ms for timestamps); ``min_length``/``max_length``: shortest/longest string.
    """

    name: str
    type: str
    required: bool = False
    values: Sequence[Any] | None = None
    min: float | None = None
    max: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    description: str = ""

    @property
    def kind(self) -> FieldType:
        return FIELD_TYPES[self.type]

    def check(self, value: Any) -> Any:
        """The canonical value, or :class:`InvalidRecord` naming the field. Any failure
        of the check is the value's, never the caller's (lake ingest, the speed job and
        lake load would otherwise stop at the record that broke it)."""
        try:
            return self._checked(value)
        except InvalidRecord:
            raise
        except (ValueError, TypeError, ArithmeticError, RecursionError) as error:
            raise InvalidRecord(f"{self.name}: {type(error).__name__}: {error}") from None

    def _checked(self, value: Any) -> Any:
        kind = self.kind
        try:
            value = kind.check(value)
        except InvalidRecord as error:
            raise InvalidRecord(f"{self.name}: {error}") from None
        if self.values is not None and typed(value) not in self._allowed:
            shown = ", ".join(repr(v) for v in self.values)
            raise InvalidRecord(f"{self.name}: {value!r} is not one of {shown}")
        if self.min is not None and value < self.min:
            raise InvalidRecord(f"{self.name}: {value!r} is below the minimum {self.min!r}")
        if self.max is not None and value > self.max:
            raise InvalidRecord(f"{self.name}: {value!r} is above the maximum {self.max!r}")
        if self.min_length is not None and len(value) < self.min_length:
            raise InvalidRecord(f"{self.name}: shorter than {self.min_length} characters")
        if self.max_length is not None and len(value) > self.max_length:
            raise InvalidRecord(f"{self.name}: longer than {self.max_length} characters")
        return value

    @cached_property
    def _allowed(self) -> frozenset[tuple[type, Any]]:
        # Typed, so that True never matches an allowed 1 (Python's bool is an int).
        return frozenset(typed(v) for v in self.values or ())

    def validate(self, source: str) -> None:
        where = f"source {source}, field {self.name!r}"
        if not _IDENTIFIER.fullmatch(self.name):
            raise SourceError(f"{where}: use lowercase letters, digits and '_', from a letter")
        if self.name in LAKE_COLUMNS:
            raise SourceError(f"{where}: the name is reserved for the lake ({LAKE_COLUMNS})")
        if self.type not in FIELD_TYPES:
            raise SourceError(
                f"{where}: unknown type {self.type!r}; known: {', '.join(FIELD_TYPES)}"
            )
        kind = self.kind
        if self.values is not None:
            _check_allowed(kind, self.values, where)
        if (self.min is not None or self.max is not None) and not kind.ordered:
            raise SourceError(f"{where}: min/max need an integer, float or timestamp")
        for bound in (self.min, self.max):
            if bound is not None and (
                not isinstance(bound, (int, float)) or isinstance(bound, bool)
            ):
                raise SourceError(f"{where}: min/max must be numbers, got {bound!r}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise SourceError(f"{where}: min {self.min!r} is above max {self.max!r}")
        lengths = (self.min_length, self.max_length)
        if None not in lengths and lengths[0] > lengths[1]:  # type: ignore[operator]
            raise SourceError(f"{where}: min_length is above max_length")
        for length in (self.min_length, self.max_length):
            if length is not None and (kind.python is not str or length < 0):
                raise SourceError(f"{where}: min/max_length need a string field and a length >= 0")


@dataclass(frozen=True)
class RequiredWhen:
    """A declared rule: ``field`` is required when the field ``when`` holds one of
    ``values``; with ``only``, it must also be absent (null) otherwise.

    It is a rule like any function (``rule(record) -> reason or None``), but declared, so
    the speed job checks it in the JVM as well (see ``lfp.speed.ParseRecord``)."""

    field: str
    when: str
    values: Sequence[Any]
    only: bool = False

    @cached_property
    def _allowed(self) -> frozenset[tuple[type, Any]]:
        return frozenset(typed(v) for v in self.values)

    def __call__(self, record: Mapping[str, Any]) -> str | None:
        when = record[self.when]
        if when is not None and typed(when) in self._allowed:
            if record[self.field] is None:
                return f"{self.field} is required when {self.when} is {when!r}"
        elif self.only and record[self.field] is not None:
            return f"{self.field} must be absent when {self.when} is {when!r}"
        return None

    def validate(self, source: EventSource) -> None:
        where = f"source {source.name}, rule {self!r}"
        for name in (self.field, self.when):
            if name not in source.by_name:
                raise SourceError(f"{where}: no field {name!r}")
        _check_allowed(source.by_name[self.when].kind, self.values, f"{where}, {self.when!r}")


@dataclass(frozen=True)
class EventSource:
    """Where one kind of event comes from, and what it looks like.

    ``topic`` (Kafka) and ``table`` (the lake) default to the source's name; rejected
    records go to ``{topic}.dlq``. ``event_time`` names a timestamp field (it is required).
    """

    name: str
    fields: Sequence[Field]
    event_time: str = "event_time"
    topic: str | None = None
    table: str | None = None
    rules: Sequence[Rule] = ()
    description: str = ""

    @property
    def topic_name(self) -> str:
        return self.topic or self.name

    @property
    def table_name(self) -> str:
        return self.table or self.name

    @property
    def dlq_topic(self) -> str:
        return f"{self.topic_name}.dlq"

    @cached_property
    def by_name(self) -> dict[str, Field]:
        return {f.name: f for f in self.fields}

    def validate(self) -> None:
        if not _IDENTIFIER.fullmatch(self.name):
            raise SourceError(
                f"source name {self.name!r}: use lowercase letters, digits and '_', from a letter"
            )
        if not _IDENTIFIER.fullmatch(self.table_name):
            raise SourceError(
                f"source {self.name}: table {self.table_name!r}: use lowercase letters, "
                "digits and '_'"
            )
        if not _TOPIC.fullmatch(self.topic_name):
            raise SourceError(
                f"source {self.name}: topic {self.topic_name!r}: use letters, digits, '.', "
                "'_' and '-'"
            )
        if not self.fields:
            raise SourceError(f"source {self.name}: declare at least one field")
        names = [f.name for f in self.fields]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise SourceError(f"source {self.name}: fields declared twice: {twice}")
        for f in self.fields:
            f.validate(self.name)
        for rule in self.rules:
            if isinstance(rule, RequiredWhen):
                rule.validate(self)
        time_field = self.by_name.get(self.event_time)
        if time_field is None or time_field.type != "timestamp" or not time_field.required:
            raise SourceError(
                f"source {self.name}: event_time {self.event_time!r} must name a required "
                "timestamp field, e.g. Field('event_time', 'timestamp', required=True)"
            )

    @property
    def declared_rules(self) -> bool:
        """Whether every rule is declared (:class:`RequiredWhen`), not a function: then
        engines other than Python can check the whole source."""
        return all(isinstance(rule, RequiredWhen) for rule in self.rules)

    # --- the validator --------------------------------------------------------------

    def check(self, data: Any, now_ms: int | None = None) -> Record:
        """A decoded JSON value -> the canonical record, or :class:`InvalidRecord`."""
        if not isinstance(data, dict):
            raise InvalidRecord("not a JSON object")
        record: Record = {}
        problems = []
        for f in self.fields:
            value = data.get(f.name)
            if value is None:
                if f.required:
                    problems.append(f"{f.name}: required")
                record[f.name] = None
                continue
            try:
                record[f.name] = f.check(value)
            except InvalidRecord as error:
                problems.append(str(error))
        if problems:
            raise InvalidRecord("; ".join(problems))
        event_time = record[self.event_time]
        if now_ms is not None and event_time > now_ms + MAX_FUTURE_SKEW_MS:
            raise InvalidRecord(f"{self.event_time} is more than 5 minutes in the future")
        for rule in self.rules:
            try:
                reason = rule(record)
            except Exception as error:  # a user's rule: its failure rejects, never crashes
                name = getattr(rule, "__name__", repr(rule))
                raise InvalidRecord(
                    f"rule {name} failed: {type(error).__name__}: {error}"
                ) from None
            if reason:
                raise InvalidRecord(reason)
        return record

    def parse(self, raw: bytes | str | None, now_ms: int | None = None) -> Record:
        """Validate one raw Kafka value (JSON); :class:`InvalidRecord` says why not."""
        if raw is None:
            raise InvalidRecord("empty record (null value)")
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise InvalidRecord("not valid JSON") from None
        return self.check(data, now_ms)

    # --- compiled schemas ------------------------------------------------------------

    @cached_property
    def columns(self) -> tuple[str, ...]:
        """The declared fields' names, in declaration order."""
        return tuple(f.name for f in self.fields)

    @cached_property
    def lake_schema(self) -> pa.Schema:
        """Arrow schema of the source's Delta table (``event_date`` is the partition)."""
        return pa.schema(
            [pa.field(f.name, f.kind.arrow, nullable=not f.required) for f in self.fields]
            + [
                pa.field(EVENT_DATE, pa.string(), nullable=False),
                pa.field(KAFKA_PARTITION, pa.int32(), nullable=False),
                pa.field(KAFKA_OFFSET, pa.int64(), nullable=False),
            ]
        )

    def spark_ddl(self) -> str:
        """Spark schema (DDL) of the table's data files (``event_date`` is in the paths)."""
        columns = [f"{quoted(f.name)} {f.kind.sql}" for f in self.fields]
        columns += [f"{KAFKA_PARTITION} INT", f"{KAFKA_OFFSET} BIGINT"]
        return ", ".join(columns)

    def flink_columns(self) -> tuple[tuple[str, str], ...]:
        """(name, Flink SQL type) of each field, in declaration order."""
        return tuple((f.name, f.kind.sql) for f in self.fields)


def event_date(event_time_ms: int) -> str:
    """The lake partition of an event time."""
    return datetime.fromtimestamp(event_time_ms / 1000, tz=UTC).strftime("%Y-%m-%d")


def records_to_arrow(source: EventSource, rows: Sequence[tuple[Record, int, int]]) -> pa.Table:
    """(record, kafka partition, kafka offset) rows -> the source's lake schema."""
    columns: dict[str, list[Any]] = {name: [r[name] for r, _, _ in rows] for name in source.columns}
    columns[EVENT_DATE] = [event_date(r[source.event_time]) for r, _, _ in rows]
    columns[KAFKA_PARTITION] = [p for _, p, _ in rows]
    columns[KAFKA_OFFSET] = [o for _, _, o in rows]
    return pa.Table.from_pydict(columns, schema=source.lake_schema)
