"""The dead-letters page without a broker: the spill files' rejects counted by reason with
the newest record of each, and the broker's absence said on the page (within the read's
deadline, not a hang or a 500)."""

from __future__ import annotations

import time

import orjson
from hypothesis import given
from hypothesis import strategies as st

from demo.feature_repo import events as shop
from feature_core.sources import InvalidRecord
from runtime.dead_letters import append_spilled, envelope, spill_path
from serving_layer.console.dead_letters import READ_TIMEOUT_S, count_reasons, reason_kind


def letter(raw: bytes, reason: str, offset: int, at_ms: int) -> dict:
    return envelope(raw, reason, "events", 0, offset, 4096, rejected_at_ms=at_ms)


def test_reasons_are_counted_most_frequent_first_with_the_newest_sample():
    letters = [
        letter(b'{"a": 1}', "user_id: required", 1, 1000),
        letter(b'{"a": 2}', "amount: -1 is below the minimum 0", 2, 2000),
        letter(b'{"a": 3}', "user_id: required", 3, 3000),
        letter(b'{"a": 4}', "user_id: required", 4, 2500),
        {"no": "reason"},
    ]
    reasons = count_reasons(letters)
    assert [(r.reason, r.count) for r in reasons] == [
        ("user_id: required", 3),
        ("(no reason given)", 1),
        ("amount: <value> is below the minimum 0", 1),
    ]
    assert reasons[0].sample_text == '{"a": 3}'
    assert reasons[0].newest_ms == 3000
    binary = count_reasons([letter(b"\xff\xfe", "not UTF-8", 9, 1)])[0]
    assert binary.sample_text == "//4="  # base64, as the envelope holds it


def test_the_page_counts_spilled_rejects_and_says_the_broker_is_down(client, settings):
    now = int(time.time() * 1000)
    append_spilled(
        spill_path(settings.data_dir, "events.dlq"),
        [
            letter(b"not json", "not a JSON object", 1, now - 2000),
            letter(b"{}", "event_id: required", 2, now - 1500),
            letter(b'{"event_id": ""}', "event_id: shorter than 1 characters", 3, now - 1000),
            letter(b'{"x": 1}', "event_id: required", 4, now - 500),
        ],
    )
    started = time.monotonic()
    page = client.get("/console/dead-letters").text
    assert time.monotonic() - started < READ_TIMEOUT_S + 5
    section = page[page.index('id="rejects-events"') :]
    section = section[: section.index("</section>")]
    assert f"no Kafka broker answered at {settings.kafka_bootstrap_servers}" in section
    assert "0 from the topic, 4 spilled; 3 reasons." in section
    first = section[section.index("<tbody>") :]
    assert first.index("event_id: required") < first.index("not a JSON object")
    assert '<td class="num">2</td><td>event_id: required</td>' in section
    assert "{&#34;x&#34;: 1}" in section  # the newest record of that reason
    others = page[page.index('id="rejects-card_transactions"') :]
    assert "no Kafka broker answered" in others[: others.index("</section>")]


def rejected(record: dict) -> str:
    try:
        shop.parse(orjson.dumps(record))
    except InvalidRecord as error:
        return str(error)
    raise AssertionError(f"accepted: {record}")


VALID = {"event_id": "e", "user_id": "u", "event_time": 1, "event_type": "view", "item_id": "i"}


@given(
    st.text(max_size=40).filter(lambda t: t not in shop.by_name["event_type"].values),
    st.floats(max_value=-0.001, allow_nan=False, allow_infinity=False),
)
def test_records_failing_the_same_checks_with_other_values_count_as_one_reason(kind, amount):
    """The source's own reasons, whatever values they quote (quotes, '; ' and ': ' in them)."""
    one = rejected({**VALID, "event_type": "zzz", "amount": -1.0})
    other = rejected({**VALID, "event_type": kind, "amount": amount})
    assert reason_kind(one) == reason_kind(other)
    assert reason_kind(one).startswith("event_type: <value> is not one of 'view'")
    assert "amount: <value> is below the minimum 0" in reason_kind(one)
    # Different checks stay apart.
    assert reason_kind(rejected({**VALID, "amount": -1.0})) != reason_kind(one)
