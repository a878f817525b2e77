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
from feature_core.keys import KeyValueError, entity_id, typed_key
from feature_core.merge import GroupMerger, ValueStatus, group_merger
from online_store.views import ViewsRequest, ViewsSnapshot


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
    """One position of a vector: a feature of a group, and the default that may fill it."""

    group: FeatureGroup
    feature: Feature
    group_index: int  # position of the group in the selection's groups
    feature_index: int  # position of the feature in its group's features
    has_default: bool = False
    default: Any = None

    @property
    def qualified_name(self) -> str:
        return self.feature.qualified_name


@dataclass(frozen=True)
class Selection:
    """An ordered list of features of one entity type, resolved against the repo."""

    service: str | None
    join_keys: tuple[str, ...]
    refs: tuple[FeatureRef, ...]
    groups: tuple[FeatureGroup, ...]  # distinct, in order of first use
    #: Each join key's declared Python type (str or int), as ``FeatureRepo.join_key_types``.
    key_types: tuple[type, ...] = ()

    @cached_property
    def feature_names(self) -> list[str]:
        return [ref.qualified_name for ref in self.refs]

    @cached_property
    def group_names(self) -> tuple[str, ...]:
        return tuple(group.name for group in self.groups)

    @cached_property
    def mergers(self) -> tuple[GroupMerger, ...]:
        """Each group's merger, looked up once per selection (selections are cached)."""
        return tuple(group_merger(group) for group in self.groups)

    @cached_property
    def layout(self) -> tuple[Callable[[Sequence[Any]], tuple[Any, ...]], tuple[Any, ...]]:
        """How a vector is cut from its groups' values laid end to end: a getter of the
        refs' positions, and (vector position, default) of the refs that have one."""
        offsets = [0]
        for group in self.groups[:-1]:
            offsets.append(offsets[-1] + len(group.features))
        positions = [offsets[r.group_index] + r.feature_index for r in self.refs]
        # itemgetter of one position returns the item, not a 1-tuple: keep it a tuple.
        getter = itemgetter(*positions) if len(positions) > 1 else lambda row: (row[positions[0]],)
        defaults = tuple((i, r.default) for i, r in enumerate(self.refs) if r.has_default)
        return getter, defaults

    def entity_ids(self, entities: Sequence[str | int | Mapping[str, Any]]) -> Sequence[str]:
        """Each requested entity's id (:func:`feature_core.keys.entity_id`): a value is
        that of a one-key entity, an object must name every join key. Values are taken in
        their key's declared type (:func:`feature_core.keys.typed_key`), as the Feast
        endpoint takes them: ``"007"`` and ``7`` name one entity of an integer key."""
        keys, types = self.join_keys, self.key_types or (str,) * len(self.join_keys)
        if len(keys) == 1 and types[0] is str and all(type(e) is str for e in entities):
            return entities  # type: ignore[return-value]  # the hot path: ids as given
        ids = []
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
                ids.append(
                    entity_id(
                        [typed_key(k, t, entity[k]) for k, t in zip(keys, types, strict=True)]
                    )
                )
            except KeyValueError as error:
                raise RequestError(f"entities[{position}].{error}") from None
        return ids

    def views_request(self, entity_ids: Sequence[str]) -> ViewsRequest:
        """What to read for these entities: each group's views, entity-major."""
        return self.group_names, entity_ids


@dataclass(slots=True)  # per entity served: slotted, not frozen (see store.EntityViews)
class Vector:
    entity_id: str
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
    """Resolve a feature service name or a list of ``group:feature`` references."""
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
    refs: list[FeatureRef] = []
    groups: dict[str, tuple[int, FeatureGroup, dict[str, tuple[int, Feature]]]] = {}
    for ref in features:
        group_name, feature_name = _parse_ref(ref)
        used = groups.get(group_name)
        if used is None:
            group = groups_by_name.get(group_name)
            if group is None:
                known = ", ".join(groups_by_name)
                raise RequestError(f"unknown feature group {group_name!r}; known: {known}")
            by_name = {f.name: (i, f) for i, f in enumerate(group.features)}
            used = groups[group_name] = (len(groups), group, by_name)
        group_index, group, by_name = used
        if feature_name not in by_name:
            raise RequestError(
                f"feature group {group_name} has no feature {feature_name!r}; "
                f"known: {', '.join(by_name)}"
            )
        feature_index, feature = by_name[feature_name]
        refs.append(
            FeatureRef(
                group,
                feature,
                group_index,
                feature_index,
                ref in defaults,
                defaults.get(ref),
            )
        )
    used_groups = [group for _, group, _ in groups.values()]
    join_keys = {g.entity.join_keys for g in used_groups}
    if len(join_keys) > 1:
        by_key = ", ".join(f"{g.name} ({g.entity.key_label})" for g in used_groups)
        raise RequestError(
            f"features of different entities cannot share a vector: {by_key}; "
            "request one entity type at a time"
        )
    keys = join_keys.pop()
    kinds = repo.join_key_types
    types = tuple(kinds[k].python if k in kinds else str for k in keys)
    return Selection(feature_service, keys, tuple(refs), tuple(used_groups), types)


def build_vectors(
    selection: Selection, snapshot: ViewsSnapshot, entity_ids: Sequence[str], as_of: int
) -> list[Vector]:
    """Merge each entity's views and lay the values out in the selection's order.

    ``snapshot.entities`` must come from ``selection.views_request(entity_ids)``. An
    unknown entity is not an error: it gets each aggregation's identity with status
    ``no_data``. A service default fills a null value (status ``default``), exactly as
    training sets fill it, so a model sees the same input online and offline.
    """
    mergers = selection.mergers
    pointer, views, n_groups = snapshot.pointer, snapshot.entities, len(mergers)
    cut, defaults = selection.layout
    vectors = []
    for i, entity in enumerate(entity_ids):
        own = views[i * n_groups : (i + 1) * n_groups]
        group_values: list[Any] = []
        group_statuses: list[ValueStatus] = []
        for merger, v in zip(mergers, own, strict=True):
            merged_values, merged_statuses = merger.merge(
                as_of, pointer, v.batch_doc, v.speed_tiles, v.memo
            )
            group_values += merged_values
            group_statuses += merged_statuses
        values, statuses = list(cut(group_values)), list(cut(group_statuses))
        for position, default in defaults:
            if values[position] is None:
                values[position] = default
                statuses[position] = ValueStatus.DEFAULT
        vectors.append(Vector(entity, values, statuses))
    return vectors
