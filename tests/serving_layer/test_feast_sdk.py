"""Feast's own SDK and Feast's own feature server against the API (Feast from PyPI, in
its own environment, .venv-feast, made by `make install`).

1. `lfp feast export` writes a Feast repo with `online_store: remote` pointed at the API;
   `feast apply` registers it; the SDK's `get_online_features(...).to_dict()` must equal
   the `/v1` values (null where an entity has no data, and for empty lists and maps), of
   the same JSON types; a decayed value only moves as the time between the reads does.
2. The same values are written into a real `feast serve` (its own Redis); the same
   `/get-online-features` bodies sent to it and to the API must answer the same JSON,
   modulo the differences the README's Feast section names.
3. Every aggregation kind's values (the catalog's, without the stack): the exported dtype is
   what `feast apply` registers, the SDK reads the API's JSON as that type and value, and
   Feast's server, given the same values, prints the same JSON.
"""

from __future__ import annotations

import json
import os
import random
import select
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis

from feature_core.definitions import Aggregation, Feature, FeatureGroup, FeatureRepo
from feature_core.merge import ValueStatus
from feature_core.reference import evaluate
from fraud import feature_repo as fraud
from fraud.generator import iso
from infra.stack import free_port
from serving_layer.feast import EPOCH, feast_value
from serving_layer.feast_repo import export, feast_dtype
from tests.conftest import wait_for
from tests.feature_core.aggregations import catalog
from tests.integration.helpers import entities_for, make_event, produce

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("feast_driver.py")
#: Values the API sends as null: Feast's SDK cannot type an empty list or map.
EMPTY = ([], {})
#: Statuses where the API is more precise than Feast 0.67's server, which answers PRESENT
#: with a null value for an entity it does not hold and for a null value (README).
NULL_STATUSES = {"NOT_FOUND", "NULL_VALUE"}


def now_ms() -> int:
    return int(time.time() * 1000)


@pytest.fixture(scope="module")
def feast_python() -> Path:
    python = Path(os.environ.get("LFP_FEAST_PYTHON", ROOT / ".venv-feast" / "bin" / "python"))
    if not python.exists():
        pytest.fail(f"Feast's environment is missing ({python}): run make install")
    return python


