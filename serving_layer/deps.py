"""FastAPI dependencies: the per-app objects the lifespan creates, as typed parameters.

All ``async``: FastAPI runs plain ``def`` dependencies in a thread pool, and those hops
cost more than the whole feature merge.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from feature_core.definitions import FeatureRepo
from online_store.base import ViewReader
from serving_layer.metrics import ServingMetrics
from serving_layer.online import OnlineFeatures


def online_of(request: Request) -> OnlineFeatures:
    """The app's OnlineFeatures, read directly by the feature endpoints (no dependency
    resolution on their hot path) and through :data:`Online` by the others."""
    return request.app.state.online


async def get_online(request: Request) -> OnlineFeatures:
    return online_of(request)


async def get_store(request: Request) -> ViewReader:
    return request.app.state.store


async def get_repo(request: Request) -> FeatureRepo:
    return request.app.state.repo


async def get_metrics(request: Request) -> ServingMetrics:
    return request.app.state.metrics


Online = Annotated[OnlineFeatures, Depends(get_online)]
Store = Annotated[ViewReader, Depends(get_store)]
Repo = Annotated[FeatureRepo, Depends(get_repo)]
Metrics = Annotated[ServingMetrics, Depends(get_metrics)]
