"""Model input vectors: resolve what a request asks for, then assemble values per entity.

Shared by the ``/v1`` endpoints and the Feast-compatible one, so both answer the same
values with the same statuses; only the JSON shape differs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from operator import itemgetter
from typing import Any

from feature_core.definitions import Feature, FeatureGroup, FeatureRepo
from feature_core.derived import UNDEFINED, DerivedFeature, DerivedPlan, RequestField
from feature_core.keys import KeyValueError, entity_id, typed_key
from feature_core.merge import BatchPointer, GroupMerger, ValueStatus, group_merger
from online_store.views import EntityViews, ViewsRequest, ViewsSnapshot


class NotServing(RuntimeError):
    """The views cannot give exact values now (a 503 saying why and what to do)."""


class NoBatchView(NotServing):
    """No batch view is serving: values would miss everything before the speed tiles."""


class SpeedRecomputing(NotServing):
    """The speed job is writing its tiles again: until it catches up they miss events."""


class RequestError(ValueError):
    """The request names something that does not exist or cannot be served together."""


class NotFoundError(RequestError):
    """The request names a feature service or feature group that does not exist."""


@dataclass(frozen=True)
class FeatureRef:
    """One position of a vector: a group's feature or a derived feature, and the default
    that may fill it."""

    group: FeatureGroup | None  # None for a derived feature
    feature: Feature | None
    group_index: int  # position of the group in the selection's groups (-1: derived)
    feature_index: int  # position of the feature in its group's features
    has_default: bool = False
    default: Any = None
    derived: DerivedFeature | None = None

    @property
    def qualified_name(self) -> str:
        if self.derived is not None:
            return self.derived.qualified_name
        assert self.feature is not None
        return self.feature.qualified_name

    @property
    def view_name(self) -> str:
        """The group's name, or the derived view's."""
        if self.derived is not None:
            return self.derived.view
        assert self.group is not None
        return self.group.name

    @property
    def name(self) -> str:
        return self.qualified_name.partition(":")[2]


#: Per request entity, one id per key set of the selection (see :meth:`Selection.entity_ids`).
EntityIds = Sequence[str] | Sequence[tuple[str, ...]]


@dataclass(frozen=True)
class Selection:
    """An ordered list of features, resolved against the repo: features of groups (of one
    entity type or several) and derived features over them.

    The groups read are laid end to end (grouped by their join keys: a *key set*); a
    derived feature's inputs are read even when not listed, and :attr:`plan` computes the
    derived values from that row, the request's context and the query time."""

    service: str | None
    join_keys: tuple[str, ...]
    refs: tuple[FeatureRef, ...]
    groups: tuple[FeatureGroup, ...]  # distinct, by key set then order of first use
    #: Each join key's declared Python type (str or int), as ``FeatureRepo.join_key_types``.
    key_types: tuple[type, ...] = ()
    #: The distinct join-key tuples of the groups, and each group's index among them.
    key_sets: tuple[tuple[str, ...], ...] = ()
    group_key_sets: tuple[int, ...] = ()
    plan: DerivedPlan | None = None

    @cached_property
    def feature_names(self) -> list[str]:
        return [ref.qualified_name for ref in self.refs]

    @cached_property
    def group_names(self) -> tuple[str, ...]:
        return tuple(group.name for group in self.groups)

    @cached_property
    def request_fields(self) -> tuple[RequestField, ...]:
        """The request context fields the derived features need, in row order."""
        return self.plan.request_fields if self.plan is not None else ()

    @cached_property
    def mergers(self) -> tuple[GroupMerger, ...]:
        """Each group's merger, looked up once per selection (selections are cached)."""
        return tuple(group_merger(group) for group in self.groups)

    @cached_property
    def layout(self) -> tuple[Callable[[Sequence[Any]], tuple[Any, ...]], tuple[Any, ...]]:
        """How a vector is cut from its row (the groups' values laid end to end, then what
        the derived features read and give): a getter of the refs' positions, and
        (vector position, default) of the refs that have one."""
        offsets = [0]
        for group in self.groups[:-1]:
            offsets.append(offsets[-1] + len(group.features))
        positions = [
            self.plan.positions[r.qualified_name]
            if r.derived is not None and self.plan is not None
            else offsets[r.group_index] + r.feature_index
            for r in self.refs
        ]
        # itemgetter of one position returns the item, not a 1-tuple: keep it a tuple.
        getter = itemgetter(*positions) if len(positions) > 1 else lambda row: (row[positions[0]],)
        defaults = tuple((i, r.default) for i, r in enumerate(self.refs) if r.has_default)
        return getter, defaults

    @cached_property
    def derived_positions(self) -> tuple[int, ...]:
        """The vector positions of derived features: the only values that may be
        :data:`~feature_core.derived.UNDEFINED` (served as null)."""
        return tuple(i for i, r in enumerate(self.refs) if r.derived is not None)

    @cached_property
    def _key_set_groups(self) -> tuple[tuple[int, ...], ...]:
        return tuple(
            tuple(g for g, k in enumerate(self.group_key_sets) if k == key_set)
            for key_set in range(len(self.key_sets))
        )

    @cached_property
    def mergers_in_read_order(self) -> tuple[GroupMerger, ...]:
        """The mergers in the order one entity's views are read (key set by key set)."""
        return tuple(self.mergers[g] for groups in self._key_set_groups for g in groups)

    def entity_ids(self, entities: Sequence[str | int | Mapping[str, Any]]) -> EntityIds:
        """Each requested entity's id (:func:`feature_core.keys.entity_id`): a value is
        that of a one-key entity, an object must name every join key. Values are taken in
        their key's declared type (:func:`feature_core.keys.typed_key`), as the Feast
        endpoint takes them: ``"007"`` and ``7`` name one entity of an integer key. A
        selection over several entity types gives a tuple per entity: one id per key set."""
        keys, types = self.join_keys, self.key_types or (str,) * len(self.join_keys)
        several = len(self.key_sets) > 1
        if (
            not several
            and len(keys) == 1
            and types[0] is str
            and all(type(e) is str for e in entities)
        ):
            return entities  # type: ignore[return-value]  # the hot path: ids as given
        kinds = dict(zip(keys, types, strict=True))
        ids: list[Any] = []
        for position, entity in enumerate(entities):
            try:
                if not isinstance(entity, Mapping):
                    if len(keys) > 1:
                        raise RequestError(
                            f"entities[{position}]: the entity has join keys {list(keys)}: "
                            "give an object with each of them"
                        )
                    ids.append(entity_id([typed_key(keys[0], types[0], entity)]))
                    continue
                if len(entity) != len(keys) or any(k not in entity for k in keys):
                    missing = [k for k in keys if k not in entity]
                    others = len(entity) - (len(keys) - len(missing))
                    raise RequestError(
                        f"entities[{position}]: give exactly the join keys {list(keys)}; "
                        f"missing {missing}, {others} other key(s) given"
                    )
                typed = {k: typed_key(k, kinds[k], entity[k]) for k in keys}
                per_set = tuple(entity_id([typed[k] for k in ks]) for ks in self.key_sets)
                ids.append(per_set if several else per_set[0])
            except KeyValueError as error:
                raise RequestError(f"entities[{position}].{error}") from None
        return ids

    def context_rows(self, context: Any, n: int) -> list[list[Any]]:
        """The request fields' values for each of ``n`` entities, in :attr:`request_fields`
        order: ``context`` is one object for every entity or a list of one per entity. A
        missing field, or a value its declared type refuses, is a :class:`RequestError`
        naming it."""
        fields = self.request_fields
        if not fields:
            return []
        if context is None:
            raise RequestError(
                f"missing request context: these features need {_field_list(fields)} in "
                "'context' (one object for every entity, or a list of one per entity)"
            )
        if isinstance(context, Mapping):
            shared = self._context_row(context, "context")
            return [shared] * n
        if len(context) != n:
            raise RequestError(
                f"'context' lists {len(context)} objects for {n} entities: give one per "
                "entity, or one object for all"
            )
        return [self._context_row(c, f"context[{i}]") for i, c in enumerate(context)]

    def context_of_text(self, parameters: Mapping[str, str]) -> dict[str, Any]:
        """Request fields given as text (query parameters), each in its declared type."""
        context: dict[str, Any] = {}
        for field_ in self.request_fields:
            text = parameters.get(field_.name)
            if text is not None:
                try:
                    context[field_.name] = _from_text(field_.type, text)
                except ValueError:
                    raise RequestError(
                        f"{field_.name}: {text[:64]!r} is not a {field_.type} value"
                    ) from None
        return context

    def _context_row(self, context: Mapping[str, Any], where: str) -> list[Any]:
        missing = [f for f in self.request_fields if context.get(f.name) is None]
        if missing:
            raise RequestError(f"{where}: missing request field(s) {_field_list(missing)}")
        row = []
        for field_ in self.request_fields:
            try:
                row.append(field_.check(context[field_.name]))
            except ValueError as error:
                raise RequestError(f"{where}.{field_.name} {error}") from None
        return row

    def views_requests(self, entity_ids: EntityIds) -> list[ViewsRequest]:
        """What to read for these entities: each key set's groups for its distinct ids,
        entity-major (one part for a selection of one entity type)."""
        if len(self.key_sets) == 1:
            return [(self.group_names, entity_ids)]  # type: ignore[list-item]
        return [
            (
                tuple(self.groups[g].name for g in groups),
                list(dict.fromkeys(ids[k] for ids in entity_ids)),  # type: ignore[index]
            )
            for k, groups in enumerate(self._key_set_groups)
        ]

    def views_request(self, entity_ids: Sequence[str]) -> ViewsRequest:
        """What to read for the entities of a one-entity-type selection."""
        (request,) = self.views_requests(entity_ids)
        return request


