"""Derived features: evaluation against an independent interpreter, typing, resolution
against a repo, statuses and the row plan serving and training share."""

from __future__ import annotations

import math
import operator
import re
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from feature_core import derived as fx
from feature_core.definitions import (
    Aggregation,
    DefinitionError,
    Entity,
    FeatureGroup,
    FeatureRepo,
    FeatureService,
)
from feature_core.derived import (
    BOOLEAN,
    FLOAT,
    INTEGER,
    STRING,
    TIMESTAMP,
    UNDEFINED,
    DerivedFeatures,
    DerivedPlan,
    ExpressionError,
    RequestField,
    ValueType,
    derived_status,
)
from feature_core.sources import EventSource, Field
from feature_core.statuses import ValueStatus

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# --- the independent interpreter -------------------------------------------------------
#
# Evaluation of an expression tree on a row, written from the documented semantics:
# null in, null out, except coalesce (first value neither null nor undefined), when (a
# null condition picks the otherwise branch), least/greatest (skip nulls) and is_null.
# Undefined (division by zero, log1p at -1 or less, a result that is not a finite float
# or a 64-bit integer) propagates like null and wins over it. A float-typed expression
# gives floats.

NUMERIC_INPUTS = {"g:i1": "integer", "g:i2": "integer", "g:f1": "float", "g:f2": "float"}
RI, RF = RequestField("ri", "integer"), RequestField("rf", "float")
SLOTS: dict[Any, int] = {
    "g:i1": 0,
    "g:i2": 1,
    "g:f1": 2,
    "g:f2": 3,
    ("request", "ri"): 4,
    ("request", "rf"): 5,
}


def oracle_kind(node: fx.Expr) -> str:
    """The type name of an expression: integer, float, boolean or null."""
    if isinstance(node, fx.Literal):
        value = node.value
        if value is None:
            return "null"
        if isinstance(value, bool):
            return "boolean"
        return "integer" if isinstance(value, int) else "float"
    if isinstance(node, fx.FeatureInput):
        return NUMERIC_INPUTS[node.reference]
    if isinstance(node, RequestField):
        return node.type
    assert isinstance(node, fx.Call)
    name = node.op.name
    kinds = [oracle_kind(a) for a in node.args]
    if name in ("divide", "log1p"):
        return "float"
    if name in ("less", "less_or_equal", "greater", "greater_or_equal", "eq", "ne"):
        return "boolean"
    if name in ("and", "or", "not", "is_null"):
        return "boolean"
    if name == "when":
        kinds = kinds[1:]
    kinds = [k for k in kinds if k != "null"]
    return "integer" if all(k == "integer" for k in kinds) else "float"


def fits(value: Any) -> Any:
    """The value, or UNDEFINED when it is no finite float or 64-bit integer."""
    if isinstance(value, float) and (math.isinf(value) or math.isnan(value)):
        return UNDEFINED
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        return UNDEFINED
    return value


def divide(x: Any, y: Any) -> Any:
    if y == 0:
        return UNDEFINED
    return x / y


def ln_1p(x: Any) -> Any:
    if x <= -1:
        return UNDEFINED
    return math.log1p(x)


def clip(x: Any, low: Any, high: Any) -> Any:
    if x < low:
        return low
    if x > high:
        return high
    return x


STRICT = {
    "add": lambda x, y: x + y,
    "subtract": lambda x, y: x - y,
    "multiply": lambda x, y: x * y,
    "divide": divide,
    "negate": lambda x: -x,
    "abs": abs,
    "log1p": ln_1p,
    "clip": clip,
    "less": lambda x, y: x < y,
    "less_or_equal": lambda x, y: x <= y,
    "greater": lambda x, y: x > y,
    "greater_or_equal": lambda x, y: x >= y,
    "eq": lambda x, y: x == y,
    "ne": lambda x, y: x != y,
    "and": lambda x, y: x and y,
    "or": lambda x, y: x or y,
    "not": lambda x: not x,
}


def oracle(node: fx.Expr, row: list[Any]) -> Any:
    """The value of ``node`` on ``row`` (None for null, UNDEFINED for undefined)."""
    value = oracle_value(node, row)
    if oracle_kind(node) == "float" and type(value) is int:
        value = float(value)
    return value


