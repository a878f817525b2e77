"""The JVM parser (lfp.speed.ParseRecord) decides every record as the shared Python
validator does, or leaves it to Python: property-tested over generated valid, invalid and
malformed records of the demo, the fraud example and a source using every type and
constraint."""

from __future__ import annotations

import base64
import json
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from demo.feature_repo import events
from feature_core.sources import EventSource, Field, InvalidRecord, RequiredWhen
from feature_core.synthetic import random_record
from fraud.feature_repo import logins, transactions
from speed_layer.functions import udf_jar
from speed_layer.job import parse_records
from speed_layer.sql import TO_PYTHON, parser_spec
from tests.hostile_records import BROKER_LIMIT, hostile_records
from tests.speed_layer.jvm_harness import JavaHarness

LATENESS_MS = 3_600_000
NOW = int(time.time() * 1000)

every_kind = EventSource(
    "every_kind",
    fields=[
        Field("name", "string", required=True, min_length=2, max_length=5),
        Field("level", "integer", values=[1, 2, 3]),
        Field("score", "float", min=0.1, max=1e20),
        Field("count", "integer", min=-5, max=2**62),
        Field("flag", "boolean", values=[True]),
        Field("kind", "string", values=["a", "b"]),
        Field("at", "timestamp", required=True, min=1, max=NOW + 10**9),
    ],
    event_time="at",
    rules=[
        RequiredWhen("score", when="kind", values=["a"]),
        RequiredWhen("level", when="flag", values=[True], only=True),
    ],
)
SOURCES = [events, transactions, logins, every_kind]


class JavaParser(JavaHarness):
    """The parser's harness for one source: a record in, its verdict out."""

    def __init__(self, jar: Path, source: EventSource, spec_dir: Path) -> None:
        spec = spec_dir / f"{source.name}.json"
        spec.write_text(parser_spec(source, LATENESS_MS))
        super().__init__(jar, "lfp.speed.ParseRecord", str(spec))

    def parse(self, raw: bytes | None, now_ms: int) -> list:
        encoded = "-" if raw is None else base64.b64encode(raw).decode()
        return orjson.loads(self.ask(f"{now_ms} {encoded}".encode()))


@pytest.fixture(scope="module")
def parsers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, JavaParser]]:
    jar = udf_jar(tmp_path_factory.mktemp("jvm"))
    spec_dir = tmp_path_factory.mktemp("specs")
    running = {s.name: JavaParser(jar, s, spec_dir) for s in SOURCES}
    yield running
    for parser in running.values():
        parser.close()


def python_verdict(source: EventSource, raw: bytes | None, now_ms: int) -> list:
    """What the speed job's Python path makes of a record (job.parse_records)."""
    try:
        record = source.parse(raw, now_ms)
    except InvalidRecord:
        return ["invalid"] + [None] * len(source.fields)
    late = record[source.event_time] < now_ms - LATENESS_MS
    return ["late" if late else "ok"] + [record[f.name] for f in source.fields]


def assert_agrees(parsers: dict[str, JavaParser], source: EventSource, raw: bytes | None) -> str:
    jvm = parsers[source.name].parse(raw, NOW)
    if jvm[0] != TO_PYTHON:
        expected = python_verdict(source, raw, NOW)
        assert jvm == expected, raw
        # Types too: 1 and 1.0 compare equal in Python.
        assert [type(v) for v in jvm] == [type(v) for v in expected], raw
    return jvm[0]


# --- generated records --------------------------------------------------------------------

_OFFSETS = st.sampled_from(["Z", "+00:00", "+05:30", "-08:00", "+23:59", "+0100", "+24:00", "z"])
_FRACTIONS = st.one_of(
    st.sampled_from(["", ".1", ".1234567"]),
    st.integers(0, 999).map(lambda ms: f".{ms:03d}"),
    st.integers(0, 999_999).map(lambda us: f".{us:06d}"),
)