def _from_text(kind: str, text: str) -> Any:
    """A query parameter's text as a value of field type ``kind`` (checked after)."""
    if kind == "integer" or (kind == "timestamp" and text.lstrip("+-").isdigit()):
        return int(text)
    if kind == "float":
        return float(text)
    if kind == "boolean":
        if text not in ("true", "false"):
            raise ValueError(text)
        return text == "true"
    return text


def _field_list(fields: Sequence[RequestField]) -> str:
    return ", ".join(f"{f.name} ({f.type})" for f in fields)


@dataclass(slots=True)  # per entity served: slotted, not frozen (see store.EntityViews)
class Vector:
    entity_id: str | tuple[str, ...]
    values: list[Any]
    statuses: list[ValueStatus]


def _parse_ref(ref: str) -> tuple[str, str]:
    group, sep, feature = ref.partition(":")
    if not sep or not group or not feature:
        raise RequestError(f"feature reference {ref!r} is not 'group:feature'")
    return group, feature


def select(
    repo: FeatureRepo,
    feature_service: str | None = None,
    features: tuple[str, ...] | None = None,
) -> Selection:
    """Resolve a feature service name or a list of ``group:feature`` references (derived
    features' too)."""
    if (feature_service is None) == (not features):
        raise RequestError("give exactly one of 'feature_service' or a non-empty 'features'")
    defaults: dict[str, Any] = {}
    if feature_service is not None:
        try:
            service = repo.service(feature_service)
        except KeyError as error:
            raise NotFoundError(error.args[0]) from None
        features = tuple(service.features)
        defaults = dict(service.defaults)
    assert features is not None
    # Linear in the list: a body of 1 MB holds ~150,000 short references.
    counts = Counter(features)
    if len(counts) != len(features):
        twice = sorted(f for f, n in counts.items() if n > 1)
        shown = ", ".join(repr(f) for f in twice[:5])
        more = f" and {len(twice) - 5} more" if len(twice) > 5 else ""
        raise RequestError(f"features listed more than once: {shown}{more}")
    groups_by_name = {g.name: g for g in repo.groups}
    derived_views = {v.name for v in repo.derived_views}
    found: list[tuple[str, FeatureGroup | None, Feature | None, int, DerivedFeature | None]] = []
    by_group: dict[str, dict[str, tuple[int, Feature]]] = {}
    used: dict[str, FeatureGroup] = {}
    for ref in features:
        group_name, feature_name = _parse_ref(ref)
        if group_name in derived_views:
            derived = repo.derived.get(ref)
            if derived is None:
                known = ", ".join(
                    n.partition(":")[2] for n in repo.derived if n.startswith(f"{group_name}:")
                )
                raise RequestError(
                    f"derived features {group_name} have no feature {feature_name!r}; "
                    f"known: {known}"
                )
            for name in derived.groups:
                used.setdefault(name, groups_by_name[name])
            found.append((ref, None, None, -1, derived))
            continue
        group = groups_by_name.get(group_name)
        if group is None:
            known = ", ".join([*groups_by_name, *sorted(derived_views)])
            raise RequestError(f"unknown feature group {group_name!r}; known: {known}")
        by_name = by_group.get(group_name)
        if by_name is None:
            by_name = by_group[group_name] = {f.name: (i, f) for i, f in enumerate(group.features)}
        if feature_name not in by_name:
            raise RequestError(
                f"feature group {group_name} has no feature {feature_name!r}; "
                f"known: {', '.join(by_name)}"
            )
        feature_index, feature = by_name[feature_name]
        used.setdefault(group_name, group)
        found.append((ref, group, feature, feature_index, None))
    key_sets = tuple(dict.fromkeys(g.join_keys for g in used.values()))
    # Grouped by key set: an entity's row is its key sets' group values end to end.
    groups = tuple(g for keys in key_sets for g in used.values() if g.join_keys == keys)
    index = {g.name: i for i, g in enumerate(groups)}
    refs = tuple(
        FeatureRef(
            group,
            feature,
            index[group.name] if group is not None else -1,
            feature_index,
            ref in defaults,
            defaults.get(ref),
            derived,
        )
        for ref, group, feature, feature_index, derived in found
    )
    wanted = [r.qualified_name for r in refs if r.derived is not None]
    plan = None
    if wanted:
        base = [f.qualified_name for g in groups for f in g.features]
        plan = DerivedPlan(repo.derived, wanted, base)
    join_keys = tuple(dict.fromkeys(k for keys in key_sets for k in keys))
    kinds = repo.join_key_types
    types = tuple(kinds[k].python if k in kinds else str for k in join_keys)
    return Selection(
        feature_service,
        join_keys,
        refs,
        groups,
        types,
        key_sets,
        tuple(key_sets.index(g.join_keys) for g in groups),
        plan,
    )


