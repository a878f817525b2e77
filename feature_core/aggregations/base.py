"""The two levels of the aggregation algebra, and what every engine asks of them.

A *primitive* (:class:`Primitive`) is a partial aggregate: a commutative monoid (identity,
lift, merge) whose partials travel as JSON in tiles and batch views. Each primitive class
also carries its engine forms: its windowed form for the training sweep
(:meth:`Primitive.windowed`), its raw Spark aggregate and how the batch job finishes it
(:meth:`Primitive.spark_sql`, :meth:`Primitive.from_spark`), and its Flink form, native SQL
or the JVM aggregate that is its twin (:meth:`Primitive.flink_form`,
:meth:`Primitive.from_flink`).

An *aggregation kind* (:class:`AggregationKind`) is what a user declares
(``Aggregation("mean", column="value")``): the primitives its partial is made of, how it
finalizes them into the served value at query time, its result type, the columns it
accepts, and a plain reference evaluation written without the algebra, which tests hold
every engine to.

Engines never dispatch on a kind's name: they look kinds and primitives up in
:data:`KINDS` and :data:`PRIMITIVES` and call these methods. A new kind is a new module in
this package (and its JVM twin where Flink needs one).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar, TypeVar

import numpy as np
import orjson

Partial = Any
IR = tuple[Partial, ...]

P = TypeVar("P", bound="type[Primitive]")
K = TypeVar("K", bound="type[AggregationKind]")

#: Registered primitive classes, by kind; filled by :func:`primitive`.
PRIMITIVES: dict[str, type[Primitive]] = {}
#: Registered aggregation kinds, by the name users declare; filled by :func:`kind`.
KINDS: dict[str, type[AggregationKind]] = {}


def primitive(cls: P) -> P:
    """Class decorator: register a primitive under its ``kind``."""
    PRIMITIVES[cls.kind_name] = cls
    return cls


def kind(cls: K) -> K:
    """Class decorator: register an aggregation kind under its ``name``."""
    KINDS[cls.name] = cls
    return cls


# --- the training sweep's inputs -------------------------------------------------------


@dataclass(frozen=True)
class Ranges:
    """Each query's events as an index range of the time-sorted events, queries sorted
    (so both ends only move forward)."""

    lo: np.ndarray
    hi: np.ndarray


@dataclass(frozen=True)
class ColumnEvents:
    """One column of the entity's events, sorted by (time, value): ``values[i]`` is
    ``None`` where the column is null (skipped by every primitive)."""

    times: np.ndarray
    values: list[Any]
    present: np.ndarray  # bool: the value is not null


# --- engine forms ----------------------------------------------------------------------


@dataclass(frozen=True)
class SparkColumns:
    """What a raw Spark aggregate may refer to: SQL of the value (``None``: ``*``), of the
    event time, and of the batch bucket's end (every event of the bucket is before it)."""

    value: str | None
    time: str
    bucket_end: str


@dataclass(frozen=True)
class FlinkColumns:
    """What a Flink tile aggregate may refer to: SQL of the value (``None``: ``*``), its
    field's Flink SQL type and Python type, whether it is the event time itself, the
    event time's SQL, and the tile's end (every event of the tile is before it)."""

    value: str | None
    sql_type: str | None
    python_type: type | None
    is_event_time: bool
    time: str
    tile_end: str


@dataclass(frozen=True)
class FlinkForm:
    """One tile column in the speed job: its Flink SQL, and how the JVM tile sink
    (``lfp.speed.TileSink``) turns the emitted value into the partial's JSON: ``native``
    (the value as it is), ``last_time``, ``last``, ``last_k`` and ``hll`` (the older JVM
    aggregates' shapes) or ``json`` (the aggregate emits the partial's JSON text)."""

    sql: str
    sink_kind: str
    param: int = 0


# --- primitives ------------------------------------------------------------------------


