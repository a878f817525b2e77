"""Training sets equal the reference evaluator at each spine row's timestamp."""

import random
import uuid

import pytest

from batch_layer.lake import append_with_offsets, optimize_table
from batch_layer.training import build_training_set
from demo.feature_repo import events as shop
from feature_core.definitions import FeatureRepo, FeatureService
from feature_core.journals import Journal
from feature_core.reference import evaluate
from feature_core.settings import Settings
from feature_core.stats import TrainingFeatureStats
from feature_core.windows import DAY_MS, HOUR_MS
from online_store import open_store

pytestmark = pytest.mark.spark

BASE = 20_400 * DAY_MS


def _events(rng):
    events = []
    for _ in range(400):
        kind = rng.choice(["view", "click", "purchase"])
        event = {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128))),
            "user_id": f"u{rng.randrange(4)}",
            "event_type": kind,
            "event_time": BASE - rng.randrange(0, 100 * DAY_MS),
            "item_id": rng.choice([None, "i1", "i2", "i3", "i4"]),
            "category": rng.choice(["a", "b"]),
        }
        if kind == "purchase":
            event["amount"] = round(rng.uniform(1, 99), 2)
        events.append(event)
    return events


@pytest.mark.parametrize("entity_key", ["user_id", "item_id"])
def test_training_rows_equal_the_reference_at_their_timestamps(spark_factory, tmp_path, entity_key):
    import json

    base_repo = FeatureRepo.from_module("demo.feature_repo")
    groups = [g for g in base_repo.groups if g.entity.join_key == entity_key]
    service = FeatureService(
        "everything", [f"{g.name}:{f.name}" for g in groups for f in g.features]
    )
    repo = FeatureRepo(base_repo.groups, (service,))
    settings = Settings(_env_file=None, data_dir=tmp_path, lake_uri=str(tmp_path / "lake"))
    rng = random.Random(entity_key)
    events = _events(rng)
    rows = [(shop.parse(json.dumps(e)), 0, i) for i, e in enumerate(events)]
    for start in range(0, len(rows), 100):  # several files per day, as ingest writes
        chunk = rows[start : start + 100]
        append_with_offsets(settings.table_uri(shop.table_name), shop, chunk, "t", {0: start})

    keys = ["u0", "u1", "u2", "nobody"] if entity_key == "user_id" else ["i1", "i3", "nobody"]
    times = [BASE - 50 * DAY_MS + 7, BASE - 3 * DAY_MS, BASE - HOUR_MS - 1, BASE + 1]
    spark = spark_factory(settings)
    spine = spark.createDataFrame(
        [(k, t, float(i)) for i, (k, t) in enumerate((k, t) for k in keys for t in times)],
        f"{entity_key} STRING, timestamp BIGINT, label DOUBLE",
    )
    result = build_training_set(spark, settings, repo, service, spine).collect()
    assert len(result) == len(keys) * len(times)
    # The same rows from the lake clustered by the key, and from a read of only the
    # spine's entities (the verifier's path, skipping files by their statistics).
    uri = settings.table_uri(shop.table_name)
    optimized = optimize_table(uri, [entity_key], row_group_rows=50, retention_hours=0)
    assert optimized is not None and optimized.files_after < optimized.files_before
    only = [(k,) for k in keys]
    assert build_training_set(spark, settings, repo, service, spine, entities=only).collect() == (
        result
    )
    assert result[0].asDict().keys() >= {entity_key, "timestamp", "label"}
    for row in result:
        for group in groups:
            expected = evaluate(group, events, row["timestamp"]).get(row[entity_key])
            for feature in group.features:
                got = row[f"{group.name}__{feature.name}"]
                if expected is None:
                    continue  # no events: checked against the defaults below
                want = expected[feature.name]
                if isinstance(want, float):
                    assert got == pytest.approx(want, rel=1e-9), (row, feature.name)
                else:
                    assert (list(got) if isinstance(got, list) else got) == want, feature.name
    nobody = [r for r in result if r[entity_key] == "nobody"]
    assert all(r[f"{groups[0].name}__{groups[0].features[0].name}"] == 0 for r in nobody)


