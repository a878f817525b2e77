"""A HyperLogLog distinct-count sketch with one canonical serialized form.

Every engine builds sketches with this module (Spark's and Flink's Redis writers from the
distinct values the engine collected, the reference evaluator directly), so equal inputs
give byte-identical sketches everywhere. Precision ``p`` gives ``m = 2**p`` registers and
a standard error of ``1.04 / sqrt(m)`` (p=10: 3.25%); below ``2.5 * m`` distinct values
linear counting makes the estimate much tighter than that.

Serialized form (a str, so it travels in JSON): ``"s<p>:"`` + base64 of sorted
``(index u16, rank u8)`` triples while at most ``m / 8`` registers are set, else
``"d<p>:"`` + base64 of all ``m`` register bytes. The form is a pure function of the
register contents, hence canonical.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import math
import struct
from collections.abc import Iterable, Sequence
from itertools import chain

DEFAULT_PRECISION = 10


def _hash64(value: str) -> int:
    return int.from_bytes(hashlib.blake2b(value.encode("utf-8"), digest_size=8).digest(), "big")


@functools.lru_cache(maxsize=1 << 16)
def cell(value: str, precision: int = DEFAULT_PRECISION) -> tuple[int, int]:
    """The register a value lands in and the rank it offers there (cached: an entity's
    values recur in its tiles of every width, and hot values in every entity's)."""
    width = 64 - precision
    h = _hash64(value)
    return h >> width, width - (h & ((1 << width) - 1)).bit_length() + 1


def registers_of(values: Iterable[str], precision: int = DEFAULT_PRECISION) -> dict[int, int]:
    """Sparse registers (index -> rank) of a set of string values."""
    registers: dict[int, int] = {}
    for value in values:
        index, rank = cell(value, precision)
        if rank > registers.get(index, 0):
            registers[index] = rank
    return registers


def encode(registers: dict[int, int], precision: int = DEFAULT_PRECISION) -> str:
    m = 1 << precision
    if len(registers) <= m // 8:
        items = sorted(registers.items())
        packed = struct.pack(">" + "HB" * len(items), *chain.from_iterable(items))
        return f"s{precision}:" + base64.b64encode(packed).decode("ascii")
    dense = bytearray(m)
    for index, rank in registers.items():
        dense[index] = rank
    return f"d{precision}:" + base64.b64encode(bytes(dense)).decode("ascii")


def encode_dense(registers: bytes, precision: int = DEFAULT_PRECISION) -> str:
    """:func:`encode` of all ``2**precision`` register bytes (an engine's register array)."""
    if len(registers) != 1 << precision:
        raise ValueError(f"{len(registers)} registers for precision {precision}")
    if len(registers) - registers.count(0) > len(registers) // 8:
        return f"d{precision}:" + base64.b64encode(bytes(registers)).decode("ascii")
    return encode({i: r for i, r in enumerate(registers) if r}, precision)


def _unpack(sketch: str) -> tuple[bool, int, bytes]:
    """(sparse, precision, body bytes) of a serialized sketch."""
    header, _, body = sketch.partition(":")
    # binascii directly: base64.b64decode's argument checks are Python, per sketch read.
    return header[0] == "s", int(header[1:]), binascii.a2b_base64(body)


def decode(sketch: str) -> tuple[int, dict[int, int]]:
    sparse, precision, raw = _unpack(sketch)
    if sparse:
        return precision, {index: rank for index, rank in struct.iter_unpack(">HB", raw)}
    return precision, {i: r for i, r in enumerate(raw) if r}


def sketch_of(values: Iterable[str], precision: int = DEFAULT_PRECISION) -> str:
    return encode(registers_of(values, precision), precision)


def merge(left: str | None, right: str | None) -> str | None:
    if left is None:
        return right
    if right is None:
        return left
    return merge_many([left, right])


def merge_many(sketches: Sequence[str]) -> str:
    """Union of non-empty sketches: each decoded once, the result encoded once.

    Sparse bodies are concatenated and their ``(index, rank)`` triples sorted: a dict
    built from them keeps the highest rank per index, all in C (the serving hot path).
    """
    if len(sketches) == 1:
        return sketches[0]
    precision: int | None = None
    sparse: list[bytes] = []
    dense: bytes | None = None
    for sketch in sketches:
        is_sparse, own_precision, raw = _unpack(sketch)
        if precision is None:
            precision = own_precision
        elif own_precision != precision:
            raise ValueError(
                f"cannot merge HLL sketches of precision {precision} and {own_precision}"
            )
        if is_sparse:
            sparse.append(raw)
        else:
            dense = raw if dense is None else bytes(map(max, dense, raw))
    assert precision is not None
    registers = dict(sorted(struct.iter_unpack(">HB", b"".join(sparse))))
    if dense is not None:
        for index, rank in enumerate(dense):
            if rank > registers.get(index, 0):
                registers[index] = rank
    return encode(registers, precision)


def estimate(sketch: str | None) -> int:
    """Estimated number of distinct values (0 for no sketch)."""
    if sketch is None:
        return 0
    sparse, precision, raw = _unpack(sketch)
    # The set registers' ranks: every third byte of a sparse body, the non-zero bytes of
    # a dense one.
    ranks = raw[2::3] if sparse else raw.replace(b"\0", b"")
    m = 1 << precision
    alpha = 0.7213 / (1 + 1.079 / m)
    zeros = m - len(ranks)
    harmonic = zeros + sum(map(_INVERSE_POWERS.__getitem__, ranks))
    raw_estimate = alpha * m * m / harmonic
    if raw_estimate <= 2.5 * m and zeros:
        return round(m * math.log(m / zeros))
    return round(raw_estimate)


#: 2**-rank for every possible rank byte.
_INVERSE_POWERS = tuple(2.0**-r for r in range(256))


def standard_error(precision: int = DEFAULT_PRECISION) -> float:
    return 1.04 / math.sqrt(1 << precision)