def build_vectors(
    selection: Selection,
    snapshot: ViewsSnapshot,
    entity_ids: EntityIds,
    as_of: int,
    context_rows: Sequence[Sequence[Any]] = (),
    speed_only: bool = False,
) -> list[Vector]:
    """Merge each entity's views, compute the derived features, and lay the values out in
    the selection's order.

    ``snapshot.entities`` must come from ``selection.views_requests(entity_ids)``. An
    unknown entity is not an error: it gets each aggregation's identity with status
    ``no_data``. ``speed_only``: no batch view serves, so every merged value has status
    ``speed_only`` (derived values inherit it). A service default fills a null value
    (status ``default``), exactly as training sets fill it, so a model sees the same input
    online and offline.
    """
    mergers = selection.mergers
    pointer, views = snapshot.pointer, snapshot.entities
    cut, defaults = selection.layout
    plan = selection.plan
    derived_positions = selection.derived_positions
    if len(selection.key_sets) == 1:
        n_groups = len(mergers)
        rows = (
            merged_row(mergers, as_of, pointer, views[i * n_groups : (i + 1) * n_groups])
            for i in range(len(entity_ids))
        )
    else:
        rows = _rows_of_several_entities(selection, pointer, views, entity_ids, as_of)
    vectors = []
    for i, (entity, (row, row_statuses)) in enumerate(zip(entity_ids, rows, strict=True)):
        if speed_only:
            row_statuses = [ValueStatus.SPEED_ONLY] * len(row_statuses)
        if plan is not None:
            row = [*row, *(context_rows[i] if context_rows else ()), as_of]
            plan.compute(row)
            plan.statuses(row, row_statuses)
            values = list(cut(row))
            for position in derived_positions:
                if values[position] is UNDEFINED:
                    values[position] = None
        else:
            values = list(cut(row))
        statuses = list(cut(row_statuses))
        for position, default in defaults:
            if values[position] is None:
                values[position] = default
                statuses[position] = ValueStatus.DEFAULT
        vectors.append(Vector(entity, values, statuses))
    return vectors


