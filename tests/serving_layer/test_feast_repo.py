"""`lfp feast export`: the Feast repo mirrors the definitions, names and dtypes."""

from __future__ import annotations

import ast
import time
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from feature_core import derived as fx
from feature_core.definitions import Aggregation, FeatureRepo
from feature_core.derived import DerivedPlan
from serving_layer.feast_repo import (
    empty_source,
    export,
    feast_dtype,
    feast_entities,
    on_demand_inputs,
    on_demand_values,
)
from tests.feature_core.aggregations import catalog

REPO = FeatureRepo.from_module("tests.integration.both_workloads")

#: Each kind of issue 28 over each value type it serves, and its Feast dtype.
NEW_KINDS = [
    (Aggregation("first", "s"), "String"),
    (Aggregation("first", "t", name="first_seen"), "Int64"),  # the event time, epoch ms
    (Aggregation("first", "b"), "Bool"),
    (Aggregation("first_k", "n", k=3), "Array(Int64)"),
    (Aggregation("first_k", "b", k=2), "Array(Bool)"),
    (Aggregation("variance", "x"), "Float64"),
    (Aggregation("stddev", "n", population=True), "Float64"),
    (Aggregation("top_k", "x", k=3), "Array(Float64)"),
    (Aggregation("bottom_k", "s", k=2), "Array(String)"),
    (Aggregation("top_k", "t", k=2, name="latest_times"), "Array(Int64)"),
    (Aggregation("count_by", "c"), "Map"),
    (Aggregation("count_by", "n", max_keys=3), "Map"),
    (Aggregation("approx_percentile", "x", percentiles=[0.5, 0.95]), "Float64"),
    (Aggregation("decayed_count", half_life="1h"), "Float64"),
    (Aggregation("decayed_sum", "x", half_life="1d"), "Float64"),
]
WINDOWS = ["1d", "session:30m"]
NEW_GROUP = catalog.group(WINDOWS, [a for a, _ in NEW_KINDS])


def test_dtypes_follow_the_aggregation_and_its_column() -> None:
    dtypes = {f.qualified_name: feast_dtype(f, g) for g in REPO.groups for f in g.features}
    assert dtypes["user_activity:event_count_1h"] == "Int64"  # count
    assert dtypes["user_activity:purchase_amount_sum_1h"] == "Float64"  # sum
    assert dtypes["user_purchases:avg_order_value_30d"] == "Float64"  # mean
    assert dtypes["user_browsing:last_item_1h"] == "String"  # last of a string
    assert dtypes["user_browsing:last_event_time_lifetime"] == "Int64"  # epoch ms
    assert dtypes["user_browsing:recent_categories_1d"] == "Array(String)"  # last_k
    assert dtypes["item_popularity:distinct_users_1d"] == "Int64"  # approx distinct
    assert dtypes["card_merchant_history:pair_min_amount_30d"] == "Float64"  # min of float


def test_a_composite_key_becomes_one_feast_entity_per_join_key() -> None:
    entities = feast_entities(REPO)
    assert entities["user_id"].name == "user" and entities["user_id"].value_type == "STRING"
    assert {"card_id", "merchant_id"} <= set(entities)


def test_export_writes_a_repo_feast_can_load(tmp_path) -> None:
    written = export(
        REPO,
        "tests.integration.both_workloads",
        tmp_path,
        "lfp",
        {"type": "remote", "path": "http://api:8000"},
    )
    assert {p.name for p in written} >= {"feature_store.yaml", "features.py"}
    yaml = (tmp_path / "feature_store.yaml").read_text()
    assert 'path: "http://api:8000"' in yaml and 'type: "remote"' in yaml
    module = ast.parse((tmp_path / "features.py").read_text())
    assigned = {t.id for node in module.body if isinstance(node, ast.Assign) for t in node.targets}
    assert {g.name for g in REPO.groups} <= assigned
    assert {s.name for s in REPO.services} <= assigned
    source = (tmp_path / "features.py").read_text()
    assert "entities=[entity_card_id, entity_merchant_id]" in source
    for group in REPO.groups:
        table = pq.read_table(tmp_path / "data" / f"{group.name}.parquet")
        assert table.num_rows == 0
        assert table.column_names == [*group.join_keys, group.event_time, *group.feature_names]


