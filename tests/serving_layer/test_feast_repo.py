"""`lfp feast export`: the Feast repo mirrors the definitions, names and dtypes."""

from __future__ import annotations

import ast

import pyarrow.parquet as pq

from feature_core.definitions import FeatureRepo
from serving_layer.feast_repo import export, feast_dtype, feast_entities

REPO = FeatureRepo.from_module("tests.integration.both_workloads")


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