def feast_cli(python: Path, repo_dir: Path, *args: str) -> None:
    done = subprocess.run(
        [str(python.parent / "feast"), *args], cwd=repo_dir, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


class FeastDriver:
    """feast_driver.py in Feast's environment, one process for the module: importing
    Feast costs seconds of CPU, which a process per command paid each time (a minute per
    test). Each command still opens the repo's FeatureStore afresh."""

    def __init__(self, python: Path, log: Path) -> None:
        self.log = log
        with log.open("wb") as err:
            self.process = subprocess.Popen(
                [str(python), str(DRIVER)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )

    def __call__(self, command: dict, timeout_s: float = 180.0) -> Any:
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        stdin.write(json.dumps(command) + "\n")
        stdin.flush()
        ready, _, _ = select.select([stdout], [], [], timeout_s)
        if not ready:
            pytest.fail(f"the Feast driver gave no answer in {timeout_s:.0f} s: {self.tail()}")
        line = stdout.readline()
        assert line, f"the Feast driver exited ({self.process.poll()}): {self.tail()}"
        answer = json.loads(line)
        assert not (isinstance(answer, dict) and "exception" in answer), answer["exception"]
        return answer

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture(scope="module")
def feast_driver(
    feast_python: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FeastDriver]:
    driver = FeastDriver(feast_python, tmp_path_factory.mktemp("feast-driver") / "stderr.log")
    yield driver
    driver.close()


def drive(driver: FeastDriver, command: dict) -> Any:
    return driver(command)


@pytest.fixture(scope="module")
def known(stack) -> dict[str, Any]:
    """Two users and an item with fresh shop events, and a (card, merchant) pair with
    payments, all served by the speed layer."""
    settings = stack.settings
    _, ids = entities_for("feast", users=2, items=1)
    users, item = ids["user_id"], ids["item_id"][0]
    t = now_ms()
    events = []
    for i, user in enumerate(users):
        for k in range(i + 2):
            events.append({**make_event(user, t - (k + 1) * 1000, "view"), "item_id": item})
        events.append(make_event(user, t - 500, "purchase", amount=10.0 * (i + 1)))
    produce(settings, events)
    tag = f"feast{uuid.uuid4().hex[:6]}"
    card, merchant = f"{tag}-c", f"{tag}-m"
    rng = random.Random(3)
    payments = [
        {
            "transaction_id": f"{tag}-t{n}",
            "card_id": card,
            "account_id": f"{tag}-a",
            "merchant_id": merchant,
            "amount": round(rng.uniform(1, 400), 2),
            "currency": "EUR",
            "channel": "online",
            "country": "DE",
            "ts": iso(t - 2000 + n),
        }
        for n in range(2)
    ]
    produce(settings, payments, fraud.transactions)
    account = f"{tag}-a"
    logins = [
        {
            "login_id": f"{tag}-l{n}",
            "account_id": account,
            "success": n > 0,
            "ip": f"10.0.0.{n + 1}",
            "device": f"phone-{n}",
            "login_time": t - 1500 + n,
        }
        for n in range(2)
    ]
    produce(settings, logins, fraud.logins)

    def served() -> bool:
        checks = [
            (["user_activity:event_count_1h"], users, [3, 4]),
            (["item_popularity:interactions_1h"], [item], [5]),
            (
                ["card_merchant_history:pair_count_1d"],
                [{"card_id": card, "merchant_id": merchant}],
                [2],
            ),
            (["account_logins:logins_1h"], [account], [2]),
        ]
        for features, entities, expected in checks:
            body = {"features": features, "entities": entities}
            got = httpx.post(f"{settings.api_url}/v1/features", json=body, timeout=10).json()
            if [v["values"][0] for v in got.get("vectors", [])] != expected:
                return False
        return True

    wait_for(served, 90, "the speed layer to serve the test's users, item, card and account")
    return {"users": users, "item": item, "card": card, "merchant": merchant, "account": account}


def cases(known: dict[str, Any]) -> list[dict[str, Any]]:
    users, ghost = known["users"], f"ghost-{uuid.uuid4().hex[:6]}"
    user_features = [
        "user_activity:event_count_1h",
        "user_activity:purchase_amount_sum_lifetime",
        "user_purchases:spend_7d",
        "user_purchases:avg_order_value_30d",
        "user_browsing:last_item_1h",
        "user_browsing:recent_categories_1d",
        "user_browsing:category_history_7d",
        "user_views:views_by_category_7d",  # a map of the values seen (none declared)
        "user_views:items_viewed_session_30m",
    ]
    card_features = [
        "card_merchant_history:pair_count_1d",
        "card_merchant_history:pair_spend_30d",
        "card_merchant_history:last_seen_lifetime",
    ]
    return [
        {"features": user_features, "entities": {"user_id": [*users, ghost]}},
        {
            "features": user_features,
            "entities": {"user_id": [users[0], ghost]},
            "full_feature_names": True,
        },
        {"feature_service": "ranking_features", "entities": {"user_id": [users[1], ghost]}},
        {
            "features": card_features,
            "entities": {
                "card_id": [known["card"], known["card"], ghost],
                "merchant_id": [known["merchant"], ghost, known["merchant"]],
            },
        },
        {
            "features": ["item_popularity:interactions_1h", "user_activity:event_count_1h"],
            "entities": {"item_id": [known["item"], ghost], "user_id": [ghost, users[0]]},
        },
        {"features": ["user_activity:event_count_1h"], "entities": {"user_id": [7]}},
        *fraud_cases(known, ghost),
    ]


def fraud_cases(known: dict[str, Any], ghost: str) -> list[dict[str, Any]]:
    """Every feature of the fraud example (each kind and value type it declares), one
    request per entity type: the test's card, account and pair, and an unknown one."""
    features: dict[tuple[str, ...], list[str]] = {}
    for group in FeatureRepo.from_module(fraud).groups:
        refs = features.setdefault(group.join_keys, [])
        refs += [f"{group.name}:{f.name}" for f in group.features]
    known_keys = {"card_id": known["card"], "account_id": known["account"]}
    known_keys["merchant_id"] = known["merchant"]
    return [
        *(
            {"features": refs, "entities": {key: [known_keys[key], ghost] for key in keys}}
            for keys, refs in features.items()
        ),
        {  # a decayed value, which moves with the query time, under its full name
            "feature_service": "fraud_account",
            "entities": {"account_id": [ghost, known["account"]]},
            "full_feature_names": True,
        },
    ]


def test_the_cases_read_every_value_type_feast_has_for_the_new_kinds() -> None:
    """The fraud example declares the new kinds, and the cases read each of them: a map,
    floats (stddev, a percentile, a decayed count), the event time's first (epoch ms)."""
    from tests.conftest import TEST_REPO

    repo = FeatureRepo.from_module(TEST_REPO)
    placeholders = {"users": ["u1", "u2"], "item": "i", "card": "c", "merchant": "m"}
    read = [
        (group, feature)
        for case in cases(placeholders | {"account": "a"})
        for group_name, name in (ref.split(":") for ref in requested(repo, case))
        for group in [repo.group(group_name)]
        for feature in group.features
        if feature.name == name
    ]
    kinds = {feature.aggregation.name for _, feature in read}
    assert {"count_by", "first", "stddev", "approx_percentile", "decayed_count"} <= kinds
    dtypes = {feast_dtype(feature, group) for group, feature in read}
    assert {"Map", "Float64", "Int64", "String", "Array(String)"} <= dtypes
    assert any(f.aggregation.name == "first" and f.column == g.event_time for g, f in read), (
        "no first of the event time"
    )


def requested(repo: FeatureRepo, case: dict[str, Any]) -> list[str]:
    """The references a case asks for: its feature service's, which wins, or its list."""
    if case.get("feature_service"):
        return list(repo.service(case["feature_service"]).features)
    return list(case["features"])


def expected_from_v1(stack, repo: FeatureRepo, case: dict[str, Any]) -> dict[str, list]:
    """What a Feast client must see, from the `/v1` values: the join keys as sent (as
    text: every join key here is a string), then each feature's values, null where the
    entity has no data in the group and for empty lists and maps."""
    refs = requested(repo, case)
    entities = {k: [str(v) for v in values] for k, values in case["entities"].items()}
    rows = list(zip(*entities.values(), strict=True))
    keys = list(entities)
    expected: dict[str, list] = {k: v for k, v in entities.items()}
    for ref in refs:
        group = repo.group(ref.split(":")[0])
        objects = [{k: row[keys.index(k)] for k in group.join_keys} for row in rows]
        body = {"features": [ref], "entities": objects}
        got = httpx.post(f"{stack.settings.api_url}/v1/features", json=body, timeout=10)
        assert got.status_code == 200, got.text
        name = ref.replace(":", "__") if case.get("full_feature_names") else ref.split(":")[1]
        values = []
        for entity, vector in zip(objects, got.json()["vectors"], strict=True):
            unknown = any(str(v).startswith("ghost-") or v == "7" for v in entity.values())
            value = vector["values"][0]
            values.append(None if unknown or value in EMPTY else value)
        expected[name] = values
    return expected


def test_the_feast_sdk_reads_the_same_values_as_v1(
    stack, known, feast_python, feast_driver, tmp_path
) -> None:
    settings = stack.settings
    repo = FeatureRepo.from_module(settings.feature_repo)
    remote = tmp_path / "remote"
    online_store = {"type": "remote", "path": settings.api_url}
    export(repo, settings.feature_repo, remote, "lfp", online_store)
    feast_cli(feast_python, remote, "apply")
    kinds_read = set()
    for case in cases(known):
        moving = moving_columns(repo, case)
        for _ in range(3):  # values may move between the reads (a window boundary)
            start = time.monotonic()
            before = expected_from_v1(stack, repo, case)
            (answer,) = drive(feast_driver, {"repo": str(remote), "read": [case]})
            after = expected_from_v1(stack, repo, case)
            elapsed_ms = (time.monotonic() - start) * 1000
            if steady(before, moving) == steady(after, moving):
                break
        assert "error" not in answer, (case, answer)
        assert answer["dict"].keys() == before.keys(), case
        for name, values in before.items():
            assert_same_values(answer["dict"][name], values, moving.get(name), elapsed_ms)
        features = column_features(repo, case)
        kinds_read |= {
            features[name].aggregation.name
            for name, values in answer["dict"].items()
            if name in features and any(v is not None for v in values)
        }
    # Each new kind of the fraud example was read as a value, not only as a null.
    assert {"count_by", "first", "stddev", "approx_percentile", "decayed_count"} <= kinds_read


def column_features(repo: FeatureRepo, case: dict[str, Any]) -> dict[str, Feature]:
    """The case's feature columns, by the name the answer gives them."""
    columns = {}
    for ref in requested(repo, case):
        group_name, name = ref.split(":")
        column = ref.replace(":", "__") if case.get("full_feature_names") else name
        columns[column] = next(f for f in repo.group(group_name).features if f.name == name)
    return columns


def moving_columns(repo: FeatureRepo, case: dict[str, Any]) -> dict[str, int]:
    """The case's columns whose value moves with the query time alone (decayed kinds),
    with their half-life: between two reads Δ ms apart a value falls by 2^(-Δ/half_life),
    by less than Δ/half_life of itself."""
    return {
        column: feature.aggregation.options.half_life_ms
        for column, feature in column_features(repo, case).items()
        if feature.aggregation.time_dependent
    }


def steady(columns: dict[str, Any], moving: dict[str, int]) -> dict[str, Any]:
    return {name: values for name, values in columns.items() if name not in moving}


def assert_same_values(
    got: list[Any], want: list[Any], half_life_ms: int | None, elapsed_ms: float
) -> None:
    """Equal, types too (2 and 2.0 are equal in Python, not in JSON), or for a moving
    column equal within what the time between the reads moves."""
    if half_life_ms is None:
        assert typed_json(got) == typed_json(want), (got, want)
        return
    assert len(got) == len(want) and [v is None for v in got] == [v is None for v in want]
    drift = elapsed_ms / half_life_ms
    for a, b in zip(got, want, strict=True):
        assert a is None or abs(a - b) <= drift * max(abs(a), abs(b)), (a, b, drift)


def test_feast_serve_answers_the_same_json(
    stack, known, feast_python, feast_driver, redis_process, tmp_path
) -> None:
    settings = stack.settings
    api = settings.api_url
    repo = FeatureRepo.from_module(settings.feature_repo)
    native = tmp_path / "native"
    online_store = {"type": "redis", "connection_string": f"localhost:{redis_process.port}"}
    export(repo, settings.feature_repo, native, "lfp", online_store)
    feast_cli(feast_python, native, "apply")
    port = free_port()
    server = subprocess.Popen(
        [str(feast_python.parent / "feast"), "serve", "-p", str(port), "--workers", "1"],
        cwd=native,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    feast_url = f"http://127.0.0.1:{port}"
    feast_online = redis.Redis(host="127.0.0.1", port=redis_process.port, socket_timeout=10)
    try:
        wait_for(lambda: _healthy(feast_url), 120, "feast serve")
        for case in cases(known):
            moving = moving_columns(repo, case)
            for _ in range(3):
                start = time.monotonic()
                ours = httpx.post(f"{api}/get-online-features", json=case, timeout=10).json()
                # Feast keeps a stored row over one with the same event timestamp: what an
                # earlier case wrote would stay (a decayed value read further back).
                feast_online.flushall()
                materialize(feast_driver, native, repo, api, case)
                theirs = httpx.post(f"{feast_url}/get-online-features", json=case, timeout=30)
                assert theirs.status_code == 200, theirs.text
                again = httpx.post(f"{api}/get-online-features", json=case, timeout=10).json()
                elapsed_ms = (time.monotonic() - start) * 1000
                if steady(by_name(again), moving) == steady(by_name(ours), moving):
                    break
            assert_same_json(ours, theirs.json(), case, moving, elapsed_ms)
    finally:
        server.terminate()
        server.wait(30)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def materialize(
    driver: FeastDriver, native: Path, repo: FeatureRepo, api: str, case: dict[str, Any]
) -> None:
    """Write what the API serves for the case's entities into Feast's online store, one
    row per (group, found entity), stamped with the API's event timestamp."""
    refs = requested(repo, case)
    writes = []
    for name in dict.fromkeys(ref.split(":")[0] for ref in refs):
        group = repo.group(name)
        body = {
            "features": [f"{name}:{f.name}" for f in group.features],
            "entities": {k: case["entities"][k] for k in group.join_keys},
        }
        answer = httpx.post(f"{api}/get-online-features", json=body, timeout=10).json()
        columns = dict(zip(answer["metadata"]["feature_names"], answer["results"], strict=True))
        keys = [columns[k]["values"] for k in group.join_keys]
        rows = []
        for i, key_values in enumerate(zip(*keys, strict=True)):
            first = columns[group.features[0].name]
            if first["statuses"][i] == "NOT_FOUND":
                continue
            row = dict(zip(group.join_keys, key_values, strict=True))
            row[group.event_time] = first["event_timestamps"][i]
            row |= {f.name: columns[f.name]["values"][i] for f in group.features}
            rows.append(row)
        if rows:
            writes.append({"view": name, "time_field": group.event_time, "rows": rows})
    drive(driver, {"repo": str(native), "write": writes})


def by_name(answer: dict) -> dict[str, Any]:
    """A `/get-online-features` answer's columns by name."""
    return dict(zip(answer["metadata"]["feature_names"], answer["results"], strict=True))


def assert_same_json(
    ours: dict, theirs: dict, case: dict, moving: dict[str, int], elapsed_ms: float
) -> None:
    """Same names, entity columns, values and timestamps; Feast 0.67 orders feature
    columns by view and then at random and says PRESENT for nulls (README). The values
    written into Feast were read after ``ours``: a moving column may have moved since."""
    our_names, their_names = ours["metadata"]["feature_names"], theirs["metadata"]["feature_names"]
    assert sorted(our_names) == sorted(their_names), case
    n_keys = len(case["entities"])
    assert our_names[:n_keys] == their_names[:n_keys], case
    mine, other = by_name(ours), by_name(theirs)
    for name in our_names:
        a, b = mine[name], other[name]
        assert_same_values(b["values"], a["values"], moving.get(name), elapsed_ms)
        assert a["event_timestamps"] == b["event_timestamps"], (case, name)
        for status, their_status, value in zip(
            a["statuses"], b["statuses"], a["values"], strict=True
        ):
            if status in NULL_STATUSES:
                assert value is None and their_status in {status, "PRESENT"}, (case, name)
            else:
                assert status == their_status, (case, name)


#: The catalog's examples and the value types it lacks: the event time itself (epoch ms),
#: lists of floats, booleans and text.
KINDS_GROUP = catalog.group(
    ["lifetime", "session:30m"],
    [
        *catalog.EXAMPLES,
        Aggregation("first", "t", name="first_seen"),
        Aggregation("first_k", "b", k=2),
        Aggregation("last_k", "x", k=2),
        Aggregation("last_k", "s", k=2),
    ],
)
#: The Value proto field Feast's SDK must fill for each dtype.
PROTO_FIELDS = {
    "String": "string_val",
    "Int64": "int64_val",
    "Float64": "double_val",
    "Bool": "bool_val",
    "Array(String)": "string_list_val",
    "Array(Int64)": "int64_list_val",
    "Array(Float64)": "double_list_val",
    "Array(Bool)": "bool_list_val",
    "Map": "map_val",
}


def kinds_events(t: int) -> list[dict[str, Any]]:
    """Two things with every field set, one whose fields are all null but its key."""
    xs, ns, ss = [2.5, -1.25, 10.0, 0.5], [7, -3, 7, 40], ["b", "é", "a", "b"]
    bs, cs = [True, False, True, True], ["red", "blue", "red", None]
    events = [
        {"k": key, "t": t - (4 - i) * 60_000 - j, "x": xs[i], "n": ns[i] + j, "s": ss[i]}
        | {"b": bs[i] ^ bool(j), "c": cs[i]}
        for j, key in enumerate(["thing-1", "thing-2"])
        for i in range(4)
    ]
    return [*events, {"k": "thing-3", "t": t - 60_000}]


def typed_json(value: Any) -> str:
    """A value as JSON text with sorted keys: equal only if types are too (1 != 1.0)."""
    return json.dumps(value, sort_keys=True)


def test_every_kinds_values_read_as_their_feast_dtype(feast_python, feast_driver, tmp_path) -> None:
    group: FeatureGroup = KINDS_GROUP
    repo = FeatureRepo((group,))
    feast_repo = tmp_path / "kinds"
    export(repo, "catalog", feast_repo, "lfp", {"type": "sqlite", "path": "data/online.db"})
    feast_cli(feast_python, feast_repo, "apply")
    dtypes = {f.name: feast_dtype(f, group) for f in group.features}
    assert drive(feast_driver, {"repo": str(feast_repo), "dtypes": True}) == {group.name: dtypes}
    assert {"Map", "Array(Bool)", "Array(Float64)", "Array(Int64)", "Float64"} <= set(
        dtypes.values()
    )

    t = 1_796_173_200_000
    by_thing = evaluate(group, kinds_events(t), t)
    things = sorted(by_thing)
    # The API's answer: each value as /get-online-features maps it, in its JSON form.
    columns = {
        name: [feast_value(by_thing[k][name], ValueStatus.PRESENT) for k in things]
        for name in group.feature_names
    }
    stamp = iso(t)
    response = orjson.loads(
        orjson.dumps(
            {
                "metadata": {"feature_names": ["k", *group.feature_names]},
                "results": [
                    {"values": things, "statuses": ["PRESENT"] * 3, "event_timestamps": [EPOCH] * 3}
                ]
                + [
                    {
                        "values": [value for value, _ in column],
                        "statuses": [status for _, status in column],
                        "event_timestamps": [stamp] * 3,
                    }
                    for column in columns.values()
                ],
            }
        )
    )
    ours = dict(zip(response["metadata"]["feature_names"], response["results"], strict=True))
    for name in dtypes:
        assert any(v is not None for v in ours[name]["values"]), f"{name}: no value to read"

    sdk = drive(feast_driver, {"repo": str(feast_repo), "decode": response})
    assert "error" not in sdk, sdk
    for name, dtype in dtypes.items():
        values = ours[name]["values"]
        assert typed_json(sdk["dict"][name]) == typed_json(values), name
        fields = [PROTO_FIELDS[dtype] if v is not None else None for v in values]
        assert sdk["types"][name] == fields, (name, dtype, values)
    # A map's counts are integers in Feast's map too.
    maps = [n for n, d in dtypes.items() if d == "Map"]
    assert maps and all(
        isinstance(count, int)
        for name in maps
        for value in sdk["dict"][name]
        for count in (value or {}).values()
    )

    rows = [
        {"k": thing, "t": stamp} | {name: ours[name]["values"][i] for name in dtypes}
        for i, thing in enumerate(things)
    ]
    drive(
        feast_driver,
        {"repo": str(feast_repo), "write": [{"view": group.name, "time_field": "t", "rows": rows}]},
    )
    case = {"features": [f"{group.name}:{n}" for n in dtypes], "entities": {"k": things}}
    (served,) = drive(feast_driver, {"repo": str(feast_repo), "serve": [case]})
    theirs = dict(zip(served["metadata"]["feature_names"], served["results"], strict=True))
    for name in dtypes:
        assert typed_json(theirs[name]["values"]) == typed_json(ours[name]["values"]), name
