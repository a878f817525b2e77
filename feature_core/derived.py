"""Derived features: typed expressions over features and request-time inputs.

A model rarely takes raw aggregates alone: it wants "seconds since the last event", "this
request's value against the entity's 30-day mean", "the share of an entity's events in
the request's category". Declared here, once, as expressions built from Python
objects (never text handed to ``eval``), they are compiled to plain Python closures that
the serving layer and training sets both call: one function turns finalized aggregates,
the request's context and the query time into derived values, online and offline.

Example::

    from feature_core import derived as fx

    value = fx.RequestField("value", "float", description="The scored request's value.")
    account_derived = fx.DerivedFeatures(
        "account_derived",
        features={
            "value_zscore": (value - account_stats["value_mean_30d"])
            / account_stats["value_stddev_30d"],
            "seconds_since_last": fx.seconds_since(account_stats["last_time_lifetime"]),
        },
    )

The vocabulary: ``+ - * /`` (``/`` is safe: division by zero gives null with status
``undefined``), unary ``-``, ``abs()``, comparisons ``< <= > >=`` and ``.eq()``/``.ne()``
(``==`` stays Python's equality of expressions), ``& | ~`` on booleans, and the functions
below: :func:`coalesce`, :func:`log1p`, :func:`clip`, :func:`least`/:func:`greatest` (also
``fx.min``/``fx.max``), :func:`when`, :func:`lookup` (or ``map_feature[key]``),
:func:`size`, :func:`is_null`, :func:`seconds_since`, :func:`seconds_between`,
:func:`query_time`. Nulls propagate (an input without a value gives no value) except
through ``coalesce``, ``when``, ``least``/``greatest`` (which skip them) and ``is_null``.
"""

from __future__ import annotations

import builtins
import math
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import TYPE_CHECKING, Any, ClassVar

from feature_core.aggregations.counts_by import key_text
from feature_core.sources import FIELD_TYPES
from feature_core.statuses import ValueStatus

if TYPE_CHECKING:
    from feature_core.definitions import Feature, FeatureGroup

INT64 = (-(2**63), 2**63 - 1)
NUMERIC_TYPES = ("integer", "float")
#: A row of evaluation: input values by slot (see :class:`Compiled`).
Row = Sequence[Any]


class ExpressionError(ValueError):
    """An expression cannot be typed or resolved; the message names the problem."""


class _Undefined:
    """The value of an undefined operation (division by zero, log1p of -1 or less, an
    overflow): served as null with status ``undefined``, never as infinity or an error."""

    _instance: ClassVar[_Undefined | None] = None

    def __new__(cls) -> _Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNDEFINED"


UNDEFINED = _Undefined()


@dataclass(frozen=True)
class ValueType:
    """An expression's type: a field type name (``integer``, ``float``, ``boolean``,
    ``string``, ``timestamp``) and a shape (``scalar``, ``list``, or ``map`` with text keys)."""

    name: str
    shape: str = "scalar"

    def __str__(self) -> str:
        return self.name if self.shape == "scalar" else f"{self.shape} of {self.name}"

    @property
    def numeric(self) -> bool:
        return self.shape == "scalar" and self.name in NUMERIC_TYPES

    def json_type(self) -> str:
        if self.shape != "scalar":
            return {"list": "array", "map": "object"}[self.shape]
        return {"integer": "integer", "timestamp": "integer", "float": "number"}.get(
            self.name, self.name
        )


INTEGER, FLOAT, BOOLEAN = ValueType("integer"), ValueType("float"), ValueType("boolean")
STRING, TIMESTAMP = ValueType("string"), ValueType("timestamp")


# --- expressions ---------------------------------------------------------------------


class Expr:
    """An expression node; operators build bigger ones. Subclasses: :class:`FeatureInput`,
    :class:`RequestField`, :class:`QueryTime`, :class:`Literal`, :class:`Call`."""

    __slots__ = ()

    def children(self) -> tuple[Expr, ...]:
        return ()

    def __add__(self, other: Any) -> Expr:
        return Call(ADD, (self, expr(other)))

    def __radd__(self, other: Any) -> Expr:
        return Call(ADD, (expr(other), self))

    def __sub__(self, other: Any) -> Expr:
        return Call(SUB, (self, expr(other)))

    def __rsub__(self, other: Any) -> Expr:
        return Call(SUB, (expr(other), self))

    def __mul__(self, other: Any) -> Expr:
        return Call(MUL, (self, expr(other)))

    def __rmul__(self, other: Any) -> Expr:
        return Call(MUL, (expr(other), self))

    def __truediv__(self, other: Any) -> Expr:
        return Call(DIV, (self, expr(other)))

    def __rtruediv__(self, other: Any) -> Expr:
        return Call(DIV, (expr(other), self))

    def __neg__(self) -> Expr:
        return Call(NEG, (self,))

    def __abs__(self) -> Expr:
        return Call(ABS, (self,))

    def __lt__(self, other: Any) -> Expr:
        return Call(LT, (self, expr(other)))

    def __le__(self, other: Any) -> Expr:
        return Call(LE, (self, expr(other)))

    def __gt__(self, other: Any) -> Expr:
        return Call(GT, (self, expr(other)))

    def __ge__(self, other: Any) -> Expr:
        return Call(GE, (self, expr(other)))

    def eq(self, other: Any) -> Expr:
        """Equal (``==`` is kept for comparing expressions themselves)."""
        return Call(EQ, (self, expr(other)))

    def ne(self, other: Any) -> Expr:
        return Call(NE, (self, expr(other)))

    def __and__(self, other: Any) -> Expr:
        return Call(AND, (self, expr(other)))

    def __or__(self, other: Any) -> Expr:
        return Call(OR, (self, expr(other)))

    def __invert__(self) -> Expr:
        return Call(NOT, (self,))

    def __getitem__(self, key: Any) -> Expr:
        """A map's value at ``key`` (null when the map has no such key)."""
        return Call(LOOKUP, (self, expr(key), Literal(None)))

    def get(self, key: Any, default: Any = None) -> Expr:
        """A map's value at ``key``, ``default`` when it has none (a ``count_by`` map
        leaves out values never seen: ``.get(key, 0)``)."""
        return Call(LOOKUP, (self, expr(key), expr(default)))

    def __bool__(self) -> bool:
        raise ExpressionError(
            "an expression has no truth value: use & | ~ instead of and/or/not, "
            "fx.when(...) instead of if, and .eq()/.ne() to compare"
        )

    def __iter__(self) -> Any:
        raise ExpressionError("an expression is not iterable")


