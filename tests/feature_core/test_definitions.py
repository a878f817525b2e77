import pytest
from hypothesis import given
from hypothesis import strategies as st

from demo.feature_repo import events as SRC
from feature_core.aggregations import Primitive
from feature_core.definitions import (
    Aggregation,
    DefinitionError,
    Entity,
    FeatureGroup,
    FeatureRepo,
    FeatureService,
    TileColumn,
    batch_partials,
)

USER = Entity("user", "user_id")


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
        (group(Aggregation("sum", "discount")), "'discount' is not a field of source events"),
        (group(Aggregation("sum", "user_id")), "numeric column"),
        (group(Aggregation("median", "amount")), "unknown aggregation 'median'"),
        (group(Aggregation("count", windows=["7m"])), "multiple of its hop"),
        (group(Aggregation("count"), Aggregation("count")), "duplicate feature names"),
        (group(Aggregation("count"), filter={"colour": "red"}), "filter on 'colour', not a field"),
        (FeatureGroup("g", Entity("user", "uid"), SRC, [Aggregation("count")]), "join key"),
    ],
)
def test_invalid_definitions_fail_with_a_clear_message(bad, message):
    with pytest.raises(DefinitionError, match=message):
        FeatureRepo((bad,))


def test_filters_compile_to_sql_and_python_alike():
    g = group(Aggregation("count"), filter={"event_type": ["purchase", "o'dd"]})
    assert g.filter_sql() == "`event_type` IN ('purchase', 'o''dd')"
    assert g.accepts({"event_type": "purchase"}) and not g.accepts({"event_type": "view"})


def test_demo_services_resolve_in_order():
    repo = FeatureRepo.from_module("demo.feature_repo")
    service = repo.service("ranking_features")
    assert service.references()[0] == ("user_activity", "event_count_1h")
    assert len(repo.service("user_features").features) == sum(
        len(repo.group(g).features)
        for g in (
            "user_activity",
            "user_purchases",
            "user_browsing",
            "user_views",
            "user_clicks",
            "user_carts",
        )
    )


@pytest.mark.parametrize(
    ("features", "defaults", "message"),
    [
        (["g:count_lifetime", "nope:x"], {}, "unknown feature group 'nope'"),
        (["g:missing"], {}, "g has no feature 'missing'"),
        (["count_lifetime"], {}, "is not 'group:feature'"),
        (["g:count_lifetime", "g:count_lifetime"], {}, "listed twice"),
        (["g:count_lifetime"], {"g:other": 1}, "defaults for unlisted features"),
    ],
)
def test_invalid_services_fail_with_a_clear_message(features, defaults, message):
    items = FeatureGroup("items", Entity("item", "item_id"), SRC, [Aggregation("count")])
    with pytest.raises(DefinitionError, match=message):
        FeatureRepo(
            (group(Aggregation("count")), items), (FeatureService("svc", features, defaults),)
        )


def test_aggregation_parameters_are_validated():
    with pytest.raises(DefinitionError, match="k >= 1"):
        FeatureRepo((group(Aggregation("last_k", "item_id")),))
    with pytest.raises(DefinitionError, match="string column"):
        FeatureRepo((group(Aggregation("approx_count_distinct", "amount")),))
    with pytest.raises(DefinitionError, match="precision"):
        FeatureRepo((group(Aggregation("approx_count_distinct", "item_id", precision=20)),))


def test_service_version_changes_only_when_the_vector_means_something_else() -> None:
    import dataclasses

    from demo import feature_repo as demo

    repo = FeatureRepo.from_module(demo)
    version = repo.service_version("ranking_features")
    assert len(version) == 12 and version == FeatureRepo.from_module(demo).service_version(
        "ranking_features"
    )
    # Same features in another order: another vector.
    shuffled = dataclasses.replace(
        demo.ranking_features, features=list(reversed(demo.ranking_features.features))
    )
    other_order = FeatureRepo(repo.groups, (shuffled,))
    assert other_order.service_version("ranking_features") != version
    # A referenced group's filter changes: another meaning.
    refiltered = dataclasses.replace(demo.user_purchases, filter={"event_type": "add_to_cart"})
    groups = tuple(refiltered if g.name == "user_purchases" else g for g in repo.groups)
    refiltered_repo = dataclasses.replace(repo, groups=groups)
    assert refiltered_repo.service_version("ranking_features") != version
    # An unrelated group changes: same vector.
    item_groups = tuple(
        dataclasses.replace(g, description="changed") if g.name == "item_clicks" else g
        for g in repo.groups
    )
    item_repo = dataclasses.replace(repo, groups=item_groups)
    assert item_repo.service_version("ranking_features") == version


