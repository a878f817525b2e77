"""Declared sources: one declaration, one validator, every engine's schema."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from demo.feature_repo import events as shop
from feature_core.sources import (
    LAKE_COLUMNS,
    EventSource,
    Field,
    InvalidRecord,
    RequiredWhen,
    SourceError,
)

GOOD = {"event_id": "e1", "user_id": "u1", "event_type": "view", "event_time": 1_700_000_000_000}


def test_a_good_event_parses_to_every_declared_field():
    record = shop.parse(json.dumps(GOOD))
    assert record["user_id"] == "u1" and record["amount"] is None
    assert set(record) == set(shop.columns)


def test_integer_amounts_are_accepted_as_floats():
    record = shop.parse(json.dumps({**GOOD, "event_type": "purchase", "amount": 3}))
    assert record["amount"] == 3.0 and isinstance(record["amount"], float)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (None, "empty record"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "user_id"}), "user_id: required"),
        (json.dumps({**GOOD, "user_id": 42}), "user_id: should be a string"),
        (json.dumps({**GOOD, "user_id": ""}), "user_id: shorter than 1"),
        (json.dumps({**GOOD, "event_time": "yesterday"}), "event_time: not an ISO-8601"),
        (json.dumps({**GOOD, "event_type": "teleport"}), "event_type: 'teleport' is not one of"),
        (json.dumps({**GOOD, "event_type": "purchase"}), "amount is required when event_type"),
        (json.dumps({**GOOD, "amount": 5.0}), "amount must be absent when event_type is 'view'"),
        (json.dumps({**GOOD, "event_type": "purchase", "amount": -1}), "below the minimum"),
    ],
)
def test_bad_events_are_rejected_with_a_reason(raw, reason):
    with pytest.raises(InvalidRecord, match=reason):
        shop.parse(raw)


def test_far_future_events_are_rejected():
    with pytest.raises(InvalidRecord, match="future"):
        shop.parse(json.dumps(GOOD), now_ms=GOOD["event_time"] - 10 * 60_000)


LOGINS = EventSource(
    "logins",
    topic="logins",
    event_time="ts",
    fields=[
        Field("account_id", "string", required=True, max_length=8),
        Field("ts", "timestamp", required=True),
        Field("success", "boolean", required=True),
        Field("attempt", "integer", min=1, max=10),
        Field("channel", "integer", values=[1, 2]),
    ],
)


def test_iso_timestamps_are_normalized_to_epoch_ms():
    record = LOGINS.check({"account_id": "a", "ts": "2026-01-01T00:00:01.5Z", "success": True})
    assert record["ts"] == 1_767_225_601_500
    offset = LOGINS.check({"account_id": "a", "ts": "2026-01-01T01:00:00+01:00", "success": True})
    assert offset["ts"] == 1_767_225_600_000


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"ts": "2026-01-01T00:00:00"}, "needs a UTC offset"),
        ({"success": 1}, "success: should be true or false"),
        ({"attempt": True}, "attempt: should be an integer"),
        ({"attempt": 2.0}, "attempt: should be an integer"),
        ({"attempt": 11}, "above the maximum"),
        ({"channel": True}, "channel: should be an integer"),
        ({"channel": 3}, "not one of"),
        ({"account_id": "x" * 9}, "longer than 8"),
        ({"ts": True}, "ts: should be epoch milliseconds"),
    ],
)
def test_types_and_constraints_are_strict(data, reason):
    base = {"account_id": "a", "ts": 1_767_225_600_000, "success": False}
    with pytest.raises(InvalidRecord, match=reason):
        LOGINS.check({**base, **data})


def test_one_declaration_compiles_to_every_engine_schema():
    assert LOGINS.lake_schema.names == [
        *LOGINS.columns,
        "event_date",
        "kafka_partition",
        "kafka_offset",
    ]
    assert not LOGINS.lake_schema.field("success").nullable
    assert LOGINS.lake_schema.field("attempt").nullable
    assert "`success` BOOLEAN" in LOGINS.spark_ddl() and "`ts` BIGINT" in LOGINS.spark_ddl()
    assert ("success", "BOOLEAN") in LOGINS.flink_columns()
    assert LOGINS.dlq_topic == "logins.dlq" and LOGINS.table_name == "logins"


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        (EventSource("s", fields=[Field("event_time", "timestamp")]), "required timestamp"),
        (EventSource("s", fields=[Field("t", "timestamp", required=True)]), "event_time"),
        (
            EventSource("s", event_time="t", fields=[Field("t", "date", required=True)]),
            "unknown type",
        ),
        (
            EventSource(
                "s",
                event_time="t",
                fields=[Field("t", "timestamp", required=True), Field("kafka_offset", "integer")],
            ),
            "reserved",
        ),
        (
            EventSource(
                "s",
                event_time="t",
                fields=[Field("t", "timestamp", required=True), Field("x", "float", values=[1.0])],
            ),
            "allowed values need",
        ),
        (
            EventSource(
                "s",
                event_time="t",
                topic="bad topic",
                fields=[Field("t", "timestamp", required=True)],
            ),
            "topic",
        ),
        (
            EventSource(
                "s",
                event_time="t",
                fields=[Field("t", "timestamp", required=True), Field("x", "float")],
                rules=[RequiredWhen("x", when="y", values=["a"])],
            ),
            "no field 'y'",
        ),
        (
            EventSource(
                "s",
                event_time="t",
                fields=[Field("t", "timestamp", required=True), Field("x", "float")],
                rules=[RequiredWhen("t", when="x", values=[1.0])],
            ),
            "'x': allowed values need a string, integer or boolean",
        ),
        (
            EventSource(
                "s",
                event_time="t",
                fields=[Field("t", "timestamp", required=True), Field("k", "string")],
                rules=[RequiredWhen("t", when="k", values=[3])],
            ),
            "value 3 should be a string",
        ),
    ],
)
def test_bad_declarations_say_what_is_wrong(source, problem):
    with pytest.raises(SourceError, match=problem):
        source.validate()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
records = st.fixed_dictionaries(
    {},
    optional={
        "account_id": st.one_of(st.text(max_size=10), json_values),
        "ts": st.one_of(
            st.integers(-5, 2**64),
            st.sampled_from(["2026-01-01T00:00:00Z", "x", "2026-01-01T00:00:00"]),
            json_values,
        ),
        "success": st.one_of(st.booleans(), json_values),
        "attempt": st.one_of(st.integers(-3, 14), json_values),
        "channel": st.one_of(st.sampled_from([1, 2, 3, True]), json_values),
    },
)


@given(records)
def test_the_validator_accepts_exactly_what_the_declaration_allows(data):
    """An independent reading of the declaration: each field's rule, checked directly."""

    def allowed() -> bool:
        def is_int(v):
            return isinstance(v, int) and not isinstance(v, bool)

        account, ts = data.get("account_id"), data.get("ts")
        if not isinstance(account, str) or len(account) > 8:
            return False
        if isinstance(ts, str):
            if ts != "2026-01-01T00:00:00Z":
                return False
        elif not (is_int(ts) and 0 < ts < 2**63):
            return False
        if not isinstance(data.get("success"), bool):
            return False
        attempt = data.get("attempt")
        if attempt is not None and not (is_int(attempt) and 1 <= attempt <= 10):
            return False
        channel = data.get("channel")
        return channel is None or (is_int(channel) and channel in (1, 2))

    try:
        LOGINS.check(data)
        accepted = True
    except InvalidRecord:
        accepted = False
    assert accepted == allowed()