@pytest.mark.parametrize("output_format", ["parquet", "delta"])
def test_training_sets_write_parquet_or_delta(spark_factory, tmp_path, output_format):
    import pyarrow.parquet as pq
    from deltalake import DeltaTable

    from batch_layer.training import write_training_set

    spark = spark_factory(Settings(_env_file=None))
    frame = spark.createDataFrame(
        [("u1", 5, [1, 2]), ("u2", 6, [])], "user_id STRING, t BIGINT, xs ARRAY<BIGINT>"
    )
    path = tmp_path / f"out.{output_format}"
    assert write_training_set(frame, str(path), output_format) == 2
    table = (
        DeltaTable(str(path)).to_pyarrow_table()
        if output_format == "delta"
        else pq.read_table(path)
    )
    assert sorted(table.column("user_id").to_pylist()) == ["u1", "u2"]
    with pytest.raises(ValueError, match="parquet or delta"):
        write_training_set(frame, str(tmp_path / "x"), "csv")


def test_the_cli_shows_progress_and_ends_with_a_summary_of_what_it_read(
    tmp_path, redis_process
) -> None:
    """`lfp training-set build` in its own process (it stops its Spark session): rows,
    features, time and the lake version it read, and the training set's statistics in the
    online store (the drift baseline); a spine without the entity column is one line
    saying so, not a traceback."""
    import json
    import os
    import subprocess
    import sys

    import pyarrow.parquet as pq

    settings = Settings(_env_file=None, data_dir=tmp_path, lake_uri=str(tmp_path / "lake"))
    rng = random.Random(9)
    events = _events(rng)
    rows = [(shop.parse(json.dumps(e)), 0, i) for i, e in enumerate(events)]
    append_with_offsets(settings.table_uri(shop.table_name), shop, rows, "t", {0: len(rows)})
    spine = tmp_path / "spine.csv"
    spine.write_text(
        f"user_id,timestamp,label\nu0,{BASE},1\nu1,{BASE - DAY_MS},0\nnobody,{BASE},0\n"
    )
    env = {
        **os.environ,
        "LFP_DATA_DIR": str(tmp_path),
        "LFP_LAKE_URI": str(tmp_path / "lake"),
        "LFP_FEATURE_REPO": "demo.feature_repo",
        "COLUMNS": "80",  # the summary's path stays one piece however narrow the terminal
        "LFP_REDIS_URL": f"redis://127.0.0.1:{redis_process.port}/0",
        "LFP_REDIS_PASSWORD_FILE": os.devnull,
    }

    def build(*extra: str, service: str = "ranking_features") -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "infra", "training-set", "build"]
        command += ["--service", service, "--output", str(tmp_path / "out"), *extra]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)

    done = build("--spine", str(spine))
    assert done.returncode == 0, done.stdout + done.stderr
    n = len(FeatureRepo.from_module("demo.feature_repo").service("ranking_features").features)
    assert f"wrote 3 rows x {n} features" in done.stdout
    assert "lake read: raw_events v0" in done.stdout
    store = open_store(
        Settings(_env_file=None, redis_url=env["LFP_REDIS_URL"], redis_password_file=os.devnull)
    )
    (recorded,) = store.journal(Journal.TRAINING_STATS)
    baseline = TrainingFeatureStats.model_validate_json(recorded)
    assert baseline.service == "ranking_features" and baseline.rows == 3
    assert len(baseline.features) == n

    # A service over users and items with derived features: the item's key from a column
    # of another name (KEY=COLUMN), the request field from the column named as it.
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(
        "user_id,item,timestamp,candidate_category\n"
        f"u0,i1,{BASE},a\nu1,i2,{BASE - DAY_MS},b\nnobody,i9,{BASE},a\n"
    )
    done = build("--spine", str(pairs), "--entity-column", "item_id=item", service="recommender")
    assert done.returncode == 0, done.stdout + done.stderr
    recommender = FeatureRepo.from_module("demo.feature_repo").service("recommender")
    assert f"wrote 3 rows x {len(recommender.features)} features" in done.stdout
    written = pq.read_table(tmp_path / "out")
    assert written.column_names == [
        "user_id",
        "item",
        "timestamp",
        "candidate_category",
        *(f.replace(":", "__") for f in recommender.features),
    ]

    bad = tmp_path / "bad.csv"
    bad.write_text("customer,timestamp\nu0,1\n")
    failed = build("--spine", str(bad))
    assert failed.returncode == 1
    assert "spine has no column 'user_id'" in failed.stdout
    assert "Traceback" not in failed.stdout + failed.stderr


