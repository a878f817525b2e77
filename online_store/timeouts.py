"""One clear line when a writer's Redis does not answer in time.

redis-py says only "Timeout reading from socket"; a batch run that fails on a paused or
hung Redis should say which Redis, how long it waited and which setting sets that, in
the driver and from Spark's executors alike (their errors reach the driver as text, so
the message is found again in it: :func:`explain_timeouts`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from redis.exceptions import TimeoutError as RedisTimeoutError

from feature_core.credentials import redact_url

#: The setting that bounds the writers' Redis commands.
WRITER_TIMEOUT_SETTING = "LFP_BATCH_REDIS_TIMEOUT_S"

_MESSAGE = re.compile(r"Redis at \S+ did not answer within [0-9.]+ s \(LFP_[A-Z_]+\)[^\n]*")


class StoreTimeoutError(RedisTimeoutError):
    """A writer's Redis did not answer within its timeout (a store error: retryable)."""


def timeout_message(url: str, timeout_s: float, setting: str = WRITER_TIMEOUT_SETTING) -> str:
    return (
        f"Redis at {redact_url(url)} did not answer within {timeout_s:g} s ({setting}): "
        f"is it paused, hung or overloaded? Raise {setting} if its writes are only slow"
    )


@contextmanager
def explain_timeouts(
    url: str, timeout_s: float, setting: str = WRITER_TIMEOUT_SETTING
) -> Iterator[None]:
    """Re-raise a Redis timeout inside as :class:`StoreTimeoutError` with the clear line,
    and an error carrying that line in its text (a failed Spark job) as one too."""
    try:
        yield
    except StoreTimeoutError:
        raise
    except RedisTimeoutError as error:
        raise StoreTimeoutError(timeout_message(url, timeout_s, setting)) from error
    except Exception as error:
        found = _MESSAGE.search(str(error))
        if found is None:
            raise
        raise StoreTimeoutError(found.group(0)) from error
