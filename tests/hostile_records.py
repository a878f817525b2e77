"""Hostile Kafka record values, for the tests that every consumer survives any record:
random bytes, invalid UTF-8, sizes up to the broker's limit, deep nesting, huge numbers,
duplicate keys, and valid events with one of those spliced in."""

from __future__ import annotations

import json
import random

import orjson
from hypothesis import strategies as st

from feature_core.sources import EventSource
from feature_core.synthetic import random_record

#: The broker's (and kafka-python producer's) default record limit.
BROKER_LIMIT = 1024 * 1024
NOW = 1_780_000_000_000


def _sized(n: int, seed: int, kind: str) -> bytes:
    rng = random.Random(seed)
    if kind == "random":
        return rng.randbytes(n)
    if kind == "latin-1 text":  # non-ASCII, not UTF-8, not JSON: the record
        return bytes(rng.choice(range(0xA0, 0x100)) for _ in range(min(n, 4096))) * (n // 4096 + 1)
    if kind == "escapes":  # each byte a 6-byte JSON escape in an envelope
        return (b'\x01\x1f"\\' * (n // 4 + 1))[:n]
    return ("é\u2028\x00" * (n // 4 + 1)).encode()[:n]  # UTF-8, cut anywhere


_BIG = st.builds(
    _sized,
    st.sampled_from([400_000, BROKER_LIMIT - 200]) | st.integers(4096, BROKER_LIMIT - 200),
    st.integers(0, 2**32),
    st.sampled_from(["random", "latin-1 text", "escapes", "utf-8"]),
)
_NESTED = st.builds(
    lambda n, opener, prefix: (prefix + opener * n)[: BROKER_LIMIT - 200],
    st.sampled_from([10, 1025, 100_000]),
    st.sampled_from([b"[", b'{"a":', b'{"event_time":[']),
    st.sampled_from([b"", b'{"user_id": ']),
)
_NUMBERS = st.sampled_from(
    [b"1e400", b"-1e400", b"1" * 400, b"-" + b"9" * 400, b"1e-400", b"18446744073709551616"]
)


@st.composite
def hostile_records(draw: st.DrawFn, source: EventSource) -> bytes | None:
    """One hostile value for ``source``: alone, or spliced into one of its valid events."""
    kind = draw(st.sampled_from(["bytes", "big", "nested", "number", "duplicate", "splice"]))
    if kind == "bytes":
        return draw(st.none() | st.binary(max_size=64))
    if kind == "big":
        return draw(_BIG)
    if kind == "nested":
        return draw(_NESTED)
    record = random_record(source, random.Random(draw(st.integers(0, 2**16))), NOW)
    name = draw(st.sampled_from([f.name for f in source.fields]))
    text = orjson.dumps(record)
    if kind == "number":
        number = draw(_NUMBERS)
        return text[:-1] + b', "' + name.encode() + b'": ' + number + b"}"
    if kind == "duplicate":
        # json, not orjson: any integer, beyond 64 bits too
        value = json.dumps(draw(st.none() | st.integers() | st.text(max_size=4))).encode()
        return text[:-1] + b', "' + name.encode() + b'": ' + value + b"}"
    # splice: an invalid UTF-8 byte, a control character or a lone surrogate escape
    at = draw(st.integers(0, len(text)))
    junk = draw(st.sampled_from([b"\xff", b"\xc3", b"\x00", b"\\ud800", b"\xed\xa0\x80"]))
    return text[:at] + junk + text[at:]
