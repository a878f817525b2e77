"""The online store as a Spark task uses it: opened per task, closed after, with the
batch layer's Redis timeout explained in one line."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from feature_core.settings import Settings
from online_store import open_store
from online_store.base import OnlineStore
from online_store.timeouts import explain_timeouts


@contextmanager
def task_store(settings: Settings) -> Iterator[OnlineStore]:
    """A paused Redis fails the task after LFP_BATCH_REDIS_TIMEOUT_S with one clear line
    (found again in the driver's error by run_batch) instead of hanging the run."""
    with explain_timeouts(settings.redis_url, settings.batch_redis_timeout_s):
        store = open_store(settings)
        try:
            yield store
        finally:
            store.close()


def write_task_views(
    settings: Settings,
    version: int,
    serving: int,
    group: str,
    views: Iterable[tuple[str, bytes]],
    counters,
) -> None:
    """Write a task's (entity, document) pairs of one group; ``counters`` (written,
    created, deleted) accumulate what the store reports."""
    written, created, deleted = counters
    with task_store(settings) as store:
        changes = store.write_views(version, serving, group, views, written.add)
    if changes is not None:
        created.add(changes.created)
        deleted.add(changes.deleted)