def oracle_value(node: fx.Expr, row: list[Any]) -> Any:
    if isinstance(node, fx.Literal):
        return node.value
    if isinstance(node, (fx.FeatureInput, RequestField)):
        return row[SLOTS[fx.slot_of(node)]]
    assert isinstance(node, fx.Call)
    name = node.op.name
    if name == "when":
        condition = oracle(node.args[0], row)
        if condition is UNDEFINED:
            return UNDEFINED
        if condition is True:
            return oracle(node.args[1], row)
        return oracle(node.args[2], row)
    values = [oracle(a, row) for a in node.args]
    if name == "is_null":
        return values[0] is None or values[0] is UNDEFINED
    if name == "coalesce":
        for value in values:
            if value is not None and value is not UNDEFINED:
                return value
        return None
    if UNDEFINED in values:
        return UNDEFINED
    if name in ("least", "greatest"):
        present = [v for v in values if v is not None]
        if not present:
            return None
        return min(present) if name == "least" else max(present)
    if None in values:
        return None
    return fits(STRICT[name](*values))


# --- random trees and rows -----------------------------------------------------------

EDGE_INTS = [0, 1, -1, -2, 7, 3037000500, 2**62, INT64_MAX, INT64_MIN, INT64_MIN + 1]
EDGE_FLOATS = [0.0, -0.0, -1.0, -0.5, -1.5, 0.5, 2.5, 1e308, -1e308, 1e-300, 5e-324]

ints = st.one_of(st.sampled_from(EDGE_INTS), st.integers(-5, 5), st.integers(INT64_MIN, INT64_MAX))
floats = st.one_of(
    st.sampled_from(EDGE_FLOATS),
    st.floats(-5, 5),
    st.floats(allow_nan=False, allow_infinity=False),
)
int_values = st.none() | ints
float_values = st.none() | floats
rows = st.tuples(int_values, int_values, float_values, float_values, int_values, float_values)

NULL = fx.expr(None)
# Inputs more often than literals: a tree of literals alone is one constant.
leaves = st.one_of(
    st.sampled_from([fx.feature(r) for r in NUMERIC_INPUTS]),
    st.sampled_from([RI, RF]),
    (ints | floats).map(fx.expr),
)
COMPARISONS = [operator.lt, operator.le, operator.gt, operator.ge, fx.Expr.eq, fx.Expr.ne]
SHAPES = [
    "add",
    "subtract",
    "multiply",
    "divide",
    "number_minus",
    "divided_by_number",
    "negate",
    "abs",
    "log1p",
    "clip",
    "least",
    "greatest",
    "coalesce",
    "when",
]
CONDITIONS = ["compare", "is_null", "not", "and", "or"]


def build(
    shape: str,
    kids: list[fx.Expr],
    nulls: list[bool],
    compare: Any,
    condition: str,
    number: Any,
) -> fx.Expr:
    """One node over ``kids`` (reused in turn when there are fewer than it takes); a
    ``nulls`` flag puts None where an argument may be null."""

    def kid(i: int) -> fx.Expr:
        return kids[i % len(kids)]

    def or_null(i: int) -> fx.Expr:
        return NULL if nulls[i] else kid(i)

    if shape in ("add", "subtract", "multiply", "divide"):
        return {"add": operator.add, "subtract": operator.sub, "multiply": operator.mul}.get(
            shape, operator.truediv
        )(kid(0), kid(1))
    if shape == "number_minus":
        return number - kid(0)  # a reflected operator
    if shape == "divided_by_number":
        return kid(0) / number
    if shape in ("negate", "abs", "log1p"):
        return {"negate": operator.neg, "abs": fx.abs, "log1p": fx.log1p}[shape](kid(0))
    if shape == "clip":
        return fx.clip(kid(0), kid(1), kid(2))
    if shape in ("least", "greatest"):
        function = fx.min if shape == "least" else fx.greatest
        return function(kid(0), or_null(1), *([or_null(2)] if nulls[3] else []))
    if shape == "coalesce":
        return fx.coalesce(or_null(1), kid(0), or_null(2))
    compared = compare(kid(0), kid(1))
    test = {
        "compare": compared,
        "is_null": fx.is_null(kid(1)),
        "not": ~compared,
        "and": compared & fx.is_null(kid(2)),
        "or": compared | fx.is_null(kid(2)),
    }[condition]
    if nulls[0]:
        return fx.when(test, kid(2), or_null(3))
    return fx.when(test, or_null(3), kid(2))