def test_batch_views_store_only_the_columns_each_window_reads():
    g = group(
        Aggregation("count", windows=["5m", "7d"]),
        Aggregation("last_k", "item_id", windows=["7d"], k=2),
    )
    count, last_k = (
        g.tile_columns.index(TileColumn(Primitive.COUNT, None)),
        g.tile_columns.index(TileColumn(Primitive("last_k", 2), "item_id")),
    )
    assert g.batch_columns == {"5m": {count}, "7d": {count, last_k}}
    row = [None, None]
    row[count], row[last_k] = 3, [[1, "i1"]]
    assert batch_partials(row, g.batch_columns["5m"])[last_k] is None
    assert batch_partials(row, g.batch_columns["7d"]) == row


def test_filter_values_take_their_fields_canonical_form():
    from feature_core.sources import EventSource, Field

    source = EventSource(
        "pay",
        event_time="t",
        fields=[
            Field("t", "timestamp", required=True),
            Field("amount", "float"),
            Field("at", "timestamp"),
            Field("user", "string"),
        ],
    )
    entity = Entity("user", "user")
    g = FeatureGroup(
        "g",
        entity,
        source,
        [Aggregation("count")],
        filter={"amount": 0, "at": "2024-01-01T00:00:00Z", "user": {"b", "a", "c"}},
    )
    FeatureRepo((g,))
    assert g.filters[0].values == (0.0,) and g.filters[1].values == (1_704_067_200_000,)
    assert g.filters[2].values == ("a", "b", "c")  # a set in a stable order
    event = {"t": 1, "amount": 0.0, "at": 1_704_067_200_000, "user": "b"}
    assert g.accepts(event)
    assert g.filter_sql() == (
        "`amount` IN (0.0) AND `at` IN (1704067200000) AND `user` IN ('a', 'b', 'c')"
    )


def test_a_topic_may_not_be_another_sources_dead_letter_topic():
    import dataclasses

    from feature_core.sources import EventSource, Field

    fields = [Field("t", "timestamp", required=True), Field("k", "string", required=True)]
    pay = EventSource("pay", event_time="t", topic="pay", fields=fields)
    echo = EventSource("echo", event_time="t", topic="pay.dlq", fields=fields)
    groups = [
        FeatureGroup(f"g_{s.name}", Entity("k", "k"), s, [Aggregation("count")])
        for s in (pay, echo)
    ]
    with pytest.raises(DefinitionError, match=r"both use the name 'pay\.dlq'"):
        FeatureRepo(tuple(groups))
    assert dataclasses.replace(echo, topic="echo").dlq_topic == "echo.dlq"


def test_a_groups_view_fingerprint_changes_only_with_what_its_batch_view_holds() -> None:
    import dataclasses

    from feature_core.merge import BatchPointer

    base = group(Aggregation("count", windows=["1h", "1d"]))
    same = group(Aggregation("count", windows=["1h", "1d"]), description="reworded")
    assert len(base.view_fingerprint) == 12 and same.view_fingerprint == base.view_fingerprint
    changed = [
        group(Aggregation("count", windows=["1h", "7d"])),  # a window
        group(Aggregation("sum", column="amount", windows=["1h", "1d"])),  # an aggregation
        group(Aggregation("count", windows=["1h", "1d"]), filter={"event_type": "purchase"}),
        dataclasses.replace(base, name="other"),
        dataclasses.replace(base, entity=Entity("user", ("user_id", "item_id"))),
    ]
    prints = {g.view_fingerprint for g in changed}
    assert base.view_fingerprint not in prints and len(prints) == len(changed)

    pointer = BatchPointer(1, 0, 0, view_fingerprints={"g": base.view_fingerprint})
    assert pointer.stale_groups([same]) == []
    assert pointer.stale_groups([changed[0], changed[3]]) == ["g", "other"]
    assert BatchPointer.from_json(pointer.to_json()) == pointer
    # A pointer that names no fingerprints (hand-written, older release) vouches for all.
    assert BatchPointer(1, 0, 0).stale_groups(changed) == []


@given(
    st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True),
    st.sampled_from(["\n", "\r\n", " "]),
)
def test_definition_names_with_a_trailing_newline_are_rejected(name, trailer):
    def repo(group_name: str, entity: str, service: str) -> FeatureRepo:
        g = FeatureGroup(group_name, Entity(entity, "user_id"), SRC, [Aggregation("count")])
        return FeatureRepo((g,), (FeatureService(service, [f"{g.name}:count_lifetime"]),))

    bad = name + trailer
    repo(name, name, name)
    for names in ((bad, name, name), (name, bad, name), (name, name, bad)):
        with pytest.raises(DefinitionError, match="use lowercase letters"):
            repo(*names)
