import pytest
from hypothesis import given
from hypothesis import strategies as st

from feature_core.windows import (
    COLLAPSED,
    DAY_MS,
    FINEST_HOP_MS,
    HOUR_MS,
    MINUTE_MS,
    Window,
    batch_layout,
    hop_for,
    parse_duration,
)


def test_hop_rule_boundaries():
    assert hop_for(11 * HOUR_MS) == 5 * MINUTE_MS
    assert hop_for(12 * HOUR_MS) == HOUR_MS
    assert hop_for(11 * DAY_MS) == HOUR_MS
    assert hop_for(12 * DAY_MS) == DAY_MS


def test_window_start_is_floored_to_the_hop():
    window = Window.parse("1d")  # hop 1h
    t = 10 * DAY_MS + 90 * MINUTE_MS
    assert window.start(t) == 9 * DAY_MS + HOUR_MS
    assert Window.parse("lifetime").start(t) is None


@pytest.mark.parametrize("text", ["7m", "721m", "1x", "", "90"])
def test_bad_windows_are_rejected_with_a_reason(text):
    with pytest.raises(ValueError, match=r"hop|duration"):
        Window.parse(text)


def test_parse_duration_units():
    assert parse_duration("90s") == 90_000
    assert parse_duration("2d") == 2 * DAY_MS


def test_cutoff_must_be_aligned():
    with pytest.raises(ValueError, match="aligned"):
        batch_layout(Window.parse("1h"), FINEST_HOP_MS + 1, DAY_MS)


@given(
    st.sampled_from(["5m", "1h", "6h", "1d", "7d", "30d", "90d"]),
    st.integers(100, 10_000).map(lambda k: k * FINEST_HOP_MS),
    st.integers(0, 400 * DAY_MS),
)
def test_buckets_partition_what_a_window_can_still_need(text, cutoff, event_time):
    window = Window.parse(text)
    layout = batch_layout(window, cutoff, DAY_MS)
    bucket = layout.bucket(event_time, window.hop_ms)
    if event_time >= cutoff or event_time < layout.tail_start:
        assert bucket is None
    elif event_time >= layout.collapsed_start:
        assert bucket == COLLAPSED
    else:
        assert bucket % window.hop_ms == 0 and bucket <= event_time < bucket + window.hop_ms
