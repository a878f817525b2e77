"""A DDSketch quantile sketch with integer bucket keys and one canonical serialized form.

Every engine builds the same sketch from the same values: Spark's batch views with this
module (from the values the engine collected), the speed job's JVM twin
(``lfp.speed.PercentileSketch``) with the same integer arithmetic, and serialization is a
pure function of the bucket counts, so equal inputs give byte-identical sketches
everywhere, in any merge order (merge adds counts).

Bucket keys come from a double's IEEE-754 bits, never from ``log()`` (Java's ``Math.log``
and C's ``log`` may differ by an ulp at a bucket boundary): for ``|x| = (1 + f/2^52) *
2^e`` (a normal double: ``f`` its 52-bit mantissa, ``e`` its unbiased exponent), the key
is ``e*m + floor(f*m / 2^52)``. Each binary octave is cut into ``m`` buckets of equal
width (DDSketch's "linearly interpolated" mapping); bucket ``e*m + j`` holds
``[lo, hi) = 2^e * [1 + j/m, 1 + (j+1)/m)``, so ``hi/lo <= 1 + 1/m``, and its
representative ``2*lo*hi / (lo+hi)`` is within ``(hi-lo)/(hi+lo) <= 1/(2m+1)`` of every
value in it, relatively. ``m = ceil((1/alpha - 1) / 2)`` makes that at most the relative
accuracy ``alpha`` (1%: ``m = 50``), up to the double rounding of the representative.

Zeros, ``-0.0`` and values below the smallest normal double (``2^-1022``) are one zero
count, served as ``0.0`` (an absolute error under ``2.3e-308``); negative values go to a
store of their own, keyed by ``|x|``; NaN and infinities are skipped (float fields reject
them before).

Memory: per sign at most ``m`` buckets per binary octave the values span (``m = 50`` and
values from 1e-2 to 1e6, 27 octaves: at most 1,350 buckets), whatever the number of
values; at most ``m * 2046`` per sign over all doubles.

Serialized form (a str, so it travels in JSON): ``"dd<m>:"`` + base64 of unsigned LEB128
varints: the zero count, then for the negative store and then the positive store, the
number of buckets followed by ``(zigzag(key - previous key), count)`` per bucket in
ascending key order (the previous key of the first bucket is 0; keys may be negative).
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

#: The default relative accuracy, in thousandths (1%).
DEFAULT_ACCURACY = 10

_MANTISSA_BITS = 52
_MANTISSA_MASK = (1 << _MANTISSA_BITS) - 1
_EXPONENT_BIAS = 1023
_EXPONENT_MAX = 0x7FF  # infinities and NaN
_DOUBLE = struct.Struct("<d")
_BITS = struct.Struct("<Q")


def buckets_per_octave(accuracy_thousandths: int) -> int:
    """``m = ceil((1/alpha - 1) / 2)`` for ``alpha = accuracy / 1000``, in integers."""
    p = accuracy_thousandths
    return (1000 - p + 2 * p - 1) // (2 * p)


def relative_accuracy(m: int) -> float:
    """The bound ``1 / (2m + 1)`` on a representative's relative error."""
    return 1 / (2 * m + 1)


def key_of(value: float, m: int) -> tuple[int, int] | None:
    """``(sign, key)`` of a value's bucket (sign -1 or 1; key 0 with sign 0: the zero
    count), or ``None`` for NaN and infinities."""
    bits = _BITS.unpack(_DOUBLE.pack(value))[0]
    biased = (bits >> _MANTISSA_BITS) & _EXPONENT_MAX
    if biased == _EXPONENT_MAX:
        return None
    if biased == 0:  # zero, -0.0 and subnormals
        return 0, 0
    key = (biased - _EXPONENT_BIAS) * m + (((bits & _MANTISSA_MASK) * m) >> _MANTISSA_BITS)
    return (-1 if bits >> 63 else 1), key


def representative(key: int, m: int) -> float:
    """``2*lo*hi / (lo+hi)`` of bucket ``key`` (positive), correctly rounded: the
    bucket ``e*m + j`` spans ``2^e * [(m+j)/m, (m+j+1)/m)``."""
    e, j = divmod(key, m)
    return math.ldexp(2 * (m + j) * (m + j + 1) / (m * (2 * m + 2 * j + 1)), e)


def rank_of(q: float, n: int) -> int:
    """The 0-based rank of percentile ``q`` among ``n`` values: ``floor(q * (n-1))``."""
    return math.floor(q * (n - 1))