def merged_row(
    mergers: Sequence[GroupMerger],
    as_of: int,
    pointer: BatchPointer | None,
    views: Sequence[EntityViews],
) -> tuple[list[Any], list[ValueStatus]]:
    """One entity's groups merged: their values end to end, and their statuses."""
    values: list[Any] = []
    statuses: list[ValueStatus] = []
    for merger, v in zip(mergers, views, strict=True):
        merged_values, merged_statuses = merger.merge(
            as_of, pointer, v.batch_doc, v.speed_tiles, v.memo, v.corrections
        )
        values += merged_values
        statuses += merged_statuses
    return values, statuses


def _rows_of_several_entities(
    selection: Selection,
    pointer: BatchPointer | None,
    views: Sequence[EntityViews],
    entity_ids: EntityIds,
    as_of: int,
) -> list[tuple[list[Any], list[ValueStatus]]]:
    """Rows of a selection over several entity types: each key set's entities merged once
    (a user's groups once for all of its candidate items), then joined per request row."""
    merged: list[dict[str, tuple[list[Any], list[ValueStatus]]]] = []
    start = 0
    for k, group_indices in enumerate(selection._key_set_groups):
        mergers = [selection.mergers[g] for g in group_indices]
        n = len(mergers)
        distinct = list(dict.fromkeys(ids[k] for ids in entity_ids))  # type: ignore[index]
        part: dict[str, tuple[list[Any], list[ValueStatus]]] = {}
        for j, one in enumerate(distinct):
            part[one] = merged_row(
                mergers, as_of, pointer, views[start + j * n : start + (j + 1) * n]
            )
        merged.append(part)
        start += len(distinct) * n
    rows = []
    for ids in entity_ids:
        values: list[Any] = []
        statuses: list[ValueStatus] = []
        for k, part in enumerate(merged):
            one_values, one_statuses = part[ids[k]]  # type: ignore[index]
            values += one_values
            statuses += one_statuses
        rows.append((values, statuses))
    return rows
