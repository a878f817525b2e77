"""The declarative feature API: entities, sources, feature groups, features.

A feature is declared once, here, and compiled by each layer: to Spark (batch tiles),
to Flink SQL (speed tiles), to the serving merge, and to the reference evaluator.

Example::

    user = Entity("user", join_key="user_id")
    events = EventSource("events", topic="events", table="raw_events")
    user_activity = FeatureGroup(
        "user_activity", entity=user, source=events,
        aggregations=[Aggregation("count", windows=["1h", "lifetime"], name="event_count")],
    )
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from types import ModuleType
from typing import Any

from feature_core.aggregations import (
    AGGREGATION_NAMES,
    AggregationKind,
    Primitive,
    aggregation_kind,
)
from feature_core.events import EVENT_COLUMNS
from feature_core.windows import Window

_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_")


class DefinitionError(ValueError):
    """A feature definition is invalid; the message names the object and the problem."""


def _check_name(kind: str, name: str) -> None:
    if not name or not set(name) <= _NAME_CHARS or name[0].isdigit():
        raise DefinitionError(f"{kind} name {name!r}: use lowercase letters, digits and '_'")


@dataclass(frozen=True)
class Entity:
    """What features describe; ``join_key`` is the event column identifying it."""

    name: str
    join_key: str
    description: str = ""


@dataclass(frozen=True)
class EventSource:
    """Where events come from: a Kafka topic online, a Delta table in the lake offline."""

    name: str
    topic: str = "events"
    table: str = "raw_events"
    event_time_column: str = "event_time"


@dataclass(frozen=True)
class Filter:
    """Keep events whose ``column`` equals one of ``values`` (compiled to SQL and Python)."""

    column: str
    values: tuple[str, ...]

    @classmethod
    def of(cls, spec: Mapping[str, str | Sequence[str]] | None) -> tuple[Filter, ...]:
        if not spec:
            return ()
        return tuple(
            cls(column, (value,) if isinstance(value, str) else tuple(value))
            for column, value in sorted(spec.items())
        )

    def matches(self, event: Mapping[str, Any]) -> bool:
        return event.get(self.column) in self.values

    def sql(self) -> str:
        quoted = ", ".join("'" + v.replace("'", "''") + "'" for v in self.values)
        return f"{self.column} IN ({quoted})"


@dataclass(frozen=True)
class Aggregation:
    """One aggregation of one column over one or more windows.

    Produces one feature per window, named ``{name}_{window}`` (``name`` defaults to
    ``{column}_{function}``, or ``count`` for a row count). ``k`` is the list length of
    ``last_k``; ``precision`` the HyperLogLog precision of ``approx_count_distinct``.
    """

    function: str
    column: str | None = None
    windows: Sequence[str] = ("lifetime",)
    name: str | None = None
    k: int | None = None
    precision: int | None = None

    @property
    def kind(self) -> AggregationKind:
        try:
            return aggregation_kind(self.function, self.k or self.precision)
        except KeyError:
            known = ", ".join(AGGREGATION_NAMES)
            raise DefinitionError(
                f"unknown aggregation {self.function!r}; known: {known}"
            ) from None
        except ValueError as error:
            raise DefinitionError(f"{self.base_name}: {error}") from None

    @property
    def base_name(self) -> str:
        if self.name:
            return self.name
        return self.function if self.column is None else f"{self.column}_{self.function}"


@dataclass(frozen=True)
class TileColumn:
    """One primitive partial over one column: a column of every tile and batch IR."""

    primitive: Primitive
    column: str | None

    @property
    def key(self) -> str:
        return f"{self.primitive.key}({self.column or '*'})"

    def sql(self) -> str:
        return self.primitive.sql(self.column)


@dataclass(frozen=True)
class Feature:
    """A single served value: an aggregation of a column over a window."""

    group: str
    name: str
    aggregation: AggregationKind
    column: str | None
    window: Window
    tile_indices: tuple[int, ...]  # positions of this feature's primitives in the tiles

    @property
    def qualified_name(self) -> str:
        return f"{self.group}:{self.name}"


@dataclass(frozen=True)
class FeatureGroup:
    """Aggregations of one source's events per entity, optionally filtered."""

    name: str
    entity: Entity
    source: EventSource
    aggregations: Sequence[Aggregation]
    filter: Mapping[str, str | Sequence[str]] | None = None
    description: str = ""
    filters: tuple[Filter, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "filters", Filter.of(self.filter))

    @cached_property
    def tile_columns(self) -> tuple[TileColumn, ...]:
        columns: dict[TileColumn, None] = {}
        for agg in self.aggregations:
            column = agg.column if agg.kind.needs_column else None
            for primitive in agg.kind.primitives:
                columns.setdefault(TileColumn(primitive, column))
        return tuple(columns)

    @cached_property
    def primitives(self) -> tuple[Primitive, ...]:
        return tuple(c.primitive for c in self.tile_columns)

    @cached_property
    def features(self) -> tuple[Feature, ...]:
        index = {column: i for i, column in enumerate(self.tile_columns)}
        features = []
        for agg in self.aggregations:
            column = agg.column if agg.kind.needs_column else None
            indices = tuple(index[TileColumn(p, column)] for p in agg.kind.primitives)
            for window_text in agg.windows:
                window = Window.parse(window_text)
                features.append(
                    Feature(
                        self.name,
                        f"{agg.base_name}_{window.name}",
                        agg.kind,
                        column,
                        window,
                        indices,
                    )
                )
        return tuple(features)

    @cached_property
    def windows(self) -> tuple[Window, ...]:
        return tuple(sorted({f.window for f in self.features}, key=lambda w: w.length_ms or 0))

    @cached_property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @cached_property
    def window_features(self) -> dict[Window, tuple[Feature, ...]]:
        return {w: tuple(f for f in self.features if f.window == w) for w in self.windows}

    @cached_property
    def window_tile_indices(self) -> dict[Window, tuple[int, ...]]:
        """The tile columns each window's features read (a window merges only those)."""
        used: dict[Window, set[int]] = {w: set() for w in self.windows}
        for feature in self.features:
            used[feature.window].update(feature.tile_indices)
        return {w: tuple(sorted(indices)) for w, indices in used.items()}

    @cached_property
    def batch_columns(self) -> dict[str, frozenset[int]]:
        """Per window name, the tile columns a batch view stores (see :func:`batch_partials`)."""
        return {w.name: frozenset(i) for w, i in self.window_tile_indices.items()}

    def accepts(self, event: Mapping[str, Any]) -> bool:
        return all(f.matches(event) for f in self.filters)

    def filter_sql(self) -> str:
        return " AND ".join(f.sql() for f in self.filters) or "TRUE"

    def validate(self) -> None:
        _check_name("feature group", self.name)
        _check_name("entity", self.entity.name)
        if self.entity.join_key not in EVENT_COLUMNS:
            raise DefinitionError(
                f"{self.name}: entity join key {self.entity.join_key!r} is not an event column"
            )
        for flt in self.filters:
            if flt.column not in EVENT_COLUMNS:
                raise DefinitionError(f"{self.name}: filter on unknown column {flt.column!r}")
        if not self.aggregations:
            raise DefinitionError(f"{self.name}: a feature group needs at least one aggregation")
        for agg in self.aggregations:
            kind = agg.kind
            if kind.needs_column:
                if agg.column is None:
                    raise DefinitionError(f"{self.name}: {agg.function} needs a column")
                if agg.column not in EVENT_COLUMNS:
                    raise DefinitionError(f"{self.name}: unknown column {agg.column!r}")
                allowed = kind.column_types
                if allowed is not None and EVENT_COLUMNS[agg.column] not in allowed:
                    wanted = "numeric" if float in allowed else "string"
                    raise DefinitionError(
                        f"{self.name}: {agg.function} needs a {wanted} column, "
                        f"{agg.column!r} is not"
                    )
            if not agg.windows:
                raise DefinitionError(f"{self.name}: {agg.base_name} has no windows")
            for window in agg.windows:
                try:
                    Window.parse(window)
                except ValueError as error:
                    raise DefinitionError(f"{self.name}.{agg.base_name}: {error}") from None
            _check_name("feature", agg.base_name)
        names = [f.name for f in self.features]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise DefinitionError(f"{self.name}: duplicate feature names {duplicates}")