@dataclass
class Buckets:
    """A sketch's contents: bucket counts by key, per sign, and the zero count."""

    m: int
    zero: int = 0
    negative: dict[int, int] = field(default_factory=dict)
    positive: dict[int, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.zero + sum(self.negative.values()) + sum(self.positive.values())

    def add(self, value: float, count: int = 1) -> None:
        """Count one value (``count`` may be negative: a sliding window removes it)."""
        found = key_of(value, self.m)
        if found is None:
            return
        sign, key = found
        if sign == 0:
            self.zero += count
            return
        store = self.positive if sign > 0 else self.negative
        left = store.get(key, 0) + count
        if left:
            store[key] = left
        else:
            del store[key]

    def add_sketch(self, sketch: str) -> None:
        """Add a serialized sketch's counts (same ``m``)."""
        m, numbers = _unpack(sketch)
        if m != self.m:
            raise ValueError(f"cannot merge DDSketches of {self.m} and {m} buckets per octave")
        self.zero += numbers[0]
        at = 1
        for store in (self.negative, self.positive):
            size = numbers[at]
            at += 1
            key = 0
            for i in range(at, at + 2 * size, 2):
                zigzag = numbers[i]
                key += (zigzag >> 1) ^ -(zigzag & 1)
                store[key] = store.get(key, 0) + numbers[i + 1]
            at += 2 * size

    def encode(self) -> str | None:
        """The canonical serialized sketch (``None`` when it counts nothing)."""
        if not (self.zero or self.negative or self.positive):
            return None
        numbers = [self.zero]
        for store in (self.negative, self.positive):
            numbers.append(len(store))
            previous = 0
            for key in sorted(store):
                delta = key - previous
                numbers += (2 * delta if delta >= 0 else -2 * delta - 1, store[key])  # zigzag
                previous = key
        return f"dd{self.m}:" + base64.b64encode(_varints(numbers)).decode("ascii")

    def quantile(self, q: float) -> float | None:
        """The representative of the bucket holding rank :func:`rank_of` (``None``: no
        values): negatives from the largest key down, then zeros, then positives up."""
        total = self.total
        if not total:
            return None
        left = rank_of(q, total)
        for key in sorted(self.negative, reverse=True):
            left -= self.negative[key]
            if left < 0:
                return -representative(key, self.m)
        left -= self.zero
        if left < 0:
            return 0.0
        for key in sorted(self.positive):
            left -= self.positive[key]
            if left < 0:
                return representative(key, self.m)
        raise AssertionError("rank beyond the sketch's count")  # pragma: no cover


def _varints(numbers: Iterable[int]) -> bytes:
    out = bytearray()
    for number in numbers:
        while number >= 0x80:
            out.append((number & 0x7F) | 0x80)
            number >>= 7
        out.append(number)
    return bytes(out)


def _unpack(sketch: str) -> tuple[int, list[int]]:
    """``(m, the varints)`` of a serialized sketch."""
    header, _, body = sketch.partition(":")
    if not header.startswith("dd"):
        raise ValueError(f"not a DDSketch: {sketch[:20]!r}")
    raw = binascii.a2b_base64(body)
    if not raw or max(raw) < 0x80:  # every number in one byte: the usual small tile
        return int(header[2:]), list(raw)
    numbers: list[int] = []
    number = shift = 0
    for byte in raw:
        number |= (byte & 0x7F) << shift
        if byte & 0x80:
            shift += 7
        else:
            numbers.append(number)
            number = shift = 0
    return int(header[2:]), numbers


def decode(sketch: str) -> Buckets:
    m, _ = _unpack(sketch)
    buckets = Buckets(m)
    buckets.add_sketch(sketch)
    return buckets


def sketch_of(values: Iterable[float], m: int) -> str | None:
    """The sketch of some values (``None`` when none is finite)."""
    buckets = Buckets(m)
    for value in values:
        buckets.add(float(value))
    return buckets.encode()


def merge(left: str | None, right: str | None) -> str | None:
    if left is None:
        return right
    if right is None:
        return left
    return merge_many([left, right])


def merge_many(sketches: Sequence[str]) -> str | None:
    """The sketch of all values of some non-empty sketches: counts added."""
    if len(sketches) == 1:
        return sketches[0]
    buckets = Buckets(_unpack(sketches[0])[0])
    for sketch in sketches:
        buckets.add_sketch(sketch)
    return buckets.encode()


def quantile(sketch: str | None, q: float) -> float | None:
    """Percentile ``q`` of a sketch (``None`` for none)."""
    return None if sketch is None else decode(sketch).quantile(q)
