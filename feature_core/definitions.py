"""The declarative feature API: entities, feature groups, features, feature services.

A feature is declared once, here, and compiled by each layer: to Spark (batch tiles),
to Flink SQL (speed tiles), to the serving merge, and to the reference evaluator. The
events it reads come from a declared :class:`~feature_core.sources.EventSource`.

Example::

    card = Entity("card", join_key="card_id")
    card_merchant = Entity("card_merchant", join_keys=["card_id", "merchant_id"])
    spend = FeatureGroup(
        "card_spend", entity=card, source=transactions,
        aggregations=[Aggregation("sum", column="value", windows=["1h", "30d"])],
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
    IR,
    KINDS,
    NUMERIC,
    AggregationKind,
    Options,
    Primitive,
    Result,
    aggregation_kind,
)
from feature_core.derived import (
    DerivedFeature,
    DerivedFeatures,
    FeatureInput,
    RequestField,
    resolve,
)
from feature_core.sources import EventSource, FieldType, SourceError, quoted, typed
from feature_core.windows import Window, parse_duration

_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_")
#: Field types a join key may have (its values are served as text).
JOIN_KEY_TYPES = ("string", "integer")


class DefinitionError(ValueError):
    """A feature definition is invalid; the message names the object and the problem."""


def _check_name(kind: str, name: str) -> None:
    if not name or not set(name) <= _NAME_CHARS or name[0].isdigit():
        raise DefinitionError(f"{kind} name {name!r}: use lowercase letters, digits and '_'")


@dataclass(frozen=True, init=False)
class Entity:
    """What features describe, identified by one or more join keys (source fields).

    ``Entity("card", join_key="card_id")`` or, for a composite key,
    ``Entity("card_merchant", join_keys=["card_id", "merchant_id"])``.
    """

    name: str
    join_keys: tuple[str, ...]
    description: str

    def __init__(
        self,
        name: str,
        join_key: str | None = None,
        *,
        join_keys: Sequence[str] | None = None,
        description: str = "",
    ) -> None:
        if (join_key is None) == (join_keys is None):
            raise DefinitionError(f"entity {name}: give either join_key or join_keys")
        keys = (join_key,) if join_key is not None else tuple(join_keys or ())
        if not keys or len(set(keys)) != len(keys):
            raise DefinitionError(f"entity {name}: join keys must be distinct and not empty")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "join_keys", keys)
        object.__setattr__(self, "description", description)

    @property
    def join_key(self) -> str:
        """The join key of a one-key entity (a composite entity has none)."""
        if len(self.join_keys) != 1:
            raise DefinitionError(
                f"entity {self.name} has several join keys {list(self.join_keys)}"
            )
        return self.join_keys[0]

    @property
    def key_label(self) -> str:
        """The join keys as one label, for messages and schemas."""
        return ", ".join(self.join_keys)


def _canonical(check: Any, value: Any) -> Any:
    try:
        return check(value)
    except ValueError:
        return value


@dataclass(frozen=True)
class Filter:
    """Keep events whose ``column`` equals one of ``values`` (compiled to SQL and Python)."""

    column: str
    values: tuple[Any, ...]

    @classmethod
    def of(cls, spec: Mapping[str, Any] | None, source: EventSource) -> tuple[Filter, ...]:
        """Filters from ``{column: value or values}``, each value in its field's canonical
        form (``0`` on a float field is ``0.0``, ISO text on a timestamp is epoch ms), so
        Python and SQL compare the same values; values a field rejects are kept as given
        for ``FeatureGroup.validate`` to report."""
        if not spec:
            return ()
        filters = []
        for column, value in sorted(spec.items()):
            if isinstance(value, (set, frozenset)):
                # Sorted: a set's iteration order would change the generated SQL (and the
                # speed job's checkpoint fingerprint) from one process to the next.
                values = sorted(value, key=lambda v: (type(v).__name__, repr(v)))
            else:
                values = list(value) if isinstance(value, (list, tuple)) else [value]
            field = source.by_name.get(column)
            if field is not None:
                values = [_canonical(field.kind.check, v) for v in values]
            filters.append(cls(column, tuple(dict.fromkeys(values))))
        return tuple(filters)

    @cached_property
    def _allowed(self) -> frozenset[tuple[type, Any]]:
        # Typed: a filter on False never keeps an integer 0 (Python's bool is an int).
        return frozenset(typed(v) for v in self.values)

    def matches(self, event: Mapping[str, Any]) -> bool:
        value = event.get(self.column)
        return value is not None and typed(value) in self._allowed

    def sql(self, source: EventSource) -> str:
        kind = source.by_name[self.column].kind
        literals = ", ".join(kind.literal(v) for v in self.values)
        return f"{quoted(self.column)} IN ({literals})"


@dataclass(frozen=True)
class Aggregation:
    """One aggregation of one column over one or more windows.

    Produces one feature per window (per percentile too, for ``approx_percentile``), named
    ``{name}_{window}`` (``name`` defaults to ``{column}_{function}``, or the function for
    one without a column). The kinds and their options are listed in the README
    ("Aggregations"): ``k`` for ``last_k``, ``first_k``, ``top_k`` and ``bottom_k``;
    ``precision`` for ``approx_count_distinct``; ``population`` for ``variance`` and
    ``stddev``; ``percentiles`` (and ``precision``, the relative accuracy in thousandths)
    for ``approx_percentile``; ``half_life`` (a duration such as ``"1d"``) for the decayed
    kinds; ``max_keys`` for ``count_by`` on a field without declared values.
    """

    function: str
    column: str | None = None
    windows: Sequence[str] = ("lifetime",)
    name: str | None = None
    k: int | None = None
    precision: int | None = None
    population: bool = False
    percentiles: Sequence[float] | None = None
    half_life: str | None = None
    max_keys: int | None = None

    def options(self, source: EventSource | None = None) -> Options:
        """The kind's options; ``source`` gives the aggregated field's declared values."""
        field = source.by_name.get(self.column or "") if source is not None else None
        half_life = None
        if self.half_life is not None:
            try:
                half_life = parse_duration(self.half_life)
            except ValueError as error:
                raise DefinitionError(f"{self.base_name}: half_life: {error}") from None
        return Options(
            k=self.k,
            precision=self.precision,
            population=self.population,
            percentiles=None if self.percentiles is None else tuple(self.percentiles),
            half_life_ms=half_life,
            max_keys=self.max_keys,
            values=None if field is None or field.values is None else tuple(field.values),
        )

    def kind_for(self, source: EventSource | None = None) -> AggregationKind:
        """The declared kind with its options, or a :class:`DefinitionError` saying why not."""
        try:
            return aggregation_kind(self.function, self.options(source))
        except KeyError:
            known = ", ".join(KINDS)
            raise DefinitionError(
                f"unknown aggregation {self.function!r}; known: {known}"
            ) from None
        except ValueError as error:
            # A kind's message starts with the kind's name: name the feature when it
            # has its own.
            named = self.base_name != self.function
            raise DefinitionError(f"{self.base_name}: {error}" if named else str(error)) from None

    @property
    def kind(self) -> AggregationKind:
        return self.kind_for(None)

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


@dataclass(frozen=True)
class Feature:
    """A single served value: an aggregation of a column over a window."""

    group: str
    name: str
    aggregation: AggregationKind
    column: str | None
    window: Window
    tile_indices: tuple[int, ...]  # positions of this feature's primitives in the tiles
    output: int = 0  # which of the kind's values (one per percentile)

    @property
    def qualified_name(self) -> str:
        return f"{self.group}:{self.name}"

    def finalize(self, ir: IR, t: int) -> Any:
        """The served value of the feature's IR at query time ``t``."""
        return self.aggregation.finalize_output(ir, t, self.output)

    @property
    def result(self) -> Result:
        return self.aggregation.result

    def json_type(self, source: EventSource) -> str:
        """The served value's JSON type, as the API lists it."""
        name, shape = self.value_type(source)
        if shape != "scalar":
            return {"list": "array", "map": "object"}[shape]
        return {"integer": "integer", "timestamp": "integer", "float": "number"}.get(name, name)

    def value_type(self, source: EventSource) -> tuple[str, str]:
        """The served value's field type name (``FIELD_TYPES``), and its shape (scalar,
        list or map of them): what a typed export of the feature (Feast's dtypes)
        declares."""
        result = self.aggregation.result
        if result.scalar == "column":
            assert self.column is not None
            return source.by_name[self.column].kind.name, result.shape
        return result.scalar, result.shape