def test_a_failing_rule_rejects_the_record_instead_of_crashing():
    def amount_over_ten(record):
        return None if record["amount"] > 10 else "too small"  # TypeError on a null amount

    source = EventSource(
        "pay",
        event_time="t",
        fields=[Field("t", "timestamp", required=True), Field("amount", "float")],
        rules=[amount_over_ten],
    )
    with pytest.raises(InvalidRecord, match="rule amount_over_ten failed: TypeError"):
        source.check({"t": 1})
    assert source.check({"t": 1, "amount": 11})["amount"] == 11.0


@pytest.mark.parametrize(
    ("field", "problem"),
    [
        (Field("x", "float", min="0"), "min/max must be numbers"),
        (Field("x", "integer", min=5, max=1), "min 5 is above max 1"),
        (Field("x", "string", min_length=3, max_length=2), "min_length is above max_length"),
    ],
)
def test_constraints_are_checked_when_declared(field, problem):
    source = EventSource(
        "s", event_time="t", fields=[Field("t", "timestamp", required=True), field]
    )
    with pytest.raises(SourceError, match=problem):
        source.validate()


def test_iso_timestamps_at_or_before_the_epoch_are_rejected_like_epoch_ms():
    for value in ("1970-01-01T00:00:00Z", "1969-12-31T23:00:00Z", 0, -5):
        with pytest.raises(InvalidRecord, match="positive epoch milliseconds"):
            LOGINS.check({"account_id": "a", "ts": value, "success": True})


names = st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True).filter(
    lambda n: n not in {"t", *LAKE_COLUMNS}  # the event time field; reserved columns
)
trailers = st.sampled_from(["\n", "\r\n", "\r", " ", "\t", "\x00"])


def _source(name: str = "s", field: str = "x", **kw) -> EventSource:
    return EventSource(
        name,
        event_time="t",
        fields=[Field("t", "timestamp", required=True), Field(field, "string")],
        **kw,
    )


@given(names, trailers)
def test_names_with_a_trailing_newline_or_space_are_rejected(name, trailer):
    # ``re.match`` with ``^...$`` accepted "name\n": names become topics, tables, columns
    # and Redis keys, so a hidden character there is a different, invisible name.
    for build in (
        lambda n: _source(name=n),
        lambda n: _source(field=n),
        lambda n: _source(table=n),
        lambda n: _source(topic=n),
    ):
        build(name).validate()
        with pytest.raises(SourceError, match="use"):
            build(name + trailer).validate()
