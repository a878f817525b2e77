import pytest

from feature_core.definitions import (
    Aggregation,
    DefinitionError,
    Entity,
    EventSource,
    FeatureGroup,
    FeatureRepo,
)

USER = Entity("user", "user_id")
SRC = EventSource("events")


def group(*aggs, **kw):
    return FeatureGroup("g", USER, SRC, aggregations=list(aggs), **kw)


def test_demo_repo_loads_and_names_features_by_window():
    repo = FeatureRepo.from_module("demo.feature_repo")
    names = [f.name for f in repo.group("user_activity").features]
    assert names == [
        "event_count_1h",
        "event_count_lifetime",
        "purchase_amount_sum_1h",
        "purchase_amount_sum_lifetime",
    ]


def test_shared_primitives_are_one_tile_column():
    g = group(Aggregation("sum", "amount"), Aggregation("mean", "amount"))
    assert [c.key for c in g.tile_columns] == ["sum(amount)", "count(amount)"]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (group(Aggregation("sum", "price")), "unknown column 'price'"),
        (group(Aggregation("sum", "user_id")), "numeric column"),
        (group(Aggregation("median", "amount")), "unknown aggregation 'median'"),
        (group(Aggregation("count", windows=["7m"])), "multiple of its hop"),
        (group(Aggregation("count"), Aggregation("count")), "duplicate feature names"),
        (group(Aggregation("count"), filter={"colour": "red"}), "filter on unknown column"),
        (FeatureGroup("g", Entity("user", "uid"), SRC, [Aggregation("count")]), "join key"),
    ],
)
def test_invalid_definitions_fail_with_a_clear_message(bad, message):
    with pytest.raises(DefinitionError, match=message):
        FeatureRepo((bad,))


def test_filters_compile_to_sql_and_python_alike():
    g = group(Aggregation("count"), filter={"event_type": ["purchase", "o'dd"]})
    assert g.filter_sql() == "event_type IN ('purchase', 'o''dd')"
    assert g.accepts({"event_type": "purchase"}) and not g.accepts({"event_type": "view"})
