"""The reference evaluator: plain Python over a list of events, the truth for tests.

Deliberately naive (one pass per feature, no tiles, no partials): it shares only the
window rule and the filter with the engines, and each kind's value comes from its plain
:meth:`~feature_core.aggregations.AggregationKind.reference` form, written without the
algebra, so a tiling, merge or partial bug in any layer shows up as a mismatch.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from feature_core.aggregations import merge_all
from feature_core.definitions import FeatureGroup
from feature_core.keys import entity_id


def evaluate(
    group: FeatureGroup, events: Iterable[Mapping[str, Any]], t: int
) -> dict[str, dict[str, Any]]:
    """``{entity id: {feature: value}}`` at query time ``t`` for every entity seen
    (ids as :func:`feature_core.keys.entity_id` makes them)."""
    by_entity: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    time_column = group.event_time
    join_keys = group.join_keys
    for event in events:
        key = [event.get(k) for k in join_keys]
        if None not in key and group.accepts(event):
            by_entity[entity_id(key)].append(event)
    result: dict[str, dict[str, Any]] = {}
    for entity, entity_events in by_entity.items():
        values: dict[str, Any] = {}
        for feature in group.features:
            in_window = feature.window.events_in(
                sorted(int(event[time_column]) for event in entity_events), t
            )
            pairs = []
            for event in entity_events:
                event_time = int(event[time_column])
                value = event.get(feature.column) if feature.column else True
                if value is not None and in_window(event_time):
                    pairs.append((event_time, value))
            values[feature.name] = feature.aggregation.reference(pairs, t, feature.output)
        result[entity] = values
    return result


def default_values(group: FeatureGroup) -> dict[str, Any]:
    """Values of an entity with no events: each aggregation's identity, finalized."""
    return {
        f.name: f.finalize(merge_all(tuple(group.primitives[i] for i in f.tile_indices), ()), 0)
        for f in group.features
    }
