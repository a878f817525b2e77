"""The request path every feature endpoint shares: resolve, check limits, read, merge."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from feature_core.definitions import FeatureGroup, FeatureRepo
from feature_core.merge import BatchPointer
from online_store.base import ViewReader
from online_store.views import ViewsRequest, ViewsSnapshot
from serving_layer.metrics import ServingMetrics
from serving_layer.vectors import (
    EntityIds,
    NoBatchView,
    NotFoundError,
    RequestError,
    Selection,
    SpeedRecomputing,
    Vector,
    build_vectors,
    select,
)


@dataclass(slots=True)  # per request: slotted, not frozen (see online_store.views.EntityViews)
class ServedVectors:
    selection: Selection
    snapshot: ViewsSnapshot
    as_of: int
    vectors: list[Vector]

    @property
    def speed_watermarks(self) -> dict[str, int]:
        wanted = self.selection.group_names
        return {g: t for g, t in self.snapshot.speed_watermarks.items() if g in wanted}


class OnlineFeatures:
    """Resolves feature selections (cached) and serves vectors with one Redis round trip."""

    def __init__(
        self,
        repo: FeatureRepo,
        store: ViewReader,
        metrics: ServingMetrics,
        max_entities: int,
        serve_speed_only: bool = False,
        max_features: int = 1000,
    ) -> None:
        self.repo = repo
        self.store = store
        self.metrics = metrics
        self.max_entities = max_entities
        self.max_features = max_features
        self.serve_speed_only = serve_speed_only
        self._select = lru_cache(maxsize=1024)(self._resolve)
        # Cached by name: only known groups get in (an unknown name raises, never cached).
        self._group_selection = lru_cache(maxsize=256)(self._resolve_group)

    def _resolve(self, feature_service: str | None, features: tuple[str, ...] | None) -> Selection:
        return select(self.repo, feature_service, features)

    def _resolve_group(self, name: str) -> Selection:
        views = {v.name: v for v in self.repo.derived_views}
        if name in views:
            return self._select(None, tuple(f"{name}:{f}" for f in views[name].features))
        try:
            group = self.repo.group(name)
        except KeyError:
            known = ", ".join([*(g.name for g in self.repo.groups), *views])
            raise NotFoundError(f"unknown feature group {name!r}; known: {known}") from None
        return self._select(None, tuple(f.qualified_name for f in group.features))

    def require_complete_views(
        self, snapshot: ViewsSnapshot, groups: Sequence[FeatureGroup]
    ) -> None:
        """:class:`NoBatchView` unless a batch view computed from these groups' current
        definitions serves (or speed-only values are allowed and none serves);
        :class:`SpeedRecomputing` while the speed job rewrites the tiles Redis lost.

        Without either, values would miss events or merge another definition's view:
        numbers a model cannot tell from real ones."""
        if snapshot.speed_recomputing:
            raise SpeedRecomputing(
                "the speed layer is writing its tiles again after Redis lost them (it "
                "reads the topics from the start; `lfp stack status` shows its lag): retry in "
                "a few seconds"
            )
        pointer = snapshot.pointer
        if pointer is None:
            if self.serve_speed_only:
                return
            raise NoBatchView(
                "no batch view is serving yet (the first batch run has not finished, or "
                "Redis lost its data): wait for the scheduler's run or start one with "
                "`lfp batch run`; LFP_API_SERVE_SPEED_ONLY=true serves speed-layer values "
                "alone meanwhile, with status speed_only"
            )
        stale = pointer.stale_groups(groups)
        if stale:
            raise NoBatchView(stale_view_message(pointer, stale))

    def check_entities(self, n: int) -> None:
        """A 422 naming the cap when a request asks for more than LFP_API_MAX_ENTITIES
        entities (checked before any per-entity work)."""
        if n > self.max_entities:
            raise RequestError(
                f"too many entities: {n} > {self.max_entities} "
                "(LFP_API_MAX_ENTITIES); split the request"
            )

    def check_features(self, n: int) -> None:
        """A 422 naming the cap when a 'features' list is longer than LFP_API_MAX_FEATURES
        (checked before the references are resolved)."""
        if n > self.max_features:
            raise RequestError(
                f"too many features: {n} > {self.max_features} "
                "(LFP_API_MAX_FEATURES); use a feature service or split the request"
            )

    def selection(
        self, feature_service: str | None = None, features: Sequence[str] | None = None
    ) -> Selection:
        if features:
            self.check_features(len(features))
        return self._select(feature_service, tuple(features) if features else None)

    def group_selection(self, name: str) -> Selection:
        """Every feature of one feature group, in the group's order: what the group
        endpoints serve. Not held to LFP_API_MAX_FEATURES (the repo declares groups; a
        client does not list them); :class:`NotFoundError` naming the known groups for a
        name the repo does not have."""
        return self._group_selection(name)

    async def serve(
        self,
        selection: Selection,
        entity_ids: EntityIds,
        endpoint: str,
        context: Any = None,
    ) -> ServedVectors:
        """Vectors of ``selection`` for these entities; ``context`` holds the request
        fields its derived features need (one object for all entities, or one each)."""
        (served,) = await self.serve_together([(selection, entity_ids, context)], endpoint)
        return served

    async def serve_together(
        self,
        parts: Sequence[tuple[Selection, EntityIds] | tuple[Selection, EntityIds, Any]],
        endpoint: str,
    ) -> list[ServedVectors]:
        """Several selections in one round trip, so every vector comes from the same views
        (one batch view version even while a switch happens)."""
        requests: list[ViewsRequest] = []
        checked = []
        for selection, entity_ids, *rest in parts:
            if not entity_ids:
                raise RequestError("no entities given")
            self.check_entities(len(entity_ids))
            context_rows = selection.context_rows(rest[0] if rest else None, len(entity_ids))
            self.metrics.entities_of(endpoint).observe(len(entity_ids))
            part_requests = selection.views_requests(entity_ids)
            requests += part_requests
            size = sum(len(groups) * len(ids) for groups, ids in part_requests)
            checked.append((selection, entity_ids, context_rows, size))
        snapshot = await self.store.read(requests)
        self.require_complete_views(snapshot, [g for sel, *_ in checked for g in sel.groups])
        as_of = int(time.time() * 1000)
        speed_only = snapshot.pointer is None
        served, start = [], 0
        for selection, entity_ids, context_rows, size in checked:
            end = start + size
            part = ViewsSnapshot(
                snapshot.pointer, snapshot.speed_watermarks, snapshot.entities[start:end], False
            )
            vectors = build_vectors(selection, part, entity_ids, as_of, context_rows, speed_only)
            served.append(ServedVectors(selection, part, as_of, vectors))
            start = end
        return served


def stale_view_message(pointer: BatchPointer, stale: Sequence[str]) -> str:
    return (
        f"the batch view serving (v{pointer.version}) was computed from other definitions of "
        f"{', '.join(stale)} (the feature repo changed, or another repo's batch job shares "
        "this Redis and LFP_KEY_PREFIX): the batch scheduler recomputes it within "
        "LFP_BATCH_WATCH_S seconds, `lfp batch run` does it now"
    )


def speed_gap_message(gap_before: int) -> str:
    """Why values are stale while the speed tiles have a gap the lake fills."""
    at = time.strftime("%H:%M:%S", time.gmtime(gap_before / 1000))
    return (
        "the broker lost its topics and the speed layer started over from the new ones: "
        f"its tiles before {at} UTC may miss events the lake holds, so values of windows "
        "reaching before then are stale_batch_view until a batch run with a cutoff at or "
        "after that time serves (the scheduler starts one then)"
    )
