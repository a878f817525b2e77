"""``GET /v1/recommendations/{user_id}``: the demo model scoring candidates on served vectors.

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
import time
from collections.abc import AsyncIterator
from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, HTTPException, Path, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from demo.ranking import (
    ITEM_SERVICE,
    METADATA_FILE,
    USER_SERVICE,
    RankingModel,
    import_estimator_library,
)
from feature_core.merge import ValueStatus
from serving_layer.deps import Online
from serving_layer.models import BatchViewInfo, error_responses
from serving_layer.online import OnlineFeatures

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


def _as_mapping(names: list[str], values: list[Any]) -> dict[str, Any]:
    return dict(zip(names, values, strict=True))


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
    users = online.selection(USER_SERVICE)
    items = online.selection(ITEM_SERVICE)
    served_user, served_items = await online.serve_together(
        [(users, [user_id]), (items, model.candidates)], ENDPOINT
    )
    user_vector = served_user.vectors[0]
    user = _as_mapping(users.feature_names, user_vector.values)
    candidates = [
        (vector.entity_id, _as_mapping(items.feature_names, vector.values))
        for vector in served_items.vectors
    ]
    now_ms = int(time.time() * 1000)
    scored = model.score(user, candidates, now_ms)[:k]
    return Recommendations(
        user_id=user_id,
        as_of=served_user.as_of,
        known_user=any(s is ValueStatus.PRESENT for s in user_vector.statuses),
        batch=BatchViewInfo.of(served_user.snapshot.pointer),
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