@st.composite
def iso_texts(draw: st.DrawFn) -> str:
    moment = draw(
        st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30))
        | st.datetimes(min_value=datetime(1969, 12, 31), max_value=datetime(1970, 1, 2))
        | st.just(datetime.fromtimestamp(NOW / 1000, UTC).replace(tzinfo=None))
    )
    text = moment.strftime("%Y-%m-%d") + draw(st.sampled_from(["T", " ", "x"]))
    text += moment.strftime("%H:%M:%S") + draw(_FRACTIONS) + draw(_OFFSETS)
    return draw(
        st.sampled_from(
            [
                text,
                text.replace("-", "/", 1),
                text[:-1],
                "2026-02-30T00:00:00Z",
                "2026-01-01T24:00:00Z",
            ]
        )
    )


_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**64), 2**64),
    st.integers(-3, 3),
    st.floats(),
    st.floats(-2.0, 2.0),
    st.text(max_size=6),
    st.text(st.characters(codec="ascii"), max_size=6),
    iso_texts(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)


def _samples(source: EventSource) -> dict[str, st.SearchStrategy]:
    """Values near what each field allows, and anything at all."""
    out = {}
    for f in source.fields:
        near = [v for v in (f.values or ())]
        if f.type == "timestamp":
            near += [NOW, NOW - 2 * LATENESS_MS, NOW + 10**9, 0, 1, "2026-01-01T00:00:00Z"]
        if f.min is not None:
            near += [f.min, f.min - 1, int(f.min)]
        if f.max is not None:
            near += [f.max, int(f.max) + 1]
        if f.min_length is not None or f.max_length is not None:
            near += ["x" * n for n in range(7)] + ["é" * 3]
        out[f.name] = st.one_of(_VALUES, st.sampled_from(near)) if near else _VALUES
    return out


_BREAKAGE = st.sampled_from(
    [
        "",
        "}",
        " ",
        "\n",
        "x",
        ', "extra": [1, {"a": null}]',
        "dup",
        "escape",
        "bom",
        "nul",
        "nonascii",
    ]
)


def _render(data: dict, breakage: str, rng: random.Random) -> bytes:
    if breakage == "dup" and data:
        key = rng.choice(sorted(data))
        return (json.dumps(data)[:-1] + f', "{key}": {json.dumps(data[key])}' + "}").encode()
    text = json.dumps(data, ensure_ascii=breakage == "escape")
    if breakage.startswith(", ") and text != "{}":
        return (text[:-1] + breakage + "}").encode()
    if breakage == "bom":
        return b"\xef\xbb\xbf" + text.encode()
    if breakage == "nul":
        return text.encode().replace(b"{", b"{\x00", 1)
    if breakage == "nonascii":
        return text.replace("{", '{"note": "caf\u00e9 \\ud83d\\ude00", ', 1).encode()
    return (text + breakage).encode() if breakage in ("}", " ", "\n", "x") else text.encode()


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), breakage=_BREAKAGE, seed=st.integers(0, 2**16))
def test_the_jvm_parser_decides_as_the_python_validator(parsers, data, breakage, seed):
    """A valid record of a source (as a producer sends them), with up to three fields
    changed or dropped, rendered whole or broken."""
    source = data.draw(st.sampled_from(SOURCES))
    rng = random.Random(seed)
    record = random_record(source, rng, NOW - rng.choice([0, 2 * LATENESS_MS]))
    samples = _samples(source)
    for name in data.draw(st.lists(st.sampled_from(sorted(samples)), max_size=3)):
        if data.draw(st.booleans()):
            record.pop(name, None)
        else:
            record[name] = data.draw(samples[name])
    breakage = breakage if data.draw(st.booleans()) else ""
    assert_agrees(parsers, source, _render(record, breakage, rng))


@settings(max_examples=200, deadline=None)
@given(moment=iso_texts())
def test_iso_timestamps_convert_as_python_does(parsers, moment):
    raw = orjson.dumps({"name": "abc", "at": moment})
    assert_agrees(parsers, every_kind, raw)