def batch_partials(partials: Sequence[Any], columns: frozenset[int]) -> list[Any]:
    """A batch bucket's partials as batch views store them: only the tile columns its
    window's features read, null elsewhere (smaller views, less for readers to parse)."""
    return [p if i in columns else None for i, p in enumerate(partials)]


@dataclass(frozen=True)
class FeatureService:
    """An ordered model input vector: ``"group:feature"`` references, with defaults.

    A default replaces a value that is missing (``None``: e.g. the mean of no events);
    counts and sums already have natural zeros.
    """

    name: str
    features: Sequence[str]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    def references(self) -> list[tuple[str, str]]:
        refs = []
        for ref in self.features:
            group, sep, feature = ref.partition(":")
            if not sep or not group or not feature:
                raise DefinitionError(
                    f"feature service {self.name}: {ref!r} is not 'group:feature'"
                )
            refs.append((group, feature))
        return refs


@dataclass(frozen=True)
class FeatureRepo:
    """All definitions of one project, validated together."""

    groups: tuple[FeatureGroup, ...]
    services: tuple[FeatureService, ...] = ()

    def __post_init__(self) -> None:
        names = [g.name for g in self.groups]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise DefinitionError(f"duplicate feature group names {duplicates}")
        for group in self.groups:
            group.validate()
        service_names = [s.name for s in self.services]
        if len(set(service_names)) != len(service_names):
            raise DefinitionError(f"duplicate feature service names in {service_names}")
        for service in self.services:
            self._validate_service(service)

    def _validate_service(self, service: FeatureService) -> None:
        _check_name("feature service", service.name)
        refs = service.references()
        if not refs:
            raise DefinitionError(f"feature service {service.name}: no features")
        if len(set(refs)) != len(refs):
            raise DefinitionError(f"feature service {service.name}: a feature is listed twice")
        keys = set()
        groups = {g.name: g for g in self.groups}
        for group_name, feature_name in refs:
            if group_name not in groups:
                raise DefinitionError(
                    f"feature service {service.name}: unknown feature group {group_name!r}"
                )
            group = groups[group_name]
            if feature_name not in {f.name for f in group.features}:
                raise DefinitionError(
                    f"feature service {service.name}: {group_name} has no feature {feature_name!r}"
                )
            keys.add(group.entity.join_key)
        if len(keys) != 1:
            raise DefinitionError(
                f"feature service {service.name}: features of different entities {sorted(keys)}"
            )
        unknown = set(service.defaults) - set(service.features)
        if unknown:
            raise DefinitionError(
                f"feature service {service.name}: defaults for unlisted features {sorted(unknown)}"
            )

    def service(self, name: str) -> FeatureService:
        for service in self.services:
            if service.name == name:
                return service
        known = ", ".join(s.name for s in self.services) or "none"
        raise KeyError(f"unknown feature service {name!r}; known: {known}")

    def service_version(self, name: str) -> str:
        """Fingerprint of what a service's vector means: 12 hex digits.

        It changes when a referenced feature's computation (aggregation, column, window,
        group filter, entity) or the service's order or defaults change, and only then. A
        model saved with it can refuse vectors whose meaning moved under it.
        """
        service = self.service(name)
        parts = []
        for group_name, feature_name in service.references():
            group = self.group(group_name)
            feature = next(f for f in group.features if f.name == feature_name)
            parts.append(
                [
                    feature.qualified_name,
                    group.entity.join_key,
                    [[f.column, list(f.values)] for f in group.filters],
                    [group.tile_columns[i].key for i in feature.tile_indices],
                    feature.aggregation.name,
                    feature.window.name,
                    repr(service.defaults.get(feature.qualified_name)),
                ]
            )
        digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
        return digest[:12]

    def group(self, name: str) -> FeatureGroup:
        for group in self.groups:
            if group.name == name:
                return group
        known = ", ".join(g.name for g in self.groups)
        raise KeyError(f"unknown feature group {name!r}; known: {known}")

    @classmethod
    def from_objects(cls, objects: Iterable[Any]) -> FeatureRepo:
        objects = list(objects)
        return cls(
            tuple(o for o in objects if isinstance(o, FeatureGroup)),
            tuple(o for o in objects if isinstance(o, FeatureService)),
        )

    @classmethod
    def from_module(cls, module: str | ModuleType) -> FeatureRepo:
        """Load every :class:`FeatureGroup` defined at module level."""
        if isinstance(module, str):
            try:
                module = importlib.import_module(module)
            except ModuleNotFoundError as error:
                raise DefinitionError(
                    f"feature repo module {module!r} not found ({error}); "
                    "set LFP_FEATURE_REPO to an importable module"
                ) from None
        repo = cls.from_objects(vars(module).values())
        if not repo.groups:
            raise DefinitionError(f"{module.__name__} defines no FeatureGroup")
        return repo