def expr(value: Any) -> Expr:
    """``value`` as an expression: an expression as is, a Python constant as a literal."""
    if isinstance(value, Expr):
        return value
    if value is None or isinstance(value, (bool, int, float, str)):
        if isinstance(value, float) and not math.isfinite(value):
            raise ExpressionError(f"literal {value!r}: only finite numbers")
        return Literal(value)
    raise ExpressionError(
        f"{value!r} ({type(value).__name__}) is not an expression: use features, request "
        "fields, query_time() and constants (None, booleans, numbers, text)"
    )


@dataclass(frozen=True, eq=True)
class Literal(Expr):
    value: Any

    def __repr__(self) -> str:
        return repr(self.value)

    # 1, 1.0 and True are equal in Python but not as literals: they are typed differently.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Literal):
            return NotImplemented
        return type(self.value) is type(other.value) and self.value == other.value

    def __hash__(self) -> int:
        return hash((type(self.value), self.value))


@dataclass(frozen=True, eq=True)
class FeatureInput(Expr):
    """A feature's finalized value, named ``group:feature`` (a derived feature too)."""

    reference: str

    def __repr__(self) -> str:
        return self.reference

    @property
    def parts(self) -> tuple[str, str]:
        group, _, name = self.reference.partition(":")
        return group, name


@dataclass(frozen=True, eq=True)
class RequestField(Expr):
    """A value the request brings (a candidate's category, the value being
    scored): declared with a name and a field type. Training sets take it from the spine
    column of the same name; a request without it is refused naming it."""

    name: str
    type: str
    description: str = field(default="", compare=False)

    def __repr__(self) -> str:
        return f"request.{self.name}"

    @property
    def value_type(self) -> ValueType:
        return ValueType(self.type)

    def check(self, value: Any) -> Any:
        """The value in its declared type, or ``ValueError`` saying what is wrong."""
        if value is None:
            return None
        return FIELD_TYPES[self.type].check(value)


@dataclass(frozen=True, eq=True)
class QueryTime(Expr):
    """The query time, epoch ms: the API's ``as_of``, a training row's timestamp."""

    def __repr__(self) -> str:
        return "query_time()"


@dataclass(frozen=True, eq=True)
class Call(Expr):
    op: Op
    args: tuple[Expr, ...]

    def children(self) -> tuple[Expr, ...]:
        return self.args

    def __repr__(self) -> str:
        return self.op.show(self.args)


# --- operations ----------------------------------------------------------------------

Evaluator = Callable[[Row], Any]


def _numeric_result(types: Sequence[ValueType]) -> ValueType:
    return INTEGER if all(t.name == "integer" for t in types) else FLOAT


def _need_numeric(op: str, types: Sequence[ValueType]) -> None:
    wrong = [str(t) for t in types if not t.numeric]
    if wrong:
        raise ExpressionError(f"{op} needs numbers, got {', '.join(wrong)}")


