"""``GET /v1/recommendations/{user_id}``: the demo model scoring candidates on served vectors.

Each candidate is one row of the ``recommender`` feature service: the pair (user,
candidate item), the candidate's category as request context. The serving layer computes
the whole vector, derived features included, as training sets did at each example's
time; the model takes it as it is.

Mounted by the API only when asked: ``LFP_API_ROUTERS='["demo.recommendations:router"]'``
(``make up`` asks for it with the demo's feature repo). The model is reloaded when
``model.json`` changes, and refused when the feature services it was trained on no longer
mean what they meant then, when ``model.json`` names its file by a path instead of a bare
file name, or when the file's sha256 is not the one recorded at saving. It is loaded in
the background at start-up, so no request waits for scikit-learn's import (seconds of
CPU, more without compiled bytecode).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path as FilePath
from typing import Annotated

from fastapi import APIRouter, FastAPI, HTTPException, Path, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from demo.ranking import (
    CONTEXT_FIELD,
    METADATA_FILE,
    SERVICE,
    RankingModel,
    import_estimator_library,
)
from feature_core.statuses import ValueStatus
from serving_layer.deps import Online
from serving_layer.models import BatchViewInfo, error_responses
from serving_layer.online import OnlineFeatures
from serving_layer.vectors import Selection

ENDPOINT = "/v1/recommendations/{user_id}"
log = logging.getLogger(__name__)


class Recommendation(BaseModel):
    item_id: str
    category: str
    score: float = Field(description="Predicted probability that the user clicks the item.")


class ModelInfo(BaseModel):
    services: dict[str, str] = Field(description="Feature service -> version trained on.")
    trained_at: float
    training_rows: int
    metrics: dict[str, float]


class Recommendations(BaseModel):
    user_id: str
    as_of: int = Field(description="Query time (epoch ms) of the feature vectors used.")
    known_user: bool = Field(description="False when no feature of the user has data.")
    batch: BatchViewInfo | None = Field(
        description="The batch view every vector came from; null before any batch run."
    )
    model: ModelInfo
    items: list[Recommendation]


class _ModelCache:
    """The model on disk, reloaded when its ``model.json`` changes."""

    def __init__(self, directory: FilePath) -> None:
        self.directory = directory
        self._stamp: tuple[int, int] | None = None
        self._model: RankingModel | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> RankingModel:
        try:
            stat = (self.directory / METADATA_FILE).stat()
        except FileNotFoundError:
            raise HTTPException(
                503,
                f"no ranking model in {self.directory}: train one with `lfp demo train` "
                "(make demo does) or set LFP_MODEL_DIR",
            ) from None
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            async with self._lock:
                if stamp != self._stamp:
                    try:
                        self._model = await run_in_threadpool(RankingModel.load, self.directory)
                    except (OSError, ValueError, KeyError) as error:
                        # ModelFileError (a path, or bytes not the recorded ones) among
                        # them: refused before anything was unpickled.
                        log.error("cannot load the ranking model: %s", error)
                        raise HTTPException(
                            503, f"cannot load the ranking model: {error}"
                        ) from None
                    self._stamp = stamp
        assert self._model is not None
        return self._model

    @property
    def loaded(self) -> RankingModel | None:
        """The model held now, without checking the disk."""
        return self._model


async def _preload(cache: _ModelCache) -> None:
    """Import the estimator's library, then load the model if one was trained already."""
    await run_in_threadpool(import_estimator_library)
    with contextlib.suppress(HTTPException):  # none yet, or unreadable: requests say so
        await cache.get()


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    cache = app.state.ranking_model = _ModelCache(app.state.settings.models_path)
    preload = asyncio.create_task(_preload(cache))
    yield
    preload.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await preload  # an import under way is let finish: threads cannot be interrupted


router = APIRouter(prefix="/v1", tags=["recommendations"], lifespan=_lifespan)


def _model_cache(request: Request) -> _ModelCache:
    return request.app.state.ranking_model


def _check_versions(model: RankingModel, online: OnlineFeatures) -> None:
    """A 503 when a feature service no longer means what it meant at training."""
    for service, trained in model.services.items():
        try:
            current = online.repo.service_version(service)
        except KeyError:
            current = "missing"
        if current != trained:
            raise HTTPException(
                503,
                f"the model was trained on {service} version {trained}, the definitions are "
                f"now at {current}: retrain with `lfp demo train`",
            )


def chunked(items: Sequence[str], size: int) -> list[Sequence[str]]:
    """``items`` in order, in parts of at most ``size`` (none when there are none)."""
    if size < 1:
        raise ValueError(f"part size must be at least 1, got {size}")
    return [items[start : start + size] for start in range(0, len(items), size)]


def _user_positions(selection: Selection, online: OnlineFeatures) -> list[int]:
    """Positions of the vector's features that read user features only: whether any has
    data says whether the user is known."""
    repo = online.repo
    return [
        i
        for i, reference in enumerate(selection.feature_names)
        if all(repo.group(g).join_keys == ("user_id",) for g in repo.feature_groups(reference))
    ]


@router.get(
    "/recommendations/{user_id}",
    response_model=Recommendations,
    responses=error_responses(422, 503),
)
async def recommend(
    request: Request,
    online: Online,
    user_id: Annotated[str, Path(min_length=1, max_length=256, description="The user's id.")],
    k: Annotated[int, Query(ge=1, le=100, description="How many items to return.")] = 10,
) -> Recommendations:
    """The ``k`` candidates the user is most likely to click, scored on fresh vectors."""
    model = await _model_cache(request).get()
    _check_versions(model, online)
    if not model.candidates:
        raise HTTPException(
            503, "the ranking model has no candidate items: retrain with `lfp demo train`"
        )
    selection = online.selection(SERVICE)
    # Candidates in parts of at most LFP_API_MAX_ENTITIES pairs (the cap each part is held
    # to), read in one round trip: every vector from the same views.
    parts = [
        (
            selection,
            selection.entity_ids([{"user_id": user_id, "item_id": i} for i in items]),
            [{CONTEXT_FIELD: model.catalog[i]} for i in items],
        )
        for items in chunked(model.candidates, online.max_entities)
    ]
    served_parts = await online.serve_together(parts, ENDPOINT)
    vectors = [vector for part in served_parts for vector in part.vectors]
    pairs = zip(model.candidates, vectors, strict=True)
    scored = model.score([(item, vector.values) for item, vector in pairs])[:k]
    served = served_parts[0]
    user_positions = _user_positions(selection, online)
    known_user = any(
        vector.statuses[i] is not ValueStatus.NO_DATA
        for vector in vectors[:1]
        for i in user_positions
    )
    return Recommendations(
        user_id=user_id,
        as_of=served.as_of,
        known_user=known_user,
        batch=BatchViewInfo.of(served.snapshot.pointer),
        model=ModelInfo(
            services=model.services,
            trained_at=model.trained_at,
            training_rows=model.training_rows,
            metrics=model.metrics,
        ),
        items=[
            Recommendation(item_id=s.item_id, category=s.category, score=s.score) for s in scored
        ],
    )