def extend(children: st.SearchStrategy[fx.Expr]) -> st.SearchStrategy[fx.Expr]:
    # ``children`` once: a strategy's repr repeats its parts, and recursion multiplies them.
    return st.builds(
        build,
        st.sampled_from(SHAPES),
        st.lists(children, min_size=2, max_size=3),
        st.lists(st.sampled_from([False, False, True]), min_size=4, max_size=4),
        st.sampled_from(COMPARISONS),
        st.sampled_from(CONDITIONS),
        st.sampled_from([0, 0.0, -1, 2, -0.5, 1e-300]),
    )


numeric_exprs = st.recursive(leaves, extend, max_leaves=20)


def compiled(node: fx.Expr) -> tuple[fx.ValueType, fx.Evaluator]:
    types: dict[int, ValueType] = {}
    kind = fx.type_of(
        node,
        {r: ValueType(t) for r, t in NUMERIC_INPUTS.items()},
        {"ri": RI, "rf": RF},
        types,
    )
    return kind, fx.compile_expression(node, SLOTS, types)


@settings(max_examples=200)
@given(numeric_exprs, st.lists(rows, min_size=1, max_size=8))
@example(-fx.feature("g:i1"), [(INT64_MIN, None, None, None, None, None)])
@example(fx.abs(RI), [(None, None, None, None, INT64_MIN, None)])
@example(fx.clip(fx.feature("g:i1"), 0, RF), [(-5, None, None, None, None, 2.5)])
def test_expressions_agree_with_a_plain_interpreter_and_stay_finite(node, some_rows):
    kind, run = compiled(node)
    assert kind.name == oracle_kind(node)
    for row in some_rows:
        got = run(list(row))  # never raises
        if isinstance(got, float):
            assert math.isfinite(got), node
        if isinstance(got, int) and not isinstance(got, bool):
            assert INT64_MIN <= got <= INT64_MAX, node
        want = oracle(node, list(row))
        if want is None or want is UNDEFINED:
            assert got is want, (node, row, got, want)
        else:
            assert type(got) is type(want) and got == want, (node, row, got, want)
            # A model sees one type per feature.
            assert type(got) is {"integer": int, "float": float}[kind.name]


@pytest.mark.parametrize(
    ("node", "row", "want"),
    [
        (fx.feature("g:i1") / 0, [1, 0, 0.0, 0.0, 0, 0.0], UNDEFINED),
        (fx.feature("g:f1") / fx.feature("g:f2"), [0, 0, 1.0, -0.0, 0, 0.0], UNDEFINED),
        (fx.log1p(fx.feature("g:i1")), [-1, 0, 0.0, 0.0, 0, 0.0], UNDEFINED),
        (-fx.feature("g:i1"), [INT64_MIN, 0, 0.0, 0.0, 0, 0.0], UNDEFINED),
        (fx.abs(fx.feature("g:i1")), [INT64_MIN, 0, 0.0, 0.0, 0, 0.0], UNDEFINED),
        (fx.feature("g:i1") * 2, [2**62, 0, 0.0, 0.0, 0, 0.0], UNDEFINED),
        (fx.feature("g:f1") * 10, [0, 0, 1e308, 0.0, 0, 0.0], UNDEFINED),
        # Undefined wins over null; coalesce skips it; is_null sees both.
        (fx.feature("g:i1") / 0 + fx.feature("g:i2"), [1, None, 0.0, 0.0, 0, 0.0], UNDEFINED),
        (fx.coalesce(fx.feature("g:i1") / 0, fx.feature("g:i2")), [1, 3, 0.0, 0.0, 0, 0.0], 3.0),
        (fx.is_null(fx.feature("g:i1") / 0), [1, 3, 0.0, 0.0, 0, 0.0], True),
        (fx.least(fx.feature("g:i1"), fx.feature("g:i2")), [None, 3, 0.0, 0.0, 0, 0.0], 3),
        (fx.when(fx.feature("g:i1") > 0, 1, 2), [None, 3, 0.0, 0.0, 0, 0.0], 2),
        (fx.when(fx.feature("g:i1") > 0, 1, 2.5), [5, 3, 0.0, 0.0, 0, 0.0], 1.0),
        (fx.feature("g:i1") + RI, [1, 0, 0.0, 0.0, None, 0.0], None),
    ],
)
def test_undefined_and_null_cases(node, row, want):
    got = compiled(node)[1](row)
    assert got is want if want is None or want is UNDEFINED else (got == want)
    assert type(got) is type(want)
    assert DerivedPlan.served(got) == (None if want is UNDEFINED else want)