def test_valid_records_of_every_source_stay_in_the_jvm(parsers):
    """What a producer usually sends (ASCII JSON, epoch ms or the common ISO form) never
    needs Python: that is where the speed comes from."""
    rng = random.Random(7)
    for source in SOURCES:
        for n in range(300):
            record = random_record(source, rng, NOW)
            if n % 2 and source is transactions:
                record["ts"] = datetime.fromtimestamp(record["ts"] / 1000, UTC).isoformat()
            status = assert_agrees(parsers, source, orjson.dumps(record))
            assert status in ("ok", "late", "invalid"), record


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (None, "invalid"),
        (b"", "invalid"),
        (b"[1, 2]", "invalid"),
        (b'{"name": "abc", "at": 5, "name": "abd"}', TO_PYTHON),
        (b'{"name": "abc", "at": 18446744073709551616}', TO_PYTHON),
        (b'{"name": "abc", "at": "2026-01-01T00:00:00+01:00"}', "late"),
        (b'{"name": "abc", "at": "2026-01-01 00:00:00+01:00"}', TO_PYTHON),
        # Python's float arithmetic makes this ...109, not ...110: so does the JVM parser.
        (b'{"name": "abc", "at": "2004-04-22T15:11:10.110Z"}', "late"),
        (b'{"name": "abc", "at": 5, "level": true}', "invalid"),
        (b'{"name": "abc", "at": 5, "score": 1e400}', TO_PYTHON),
        (b'{"name": "abc", "at": 5, "kind": "a"}', "invalid"),
        (b'{"name": "abc", "at": 5, "kind": "a", "score": 0.1}', "late"),
    ],
)
def test_edge_records(parsers, raw, status):
    assert assert_agrees(parsers, every_kind, raw) == status


def test_iso_milliseconds_are_truncated_as_python_does(parsers):
    raw = b'{"name": "abc", "at": "2004-04-22T15:11:10.110Z"}'
    assert parsers["every_kind"].parse(raw, NOW)[-1] == 1082646670109


def test_rule_semantics(parsers):
    """RequiredWhen with only: the field is required on the values, absent otherwise."""
    base = {"name": "abc", "at": NOW}
    assert python_verdict(every_kind, orjson.dumps({**base, "flag": True}), NOW)[0] == "invalid"
    assert python_verdict(every_kind, orjson.dumps({**base, "level": 1}), NOW)[0] == "invalid"
    ok = orjson.dumps({**base, "flag": True, "level": 2})
    assert assert_agrees(parsers, every_kind, ok) == "ok"


# --- hostile records: nothing fails the speed job's parsers ---------------------------------

HOSTILE_SOURCES = [events, transactions]


def assert_survives(parsers: dict[str, JavaParser], source: EventSource, raw: bytes | None) -> None:
    """The JVM parser answers (its harness would die on an exception), agrees with Python
    where it decides, and the Python path it hands the rest to decides them too."""
    status = assert_agrees(parsers, source, raw)
    assert status in ("ok", "late", "invalid", TO_PYTHON)
    statuses, *_ = parse_records(source, [raw], NOW, LATENESS_MS)
    assert statuses[0] in ("ok", "late", "invalid")


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_no_hostile_record_fails_the_speed_jobs_parsers(parsers, data):
    source = data.draw(st.sampled_from(HOSTILE_SOURCES))
    assert_survives(parsers, source, data.draw(hostile_records(source)))


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 100_000,
        b'{"user_id": ' + b"[" * 100_000,
        b'{"event_id": "a", "user_id": ' + b'{"a":' * 100_000,
        b'{"event_time": 1e400, "user_id": "u"}',
        b'{"event_time": ' + b"1" * 400 + b', "user_id": "u"}',
        b'{"event_time": 5, "event_time": 6, "user_id": "u", "user_id": 7}',
        bytes(range(0xA0, 0x100)) * 4000,  # the 400 KB non-UTF-8 record
        b'{"user_id": "' + b"x" * (BROKER_LIMIT - 100) + b'"}',
    ],
)
def test_named_hostile_records(parsers, raw):
    assert_survives(parsers, events, raw)
