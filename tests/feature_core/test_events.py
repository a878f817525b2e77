import json

import pytest

from feature_core.events import InvalidEvent, parse_event

GOOD = {"event_id": "e1", "user_id": "u1", "event_type": "view", "event_time": 1_700_000_000_000}


def test_a_good_event_parses():
    event = parse_event(json.dumps(GOOD))
    assert event.user_id == "u1" and event.amount is None


def test_integer_amounts_are_accepted_on_purchases():
    event = parse_event(json.dumps({**GOOD, "event_type": "purchase", "amount": 3}))
    assert event.amount == 3.0


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (None, "empty record"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "user_id"}), "user_id: Field required"),
        (json.dumps({**GOOD, "user_id": 42}), "user_id: Input should be a valid string"),
        (json.dumps({**GOOD, "event_time": "yesterday"}), "event_time"),
        (json.dumps({**GOOD, "event_type": "teleport"}), "event_type"),
        (json.dumps({**GOOD, "event_type": "purchase"}), "purchase events need an amount"),
        (json.dumps({**GOOD, "amount": 5.0}), "view events must not carry an amount"),
    ],
)
def test_bad_events_are_rejected_with_a_reason(raw, reason):
    with pytest.raises(InvalidEvent, match=reason):
        parse_event(raw)


def test_far_future_events_are_rejected():
    with pytest.raises(InvalidEvent, match="future"):
        parse_event(json.dumps(GOOD), now_ms=GOOD["event_time"] - 10 * 60_000)
