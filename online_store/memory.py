"""How full each Redis server is. Redis runs with ``maxmemory`` and ``noeviction``: once
full it refuses every write (a batch run, the speed sink) rather than evicting views,
so a server near its limit is reported (``/readyz``, ``/metrics``) before it refuses."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class MemoryUse:
    node: str  # host:port, or "redis" for the one server
    used: int  # bytes (INFO memory used_memory)
    limit: int  # maxmemory; 0: no limit

    @property
    def ratio(self) -> float | None:
        """Used share of the limit; None without one."""
        return self.used / self.limit if self.limit else None


def memory_use(node: str, info: Mapping[str, Any]) -> MemoryUse:
    """One server's use from its ``INFO memory`` reply."""
    return MemoryUse(node, int(info.get("used_memory", 0)), int(info.get("maxmemory", 0)))


def memory_uses(replies: Mapping[str, Any]) -> list[MemoryUse]:
    """Each node's use from a cluster's ``INFO memory`` replies ({node: info}); a reply
    of one node alone is that node's info itself."""
    if "used_memory" in replies:
        return [memory_use("redis", replies)]
    return sorted((memory_use(str(n), info) for n, info in replies.items()), key=_node)


def _node(use: MemoryUse) -> str:
    return use.node


def memory_problems(uses: Iterable[MemoryUse], ready_ratio: float) -> list[str]:
    """A readiness problem per server past ``ready_ratio`` of its maxmemory."""
    problems = []
    for use in uses:
        ratio = use.ratio
        if ratio is not None and ratio >= ready_ratio:
            problems.append(
                f"Redis {use.node} uses {ratio:.0%} of its maxmemory ({use.used >> 20} of "
                f"{use.limit >> 20} MiB; LFP_REDIS_MEMORY_READY_RATIO {ready_ratio:g}): once "
                "full it refuses writes (noeviction); raise LFP_REDIS_MAXMEMORY, keep fewer "
                "versions (LFP_BATCH_KEEP_VERSIONS) or shorten LFP_SPEED_TILE_TTL_S"
            )
    return problems