def test_every_new_kind_is_typed_for_feast() -> None:
    expected = {
        name: dtype
        for aggregation, dtype in NEW_KINDS
        for name in catalog.group(WINDOWS, [aggregation]).feature_names
    }
    assert len(expected) == len(NEW_GROUP.features)  # two percentiles, two windows each
    assert {f.name: feast_dtype(f, NEW_GROUP) for f in NEW_GROUP.features} == expected
    assert expected["x_approx_percentile_p95_session_30m"] == "Float64"


def test_the_batch_source_declares_each_new_kinds_arrow_type() -> None:
    schema = empty_source(NEW_GROUP).schema
    assert schema.field("c_count_by_1d").type == pa.map_(pa.string(), pa.int64())
    assert schema.field("first_seen_1d").type == pa.int64()
    assert schema.field("b_first_k_1d").type == pa.list_(pa.bool_())
    assert schema.field("x_top_k_session_30m").type == pa.list_(pa.float64())
    assert schema.field("x_approx_percentile_p50_1d").type == pa.float64()


def test_an_exported_map_feature_names_a_type_the_module_imports(tmp_path) -> None:
    export(FeatureRepo((NEW_GROUP,)), "catalog", tmp_path, "lfp", {"type": "sqlite"})
    source = (tmp_path / "features.py").read_text()
    assert "Field(name='c_count_by_1d', dtype=Map)," in source
    module = ast.parse(source)
    imported = {
        alias.asname or alias.name
        for node in module.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    used = {
        node.id
        for node in ast.walk(module)
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)
    }
    assigned = {t.id for node in module.body if isinstance(node, ast.Assign) for t in node.targets}
    assert used <= imported | assigned | {"timedelta"}, used - imported - assigned


# --- derived features: on-demand feature views -------------------------------------------

FRAUD_MODULE = "tests.integration.both_workloads"
#: A request field of each kind the derived features below read.
LABEL = fx.RequestField("label", "string")
VALUE = fx.RequestField("value", "float")
#: Derived features of every Feast dtype, one reading another (the evaluator computes it).
TYPED = fx.DerivedFeatures(
    "typed",
    description="Every dtype.",
    features={
        "since_first": fx.seconds_since(NEW_GROUP["first_seen_1d"]),
        "first_plus_second": NEW_GROUP["first_seen_1d"] + 1000,  # a time: Int64 (epoch ms)
        "label_count": NEW_GROUP["c_count_by_1d"].get(LABEL, 0),
        "top": NEW_GROUP["x_top_k_1d"],
        "by_color": NEW_GROUP["c_count_by_1d"],
        "value_per_second": VALUE / fx.feature("typed:since_first"),
        "no_text": fx.is_null(NEW_GROUP["s_first_1d"]),
        "text": fx.coalesce(NEW_GROUP["s_first_1d"], LABEL),
    },
)
TYPED_REPO = FeatureRepo((NEW_GROUP,), derived_views=(TYPED,))
TYPED_DTYPES = {
    "since_first": "Float64",
    "first_plus_second": "Int64",
    "label_count": "Int64",
    "top": "Array(Float64)",
    "by_color": "Map",
    "value_per_second": "Float64",
    "no_text": "Bool",
    "text": "String",
}


def udf(source: str, name: str) -> Callable[[dict], dict]:
    """The on-demand view's function as Feast runs it: its own source text without the
    decorator, executed alone (Feast keeps no module globals: udf_rehydrate)."""
    module = ast.parse(source)
    (function,) = [n for n in module.body if isinstance(n, ast.FunctionDef) and n.name == name]
    function.decorator_list = []
    namespace: dict[str, Any] = {"__name__": "feast_udf_rehydrate"}
    exec(ast.unparse(function), namespace)  # the export's own output
    return namespace[name]


def infer_features(function: Callable[[dict], dict], inputs: dict) -> dict:
    """Calls ``function`` as `feast apply`'s schema check does (by this frame's name)."""
    return function(inputs)


def module_level_names(module: ast.Module) -> tuple[set[str], set[str]]:
    """Names a module loads outside function bodies (decorators included), and defines."""
    used, defined = set(), set()
    for node in module.body:
        if isinstance(node, ast.FunctionDef):
            defined.add(node.name)
            parts: list[ast.AST] = list(node.decorator_list)
        else:
            parts = [node]
        for part in parts:
            for inner in ast.walk(part):
                if isinstance(inner, ast.Name) and isinstance(inner.ctx, ast.Load):
                    used.add(inner.id)
        if isinstance(node, ast.Assign):
            defined |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        if isinstance(node, ast.ImportFrom):
            defined |= {a.asname or a.name for a in node.names}
    return used, defined


