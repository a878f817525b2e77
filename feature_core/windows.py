"""Window and tile math shared by every layer.

Windows slide in hops ("sawtooth" windows, as in Chronon). A window of length ``w``
evaluated at time ``t`` covers events with event time in ``[floor(t - w, hop(w)), t)``:

=================  =========
window length      hop
=================  =========
under 12 hours     5 minutes
under 12 days      1 hour
12 days or more    1 day
=================  =========

A lifetime window covers ``(-inf, t)``. A session window (``session:30m``) covers the
current session at ``t``: the events before ``t`` since the last gap of at least 30
minutes between two consecutive events, and nothing once the newest event before ``t`` is
30 minutes old. Its gap is at least a speed tile wide, so no tile holds a gap: tiles
merge into sessions by their first and last event times alone.

The batch cutoff ``B`` is aligned to the finest hop; batch IRs cover event time
``< B``, speed tiles (5 minutes wide) cover ``>= B``. The two never overlap, so merging
them is exact for every aggregation.

A speed tile is keyed by its start and holds the events of ``[start, start + 5 min)``,
except an event dated after the moment it was produced (its Kafka record's timestamp):
clock skew lets such an event arrive before its time, so it is kept under its exact
event time (see :func:`speed_tile_start`). Every event of a tile keyed ``s`` is then at
or after ``s`` and, for a query made after the tile was written (so after the record's
timestamp), before the query time: a merge that takes the tiles with ``s < t`` counts
exactly the events before ``t``, never one dated later. An event dated in the very
millisecond it was produced, the common case for a producer that stamps and sends at
once, stays in its 5-minute tile: a query that sees it comes later.

For a sliding window the batch view stores, per entity, the hop tiles that may still
slide out of the window (``[floor(B - w, hop), collapsed_start)``) and one collapsed
IR for ``[collapsed_start, B)``, where ``collapsed_start = min(floor(B - w + H, hop), B)``
and ``H`` is the batch horizon. Any query time ``t`` in ``[B, B + H]`` is then exact.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache

SECOND_MS = 1000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

FINEST_HOP_MS = 5 * MINUTE_MS
#: Width of speed-layer tiles: the finest hop any window uses.
SPEED_TILE_MS = FINEST_HOP_MS
#: Bucket label of the collapsed batch IR.
COLLAPSED = "c"

_UNITS = {"s": SECOND_MS, "m": MINUTE_MS, "h": HOUR_MS, "d": DAY_MS}
_DURATION = re.compile(r"([0-9]+)([smhd])")


def parse_duration(text: str) -> int:
    """``"90d"`` -> milliseconds. Units: s, m, h, d."""
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise ValueError(f"bad duration {text!r}: use a number and one of s, m, h, d (e.g. 1h)")
    return int(match.group(1)) * _UNITS[match.group(2)]


def format_duration(ms: int) -> str:
    for unit in ("d", "h", "m", "s"):
        if ms % _UNITS[unit] == 0:
            return f"{ms // _UNITS[unit]}{unit}"
    return f"{ms}ms"


def hop_for(length_ms: int) -> int:
    """The hop rule from the module docstring."""
    if length_ms < 12 * HOUR_MS:
        return FINEST_HOP_MS
    if length_ms < 12 * DAY_MS:
        return HOUR_MS
    return DAY_MS


def floor_to(t: int, step: int) -> int:
    return (t // step) * step


SESSION_PREFIX = "session:"


@dataclass(frozen=True, order=True)
class Window:
    """A sliding window (``length_ms``), the lifetime window (``length_ms is None``), or a
    session window (``gap_ms``: the current session, see the module docstring)."""

    length_ms: int | None
    gap_ms: int | None = None

    @classmethod
    def parse(cls, text: str) -> Window:
        if text.strip().lower() in {"lifetime", "all", "forever"}:
            return cls(None)
        if text.strip().startswith(SESSION_PREFIX):
            gap = parse_duration(text.strip()[len(SESSION_PREFIX) :])
            if gap < SPEED_TILE_MS:
                raise ValueError(
                    f"window {text!r}: a session gap must be at least the 5-minute speed "
                    f"tile (a tile must never hold a gap), got {format_duration(gap)}"
                )
            return cls(None, gap)
        length = parse_duration(text)
        window = cls(length)
        if length <= 0 or length % window.hop_ms:
            raise ValueError(
                f"window {text!r} is not a positive multiple of its hop "
                f"({format_duration(hop_for(length))})"
            )
        return window

    @property
    def is_lifetime(self) -> bool:
        return self.length_ms is None and self.gap_ms is None

    @property
    def is_session(self) -> bool:
        return self.gap_ms is not None

    @cached_property  # read on every served window: computed once per Window
    def hop_ms(self) -> int:
        return FINEST_HOP_MS if self.length_ms is None else hop_for(self.length_ms)

    @cached_property
    def name(self) -> str:
        if self.gap_ms is not None:
            return f"session_{format_duration(self.gap_ms)}"
        return "lifetime" if self.length_ms is None else format_duration(self.length_ms)

    def start(self, t: int) -> int | None:
        """Inclusive start of the window evaluated at ``t`` (``None``: unbounded, or a
        session's, which depends on the events)."""
        if self.length_ms is None:
            return None
        return floor_to(t - self.length_ms, self.hop_ms)

    def contains(self, event_time: int, t: int) -> bool:
        """Whether a sliding or lifetime window at ``t`` covers ``event_time``."""
        if self.gap_ms is not None:
            raise ValueError("a session window depends on the events: use events_in")
        start = self.start(t)
        return event_time < t and (start is None or event_time >= start)

    def events_in(self, times: Sequence[int], t: int) -> Callable[[int], bool]:
        """Whether the window at ``t`` covers an event time, given all the entity's event
        times (sorted): a session's start is where the last gap before ``t`` ends."""
        if self.gap_ms is None:
            return lambda event_time: self.contains(event_time, t)
        start = session_start(times, t, self.gap_ms)
        return lambda event_time: start is not None and start <= event_time < t


def session_start(
    times: Sequence[int], t: int, gap_ms: int | None, expire: bool = True
) -> int | None:
    """The first event time of the session current at ``t`` (``times`` sorted): ``None``
    when there is no event before ``t`` or (``expire``) the newest is ``gap_ms`` old or
    older; without ``expire``, the last session's start however old it is."""
    assert gap_ms is not None
    i = bisect_left(times, t) - 1
    if i < 0 or (expire and t - times[i] >= gap_ms):
        return None
    while i > 0 and times[i] - times[i - 1] < gap_ms:
        i -= 1
    return times[i]


@dataclass(frozen=True)
class BatchLayout:
    """Which part of ``(-inf, B)`` the batch view stores as tail tiles vs. collapsed."""

    cutoff: int
    tail_start: int | None  # None: lifetime, everything is collapsed
    collapsed_start: int | None  # None: collapsed part is unbounded below

    def bucket(self, event_time: int, hop_ms: int) -> str | int | None:
        """Bucket of an event: ``COLLAPSED``, a tail tile start, or None (not needed)."""
        if event_time >= self.cutoff:
            return None
        if self.tail_start is None:
            return COLLAPSED
        if event_time < self.tail_start:
            return None
        assert self.collapsed_start is not None
        if event_time >= self.collapsed_start:
            return COLLAPSED
        return floor_to(event_time, hop_ms)

    def exact_until(self, window: Window) -> int | None:
        """Latest query time for which this layout serves the window exactly."""
        if window.length_ms is None or self.collapsed_start is None:
            return None
        # Exact while the window start stays at or before the collapsed part's start.
        return self.collapsed_start + window.length_ms + window.hop_ms - 1


@lru_cache(maxsize=1024)  # pure, and asked for by every served window
def batch_layout(window: Window, cutoff: int, horizon_ms: int) -> BatchLayout:
    if cutoff % FINEST_HOP_MS:
        raise ValueError("batch cutoff must be aligned to 5 minutes")
    if window.length_ms is None:  # lifetime; a session: its current session, collapsed
        return BatchLayout(cutoff, None, None)
    hop = window.hop_ms
    tail_start = floor_to(cutoff - window.length_ms, hop)
    collapsed_start = min(floor_to(cutoff - window.length_ms + horizon_ms, hop), cutoff)
    return BatchLayout(cutoff, tail_start, max(collapsed_start, tail_start))


@dataclass(frozen=True)
class EdgeBands:
    """What moving a window's batch cutoff from ``B0`` to ``B1`` moves, as half-open
    ``(start, end)`` ranges of event time (empty: ``start >= end``)."""

    leaving: tuple[int, int]  # tail tiles that drop out: [ts(B0), ts(B1))
    crossing: tuple[int, int]  # events that leave the collapsed IR for tail tiles
    entering: tuple[int, int]  # events newly before the cutoff: [B0, B1)

    def touches(self, start: int) -> bool:
        """Whether a tile of the window's hop starting at ``start`` lies in a moved band
        (leaving or crossing): its entity's batch document changes with the cutoff."""
        return self.leaving[0] <= start < self.leaving[1] or (
            self.crossing[0] <= start < self.crossing[1]
        )


def edge_bands(window: Window, before: int, after: int, horizon_ms: int) -> EdgeBands:
    """The bands a batch cutoff move from ``before`` to ``after`` sweeps for ``window``
    (both cutoffs under the same horizon). Lifetime and session windows have no edges:
    their documents change only with new events."""
    if after < before:
        raise ValueError(f"a batch cutoff only moves forward ({before} -> {after})")
    if window.length_ms is None:
        return EdgeBands((before, before), (before, before), (before, after))
    old = batch_layout(window, before, horizon_ms)
    new = batch_layout(window, after, horizon_ms)
    assert old.tail_start is not None and new.tail_start is not None
    assert old.collapsed_start is not None and new.collapsed_start is not None
    return EdgeBands(
        (old.tail_start, new.tail_start),
        (old.collapsed_start, new.collapsed_start),
        (before, after),
    )


def speed_tile_start(event_time: int, produced_at: int | None) -> int:
    """The speed tile key of an event (see the module docstring): its 5-minute tile, or
    its exact time if it is dated after ``produced_at``."""
    if produced_at is not None and event_time > produced_at:
        return event_time
    return floor_to(event_time, SPEED_TILE_MS)


def align_cutoff(t: int) -> int:
    """The latest valid batch cutoff at or before ``t``."""
    return floor_to(t, FINEST_HOP_MS)
