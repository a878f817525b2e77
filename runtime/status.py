"""Service status files: one heartbeat JSON per long-running service.

Services write them (atomically, so a reader never sees half a file); the embedded
stack's supervisor and the Compose healthchecks (``lfp probe status``) read them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: A service whose heartbeat is older than this is unhealthy.
HEARTBEAT_MAX_AGE_S = 15.0


def write_status(path: Path | None, **fields: Any) -> None:
    """Replace the status file with ``fields`` plus a fresh heartbeat (no-op without path)."""
    if path is None:
        return
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({**fields, "heartbeat": time.time()}))
    tmp.replace(path)


def status_problem(
    path: Path,
    max_age_s: float = HEARTBEAT_MAX_AGE_S,
    require: Mapping[str, str] | None = None,
) -> str | None:
    """Why the service is unhealthy, or None if its heartbeat is fresh.

    ``require`` maps keys to values the status must end with (``job_state`` is reported
    as ``JobStatus.RUNNING``, so ``RUNNING`` matches).
    """
    try:
        status = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        return f"cannot read {path}: {error}"
    age = time.time() - float(status.get("heartbeat", 0))
    if age > max_age_s:
        return f"heartbeat {age:.0f}s old"
    for key, value in (require or {}).items():
        if not str(status.get(key, "")).endswith(value):
            return f"{key}={status.get(key)!r}, want {value!r}"
    return None