def _checked(value: Any) -> Any:
    """A result within what JSON and a model can take: finite floats, 64-bit integers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else UNDEFINED
    if isinstance(value, int) and not isinstance(value, bool):
        return value if INT64[0] <= value <= INT64[1] else UNDEFINED
    return value


def _strict(function: Callable[..., Any], args: Sequence[Evaluator]) -> Evaluator:
    """Null in, null out (undefined wins): ``function`` sees only values."""
    if len(args) == 1:
        (a,) = args

        def unary(row: Row) -> Any:
            x = a(row)
            if x is None or x is UNDEFINED:
                return x
            return function(x)

        return unary
    if len(args) == 2:
        a, b = args

        def binary(row: Row) -> Any:
            x, y = a(row), b(row)
            if x is UNDEFINED or y is UNDEFINED:
                return UNDEFINED
            if x is None or y is None:
                return None
            return function(x, y)

        return binary

    def many(row: Row) -> Any:
        values = [f(row) for f in args]
        if any(v is UNDEFINED for v in values):
            return UNDEFINED
        if any(v is None for v in values):
            return None
        return function(*values)

    return many


@dataclass(frozen=True)
class Op:
    """One operation: how it is typed and how it is computed (both in one place)."""

    name: str
    typing: Callable[[Sequence[ValueType]], ValueType]
    compile: Callable[[Sequence[Evaluator], Sequence[ValueType]], Evaluator]
    symbol: str | None = None  # infix form, for messages

    def show(self, args: Sequence[Expr]) -> str:
        if self.symbol and len(args) == 2:
            return f"({args[0]!r} {self.symbol} {args[1]!r})"
        if self.symbol and len(args) == 1:
            return f"{self.symbol}{args[0]!r}"
        return f"{self.name}({', '.join(repr(a) for a in args)})"

    def __repr__(self) -> str:
        return self.name


def _arith_type(symbol: str) -> Callable[[Sequence[ValueType]], ValueType]:
    def typing(types: Sequence[ValueType]) -> ValueType:
        left, right = types
        if symbol in "+-" and left == TIMESTAMP and right.name == "integer" and right.numeric:
            return TIMESTAMP  # a time plus or minus milliseconds
        if symbol == "+" and left.name == "integer" and left.numeric and right == TIMESTAMP:
            return TIMESTAMP
        if symbol == "-" and left == TIMESTAMP and right == TIMESTAMP:
            return INTEGER  # milliseconds between two times
        _need_numeric(f"'{symbol}'", types)
        return _numeric_result(types)

    return typing


# The evaluators of the common operations below are written out (_strict's null handling
# and _checked inlined, operator's C functions): a row computes each with one Python frame.
_isfinite = math.isfinite
_INT64_MIN, _INT64_MAX = INT64


def _arith(function: Callable[[Any, Any], Any]) -> Callable[..., Evaluator]:
    def compile_(args: Sequence[Evaluator], types: Sequence[ValueType]) -> Evaluator:
        a, b = args

        def arith(row: Row) -> Any:
            x, y = a(row), b(row)
            if x is UNDEFINED or y is UNDEFINED:
                return UNDEFINED
            if x is None or y is None:
                return None
            value = function(x, y)
            kind = type(value)
            if kind is float:
                return value if _isfinite(value) else UNDEFINED
            if kind is int:
                return value if _INT64_MIN <= value <= _INT64_MAX else UNDEFINED
            return _checked(value)

        return arith

    return compile_


def _div(args: Sequence[Evaluator], types: Sequence[ValueType]) -> Evaluator:
    a, b = args

    def divide(row: Row) -> Any:  # division by zero is undefined
        x, y = a(row), b(row)
        if x is UNDEFINED or y is UNDEFINED:
            return UNDEFINED
        if x is None or y is None:
            return None
        if y == 0:
            return UNDEFINED
        value = x / y
        if type(value) is float:
            return value if _isfinite(value) else UNDEFINED
        return _checked(value)

    return divide


ADD = Op("add", _arith_type("+"), _arith(operator.add), "+")
SUB = Op("subtract", _arith_type("-"), _arith(operator.sub), "-")
MUL = Op("multiply", _arith_type("*"), _arith(operator.mul), "*")


def _div_type(types: Sequence[ValueType]) -> ValueType:
    _need_numeric("'/'", types)
    return FLOAT


DIV = Op("divide", _div_type, _div, "/")


def _same_numeric(name: str) -> Callable[[Sequence[ValueType]], ValueType]:
    def typing(types: Sequence[ValueType]) -> ValueType:
        _need_numeric(name, types)
        return _numeric_result(types)

    return typing


# -x and abs(x) of the smallest 64-bit integer leave 64 bits: checked like + - *.
NEG = Op(
    "negate",
    _same_numeric("'-'"),
    lambda args, types: _strict(lambda x: _checked(-x), args),
    "-",
)
ABS = Op(
    "abs",
    _same_numeric("abs"),
    lambda args, types: _strict(lambda x: _checked(builtins.abs(x)), args),
)


def _float_of_numbers(name: str) -> Callable[[Sequence[ValueType]], ValueType]:
    def typing(types: Sequence[ValueType]) -> ValueType:
        _need_numeric(name, types)
        return FLOAT

    return typing


def _log1p_of(args: Sequence[Evaluator], types: Sequence[ValueType]) -> Evaluator:
    (a,) = args
    log1p_ = math.log1p

    def log1p(row: Row) -> Any:  # undefined at -1 and below
        x = a(row)
        if x is None or x is UNDEFINED:
            return x
        return log1p_(x) if x > -1 else UNDEFINED

    return log1p


LOG1P = Op("log1p", _float_of_numbers("log1p"), _log1p_of)


def _clip_type(types: Sequence[ValueType]) -> ValueType:
    _need_numeric("clip", types)
    return _numeric_result(types)


def _clip(args: Sequence[Evaluator], types: Sequence[ValueType]) -> Evaluator:
    as_float = _numeric_result(types) == FLOAT
    a, b, c = args

    def clip_(row: Row) -> Any:  # _strict over the three
        x, low, high = a(row), b(row), c(row)
        if x is UNDEFINED or low is UNDEFINED or high is UNDEFINED:
            return UNDEFINED
        if x is None or low is None or high is None:
            return None
        value = low if x < low else high if x > high else x
        return float(value) if as_float else value

    return clip_


CLIP = Op("clip", _clip_type, _clip)


def _comparable(name: str, types: Sequence[ValueType], ordered: bool) -> None:
    left, right = types
    if left.numeric and right.numeric:
        return
    if left.shape != "scalar" or right.shape != "scalar" or left.name != right.name:
        raise ExpressionError(f"{name} compares {left} with {right}: give two of one type")
    if ordered and left.name == "boolean":
        raise ExpressionError(f"{name} orders booleans: compare them with .eq()/.ne()")


def _comparison(symbol: str, ordered: bool) -> Callable[[Sequence[ValueType]], ValueType]:
    def typing(types: Sequence[ValueType]) -> ValueType:
        _comparable(f"'{symbol}'", types, ordered)
        return BOOLEAN

    return typing


def _compare(function: Callable[[Any, Any], bool]) -> Callable[..., Evaluator]:
    return lambda args, types: _strict(function, args)


LT = Op("less", _comparison("<", True), _compare(operator.lt), "<")
LE = Op("less_or_equal", _comparison("<=", True), _compare(operator.le), "<=")
GT = Op("greater", _comparison(">", True), _compare(operator.gt), ">")
GE = Op("greater_or_equal", _comparison(">=", True), _compare(operator.ge), ">=")
EQ = Op("eq", _comparison("eq", False), _compare(operator.eq), "==")
NE = Op("ne", _comparison("ne", False), _compare(operator.ne), "!=")


def _booleans(name: str) -> Callable[[Sequence[ValueType]], ValueType]:
    def typing(types: Sequence[ValueType]) -> ValueType:
        wrong = [str(t) for t in types if t != BOOLEAN]
        if wrong:
            raise ExpressionError(f"{name} needs booleans, got {', '.join(wrong)}")
        return BOOLEAN

    return typing


AND = Op("and", _booleans("'&'"), _compare(lambda x, y: x and y), "&")
OR = Op("or", _booleans("'|'"), _compare(lambda x, y: x or y), "|")
NOT = Op("not", _booleans("'~'"), lambda args, types: _strict(lambda x: not x, args), "~")


def _unified(name: str, types: Sequence[ValueType]) -> ValueType:
    """One type for values that may stand for each other (coalesce, when, least)."""
    known = [t for t in types if t.name != "null"]
    if not known:
        raise ExpressionError(f"{name}: every argument is None")
    if all(t.numeric for t in known):
        return _numeric_result(known)
    if any(t != known[0] for t in known):
        raise ExpressionError(f"{name} mixes {', '.join(str(t) for t in known)}")
    return known[0]


def _as_float(kind: ValueType) -> bool:
    """Whether an integer is served as a float where ``kind`` is typed (a model sees one
    type): decided once when compiling, tested per value with ``type(value) is int``."""
    return kind == FLOAT


def _coalesce(args: Sequence[Evaluator], types: Sequence[ValueType]) -> Evaluator:
    as_float = _as_float(_unified("coalesce", types))

    def coalesce_(row: Row) -> Any:
        for f in args:
            value = f(row)
            if value is not None and value is not UNDEFINED:
                return float(value) if as_float and type(value) is int else value
        return None

    return coalesce_


COALESCE = Op("coalesce", lambda types: _unified("coalesce", types), _coalesce)


def _extreme(name: str, pick: Callable[[Any, Any], bool]) -> Op:
    def typing(types: Sequence[ValueType]) -> ValueType:
        result = _unified(name, types)
        if result.shape != "scalar" or result.name == "boolean":
            raise ExpressionError(f"{name} needs numbers, text or times, got {result}")
        return result

    def compile_(args: Sequence[Evaluator], types: Sequence[ValueType]) -> Evaluator:
        as_float = _as_float(typing(types))

        def run(row: Row) -> Any:
            best = None
            for f in args:
                value = f(row)
                if value is UNDEFINED:
                    return UNDEFINED
                if value is not None and (best is None or pick(value, best)):
                    best = value
            return float(best) if as_float and type(best) is int else best

        return run

    return Op(name, typing, compile_)


LEAST = _extreme("least", lambda value, best: value < best)
GREATEST = _extreme("greatest", lambda value, best: value > best)


def _when_type(types: Sequence[ValueType]) -> ValueType:
    if types[0] != BOOLEAN:
        raise ExpressionError(f"when's condition must be a boolean, got {types[0]}")
    return _unified("when", types[1:])


def _when(args: Sequence[Evaluator], types: Sequence[ValueType]) -> Evaluator:
    condition, then, otherwise = args
    as_float = _as_float(_when_type(types))

    def when_(row: Row) -> Any:
        chosen = condition(row)
        if chosen is UNDEFINED:
            return UNDEFINED
        value = then(row) if chosen else otherwise(row)  # null: otherwise
        return float(value) if as_float and type(value) is int else value  # null stays

    return when_


WHEN = Op("when", _when_type, _when)


def _lookup_type(types: Sequence[ValueType]) -> ValueType:
    mapping, key, default = types
    if mapping.shape != "map":
        raise ExpressionError(f"a lookup needs a map (a count_by feature), got {mapping}")
    if key.shape != "scalar" or key.name not in ("string", "integer", "boolean"):
        raise ExpressionError(f"a map's key is text, an integer or a boolean, got {key}")
    value = ValueType(mapping.name)
    return value if default.name == "null" else _unified("a lookup's default", [value, default])


def _lookup(args: Sequence[Evaluator], types: Sequence[ValueType]) -> Evaluator:
    mapping, key, default = args
    as_float = _as_float(_lookup_type(types))

    def lookup_(row: Row) -> Any:
        values, wanted = mapping(row), key(row)
        if values is UNDEFINED or wanted is UNDEFINED:
            return UNDEFINED
        if values is None or wanted is None:
            return None
        # A text key is looked up as it is (what key_text gives it), without a call.
        found = values.get(wanted if type(wanted) is str else key_text(wanted))
        value = default(row) if found is None else found
        return float(value) if as_float and type(value) is int else value  # null stays

    return lookup_


LOOKUP = Op("lookup", _lookup_type, _lookup)


def _size_type(types: Sequence[ValueType]) -> ValueType:
    if types[0].shape == "scalar":
        raise ExpressionError(f"size needs a list or a map, got {types[0]}")
    return INTEGER


SIZE = Op("size", _size_type, lambda args, types: _strict(len, args))


def _is_null(args: Sequence[Evaluator], types: Sequence[ValueType]) -> Evaluator:
    (a,) = args

    def is_null_(row: Row) -> Any:
        value = a(row)
        return value is None or value is UNDEFINED

    return is_null_


IS_NULL = Op("is_null", lambda types: BOOLEAN, _is_null)


def _seconds_type(types: Sequence[ValueType]) -> ValueType:
    wrong = [str(t) for t in types if t != TIMESTAMP]
    if wrong:
        raise ExpressionError(f"seconds_between needs times, got {', '.join(wrong)}")
    return FLOAT


def _seconds_between(later: Evaluator, earlier: Evaluator) -> Evaluator:
    def seconds(row: Row) -> Any:  # _strict over the two
        x, y = later(row), earlier(row)
        if x is UNDEFINED or y is UNDEFINED:
            return UNDEFINED
        if x is None or y is None:
            return None
        return (x - y) / 1000.0

    return seconds


SECONDS_BETWEEN = Op(
    "seconds_between",
    _seconds_type,
    lambda args, types: _seconds_between(*args),
)


# --- the functions users call --------------------------------------------------------


def query_time() -> Expr:
    """The query time (epoch ms): the API's ``as_of``, a training row's timestamp."""
    return QueryTime()


def feature(reference: str) -> Expr:
    """A feature by its ``group:feature`` name (also a derived feature's), resolved when
    the repo loads; ``group["feature"]`` on a :class:`FeatureGroup` checks it at once."""
    return FeatureInput(reference)


def coalesce(*values: Any) -> Expr:
    """The first value that is not null."""
    if not values:
        raise ExpressionError("coalesce needs at least one value")
    return Call(COALESCE, tuple(expr(v) for v in values))


def log1p(value: Any) -> Expr:
    """``ln(1 + value)``; undefined at -1 and below."""
    return Call(LOG1P, (expr(value),))


def clip(value: Any, low: Any, high: Any) -> Expr:
    """``value`` held within ``[low, high]``."""
    return Call(CLIP, (expr(value), expr(low), expr(high)))


def least(*values: Any) -> Expr:
    """The smallest value that is not null (null when all are)."""
    if len(values) < 2:
        raise ExpressionError("least needs at least two values")
    return Call(LEAST, tuple(expr(v) for v in values))


def greatest(*values: Any) -> Expr:
    """The largest value that is not null (null when all are)."""
    if len(values) < 2:
        raise ExpressionError("greatest needs at least two values")
    return Call(GREATEST, tuple(expr(v) for v in values))


def when(condition: Any, then: Any, otherwise: Any = None) -> Expr:
    """``then`` where ``condition`` is true, else ``otherwise`` (also when it is null)."""
    return Call(WHEN, (expr(condition), expr(then), expr(otherwise)))


def lookup(mapping: Any, key: Any, default: Any = None) -> Expr:
    """A map feature's value at ``key`` (``default`` when the map has none)."""
    return Call(LOOKUP, (expr(mapping), expr(key), expr(default)))


def size(value: Any) -> Expr:
    """How many items a list or map feature holds."""
    return Call(SIZE, (expr(value),))


def is_null(value: Any) -> Expr:
    """Whether the value is null (a feature without data, say); never null itself."""
    return Call(IS_NULL, (expr(value),))


def seconds_between(later: Any, earlier: Any) -> Expr:
    """Seconds from ``earlier`` to ``later`` (two times), as a float."""
    return Call(SECONDS_BETWEEN, (expr(later), expr(earlier)))


def seconds_since(time: Any) -> Expr:
    """Seconds from ``time`` to the query time."""
    return seconds_between(QueryTime(), time)


# ``fx.min``/``fx.max`` read as the math they are; this module itself uses builtins'.
min = least
max = greatest
abs = builtins.abs  # abs(expression) builds an expression (Expr.__abs__)


# --- declarations --------------------------------------------------------------------


@dataclass(frozen=True)
class DerivedFeatures:
    """Named derived features, referenced as ``name:feature`` like a group's (in feature
    services, ``/v1`` requests, the group endpoints and the Feast export).

    ``features`` maps each feature's name to its expression (over features of any groups,
    of one entity or several, other derived features, request fields and the query time).
    """

    name: str
    features: Mapping[str, Any]
    description: str = ""

    def __getitem__(self, name: str) -> Expr:
        if name not in self.features:
            raise KeyError(
                f"{self.name} has no derived feature {name!r}; known: {list(self.features)}"
            )
        return FeatureInput(f"{self.name}:{name}")

    def expressions(self) -> dict[str, Expr]:
        return {name: expr(value) for name, value in self.features.items()}


def walk(node: Expr) -> Iterable[Expr]:
    """Every node of an expression, parents first."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.children()))


@dataclass(frozen=True)
class DerivedFeature:
    """One derived feature, resolved against a repo: its expression, type and inputs."""

    view: str
    name: str
    expression: Expr
    value_type: ValueType
    #: The aggregate features and derived features it reads directly, by reference.
    inputs: tuple[str, ...]
    #: The request fields it reads, directly or through derived inputs.
    request_fields: tuple[RequestField, ...]
    #: The groups whose features it needs, directly or through derived inputs.
    groups: tuple[str, ...]
    description: str = ""
    #: Each node's type (by ``id``), as typing found them: what compiling needs.
    node_types: Mapping[int, ValueType] = field(default_factory=dict, compare=False, repr=False)

    @property
    def qualified_name(self) -> str:
        return f"{self.view}:{self.name}"

    def json_type(self) -> str:
        return self.value_type.json_type()

    def compile(self, slots: Mapping[Any, int]) -> Evaluator:
        """A closure of one row: ``slots`` maps each input to its position in the row
        (see :func:`slot_of`)."""
        return compile_expression(self.expression, slots, self.node_types)

    def leaves(self) -> tuple[Any, ...]:
        """The slots this feature's expression reads (see :func:`slot_of`)."""
        return tuple(
            dict.fromkeys(
                slot_of(n) for n in walk(self.expression) if not isinstance(n, (Call, Literal))
            )
        )


def _leaf_type(
    node: Expr, feature_types: Mapping[str, ValueType], fields: Mapping[str, RequestField]
) -> ValueType:
    if isinstance(node, Literal):
        value = node.value
        if value is None:
            return ValueType("null")
        if isinstance(value, bool):
            return BOOLEAN
        if isinstance(value, int):
            return INTEGER
        return FLOAT if isinstance(value, float) else STRING
    if isinstance(node, QueryTime):
        return TIMESTAMP
    if isinstance(node, RequestField):
        if node.type not in FIELD_TYPES:
            known = ", ".join(FIELD_TYPES)
            raise ExpressionError(
                f"request field {node.name}: unknown type {node.type!r}; known: {known}"
            )
        return node.value_type
    assert isinstance(node, FeatureInput)
    return feature_types[node.reference]


def type_of(
    node: Expr,
    feature_types: Mapping[str, ValueType],
    fields: Mapping[str, RequestField],
    memo: dict[int, ValueType] | None = None,
) -> ValueType:
    """The expression's type, or :class:`ExpressionError` naming the first problem."""
    memo = {} if memo is None else memo
    if id(node) in memo:
        return memo[id(node)]
    if isinstance(node, Call):
        kinds = [type_of(a, feature_types, fields, memo) for a in node.args]
        try:
            kind = node.op.typing(kinds)
        except ExpressionError as error:
            raise ExpressionError(f"{error} in {node!r}") from None
    else:
        kind = _leaf_type(node, feature_types, fields)
    memo[id(node)] = kind
    return kind


def compile_expression(
    node: Expr, slots: Mapping[Any, int], types: dict[int, ValueType] | None = None
) -> Evaluator:
    """``node`` as a closure of one row (no text, no ``eval``)."""
    if isinstance(node, Literal):
        value = node.value
        return lambda row: value
    if isinstance(node, Call):
        args = [compile_expression(a, slots, types) for a in node.args]
        kinds = [_typed(a, types) for a in node.args]
        return node.op.compile(args, kinds)
    # row[position], as a C function: no Python frame per input read.
    return itemgetter(slots[slot_of(node)])


def slot_of(node: Expr) -> Any:
    """The row slot a leaf reads: a feature's reference, ``("request", name)`` for a
    request field, :data:`QUERY_TIME` for the query time."""
    if isinstance(node, FeatureInput):
        return node.reference
    if isinstance(node, RequestField):
        return ("request", node.name)
    if isinstance(node, QueryTime):
        return QUERY_TIME
    raise ExpressionError(f"{node!r} reads no input")


QUERY_TIME = ("query_time",)


def _typed(node: Expr, types: dict[int, ValueType] | None) -> ValueType:
    if types is None or id(node) not in types:
        raise ExpressionError(f"{node!r} was not typed before compiling")
    return types[id(node)]


# --- statuses ------------------------------------------------------------------------

# Read per derived value: module constants (an Enum class's attribute costs ~0.3 us).
_PRESENT, _NO_DATA, _UNDEFINED = ValueStatus.PRESENT, ValueStatus.NO_DATA, ValueStatus.UNDEFINED


def _no_statuses(statuses: Sequence[ValueStatus]) -> tuple[ValueStatus, ...]:
    """The input statuses of a derived value of request fields and the query time alone."""
    return ()


def _statuses_of(inputs: Sequence[int]) -> Callable[[Sequence[ValueStatus]], tuple[Any, ...]]:
    """A C getter of the statuses at ``inputs``, as a tuple (itemgetter of one position
    gives the item: one input is read twice, which answers as once)."""
    if not inputs:
        return _no_statuses
    return itemgetter(*inputs) if len(inputs) > 1 else itemgetter(inputs[0], inputs[0])


#: Statuses of inputs a derived value passes on, most telling first.
PASSED_ON = (ValueStatus.STALE_BATCH_VIEW, ValueStatus.SPEED_ONLY)


def derived_status(value: Any, statuses: Sequence[ValueStatus]) -> ValueStatus:
    """A derived value's status from its feature inputs' statuses.

    ``undefined``: the value is null because the operation is (a division by zero, log1p
    of -1 or less, an overflow). Else an input's ``stale_batch_view`` or ``speed_only``
    carries through; ``no_data`` when no input had data (every feature input ``no_data``);
    ``present`` otherwise (a derived value of request fields alone, too).
    """
    if value is UNDEFINED:
        return ValueStatus.UNDEFINED
    for passed in PASSED_ON:
        if passed in statuses:
            return passed
    if statuses and all(s is ValueStatus.NO_DATA for s in statuses):
        return ValueStatus.NO_DATA
    return ValueStatus.PRESENT


# --- resolution against a repo --------------------------------------------------------


def feature_value_type(feature: Feature, group: FeatureGroup) -> ValueType:
    name, shape = feature.value_type(group.source)
    return ValueType(name, shape)


@dataclass(frozen=True)
class Resolved:
    """Every derived feature of a repo, typed, in an order where inputs come first."""

    features: dict[str, DerivedFeature]  # by qualified name, dependencies first
    request_fields: dict[str, RequestField]


def resolve(
    groups: Sequence[FeatureGroup],
    views: Sequence[DerivedFeatures],
    declared_fields: Sequence[RequestField] = (),
) -> tuple[Resolved, list[str]]:
    """Type-check every derived feature: unknown references, cycles, type errors and
    request fields declared twice with different types. Returns what resolved and one
    line per problem."""
    problems: list[str] = []
    feature_types: dict[str, ValueType] = {}
    feature_groups: dict[str, str] = {}
    for group in groups:
        for one in group.features:
            feature_types[one.qualified_name] = feature_value_type(one, group)
            feature_groups[one.qualified_name] = group.name
    group_names = {g.name for g in groups}
    fields: dict[str, RequestField] = {}
    for declared in declared_fields:
        other = fields.setdefault(declared.name, declared)
        if other.type != declared.type:
            problems.append(
                f"request field {declared.name} is declared as {other.type} and as {declared.type}"
            )
    expressions: dict[str, tuple[DerivedFeatures, str, Expr]] = {}
    seen_views: set[str] = set()
    for view in views:
        if view.name in group_names or view.name in seen_views:
            problems.append(f"derived features {view.name}: the name is taken by another group")
            continue
        seen_views.add(view.name)
        if not view.features:
            problems.append(f"derived features {view.name}: no features")
        for name, value in view.features.items():
            where = f"{view.name}:{name}"
            if not _is_name(name):
                problems.append(f"{where}: use lowercase letters, digits and '_' in names")
                continue
            try:
                expressions[where] = (view, name, expr(value))
            except ExpressionError as error:
                problems.append(f"{where}: {error}")
    # Request fields used in expressions: the same name must mean one type.
    for where, (_, _, node) in expressions.items():
        for leaf in walk(node):
            if isinstance(leaf, RequestField):
                other = fields.setdefault(leaf.name, leaf)
                if other.type != leaf.type:
                    problems.append(
                        f"{where}: request field {leaf.name} is {leaf.type} here and "
                        f"{other.type} elsewhere"
                    )
    order = _dependency_order(expressions, feature_types, problems)
    resolved: dict[str, DerivedFeature] = {}
    for where in order:
        view, name, node = expressions[where]
        memo: dict[int, ValueType] = {}
        try:
            kind = type_of(node, feature_types, fields, memo)
        except ExpressionError as error:
            problems.append(f"{where}: {error}")
            continue
        except KeyError:  # an input that did not resolve: reported already
            continue
        if kind.name == "null":
            problems.append(f"{where}: the expression is always None")
            continue
        inputs = tuple(
            dict.fromkeys(n.reference for n in walk(node) if isinstance(n, FeatureInput))
        )
        needed_fields: dict[str, RequestField] = {
            n.name: fields[n.name] for n in walk(node) if isinstance(n, RequestField)
        }
        needed_groups: dict[str, None] = {}
        for reference in inputs:
            if reference in resolved:
                inner = resolved[reference]
                needed_fields.update((f.name, f) for f in inner.request_fields)
                needed_groups.update(dict.fromkeys(inner.groups))
            else:
                needed_groups[feature_groups[reference]] = None
        feature_types[where] = kind
        resolved[where] = DerivedFeature(
            view.name,
            name,
            node,
            kind,
            inputs,
            tuple(needed_fields.values()),
            tuple(needed_groups),
            view.description,
            memo,
        )
    return Resolved(resolved, fields), problems


def _is_name(name: str) -> bool:
    allowed = set("abcdefghijklmnopqrstuvwxyz0123456789_")
    return bool(name) and set(name) <= allowed and not name[0].isdigit()


def _dependency_order(
    expressions: Mapping[str, tuple[DerivedFeatures, str, Expr]],
    feature_types: Mapping[str, ValueType],
    problems: list[str],
) -> list[str]:
    """Derived features with their derived inputs first; unknown references and cycles
    are reported (one line each) and left out."""
    references = {
        where: [n.reference for n in walk(node) if isinstance(n, FeatureInput)]
        for where, (_, _, node) in expressions.items()
    }
    broken: set[str] = set()
    for where, refs in references.items():
        for reference in refs:
            if reference not in feature_types and reference not in expressions:
                name = reference.partition(":")[2]
                problems.append(
                    f"{where}: unknown feature {reference!r}"
                    + ("" if name else " (write 'group:feature')")
                )
                broken.add(where)
    order: list[str] = []
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(where: str, path: list[str]) -> bool:
        if state.get(where) == 2:
            return where not in broken
        if state.get(where) == 1:
            cycle = [*path[path.index(where) :], where]
            problems.append(f"{cycle[0]}: derived features form a cycle: {' -> '.join(cycle)}")
            return False
        state[where] = 1
        ok = where not in broken
        for reference in references[where]:
            if reference in expressions and not visit(reference, [*path, where]):
                ok = False
        state[where] = 2
        if ok:
            order.append(where)
        else:
            broken.add(where)
        return ok

    for where in expressions:
        visit(where, [])
    return order


# --- computing a row ------------------------------------------------------------------


class DerivedPlan:
    """How some derived features are computed from a row of aggregate values: the one
    function the serving layer and training sets both call.

    ``base`` names the aggregate features in the row, in its order (``group:feature``);
    ``wanted`` the derived features to compute. Derived inputs of wanted features are
    computed too (first). A row for :meth:`compute` is the base values, then one value per
    :attr:`request_fields` entry, then the query time.
    """

    def __init__(
        self,
        derived: Mapping[str, DerivedFeature],
        wanted: Sequence[str],
        base: Sequence[str],
    ) -> None:
        needed: dict[str, None] = {}

        def need(reference: str) -> None:
            for one in derived[reference].inputs:
                if one in derived:
                    need(one)
            needed.setdefault(reference)

        for reference in wanted:
            need(reference)
        # In the repo's order: inputs before what reads them.
        self.features = tuple(derived[r] for r in derived if r in needed)
        fields: dict[str, RequestField] = {}
        for one in self.features:
            fields.update((f.name, f) for f in one.request_fields)
        self.request_fields = tuple(fields.values())
        slots: dict[Any, int] = {name: i for i, name in enumerate(base)}
        missing = sorted(
            {i for f in self.features for i in f.inputs if i not in derived and i not in slots}
        )
        if missing:
            raise ExpressionError(f"the row lacks the inputs {missing}")
        for field_ in self.request_fields:
            slots[("request", field_.name)] = len(slots)
        slots[QUERY_TIME] = len(slots)
        self.width = len(slots)  # where derived values start
        for one in self.features:
            slots[one.qualified_name] = len(slots)
        self.slots = slots
        self._run = tuple(f.compile(slots) for f in self.features)
        self._input_slots = tuple(tuple(slots[i] for i in f.inputs) for f in self.features)
        self._status_inputs = tuple(
            (position, _statuses_of(inputs))
            for position, inputs in enumerate(self._input_slots, self.width)
        )
        self.positions = {f.qualified_name: self.width + i for i, f in enumerate(self.features)}

    def compute(self, row: list[Any]) -> list[Any]:
        """Append each derived value to ``row`` (base values, request fields, query time),
        :data:`UNDEFINED` where its operation is; returns ``row``."""
        for run in self._run:
            row.append(run(row))
        return row

    def statuses(self, row: Sequence[Any], statuses: list[ValueStatus]) -> list[ValueStatus]:
        """Append each derived value's status to ``statuses`` (the base values' statuses,
        as many as the row's base values; request fields and query time are present)."""
        statuses += [_PRESENT] * (self.width - len(statuses))
        append = statuses.append
        # derived_status, inlined: no Python call per derived value.
        for position, statuses_of in self._status_inputs:
            if row[position] is UNDEFINED:
                append(_UNDEFINED)
                continue
            inputs = statuses_of(statuses)
            if inputs.count(_PRESENT) == len(inputs):  # the common case (and no input)
                append(_PRESENT)
                continue
            for passed in PASSED_ON:
                if passed in inputs:
                    append(passed)
                    break
            else:
                append(_NO_DATA if inputs.count(_NO_DATA) == len(inputs) else _PRESENT)
        return statuses

    @staticmethod
    def served(value: Any) -> Any:
        """A computed value as served: null where the operation was undefined."""
        return None if value is UNDEFINED else value