# --- typing ------------------------------------------------------------------------------

N, X, T = fx.feature("g:n"), fx.feature("g:x"), fx.feature("g:t")
S, B, M, L = fx.feature("g:s"), fx.feature("g:b"), fx.feature("g:m"), fx.feature("g:l")
TYPES = {
    "g:n": INTEGER,
    "g:x": FLOAT,
    "g:t": TIMESTAMP,
    "g:s": STRING,
    "g:b": BOOLEAN,
    "g:m": ValueType("integer", "map"),
    "g:l": ValueType("string", "list"),
}
NAME = RequestField("name", "string")


def type_of(node: fx.Expr) -> ValueType:
    return fx.type_of(node, TYPES, {})


@pytest.mark.parametrize(
    ("node", "kind"),
    [
        (N + N, INTEGER),
        (N - 3, INTEGER),
        (N * N, INTEGER),
        (-N, INTEGER),
        (fx.abs(N), INTEGER),
        (N / N, FLOAT),
        (N / 2, FLOAT),
        (N + X, FLOAT),
        (2.0 * N, FLOAT),
        (fx.log1p(N), FLOAT),
        (fx.clip(N, 0, 10), INTEGER),
        (fx.clip(N, 0, 1.5), FLOAT),
        (T - T, INTEGER),
        (fx.query_time() - T, INTEGER),
        (T + N, TIMESTAMP),
        (N + T, TIMESTAMP),
        (T - 1000, TIMESTAMP),
        (fx.seconds_since(T), FLOAT),
        (fx.seconds_between(T, fx.query_time()), FLOAT),
        (N < X, BOOLEAN),
        (S.eq("a"), BOOLEAN),
        (fx.query_time() <= T, BOOLEAN),
        (B.ne(True), BOOLEAN),
        ((N > 0) & ~B | B, BOOLEAN),
        (fx.is_null(S), BOOLEAN),
        (fx.coalesce(N, 0), INTEGER),
        (fx.coalesce(None, N, X), FLOAT),
        (fx.coalesce(None, S), STRING),
        (fx.least(N, X), FLOAT),
        (fx.min(N, 1), INTEGER),
        (fx.max(T, fx.query_time()), TIMESTAMP),
        (fx.greatest(S, "z"), STRING),
        (fx.when(N > 0, N), INTEGER),
        (fx.when(B, 1, 2.0), FLOAT),
        (M["a"], INTEGER),
        (M.get("a", 0), INTEGER),
        (M.get(S, 0.5), FLOAT),
        (fx.lookup(M, 1), INTEGER),
        (fx.size(M), INTEGER),
        (fx.size(L), INTEGER),
        (NAME.eq(S), BOOLEAN),
    ],
)
def test_each_operation_has_its_type(node, kind):
    assert type_of(node) == kind


