"""`lfp feast export`: the Feast repo mirrors the definitions, names and dtypes."""

from __future__ import annotations

import ast

import pyarrow as pa
import pyarrow.parquet as pq

from feature_core.definitions import Aggregation, FeatureRepo
from serving_layer.feast_repo import empty_source, export, feast_dtype, feast_entities
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
