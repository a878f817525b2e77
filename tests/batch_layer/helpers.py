"""What the batch layer's Spark tests share."""

from __future__ import annotations

import os
from typing import Any

from feature_core.settings import Settings


def lake_settings(redis_process: Any, tmp_path: Any, **overrides: Any) -> Settings:
    """A lake under the test's directory and the test's own Redis (no password). Its
    lakes are small: tiles are kept at any size (LFP_BATCH_TILES_MIN_EVENTS=0) unless
    the test says otherwise."""
    return Settings(
        _env_file=None,
        data_dir=tmp_path,
        lake_uri=str(tmp_path / "lake"),
        redis_url=f"redis://127.0.0.1:{redis_process.port}/0",
        redis_password_file=os.devnull,
        **{"batch_tiles_min_events": 0, **overrides},
    )
