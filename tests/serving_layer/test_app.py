"""App start-up behaviour that needs no Redis."""

from __future__ import annotations

import gc

from fastapi.testclient import TestClient

from feature_core.settings import Settings
from serving_layer.app import GC_YOUNG_THRESHOLD, create_app


def test_the_api_collects_garbage_rarely_while_it_runs_and_restores_the_gc_after() -> None:
    before = gc.get_threshold()
    assert before[0] != GC_YOUNG_THRESHOLD
    with TestClient(create_app(Settings(_env_file=None, feature_repo="demo.feature_repo"))):
        assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD
        assert gc.get_freeze_count() > 0  # start-up objects are out of every scan
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
