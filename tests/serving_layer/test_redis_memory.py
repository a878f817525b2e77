"""A Redis near its maxmemory (noeviction: it will refuse writes) is a readiness problem
and a metric; a private redis-server is filled, so the shared stack is never touched."""

from __future__ import annotations

import pytest
import redis
from fastapi.testclient import TestClient

from online_store.memory import MemoryUse, memory_problems, memory_uses
from serving_layer.app import create_app
from tests.conftest import wait_for
from tests.serving_layer.conftest import private_redis_settings


def test_a_server_past_the_ratio_is_a_problem_naming_the_fix():
    uses = [MemoryUse("a:1", 95, 100), MemoryUse("b:2", 10, 100), MemoryUse("c:3", 10**9, 0)]
    problems = memory_problems(uses, 0.9)
    assert len(problems) == 1
    assert "Redis a:1 uses 95% of its maxmemory" in problems[0]
    assert "LFP_REDIS_MAXMEMORY" in problems[0]
    assert memory_problems(uses, 0.96) == []


def test_info_replies_of_one_server_or_of_each_cluster_node():
    one = {"used_memory": 5, "maxmemory": 10}
    assert memory_uses(one) == [MemoryUse("redis", 5, 10)]
    nodes = {"b:2": {"used_memory": 1, "maxmemory": 0}, "a:1": one}
    assert memory_uses(nodes) == [MemoryUse("a:1", 5, 10), MemoryUse("b:2", 1, 0)]
    assert MemoryUse("b:2", 1, 0).ratio is None


@pytest.fixture
def api(redis_process) -> TestClient:
    settings = private_redis_settings(redis_process.port)
    with TestClient(create_app(settings)) as client:
        yield client


def _memory_problems(client: TestClient) -> list[str]:
    return [p for p in client.get("/readyz").json()["problems"] if "maxmemory" in p]


def test_readyz_and_metrics_report_a_redis_near_its_maxmemory(redis_process, api):
    direct = redis.Redis(host="127.0.0.1", port=redis_process.port)
    direct.config_set("maxmemory-policy", "noeviction")
    used = int(direct.info("memory")["used_memory"])
    direct.config_set("maxmemory", used * 4)
    assert _memory_problems(api) == []
    ratio = [
        line
        for line in api.get("/metrics").text.splitlines()
        if line.startswith('lfp_redis_memory_used_ratio{node="redis"}')
    ]
    assert len(ratio) == 1 and 0.1 < float(ratio[0].split()[-1]) < 0.5

    # Near full: used memory past 90 % of maxmemory. The ops endpoints answer from a
    # read shared per LFP_API_OPS_INTERVAL_S: the next read reports it.
    used = int(direct.info("memory")["used_memory"])
    direct.config_set("maxmemory", int(used / 0.97))
    (problem,) = wait_for(lambda: _memory_problems(api), 10, "the memory problem", 0.1)
    assert problem.startswith("Redis redis uses 9") and "noeviction" in problem
    assert api.get("/readyz").status_code == 503
    wait_for(
        lambda: 'lfp_redis_memory_used_ratio{node="redis"} 0.9' in api.get("/metrics").text,
        10,
        "the memory ratio in /metrics",
        0.1,
    )