@dataclass(frozen=True)
class FeatureGroup:
    """Aggregations of one source's events per entity, optionally filtered."""

    name: str
    entity: Entity
    source: EventSource
    aggregations: Sequence[Aggregation]
    filter: Mapping[str, Any] | None = None
    description: str = ""
    filters: tuple[Filter, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "filters", Filter.of(self.filter, self.source))

    @cached_property
    def kinds(self) -> tuple[AggregationKind, ...]:
        """Each aggregation's kind, with its options (in ``aggregations`` order)."""
        return tuple(agg.kind_for(self.source) for agg in self.aggregations)

    @cached_property
    def tile_columns(self) -> tuple[TileColumn, ...]:
        columns: dict[TileColumn, None] = {}
        for agg, kind in zip(self.aggregations, self.kinds, strict=True):
            column = agg.column if kind.needs_column else None
            for primitive in kind.primitives:
                columns.setdefault(TileColumn(primitive, column))
        if any(Window.parse(w).is_session for agg in self.aggregations for w in agg.windows):
            # A session merges tiles by their first and last event times.
            columns.setdefault(TileColumn(Primitive.MIN, self.event_time))
            columns.setdefault(TileColumn(Primitive.MAX, self.event_time))
        return tuple(columns)

    @cached_property
    def session_time_indices(self) -> tuple[int, int] | None:
        """The tile columns of the first and last event time (groups with a session
        window), which a session's merge reads."""
        if not any(w.is_session for w in self.windows):
            return None
        return (
            self.tile_columns.index(TileColumn(Primitive.MIN, self.event_time)),
            self.tile_columns.index(TileColumn(Primitive.MAX, self.event_time)),
        )

    @cached_property
    def primitives(self) -> tuple[Primitive, ...]:
        return tuple(c.primitive for c in self.tile_columns)

    @cached_property
    def features(self) -> tuple[Feature, ...]:
        index = {column: i for i, column in enumerate(self.tile_columns)}
        features = []
        for agg, kind in zip(self.aggregations, self.kinds, strict=True):
            column = agg.column if kind.needs_column else None
            indices = tuple(index[TileColumn(p, column)] for p in kind.primitives)
            for window_text in agg.windows:
                window = Window.parse(window_text)
                for output, suffix in enumerate(kind.outputs):
                    features.append(
                        Feature(
                            self.name,
                            f"{agg.base_name}{suffix}_{window.name}",
                            kind,
                            column,
                            window,
                            indices,
                            output,
                        )
                    )
        return tuple(features)

    @cached_property
    def windows(self) -> tuple[Window, ...]:
        return tuple(
            sorted(
                {f.window for f in self.features},
                key=lambda w: (w.length_ms or 0, w.gap_ms or 0),
            )
        )

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
            if feature.window.is_session:
                used[feature.window].update(self.session_time_indices or ())
        return {w: tuple(sorted(indices)) for w, indices in used.items()}

    @cached_property
    def batch_columns(self) -> dict[str, frozenset[int]]:
        """Per window name, the tile columns a batch view stores (see :func:`batch_partials`)."""
        return {w.name: frozenset(i) for w, i in self.window_tile_indices.items()}

    @cached_property
    def view_fingerprint(self) -> str:
        """What a batch view of this group holds, as 12 hex digits: its source table and
        event time, entity, filters, tile columns and features. A view written under
        another fingerprint (the feature repo changed, or another repo shares the Redis
        prefix) must not be merged with this group's tiles."""
        parts = [
            self.name,
            self.source.name,
            self.event_time,
            list(self.join_keys),
            [[f.column, list(f.values)] for f in self.filters],
            [c.key for c in self.tile_columns],
            [
                [f.name, f.aggregation.name, f.window.name, list(f.tile_indices)]
                for f in self.features
            ],
        ]
        digest = hashlib.sha256(json.dumps(parts, default=repr).encode()).hexdigest()
        return digest[:12]

    def __getitem__(self, name: str) -> FeatureInput:
        """The feature ``name`` as an input of derived features (checked now)."""
        if name not in self.feature_names:
            raise DefinitionError(
                f"{self.name} has no feature {name!r}; known: {', '.join(self.feature_names)}"
            )
        return FeatureInput(f"{self.name}:{name}")

    def accepts(self, event: Mapping[str, Any]) -> bool:
        return all(f.matches(event) for f in self.filters)

    def filter_sql(self) -> str:
        return " AND ".join(f.sql(self.source) for f in self.filters) or "TRUE"

    @property
    def join_keys(self) -> tuple[str, ...]:
        return self.entity.join_keys

    @property
    def event_time(self) -> str:
        """The source's event-time field: every window is over it."""
        return self.source.event_time

    def validate(self) -> None:
        _check_name("feature group", self.name)
        _check_name("entity", self.entity.name)
        try:
            self.source.validate()
        except SourceError as error:
            raise DefinitionError(f"{self.name}: {error}") from None
        fields = self.source.by_name
        where = f"source {self.source.name}"
        for key in self.entity.join_keys:
            if key not in fields:
                raise DefinitionError(
                    f"{self.name}: entity join key {key!r} is not a field of {where}"
                )
            if fields[key].type not in JOIN_KEY_TYPES:
                raise DefinitionError(
                    f"{self.name}: join key {key!r} is a {fields[key].type} field; join keys "
                    f"must be {' or '.join(JOIN_KEY_TYPES)}"
                )
        for flt in self.filters:
            if flt.column not in fields:
                raise DefinitionError(
                    f"{self.name}: filter on {flt.column!r}, not a field of {where}"
                )
            for value in flt.values:
                try:
                    fields[flt.column].kind.check(value)
                except ValueError as error:
                    raise DefinitionError(
                        f"{self.name}: filter value {value!r} for {flt.column!r} {error}"
                    ) from None
        if not self.aggregations:
            raise DefinitionError(f"{self.name}: a feature group needs at least one aggregation")
        for agg in self.aggregations:
            try:
                kind = agg.kind_for(self.source)
            except DefinitionError as error:
                raise DefinitionError(f"{self.name}: {error}") from None
            if kind.needs_column:
                if agg.column is None:
                    raise DefinitionError(f"{self.name}: {agg.function} needs a column")
                if agg.column not in fields:
                    raise DefinitionError(
                        f"{self.name}: {agg.base_name}: {agg.column!r} is not a field of {where}"
                    )
                allowed = kind.column_types
                field_type = fields[agg.column].type
                if allowed is not None and field_type not in allowed:
                    wanted = (
                        "numeric"
                        if allowed == NUMERIC
                        else ", ".join(allowed[:-1]) + f" or {allowed[-1]}"
                        if len(allowed) > 1
                        else allowed[0]
                    )
                    raise DefinitionError(
                        f"{self.name}: {agg.base_name}: {agg.function} needs a {wanted} "
                        f"column; {agg.column!r} is a {field_type} field"
                    )

            if not agg.windows:
                raise DefinitionError(f"{self.name}: {agg.base_name} has no windows")
            for window in agg.windows:
                try:
                    Window.parse(window)
                except ValueError as error:
                    raise DefinitionError(f"{self.name}: {agg.base_name}: {error}") from None
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
    #: Sources declared without a group yet (lake ingest still consumes them); the
    #: groups' own sources are added.
    extra_sources: tuple[EventSource, ...] = ()
    #: Derived features (:mod:`feature_core.derived`), referenced as ``name:feature``.
    derived_views: tuple[DerivedFeatures, ...] = ()
    #: Request fields declared at module level (those used in expressions are added).
    declared_request_fields: tuple[RequestField, ...] = ()

    def __post_init__(self) -> None:
        names = [g.name for g in self.groups]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise DefinitionError(f"duplicate feature group names {duplicates}")
        for group in self.groups:
            group.validate()
        self._validate_sources()
        problems = self._derived[1]
        if problems:
            raise DefinitionError("\n".join(problems))
        service_names = [s.name for s in self.services]
        if len(set(service_names)) != len(service_names):
            raise DefinitionError(f"duplicate feature service names in {service_names}")
        for service in self.services:
            self._validate_service(service)

    @cached_property
    def _derived(self) -> tuple[dict[str, DerivedFeature], list[str], dict[str, RequestField]]:
        resolved, problems = resolve(self.groups, self.derived_views, self.declared_request_fields)
        return resolved.features, problems, resolved.request_fields

    @property
    def derived(self) -> dict[str, DerivedFeature]:
        """Every derived feature by ``view:feature``, inputs before what reads them."""
        return self._derived[0]

    @property
    def request_fields(self) -> dict[str, RequestField]:
        """Every request field, declared or used, by name."""
        return self._derived[2]

    def feature_groups(self, reference: str) -> tuple[str, ...]:
        """The groups a ``group:feature`` reference reads (a derived feature's inputs')."""
        if reference in self.derived:
            return self.derived[reference].groups
        return (reference.partition(":")[0],)

    def join_keys_of(self, references: Iterable[str]) -> tuple[str, ...]:
        """The join keys of the entities these features describe, in order of first use."""
        keys: dict[str, None] = {}
        for reference in references:
            for group in self.feature_groups(reference):
                keys.update(dict.fromkeys(self.group(group).join_keys))
        return tuple(keys)

    @cached_property
    def join_key_types(self) -> dict[str, FieldType]:
        """Each join key's declared field type (from the first group keyed by it)."""
        types: dict[str, FieldType] = {}
        for group in self.groups:
            for key in group.join_keys:
                types.setdefault(key, group.source.by_name[key].kind)
        return types

    @cached_property
    def sources(self) -> tuple[EventSource, ...]:
        """Every declared source, once, in order of first mention."""
        found: dict[str, EventSource] = {}
        for source in (*self.extra_sources, *(g.source for g in self.groups)):
            found.setdefault(source.name, source)
        return tuple(found.values())

    def _validate_sources(self) -> None:
        seen: dict[str, EventSource] = {}
        for source in (*self.extra_sources, *(g.source for g in self.groups)):
            other = seen.setdefault(source.name, source)
            if other != source:
                raise DefinitionError(f"two different sources are named {source.name!r}")
        for source in seen.values():
            try:
                source.validate()
            except SourceError as error:
                raise DefinitionError(str(error)) from None
        # Topics and dead-letter topics are one namespace: a topic named like another
        # source's dead letters would ingest its rejects as events.
        for names in (("topic_name", "dlq_topic"), ("table_name",)):
            owners: dict[str, str] = {}
            for source in seen.values():
                for what in names:
                    name = getattr(source, what)
                    if name in owners:
                        raise DefinitionError(
                            f"sources {owners[name]} and {source.name} both use the name "
                            f"{name!r} (as topic, dead-letter topic or table)"
                        )
                    owners[name] = source.name

    def source(self, name: str) -> EventSource:
        for source in self.sources:
            if source.name == name:
                return source
        known = ", ".join(s.name for s in self.sources) or "none"
        raise KeyError(f"unknown source {name!r}; known: {known}")

    def _validate_service(self, service: FeatureService) -> None:
        _check_name("feature service", service.name)
        refs = service.references()
        if not refs:
            raise DefinitionError(f"feature service {service.name}: no features")
        if len(set(refs)) != len(refs):
            raise DefinitionError(f"feature service {service.name}: a feature is listed twice")
        groups = {g.name: g for g in self.groups}
        views = {v.name for v in self.derived_views}
        for group_name, feature_name in refs:
            reference = f"{group_name}:{feature_name}"
            if group_name in views:
                if reference not in self.derived:
                    raise DefinitionError(
                        f"feature service {service.name}: {group_name} has no derived "
                        f"feature {feature_name!r}"
                    )
                continue
            if group_name not in groups:
                raise DefinitionError(
                    f"feature service {service.name}: unknown feature group {group_name!r}"
                )
            group = groups[group_name]
            if feature_name not in {f.name for f in group.features}:
                raise DefinitionError(
                    f"feature service {service.name}: {group_name} has no feature {feature_name!r}"
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
        parts = [
            [*self._meaning(f"{g}:{f}"), repr(service.defaults.get(f"{g}:{f}"))]
            for g, f in service.references()
        ]
        digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
        return digest[:12]

    def _meaning(self, reference: str) -> list[Any]:
        """What a feature computes, as data: a derived feature's expression with the
        meaning of each of its inputs, an aggregate's entity, filters and aggregation."""
        derived = self.derived.get(reference)
        if derived is not None:
            return [
                reference,
                repr(derived.expression),
                str(derived.value_type),
                [f"{f.name}:{f.type}" for f in derived.request_fields],
                [self._meaning(one) for one in derived.inputs],
            ]
        group_name, _, feature_name = reference.partition(":")
        group = self.group(group_name)
        feature = next(f for f in group.features if f.name == feature_name)
        return [
            feature.qualified_name,
            # One key is written as before, so existing fingerprints hold.
            keys[0] if len(keys := group.entity.join_keys) == 1 else list(keys),
            [[f.column, list(f.values)] for f in group.filters],
            [group.tile_columns[i].key for i in feature.tile_indices],
            feature.aggregation.name,
            feature.window.name,
        ]

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
            tuple(o for o in objects if isinstance(o, EventSource)),
            tuple(o for o in objects if isinstance(o, DerivedFeatures)),
            tuple(o for o in objects if isinstance(o, RequestField)),
        )

    @classmethod
    def from_module(cls, module: str | ModuleType | None) -> FeatureRepo:
        """Load every :class:`FeatureGroup` defined at module level (``None``: the
        setting LFP_FEATURE_REPO was not given, and the error says how to)."""
        if module is None or module == "":
            from feature_core.settings import FEATURE_REPO_UNSET

            raise DefinitionError(FEATURE_REPO_UNSET)
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