@pytest.mark.parametrize(
    ("node", "message"),
    [
        (NAME + N, "'+' needs numbers, got string in (request.name + g:n)"),
        (S * 2, "'*' needs numbers, got string in (g:s * 2)"),
        (T + T, "'+' needs numbers, got timestamp, timestamp in (g:t + g:t)"),
        (N - T, "'-' needs numbers, got timestamp"),
        (T * N, "'*' needs numbers, got timestamp"),
        (T / 1000, "'/' needs numbers, got timestamp"),
        (T + X, "'+' needs numbers, got timestamp"),
        (-S, "'-' needs numbers, got string in -g:s"),
        (fx.log1p(T), "log1p needs numbers, got timestamp in log1p(g:t)"),
        (fx.clip(N, 0, "9"), "clip needs numbers, got string"),
        (
            N["a"],
            "a lookup needs a map (a count_by feature), got integer in lookup(g:n, 'a', None)",
        ),
        (fx.lookup(L, "a"), "a lookup needs a map (a count_by feature), got list of string"),
        (M[1.5], "a map's key is text, an integer or a boolean, got float"),
        (M.get("a", "none"), "a lookup's default mixes integer, string"),
        (N.eq(S), "'eq' compares integer with string: give two of one type in"),
        (T < N, "'<' compares timestamp with integer"),
        (S > 1, "'>' compares string with integer"),
        (M.ne(M), "'ne' compares map of integer with map of integer"),
        (B < B, "'<' orders booleans"),
        (fx.when(N, 1, 2), "when's condition must be a boolean, got integer in when(g:n, 1, 2)"),
        (fx.when(N > 0, S, 1), "when mixes string, integer"),
        (fx.coalesce(N, S), "coalesce mixes integer, string in coalesce(g:n, g:s)"),
        (fx.coalesce(None, None), "coalesce: every argument is None"),
        (fx.least(B, B), "least needs numbers, text or times, got boolean"),
        (fx.size(N), "size needs a list or a map, got integer"),
        (N & B, "'&' needs booleans, got integer"),
        (~X, "'~' needs booleans, got float"),
        (fx.seconds_since(N), "seconds_between needs times, got integer"),
    ],
)
def test_type_errors_name_the_expression(node, message):
    with pytest.raises(ExpressionError, match=re.escape(message)):
        type_of(node)


def test_an_expression_has_no_truth_value():
    for attempt in (
        lambda: bool(N > 1),
        lambda: (N > 1) and (X > 1),
        lambda: not N,
        lambda: 0 < N < 5,  # chained: Python asks for the first comparison's truth
        lambda: 1 if N.eq(1) else 0,
    ):
        with pytest.raises(ExpressionError, match=r"no truth value: use & \| ~"):
            attempt()
    with pytest.raises(ExpressionError, match="not iterable"):
        list(N)


def test_only_constants_and_finite_numbers_are_literals():
    with pytest.raises(ExpressionError, match="only finite numbers"):
        N + math.inf
    with pytest.raises(ExpressionError, match=r"\{'a': 1\} \(dict\) is not an expression"):
        N + {"a": 1}
    with pytest.raises(ExpressionError, match="at least two"):
        fx.least(N)
    with pytest.raises(ExpressionError, match="at least one"):
        fx.coalesce()


def test_equality_is_structural():
    assert (N + 1) == (N + 1)
    assert isinstance((N + 1) == (N + 1), bool)
    assert fx.clip(fx.log1p(X), 0, 1) == fx.clip(fx.log1p(fx.feature("g:x")), 0, 1)
    assert (N + 1) != (N + 2)
    assert (N + X) != (X + N)
    assert (N - 1) != (N + -1)
    assert fx.least(N, X) != fx.greatest(N, X)
    assert RequestField("v", "float", "one") == RequestField("v", "float", "two")
    assert RequestField("v", "float") != RequestField("v", "integer")
    assert fx.query_time() == fx.query_time()
    # A literal's type is part of it: these are typed differently.
    assert fx.expr(1) != fx.expr(1.0) and fx.expr(1) != fx.expr(True)
    assert fx.clip(N, 0, 1) != fx.clip(N, 0.0, 1.0)
    assert len({N + 1, N + 1, N + 1.0, N + True}) == 3
    # Comparing with a constant is not building an expression: .eq() is.
    assert (N == 1) is False
    assert isinstance(N.eq(1), fx.Call)


# --- resolution against a repo --------------------------------------------------------

