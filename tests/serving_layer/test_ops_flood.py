"""Unauthenticated ops endpoints cannot starve feature reads: a flood of /readyz,
/metrics or /health costs at most one round of Redis reads per LFP_API_OPS_INTERVAL_S,
counted by the private redis-server itself (INFO stats), not by a stand-in."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
import redis

from feature_core.settings import Settings
from serving_layer.app import create_app
from serving_layer.ops_cache import SharedResult


def _commands(client: redis.Redis) -> int:
    return int(client.info("stats")["total_commands_processed"])


async def _flood(app: object, path: str, n: int) -> list[int]:
    async with app.router.lifespan_context(app):  # type: ignore[attr-defined]
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            # Half at once (they share the read under way), half one after the other.
            responses = await asyncio.gather(*(client.get(path) for _ in range(n // 2)))
            for _ in range(n - n // 2):
                responses.append(await client.get(path))
    return [r.status_code for r in responses]


@pytest.mark.parametrize("path", ["/readyz", "/metrics", "/health"])
def test_a_flood_of_ops_calls_reads_redis_once_per_interval(
    redis_process, tmp_path: Path, path: str
) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path,
        feature_repo="demo.feature_repo",
        api_routers=[],
        redis_url=f"redis://127.0.0.1:{redis_process.port}/0",
        api_ops_interval_s=30.0,  # the whole flood falls in one interval
    )
    direct = redis.Redis(host="127.0.0.1", port=redis_process.port)
    asyncio.run(_flood(create_app(settings), path, 1))  # loads the read scripts once
    before = _commands(direct)
    asyncio.run(_flood(create_app(settings), path, 1))
    one_call = _commands(direct) - before - 1  # start-up and one answer (less the INFO)

    app = create_app(settings)
    before = _commands(direct)
    statuses = asyncio.run(_flood(app, path, 300))
    flood = _commands(direct) - before - 1
    # No batch view in this Redis: /readyz is 503 and says so, /health and /metrics 200.
    assert set(statuses) == {503 if path == "/readyz" else 200}
    assert one_call > 0  # the count sees the reads
    assert flood == one_call, (flood, one_call)  # 300 calls cost what one call costs
    assert app.state.ops_results[path.strip("/")].runs == 1


def test_concurrent_callers_share_one_run_and_a_failure_is_shared_too() -> None:
    calls = 0

    async def compute() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        if calls == 2:
            raise ConnectionError("redis down")
        return calls

    async def main() -> None:
        shared: SharedResult[int] = SharedResult(interval_s=0.2)
        assert await asyncio.gather(*(shared.get(compute) for _ in range(50))) == [1] * 50
        assert await shared.get(compute) == 1  # within the interval: no new run
        await asyncio.sleep(0.25)
        for result in await asyncio.gather(
            *(shared.get(compute) for _ in range(20)), return_exceptions=True
        ):
            assert isinstance(result, ConnectionError)
        with pytest.raises(ConnectionError):
            await shared.get(compute)  # the failure, not a retry per call
        await asyncio.sleep(0.25)
        assert await shared.get(compute) == 3
        assert shared.runs == calls == 3

    asyncio.run(main())