@dataclass(frozen=True)
class Primitive(ABC):
    """A partial aggregate: ``kind`` plus one parameter (k, a precision, a half-life...).

    ``Primitive("last_k", 3)`` builds the registered class of that kind.
    """

    kind: str
    param: Any = None

    kind_name: ClassVar[str]
    #: Computed by Spark SQL and Flink SQL directly (no finishing step).
    native: ClassVar[bool] = False
    #: Java classes of the speed job's JVM twins, by the SQL function name they get.
    jvm_functions: ClassVar[Mapping[str, str]] = {}

    COUNT: ClassVar[Primitive]
    SUM: ClassVar[Primitive]
    MIN: ClassVar[Primitive]
    MAX: ClassVar[Primitive]
    LAST: ClassVar[Primitive]

    def __new__(cls, kind: str, param: Any = None) -> Primitive:
        if cls is Primitive:
            try:
                cls = PRIMITIVES[kind]
            except KeyError:
                raise ValueError(f"unknown primitive {kind!r}") from None
        return super().__new__(cls)

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from (kind, param) when unpickled (Spark ships primitives to its Python
        # workers): the default pickling calls __new__ without them.
        return (Primitive, (self.kind, self.param))

    @property
    def key(self) -> str:
        """Unique per kind and parameter: names the tile column in fingerprints."""
        return self.kind if self.param is None else f"{self.kind}{self.param}"

    # The algebra.

    @property
    def identity(self) -> Partial:
        return None

    @abstractmethod
    def lift(self, value: Any, event_time: int) -> Partial:
        """The partial of one event's value (``None``: the column was null)."""

    def merge(self, left: Partial, right: Partial) -> Partial:
        """Null partials are the identity; :meth:`combine` merges two present ones."""
        if left is None:
            return right
        if right is None:
            return left
        return self.combine(left, right)

    def combine(self, left: Partial, right: Partial) -> Partial:  # pragma: no cover
        raise NotImplementedError(f"{type(self).__name__} overrides merge")

    @cached_property
    def merge_many(self) -> Callable[[Sequence[Partial]], Partial]:
        """All partials merged in one pass (the serving merge calls it for every window
        of every entity); equal to folding :meth:`merge`."""

        def fold(partials: Sequence[Partial]) -> Partial:
            result = self.identity
            for partial in partials:
                result = self.merge(result, partial)
            return result

        return fold

    def from_pairs(self, pairs: Iterable[tuple[int, Any]]) -> Partial:
        """The partial of many ``(event_time, value)`` pairs."""
        partial = self.identity
        for event_time, value in pairs:
            partial = self.merge(partial, self.lift(value, int(event_time)))
        return partial

    def normalize(self, partial: Partial) -> Partial:
        """A partial read back from JSON or an engine, in canonical Python types."""
        return partial

    # The training sweep.

    def windowed(self, column: ColumnEvents, ranges: Ranges) -> list[Partial]:
        """The partial of every range at once. Both ends of the ranges only move forward,
        so a two-stack queue merges each event O(1) times amortized: linear for any
        primitive. Primitives with a cheaper exact form override this."""
        values, times = column.values, column.times
        back: Partial = self.identity  # merge of the events pushed since the last flip
        back_start = 0
        front: list[Partial] = []  # front[j]: merge of events [front_start + j, back_start)
        front_start = 0
        pushed = 0
        result: list[Partial] = []
        for lo, hi in zip(ranges.lo.tolist(), ranges.hi.tolist(), strict=True):
            while pushed < hi:
                value = values[pushed]
                if value is not None:
                    back = self.merge(back, self.lift(value, int(times[pushed])))
                pushed += 1
            if lo >= back_start:  # the front is spent: flip the back's events into it
                front_start = max(lo, back_start)
                suffix: list[Partial] = []
                acc = self.identity
                for i in range(pushed - 1, front_start - 1, -1):
                    value = values[i]
                    if value is not None:
                        acc = self.merge(self.lift(value, int(times[i])), acc)
                    suffix.append(acc)
                front = suffix[::-1]
                back, back_start = self.identity, pushed
            head = front[lo - front_start] if lo - front_start < len(front) else self.identity
            result.append(self.merge(head, back) if lo < hi else self.identity)
        return result

    # Spark.

    @abstractmethod
    def spark_sql(self, columns: SparkColumns) -> str:
        """Spark SQL of the raw aggregate over one batch bucket's events."""

    def from_spark(self, raw: Any) -> Partial:
        """Spark's raw aggregate -> the partial."""
        return self.normalize(raw)

    # Flink.

    @abstractmethod
    def flink_form(self, columns: FlinkColumns) -> FlinkForm:
        """Flink SQL of the raw aggregate over one speed tile's events."""

    def from_flink(self, raw: Any) -> Partial:
        """Flink's emitted value -> the partial (the Python twin of the JVM sink)."""
        if self.native:
            return raw  # as the sink writes it
        if isinstance(raw, (str, bytes)) and self.flink_emits_json:
            return self.normalize(orjson.loads(raw))
        return self.normalize(raw)

    #: The JVM aggregate emits the partial's JSON text (sink kind ``json``).
    flink_emits_json: ClassVar[bool] = False


def merging_present(
    reduce: Callable[[list[Partial]], Partial],
) -> Callable[[Sequence[Partial]], Partial]:
    """``merge_many`` of a primitive whose null partial is the identity: ``reduce`` of the
    present partials in one pass, null when none is."""

    def merge_present(partials: Sequence[Partial]) -> Partial:
        present = [p for p in partials if p is not None]
        return reduce(present) if present else None

    return merge_present


def json_form(sql: str) -> FlinkForm:
    """A JVM twin that emits its partial's JSON text."""
    return FlinkForm(sql, "json")


# --- aggregation kinds -----------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    """An aggregation's parameters as declared (see ``definitions.Aggregation``)."""

    k: int | None = None
    precision: int | None = None
    population: bool = False
    percentiles: tuple[float, ...] | None = None
    half_life_ms: int | None = None
    max_keys: int | None = None
    #: The aggregated field's allowed values, when it declares them (count_by's keys).
    values: tuple[Any, ...] | None = None


@dataclass(frozen=True)
class Result:
    """The served value's type: ``scalar`` is ``integer``, ``float`` or ``column`` (the
    aggregated field's own type), ``shape`` is ``scalar``, ``list`` or ``map`` (text keys)."""

    scalar: str
    shape: str = "scalar"


NUMERIC = ("integer", "float", "timestamp")


@dataclass(frozen=True)
class AggregationKind(ABC):
    """A user-facing aggregation: its primitives, finalize, result type and reference."""

    options: Options = Options()

    name: ClassVar[str]
    needs_column: ClassVar[bool] = True
    #: Field types it accepts (``None``: any).
    column_types: ClassVar[tuple[str, ...] | None] = None
    #: Served values at query time depend on the query time itself (not only the events
    #: before it): decayed aggregations.
    time_dependent: ClassVar[bool] = False

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:  # noqa: B027 - most kinds take no options
        """Raise ``ValueError`` naming what is wrong with the options."""

    @property
    @abstractmethod
    def primitives(self) -> tuple[Primitive, ...]:
        """The primitives whose partials form this kind's IR, in order."""

    @property
    @abstractmethod
    def result(self) -> Result: ...

    @property
    def outputs(self) -> tuple[str, ...]:
        """Name suffixes of the values it serves per window: one value, ``("",)``, or
        several (one per percentile)."""
        return ("",)

    @abstractmethod
    def finalize_output(self, ir: IR, t: int, output: int) -> Any:
        """Served value number ``output`` of an IR at query time ``t``."""

    def finalize(self, ir: IR, t: int = 0) -> Any:
        """The served value of an IR at query time ``t`` (a one-output kind)."""
        return self.finalize_output(ir, t, 0)

    @abstractmethod
    def reference(self, events: Sequence[tuple[int, Any]], t: int, output: int) -> Any:
        """The value over ``events`` (``(time, value)``, value never null, any order) at
        query time ``t``, computed plainly without the algebra: the tests' truth."""


def identity(primitives: Sequence[Primitive]) -> IR:
    return tuple(p.identity for p in primitives)


def merge(primitives: Sequence[Primitive], left: IR, right: IR) -> IR:
    return tuple(p.merge(a, b) for p, a, b in zip(primitives, left, right, strict=True))


def merge_all(primitives: Sequence[Primitive], irs: Iterable[IR]) -> IR:
    result = identity(primitives)
    for ir in irs:
        result = merge(primitives, result, ir)
    return result


def lift(primitives: Sequence[Primitive], value: Any, event_time: int) -> IR:
    return tuple(p.lift(value, event_time) for p in primitives)


def normalize(primitives: Sequence[Primitive], ir: Sequence[Any] | None) -> IR:
    """An IR read back from JSON or an engine: canonical types, identity for absent."""
    if ir is None:
        return identity(primitives)
    return tuple(p.normalize(v) for p, v in zip(primitives, ir, strict=True))
