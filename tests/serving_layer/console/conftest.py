"""The console's fast tests: the API app (TestClient) over a private redis-server, with a
Kafka address where no broker listens (the dead-letters page must say so, not fail)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from feature_core.settings import Settings
from infra.stack import free_port
from online_store import open_store
from online_store.base import OnlineStore
from serving_layer.app import create_app

REPO = "tests.integration.both_workloads"


def console_settings(redis_port: int, data_dir: Path, **overrides: Any) -> Settings:
    return Settings(
        _env_file=None,
        redis_url=f"redis://127.0.0.1:{redis_port}/0",
        redis_password_file=os.devnull,  # the test's own Redis has none
        feature_repo=REPO,
        api_routers=[],
        data_dir=data_dir,
        kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",  # nothing listens there
        **overrides,
    )


@pytest.fixture
def settings(redis_process, tmp_path: Path) -> Settings:
    return console_settings(redis_process.port, tmp_path)


@pytest.fixture
def store(settings: Settings) -> Iterator[OnlineStore]:
    opened = open_store(settings)
    yield opened
    opened.close()


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as api:
        yield api


def figures(html: str) -> dict[str, dict]:
    """Each plot's figure on a page, by the plot element's id (the JSON the page gives
    Plotly.js, as the browser parses it)."""
    found = {}
    for plot_id, data_id in re.findall(
        r'<div class="plot" id="([^"]+)" data-figure="([^"]+)">', html
    ):
        match = re.search(
            rf'<script type="application/json" id="{re.escape(data_id)}">(.*?)</script>', html, re.S
        )
        assert match is not None, f"plot {plot_id} has no figure data"
        found[plot_id] = json.loads(match.group(1))
    return found