TX = EventSource(
    "tx",
    fields=[
        Field("card_id", "string", required=True),
        Field("merchant_id", "string", required=True),
        Field("event_time", "timestamp", required=True),
        Field("amount", "float"),
        Field("category", "string", values=["food", "travel"]),
    ],
)
CARD = FeatureGroup(
    "card",
    Entity("card", "card_id"),
    TX,
    [
        Aggregation("count"),
        Aggregation("mean", "amount"),
        Aggregation("last", "event_time"),
        Aggregation("count_by", "category"),
    ],
)
MERCHANT = FeatureGroup(
    "merchant", Entity("merchant", "merchant_id"), TX, [Aggregation("mean", "amount")]
)
VALUE = RequestField("value", "float", description="The scored request's value.")
CATEGORY = RequestField("category", "string")


def views(**changes: Any) -> tuple[DerivedFeatures, ...]:
    features = {
        "vs_merchant": CARD["amount_mean_lifetime"] / MERCHANT["amount_mean_lifetime"],
        "value_share": VALUE / CARD["amount_mean_lifetime"],
        "since_last": fx.seconds_since(CARD["event_time_last_lifetime"]),
        "in_category": CARD["category_count_by_lifetime"].get(CATEGORY, 0),
        **changes,
    }
    return (DerivedFeatures("d", features, description="Ratios."),)


def repo(derived: tuple[DerivedFeatures, ...] | None = None, **kw: Any) -> FeatureRepo:
    return FeatureRepo(
        (CARD, MERCHANT), derived_views=views() if derived is None else derived, **kw
    )


def test_a_groups_feature_is_checked_when_referenced():
    assert CARD["count_lifetime"] == fx.feature("card:count_lifetime")
    with pytest.raises(DefinitionError, match="card has no feature 'nope'; known: count_lifetime"):
        CARD["nope"]
    with pytest.raises(KeyError, match="d has no derived feature 'nope'"):
        views()[0]["nope"]


def test_a_repo_resolves_types_inputs_groups_and_request_fields():
    r = repo()
    assert list(r.derived) == ["d:vs_merchant", "d:value_share", "d:since_last", "d:in_category"]
    vs = r.derived["d:vs_merchant"]
    assert vs.value_type == FLOAT and vs.json_type() == "number"
    assert vs.inputs == ("card:amount_mean_lifetime", "merchant:amount_mean_lifetime")
    assert vs.groups == ("card", "merchant")
    assert r.derived["d:in_category"].value_type == INTEGER
    assert r.derived["d:in_category"].request_fields == (CATEGORY,)
    assert r.request_fields == {"value": VALUE, "category": CATEGORY}


def test_every_problem_is_reported_at_once_one_line_each():
    bad = DerivedFeatures(
        "bad",
        {
            "unknown": CARD["count_lifetime"] + fx.feature("card:nope"),
            "a": fx.feature("bad:b") + 1,
            "b": fx.feature("bad:a") * 2,
            "typed": RequestField("name", "string") + CARD["count_lifetime"],
            "twice": RequestField("value", "integer") * 2,
            "fine": CARD["count_lifetime"] + 1,
        },
    )
    with pytest.raises(DefinitionError) as raised:
        repo((bad,), declared_request_fields=(VALUE,))
    assert sorted(str(raised.value).splitlines()) == sorted(
        [
            "bad:twice: request field value is integer here and float elsewhere",
            "bad:unknown: unknown feature 'card:nope'",
            "bad:a: derived features form a cycle: bad:a -> bad:b -> bad:a",
            "bad:typed: '+' needs numbers, got string in (request.name + card:count_lifetime)",
        ]
    )


@pytest.mark.parametrize(
    ("derived", "declared", "line"),
    [
        ({"x": fx.feature("nope") + 1}, (), "d:x: unknown feature 'nope' (write 'group:feature')"),
        ({"x": fx.feature("d:x") + 1}, (), "d:x: derived features form a cycle: d:x -> d:x"),
        ({"x": None}, (), "d:x: the expression is always None"),
        ({"Bad": 1}, (), "d:Bad: use lowercase letters, digits and '_' in names"),
        ({"x": VALUE}, (VALUE, RequestField("value", "integer")), "request field value is "),
    ],
)
def test_each_problem_has_its_line(derived, declared, line):
    with pytest.raises(DefinitionError) as raised:
        repo((DerivedFeatures("d", derived),), declared_request_fields=declared)
    assert [one for one in str(raised.value).splitlines() if one.startswith(line)]


