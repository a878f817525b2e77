"""FastAPI serving layer: merged, finalized feature values over HTTP."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import redis.asyncio as aioredis
from fastapi import Depends, FastAPI, HTTPException, Path, Request
from fastapi.responses import ORJSONResponse
from pydantic import BaseModel, Field
from redis.exceptions import RedisError

from feature_core.definitions import FeatureGroup, FeatureRepo
from feature_core.merge import merge_group
from feature_core.settings import Settings, get_settings
from serving_layer.store import FeatureStore

log = logging.getLogger(__name__)

EntityId = Annotated[str, Path(min_length=1, max_length=256, description="Entity join key.")]


class GroupFeatures(BaseModel):
    """Feature values of one entity in one feature group, and the views they came from."""

    group: str
    entity_id: str
    as_of: int = Field(description="Query time (epoch ms): windows end here.")
    batch_cutoff: int | None = Field(description="Batch view covers event time < this.")
    batch_version: int | None
    speed_watermark: int | None = Field(description="Latest event time in the speed view.")
    features: dict[str, Any]
    statuses: dict[str, str]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    client = aioredis.Redis.from_url(
        settings.redis_url, socket_timeout=2.0, socket_connect_timeout=2.0
    )
    app.state.store = FeatureStore(client, settings.key_prefix)
    yield
    await client.aclose()


def get_store(request: Request) -> FeatureStore:
    return request.app.state.store


def get_repo(request: Request) -> FeatureRepo:
    return request.app.state.repo


Store = Annotated[FeatureStore, Depends(get_store)]
Repo = Annotated[FeatureRepo, Depends(get_repo)]


def _group(repo: FeatureRepo, name: str) -> FeatureGroup:
    try:
        return repo.group(name)
    except KeyError as error:
        raise HTTPException(404, str(error.args[0])) from None


def create_app(settings: Settings | None = None, repo: FeatureRepo | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="Lambda Feature Platform",
        version="0.1.0",
        default_response_class=ORJSONResponse,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.repo = repo or FeatureRepo.from_module(settings.feature_repo)

    @app.exception_handler(RedisError)
    async def redis_unavailable(request: Request, error: RedisError) -> ORJSONResponse:
        log.warning("redis error on %s: %s", request.url.path, error)
        return ORJSONResponse(
            status_code=503,
            content={"detail": f"feature views unavailable: Redis error ({type(error).__name__})"},
        )

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @app.get("/v1/features/{group}/{entity_id}", response_model=GroupFeatures, tags=["features"])
    async def get_group_features(
        group: str, entity_id: EntityId, store: Store, repo: Repo
    ) -> GroupFeatures:
        """Merged batch + speed feature values of one entity in one feature group."""
        definition = _group(repo, group)
        snapshot = await store.read([(group, entity_id)])
        as_of = int(time.time() * 1000)
        views = snapshot.entities[0]
        merged = merge_group(
            definition, as_of, snapshot.pointer, views.batch_doc, views.speed_tiles
        )
        return GroupFeatures(
            group=group,
            entity_id=entity_id,
            as_of=as_of,
            batch_cutoff=snapshot.pointer.cutoff if snapshot.pointer else None,
            batch_version=snapshot.pointer.version if snapshot.pointer else None,
            speed_watermark=snapshot.speed_watermarks.get(group),
            features={name: v.value for name, v in merged.items()},
            statuses={name: v.status.value for name, v in merged.items()},
        )

    return app