def on_demand(source: str, name: str) -> ast.Call:
    """The ``@on_demand_feature_view(...)`` decorator of the function ``name``."""
    module = ast.parse(source)
    (function,) = [n for n in module.body if isinstance(n, ast.FunctionDef) and n.name == name]
    (decorator,) = function.decorator_list
    assert isinstance(decorator, ast.Call)
    assert ast.unparse(decorator.func) == "on_demand_feature_view"
    return decorator


def keyword(call: ast.Call, name: str) -> Any:
    (value,) = [k.value for k in call.keywords if k.arg == name]
    return value


def test_each_derived_view_is_an_on_demand_view_with_its_sources(tmp_path) -> None:
    export(REPO, FRAUD_MODULE, tmp_path, "lfp", {"type": "remote", "path": "http://api:8000"})
    source = (tmp_path / "features.py").read_text()
    used, defined = module_level_names(ast.parse(source))
    assert used <= defined | {"timedelta"}, used - defined
    assert {v.name for v in REPO.derived_views} <= defined
    decorator = on_demand(source, "payment_risk")
    assert ast.literal_eval(keyword(decorator, "mode")) == "python"
    # The aggregate features it reads, each view's projected, and its request fields.
    assert ast.unparse(keyword(decorator, "sources")) == (
        "[card_spend[['avg_amount_30d', 'amount_stddev_30d', 'max_amount_1d', "
        "'last_txn_time_lifetime', 'last_country_lifetime']], "
        "card_merchant_history[['first_seen_lifetime']], payment_risk_request]"
    )
    assert (
        "payment_risk_request = RequestSource(\n"
        "    name='payment_risk_request',\n"
        "    schema=[\n"
        "        Field(name='amount', dtype=Float64),\n"
        "        Field(name='country', dtype=String),\n"
        "    ],\n"
        ")"
    ) in source
    assert ast.unparse(keyword(decorator, "schema")) == (
        "[Field(name='amount_zscore', dtype=Float64), Field(name='new_merchant', dtype=Bool), "
        "Field(name='amount_over_max_1d', dtype=Float64), "
        "Field(name='seconds_since_last_txn', dtype=Float64), "
        "Field(name='country_changed', dtype=Bool)]"
    )
    # A feature service mixing aggregates and derived features projects both.
    assert "features=[payment_risk[['amount_zscore', 'new_merchant'," in source
    # Feast stores the function's text, not its module: everything it needs is inside.
    assert f"return on_demand_values({FRAUD_MODULE!r}, 'payment_risk', inputs)" in source


def test_every_view_reads_the_aggregates_its_features_need_through_derived_ones(
    tmp_path,
) -> None:
    export(REPO, FRAUD_MODULE, tmp_path, "lfp", {"type": "sqlite"})
    source = (tmp_path / "features.py").read_text()
    for view in REPO.derived_views:
        needed: set[str] = set()
        stack = [r for r in REPO.derived if r.startswith(f"{view.name}:")]
        while stack:
            for one in REPO.derived[stack.pop()].inputs:
                if one in REPO.derived:
                    stack.append(one)
                else:
                    needed.add(one)
        sources = keyword(on_demand(source, view.name), "sources")
        projected = {
            f"{ast.unparse(s.value)}:{name}"
            for s in sources.elts
            if isinstance(s, ast.Subscript)
            for name in ast.literal_eval(s.slice)
        }
        assert projected == needed, view.name
        fields = {
            f.name
            for r in REPO.derived
            if r.startswith(f"{view.name}:")
            for f in REPO.derived[r].request_fields
        }
        has_request = any(ast.unparse(s) == f"{view.name}_request" for s in sources.elts)
        assert has_request == bool(fields), view.name