def test_spine_times_must_be_epoch_ms_or_timestamps_and_present(spark_factory) -> None:
    """A text or missing time would see no events (silent zeros): an error instead."""
    from datetime import UTC, datetime

    from batch_layer.training import _epoch_ms

    spark = spark_factory(Settings(_env_file=None))
    text = spark.createDataFrame([("u", "1700000000000")], "user_id STRING, ts STRING")
    with pytest.raises(ValueError, match="holds string: give epoch milliseconds"):
        _epoch_ms(text, "ts")
    missing = spark.createDataFrame([("u", None), ("v", 5)], "user_id STRING, ts BIGINT")
    with pytest.raises(ValueError, match="1 spine rows have no 'ts'"):
        _epoch_ms(missing, "ts")
    moment = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    stamps = spark.createDataFrame([("u", moment)], "user_id STRING, ts TIMESTAMP")
    assert _epoch_ms(stamps, "ts").collect()[0]["ts"] == int(moment.timestamp() * 1000)


def _lake_of(settings: Settings, source, events: list[dict]) -> None:
    import json

    rows = [(source.parse(json.dumps(e)), 0, i) for i, e in enumerate(events)]
    append_with_offsets(settings.table_uri(source.table_name), source, rows, "t", {0: len(rows)})


def test_spine_keys_are_read_as_declared_never_guessed(spark_factory, tmp_path) -> None:
    """A CSV spine's string keys stay exactly as written: "007" is not 7 and a 20-digit id
    is not a double, so each row gets its own entity's features (inferSchema gave them
    none). Times may be epoch ms or ISO-8601; other columns stay text."""
    from datetime import UTC, datetime

    from batch_layer.training import read_spine

    settings = Settings(_env_file=None, data_dir=tmp_path, lake_uri=str(tmp_path / "lake"))
    long_id = "12345678901234567890"
    users = ["007"] * 3 + ["7"] + [long_id] * 2
    events = [
        {"event_id": f"e{i}", "user_id": u, "event_type": "view", "event_time": BASE - i - 1}
        for i, u in enumerate(users)
    ]
    _lake_of(settings, shop, events)
    repo = FeatureRepo.from_module("demo.feature_repo")
    service = FeatureService("counts", ["user_activity:event_count_lifetime"])
    repo = FeatureRepo(repo.groups, (service,))
    spine = tmp_path / "spine.csv"
    iso = datetime.fromtimestamp(BASE / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    spine.write_text(
        f"user_id,timestamp,label\n007,{BASE},1\n{long_id},{BASE},0\n007,{iso},01\n7,1,1\n"
    )
    spark = spark_factory(settings)
    frame = read_spine(spark, spine, repo, service)
    rows = build_training_set(spark, settings, repo, service, frame).collect()
    got = [
        (r["user_id"], r["timestamp"], r["label"], r["user_activity__event_count_lifetime"])
        for r in rows
    ]
    assert got == [
        ("007", BASE, "1", 3),
        (long_id, BASE, "0", 2),
        ("007", BASE, "01", 3),  # an ISO-8601 time; the label's text kept as written
        ("7", 1, "1", 0),  # before its event
    ]

    # Declared label types are checked too: one line naming the column.
    typed = read_spine(spark, spine, repo, service, column_types={"label": "integer"})
    assert [r["label"] for r in typed.collect()] == [1, 0, 1, 1]
    bad = tmp_path / "bad_time.csv"
    bad.write_text(f"user_id,timestamp\n007,{BASE}\n007,yesterday\n")
    with pytest.raises(ValueError, match=r"^spine column 'timestamp': 1 rows are not epoch"):
        read_spine(spark, bad, repo, service)


def test_an_integer_key_spine_is_parsed_as_64_bit_integers(spark_factory, tmp_path) -> None:
    """In an integer key column "007" is the entity 7 (as the API reads it); "abc" or 20
    digits is one line naming the column, with an example, not a Spark traceback."""
    from batch_layer.training import read_spine
    from feature_core.definitions import Aggregation, Entity, FeatureGroup
    from feature_core.sources import EventSource, Field

    accounts = EventSource(
        "account_events",
        [Field("account", "integer", required=True), Field("ts", "timestamp", required=True)],
        event_time="ts",
    )
    group = FeatureGroup(
        name="accounts",
        entity=Entity("account", join_key="account"),
        source=accounts,
        aggregations=[Aggregation("count", windows=["lifetime"], name="n")],
    )
    service = FeatureService("account_counts", ["accounts:n_lifetime"])
    repo = FeatureRepo((group,), (service,))
    settings = Settings(_env_file=None, data_dir=tmp_path, lake_uri=str(tmp_path / "lake"))
    _lake_of(settings, accounts, [{"account": a, "ts": BASE - 10} for a in (7, 7, 8)])
    spark = spark_factory(settings)
    spine = tmp_path / "spine.csv"
    spine.write_text(f"account,timestamp\n007,{BASE}\n8,{BASE}\n-9,{BASE}\n")
    frame = read_spine(spark, spine, repo, service)
    rows = build_training_set(spark, settings, repo, service, frame).collect()
    assert [(r["account"], r["accounts__n_lifetime"]) for r in rows] == [(7, 2), (8, 1), (-9, 0)]

    for value, shown in (("abc", "'abc'"), ("12345678901234567890", "'12345678901234567890'")):
        spine.write_text(f"account,timestamp\n7,{BASE}\n{value},{BASE}\n")
        frame = read_spine(spark, spine, repo, service)
        with pytest.raises(ValueError) as error:
            build_training_set(spark, settings, repo, service, frame)
        assert str(error.value) == (
            "spine column 'account': 1 rows are not 64-bit integers (the join key is declared "
            f"integer), e.g. {shown}"
        )
    spine.write_text(f"account,timestamp\n7,{BASE}\n,{BASE}\n")  # a row without its entity
    with pytest.raises(ValueError, match=r"^spine column 'account': 1 rows have no value"):
        read_spine(spark, spine, repo, service)


def test_every_catalog_kind_and_session_window_in_a_training_set(spark_factory, tmp_path):
    """Every kind of the aggregation catalog over sliding, lifetime and session windows,
    built by Spark from the lake with each value in its declared Spark type (maps, lists,
    floats), equals the reference at each spine row's time: before, inside and after the
    data, in a session and after one ended."""
    import json

    from feature_core.merge import values_match
    from tests.feature_core.aggregations import catalog

    group = catalog.group(["1h", "1d", "lifetime", "session:30m"])
    service = FeatureService("everything", [f"g:{f.name}" for f in group.features])
    repo = FeatureRepo((group,), (service,))
    settings = Settings(_env_file=None, data_dir=tmp_path, lake_uri=str(tmp_path / "lake"))
    rng = random.Random(5)
    events = []
    for _ in range(300):
        time = BASE - rng.choice([rng.randrange(0, 3 * DAY_MS), rng.randrange(0, 3 * HOUR_MS)])
        events.append(
            {
                "k": rng.choice(["hot", "hot", "hot", "a", "b"]),
                "t": time - time % rng.choice([1, 60_000]),
                "x": rng.choice([None, rng.uniform(-50, 50), 1e9 + rng.random()]),
                "n": rng.choice([None, rng.randrange(-5, 6)]),
                "s": rng.choice([None, *catalog.LABELS]),
                "b": rng.choice([None, True, False]),
                "c": rng.choice([None, "red", "green", "blue"]),
            }
        )
    source = catalog.SOURCE
    records = [(source.parse(json.dumps(e)), 0, i) for i, e in enumerate(events)]
    append_with_offsets(settings.table_uri(source.table_name), source, records, "t", {0: 0})
    times = [BASE - 4 * DAY_MS, BASE - DAY_MS, BASE - HOUR_MS, BASE - 20 * 60_000, BASE + 1]
    times += [BASE + 45 * 60_000]  # every session has ended
    spark = spark_factory(settings)
    spine = spark.createDataFrame(
        [(k, t) for k in ("hot", "a", "b", "nobody") for t in times], "k STRING, timestamp BIGINT"
    )
    rows = build_training_set(spark, settings, repo, service, spine).collect()
    assert len(rows) == 4 * len(times)
    for row in rows:
        own = [e for e in events if e["k"] == row["k"]]
        expected = evaluate(group, own, row["timestamp"]).get(row["k"])
        for feature in group.features:
            got = row[f"g__{feature.name}"]
            got = list(got) if isinstance(got, list) else got
            want = (
                expected[feature.name]
                if expected
                else feature.finalize(
                    tuple(group.primitives[i].identity for i in feature.tile_indices), 0
                )
            )
            assert values_match(got, want), (row["k"], row["timestamp"], feature.name, got)


def _derived_repo():
    """User groups and an item group over the shop's events, and derived features over
    both: a ratio (division by zero), seconds since the last event at the query time, a
    map lookup at a request field, and derived features over other derived ones."""
    from feature_core import derived as fx
    from feature_core.definitions import Aggregation, Entity, FeatureGroup

    user, item = Entity("user", join_key="user_id"), Entity("item", join_key="item_id")
    buyer = FeatureGroup(
        name="buyer",
        entity=user,
        source=shop,
        filter={"event_type": "purchase"},
        aggregations=[
            Aggregation("count", windows=["7d"], name="purchases"),
            Aggregation("sum", column="amount", windows=["7d"], name="spend"),
        ],
    )
    viewer = FeatureGroup(
        name="viewer",
        entity=user,
        source=shop,
        filter={"event_type": "view"},
        aggregations=[
            Aggregation("count_by", column="category", windows=["7d"], max_keys=8, name="by_cat"),
            Aggregation("count", windows=["7d"], name="views"),
            Aggregation("last", column="event_time", windows=["lifetime"], name="last_time"),
        ],
    )
    items = FeatureGroup(
        name="items",
        entity=item,
        source=shop,
        filter={"event_type": ["view", "click"]},
        aggregations=[Aggregation("count", windows=["1d"], name="interactions")],
    )
    category = fx.RequestField("candidate_category", "string")
    bid = fx.RequestField("bid", "float")
    d = fx.DerivedFeatures(
        "d",
        features={
            "spend_per_purchase": fx.coalesce(buyer["spend_7d"], 0.0) / buyer["purchases_7d"],
            "seconds_idle": fx.seconds_since(viewer["last_time_lifetime"]),
            "hours_idle": fx.feature("d:seconds_idle") / 3600.0,
            "category_views": viewer["by_cat_7d"].get(category, 0),
            "category_share": fx.feature("d:category_views") / viewer["views_7d"],
            "bid_over_spend": bid - fx.coalesce(fx.feature("d:spend_per_purchase"), 0.0),
            "user_per_item": viewer["views_7d"] / items["interactions_1d"],
        },
    )
    service = FeatureService(
        "mixed",
        [
            "buyer:purchases_7d",
            "d:spend_per_purchase",
            "items:interactions_1d",
            "d:hours_idle",
            "d:category_views",
            "d:category_share",
            "d:bid_over_spend",
            "d:user_per_item",
        ],
        defaults={"d:spend_per_purchase": -1.0},
    )
    repo = FeatureRepo((buyer, viewer, items), (service,), derived_views=(d,))
    return repo, service


def _recomputed(repo, events, row) -> dict:
    """The derived features in plain Python over the reference's aggregates at the row's
    time (division by zero: None; a service default fills the null)."""
    from feature_core.reference import default_values

    values = {}
    for group in repo.groups:
        key = row["item"] if group.name == "items" else row["user_id"]
        found = evaluate(group, events, row["timestamp"]).get(key)
        for name, value in (found or default_values(group)).items():
            values[f"{group.name}:{name}"] = value

    def divide(x, y):
        return None if x is None or y is None or y == 0 else x / y

    t = row["timestamp"]
    spend = values["buyer:spend_7d"]
    per_purchase = divide(0.0 if spend is None else spend, values["buyer:purchases_7d"])
    last = values["viewer:last_time_lifetime"]
    idle = None if last is None else (t - last) / 1000.0
    by_cat = values["viewer:by_cat_7d"]
    views = None if by_cat is None else by_cat.get(row["candidate_category"], 0)
    return {
        "buyer__purchases_7d": values["buyer:purchases_7d"],
        "d__spend_per_purchase": -1.0 if per_purchase is None else per_purchase,
        "items__interactions_1d": values["items:interactions_1d"],
        "d__hours_idle": None if idle is None else idle / 3600.0,
        "d__category_views": views,
        "d__category_share": divide(views, values["viewer:views_7d"]),
        "d__bid_over_spend": float(row["bid"]) - (per_purchase or 0.0),
        "d__user_per_item": divide(values["viewer:views_7d"], values["items:interactions_1d"]),
    }


def test_a_service_over_two_entities_with_derived_features(spark_factory, tmp_path) -> None:
    """User and item features and derived features over both, from a spine with the
    request context (a category, a bid as text) and the item's key in a column of another
    name, equal a plain-Python recompute over the reference at each row's time; the
    aggregates the derived features read but the service does not list are left out."""
    repo, service = _derived_repo()
    settings = Settings(_env_file=None, data_dir=tmp_path, lake_uri=str(tmp_path / "lake"))
    rng = random.Random(29)
    events = _events(rng)
    # A few views just before the spine's times: idle times of seconds, not days.
    events += [
        {
            **e,
            "event_id": f"recent{i}",
            "event_type": "view",
            "event_time": BASE - 3 * HOUR_MS - i * 1000,
            "amount": None,
        }
        for i, e in enumerate(events[:6])
    ]
    events = [{k: v for k, v in e.items() if v is not None} for e in events]
    _lake_of(settings, shop, events)
    times = [BASE - 50 * DAY_MS + 7, BASE - 3 * DAY_MS, BASE - HOUR_MS - 1, BASE + 1]
    spine_rows = [
        (user, rng.choice(["i1", "i2", "i3", "nothing"]), t, rng.choice(["a", "b", "z"]), bid)
        for user in ("u0", "u1", "u3", "nobody")
        for t, bid in zip(times, ("1.5", " 2", "-3.25", "0"), strict=True)
    ]
    spark = spark_factory(settings)
    spine = spark.createDataFrame(
        [(*r, i) for i, r in enumerate(spine_rows)],
        "user_id STRING, item STRING, timestamp BIGINT, candidate_category STRING, bid STRING, "
        "label INT",
    )
    columns = {"item_id": "item"}
    result = build_training_set(spark, settings, repo, service, spine, columns).collect()
    assert list(result[0].asDict()) == [
        *spine.columns,
        *(f.replace(":", "__") for f in service.features),
    ]
    assert [r["label"] for r in result] == list(range(len(spine_rows)))
    assert isinstance(result[0]["bid"], float)  # the request field in its declared type
    undefined = 0
    for row in result:
        expected = _recomputed(repo, events, row.asDict())
        for column, want in expected.items():
            got = row[column]
            where = (row["user_id"], row["item"], row["timestamp"], column, got, want)
            if isinstance(want, float):
                assert got == pytest.approx(want, rel=1e-9), where
            else:
                assert got == want, where
        undefined += expected["d__category_share"] is None
    assert 0 < undefined < len(result)  # views_7d of 0: undefined, as null
    assert any(r["d__spend_per_purchase"] == -1.0 for r in result)  # the default
    assert any(r["d__hours_idle"] is not None and r["d__hours_idle"] < 3 for r in result)
    assert any(r["d__category_views"] for r in result)

    # A read of only the spine's (user, item) pairs gives the same rows.
    pairs = {(user, item) for user, item, *_ in spine_rows}
    again = build_training_set(spark, settings, repo, service, spine, columns, entities=pairs)
    assert again.collect() == result


def test_derived_features_need_their_request_fields_in_the_spine(spark_factory, tmp_path):
    """A spine without a request field's column is an error naming it and the spine's
    columns; a value its declared type refuses is one line naming the column."""
    repo, service = _derived_repo()
    settings = Settings(_env_file=None, data_dir=tmp_path, lake_uri=str(tmp_path / "lake"))
    spark = spark_factory(settings)
    spine = spark.createDataFrame(
        [("u0", "i1", BASE, "1.5")], "user_id STRING, item_id STRING, timestamp BIGINT, bid STRING"
    )
    with pytest.raises(ValueError) as error:
        build_training_set(spark, settings, repo, service, spine)
    assert str(error.value) == (
        "spine has no column 'candidate_category' for the request field candidate_category "
        "(string) that d:category_views, d:category_share read; it has "
        "['user_id', 'item_id', 'timestamp', 'bid']"
    )
    _lake_of(settings, shop, _events(random.Random(1))[:5])
    spine = spark.createDataFrame(
        [("u0", "i1", BASE, "a", "1.5"), ("u1", "i1", BASE, "b", "cheap")],
        "user_id STRING, item_id STRING, timestamp BIGINT, candidate_category STRING, bid STRING",
    )
    with pytest.raises(ValueError) as error:
        build_training_set(spark, settings, repo, service, spine)
    assert str(error.value) == (
        "spine column 'bid': 1 rows are not numbers (the request field is declared float), "
        "e.g. 'cheap'"
    )