def test_a_view_may_not_take_a_groups_name():
    with pytest.raises(DefinitionError, match="derived features card: the name is taken"):
        repo((DerivedFeatures("card", {"x": CARD["count_lifetime"] + 1}),))


def test_a_service_mixes_entities_and_derived_features():
    service = FeatureService("svc", ["d:vs_merchant", "card:count_lifetime", "d:since_last"])
    r = repo(services=(service,))
    assert r.join_keys_of(service.features) == ("card_id", "merchant_id")
    assert r.join_keys_of(["d:since_last"]) == ("card_id",)
    assert r.join_keys_of(["merchant:amount_mean_lifetime", "card:count_lifetime"]) == (
        "merchant_id",
        "card_id",
    )
    with pytest.raises(DefinitionError, match="d has no derived feature 'nope'"):
        repo(services=(FeatureService("svc", ["d:nope"]),))


def test_derived_features_over_derived_features_come_after_their_inputs():
    first = DerivedFeatures("first", {"mean_1": CARD["amount_mean_lifetime"] + 1})
    second = DerivedFeatures(
        "second",
        {
            "b": fx.feature("second:a") * 2,
            "a": first["mean_1"] / MERCHANT["amount_mean_lifetime"] + VALUE,
        },
    )
    r = repo((second, first))
    assert list(r.derived) == ["first:mean_1", "second:a", "second:b"]
    b = r.derived["second:b"]
    assert b.inputs == ("second:a",)
    assert b.groups == ("card", "merchant")
    assert b.request_fields == (VALUE,)
    assert r.join_keys_of(["second:b"]) == ("card_id", "merchant_id")


def version(derived: tuple[DerivedFeatures, ...]) -> str:
    service = FeatureService("svc", ["d:vs_merchant", "card:count_lifetime", "d:twice"])
    return repo(derived, services=(service,)).service_version("svc")


def test_service_version_follows_derived_expressions_and_nothing_else():
    twice = {"twice": fx.feature("d:vs_merchant") * 2}
    base = version(views(**twice))
    assert base == version(views(**twice))
    # Not referenced by the service, or only described differently: same meaning.
    assert version(views(**twice, extra=CARD["count_lifetime"] + 1)) == base
    described = DerivedFeatures("d", views(**twice)[0].features, description="Other words.")
    assert version((described,)) == base
    # The service's derived feature changes, or a derived input of it does.
    assert version(views(twice=fx.feature("d:vs_merchant") * 3)) != base
    assert version(views(twice=fx.feature("d:vs_merchant") * 2.0)) != base
    assert (
        version(
            views(
                **twice,
                vs_merchant=CARD["amount_mean_lifetime"] - MERCHANT["amount_mean_lifetime"],
            )
        )
        != base
    )


# --- statuses and the row plan -----------------------------------------------------------

P, ND = ValueStatus.PRESENT, ValueStatus.NO_DATA
STALE, SPEED = ValueStatus.STALE_BATCH_VIEW, ValueStatus.SPEED_ONLY


@pytest.mark.parametrize(
    ("value", "statuses", "want"),
    [
        (UNDEFINED, [STALE, SPEED], ValueStatus.UNDEFINED),
        (UNDEFINED, [], ValueStatus.UNDEFINED),
        (1.0, [P, SPEED, STALE], STALE),
        (1.0, [SPEED, P], SPEED),
        (1.0, [ND, SPEED], SPEED),
        (0, [ND, ND], ND),
        (None, [ND], ND),
        (1.0, [ND, P], P),
        (1.0, [], P),  # request fields and the query time alone
        (None, [P], P),
        (1.0, [ValueStatus.DEFAULT], P),
    ],
)
def test_derived_status_rules(value, statuses, want):
    assert derived_status(value, statuses) is want