def test_derived_features_have_their_feast_dtypes_and_a_sample_of_each(tmp_path) -> None:
    export(TYPED_REPO, "typed_repo", tmp_path, "lfp", {"type": "sqlite"})
    source = (tmp_path / "features.py").read_text()
    schema = keyword(on_demand(source, "typed"), "schema")
    assert {
        ast.literal_eval(keyword(f, "name")): ast.unparse(keyword(f, "dtype")) for f in schema.elts
    } == TYPED_DTYPES
    # `feast apply` calls the function on sample inputs (none for a Map: None) and types
    # what it answers, the inputs passed on with it: a value of each declared dtype.
    inputs = {"c_count_by_1d": None, "g__c_count_by_1d": None, "x_top_k_1d": [[1.0]]}
    answer = infer_features(udf(source, "typed"), inputs)
    python = {"Float64": float, "Int64": int, "Bool": bool, "String": str, "Map": dict}
    for name, dtype in TYPED_DTYPES.items():
        (value,) = answer[name]
        if dtype.startswith("Array("):
            assert [type(v) for v in value] == [python[dtype[6:-1]]], name
        else:
            assert type(value) is python[dtype], name
    assert answer["c_count_by_1d"] == answer["g__c_count_by_1d"] == [{}]


def test_the_on_demand_function_calls_the_platforms_evaluator(tmp_path) -> None:
    export(REPO, FRAUD_MODULE, tmp_path, "lfp", {"type": "remote", "path": "http://api:8000"})
    function = udf((tmp_path / "features.py").read_text(), "payment_risk")
    now = int(time.time() * 1000)
    inputs = {  # three payments: far off the mean, a card without spread, a new card
        "avg_amount_30d": [50.0, 20.0, None],
        "amount_stddev_30d": [10.0, 0.0, None],
        "max_amount_1d": [80.0, 20.0, None],
        "last_txn_time_lifetime": [now - 30_000, now - 3_600_000, None],
        "last_country_lifetime": ["DE", "FR", None],
        "first_seen_lifetime": [None, now - 86_400_000, None],
        "amount": [90.0, 20.0, 5.0],
        "country": ["FR", "FR", "DE"],
        "card_id": ["c1", "c2", "c3"],  # Feast passes join keys too: not read
    }
    answer = function(inputs)
    assert answer["amount_zscore"] == [4.0, None, None]  # 0 stddev: undefined, served null
    assert answer["new_merchant"] == [True, False, True]
    assert answer["amount_over_max_1d"] == [1.125, 1.0, None]
    assert answer["country_changed"] == [True, False, None]
    (recent, hour_ago, never) = answer["seconds_since_last_txn"]
    assert 30 <= recent < 60 and 3600 <= hour_ago < 3630 and never is None
    # What the API and training sets compute: the evaluator's own plan, row by row.
    wanted, base, fields = on_demand_inputs(REPO, "payment_risk")
    plan = DerivedPlan(REPO.derived, wanted, base)
    for i in range(3):
        row = [inputs[r.partition(":")[2]][i] for r in base]
        row = plan.compute([*row, *(inputs[f.name][i] for f in fields), now])
        served = {r.partition(":")[2]: DerivedPlan.served(row[plan.positions[r]]) for r in wanted}
        got = {name: values[i] for name, values in answer.items()}
        assert {k: v for k, v in got.items() if k != "seconds_since_last_txn"} == {
            k: v for k, v in served.items() if k != "seconds_since_last_txn"
        }


def test_on_demand_values_take_full_names_and_name_a_missing_request_field(
    tmp_path, monkeypatch
) -> None:
    (tmp_path / "typed_repo_module.py").write_text(
        "from tests.serving_layer.test_feast_repo import NEW_GROUP, TYPED\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    t = 1_700_000_000_000
    inputs = {  # Feast's full names (full_feature_names=True): view__feature
        "g__first_seen_1d": [t - 4000, None],
        "g__c_count_by_1d": [{"red": 2}, None],
        "g__x_top_k_1d": [[3.0, 1.0], None],
        "g__s_first_1d": [None, "x"],
        "label": ["red", "blue"],
        "value": [8.0, 1.0],
    }
    answer = on_demand_values("typed_repo_module", "typed", inputs, query_time=t)
    assert answer == {
        "since_first": [4.0, None],
        "first_plus_second": [t - 3000, None],
        "label_count": [2, None],
        "top": [[3.0, 1.0], None],
        "by_color": [{"red": 2}, None],
        "value_per_second": [2.0, None],
        "no_text": [True, False],
        "text": ["red", "x"],
    }
    del inputs["value"]
    with pytest.raises(KeyError, match="lacks the request field 'value'"):
        on_demand_values("typed_repo_module", "typed", inputs, query_time=t)
