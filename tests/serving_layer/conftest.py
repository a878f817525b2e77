"""Settings of an API over a test's own redis-server (the ``redis_process`` fixture)."""

from __future__ import annotations

import os
from typing import Any

from feature_core.settings import Settings


def private_redis_settings(redis_port: int, **overrides: Any) -> Settings:
    """The demo repo's API on the test's Redis: no environment, no password, no routers."""
    return Settings(
        **{
            "_env_file": None,
            "redis_url": f"redis://127.0.0.1:{redis_port}/0",
            "redis_password_file": os.devnull,  # the test's own Redis has none
            "feature_repo": "demo.feature_repo",
            "api_routers": [],
            **overrides,
        }
    )