@given(
    st.sampled_from([UNDEFINED, None, 0, 1.5]),
    st.lists(st.sampled_from([P, ND, STALE, SPEED, ValueStatus.UNDEFINED]), max_size=4),
)
def test_derived_status_precedence(value, statuses):
    got = derived_status(value, statuses)
    if value is UNDEFINED:
        assert got is ValueStatus.UNDEFINED
    elif STALE in statuses:
        assert got is STALE
    elif SPEED in statuses:
        assert got is SPEED
    elif statuses and set(statuses) == {ND}:
        assert got is ND
    else:
        assert got is P


def plan_repo() -> FeatureRepo:
    return repo(
        (
            DerivedFeatures(
                "d",
                {
                    "b": fx.feature("d:a") * 2,
                    "a": CARD["count_lifetime"] + 1,
                    "share": VALUE / CARD["amount_mean_lifetime"],
                    "ratio": fx.feature("d:share") + fx.feature("d:a"),
                    "age": fx.seconds_since(CARD["event_time_last_lifetime"]),
                    "unused": MERCHANT["amount_mean_lifetime"] * 2,
                },
            ),
        )
    )


def test_a_plan_computes_derived_inputs_first_and_only_what_is_wanted():
    r = plan_repo()
    base = ["card:amount_mean_lifetime", "card:count_lifetime", "card:event_time_last_lifetime"]
    plan = DerivedPlan(r.derived, ["d:ratio", "d:b", "d:age"], base)
    assert [f.qualified_name for f in plan.features] == [
        "d:a",
        "d:b",
        "d:share",
        "d:ratio",
        "d:age",
    ]
    assert plan.request_fields == (VALUE,)
    assert plan.width == 5  # three base values, the request field, the query time
    assert plan.positions == {"d:a": 5, "d:b": 6, "d:share": 7, "d:ratio": 8, "d:age": 9}
    row = plan.compute([4.0, 3, 1_000, 10.0, 61_000])
    assert row == [4.0, 3, 1_000, 10.0, 61_000, 4, 8, 2.5, 6.5, 60.0]
    assert type(row[plan.positions["d:ratio"]]) is float
    statuses = plan.statuses(row, [P, ND, SPEED])
    assert statuses == [P, ND, SPEED, P, P, ND, ND, P, P, SPEED]


def test_a_plan_gives_undefined_where_the_operation_is():
    r = plan_repo()
    plan = DerivedPlan(r.derived, ["d:ratio"], ["card:count_lifetime", "card:amount_mean_lifetime"])
    row = plan.compute([0, 0.0, 10.0, 0])
    values = {name: row[p] for name, p in plan.positions.items()}
    assert values == {"d:a": 1, "d:share": UNDEFINED, "d:ratio": UNDEFINED}
    statuses = plan.statuses(row, [ND, STALE])
    assert statuses[plan.positions["d:a"]] is ND
    assert statuses[plan.positions["d:share"]] is ValueStatus.UNDEFINED
    assert statuses[plan.positions["d:ratio"]] is ValueStatus.UNDEFINED
    assert [DerivedPlan.served(v) for v in values.values()] == [1, None, None]
    # A null request field: a null value, not an undefined one.
    row = plan.compute([2, 4.0, None, 0])
    assert row[plan.positions["d:share"]] is None and row[plan.positions["d:ratio"]] is None
    assert plan.statuses(row, [P, STALE])[plan.positions["d:ratio"]] is STALE


def test_a_plan_refuses_a_row_without_its_base_inputs():
    r = plan_repo()
    with pytest.raises(
        ExpressionError, match=r"the row lacks the inputs \['card:count_lifetime'\]"
    ):
        DerivedPlan(r.derived, ["d:b"], ["card:amount_mean_lifetime"])
    with pytest.raises(
        ExpressionError,
        match=r"lacks the inputs \['card:amount_mean_lifetime', 'card:count_lifetime'\]",
    ):
        DerivedPlan(r.derived, ["d:ratio"], [])
    # Inputs the wanted features do not read need not be there.
    DerivedPlan(r.derived, ["d:a"], ["card:count_lifetime"])
