"""The fraud example end to end: two sources on two topics, a composite key, exact values.

Events go through both topics, older ones are loaded from a file with `lfp lake load`
(twice); a batch run covers the older ones; newer ones (and one
dated minutes ahead, as a skewed client clock sends) reach the speed layer. Every feature
of every fraud group, the (card, merchant) group included, must equal the reference
evaluator at the API's ``as_of``, and the training set at that instant must equal what
was served.
"""

from __future__ import annotations

import json
import random
import time
import uuid

import httpx
import pytest
import redis
from typer.testing import CliRunner

from feature_core.definitions import FeatureRepo, FeatureService
from feature_core.keys import entity_id
from feature_core.merge import values_match
from feature_core.reference import evaluate
from feature_core.windows import DAY_MS, MINUTE_MS, SPEED_TILE_MS, align_cutoff
from fraud import feature_repo as fraud
from fraud.generator import iso
from infra.cli import app
from online_store.keys import KeySpace
from tests.conftest import wait_for
from tests.integration.helpers import lake_event_ids, produce

pytestmark = pytest.mark.integration

REPO = FeatureRepo.from_module("fraud.feature_repo")


def _payment(rng: random.Random, tag: str, at_ms: int) -> dict:
    return {
        "transaction_id": f"{tag}-t{uuid.UUID(int=rng.getrandbits(128)).hex[:12]}",
        "card_id": f"{tag}-c{rng.randrange(4)}",
        "account_id": f"{tag}-a{rng.randrange(3)}",
        "merchant_id": f"{tag}-m{rng.randrange(3)}",
        "amount": round(rng.uniform(1, 400), 2),
        "currency": rng.choice(fraud.CURRENCIES),
        "channel": rng.choice(fraud.CHANNELS),
        "country": rng.choice(["DE", "FR", None]),
        # ISO-8601 text, as a card processor sends it; some with an offset.
        "ts": iso(at_ms) if rng.random() < 0.7 else _with_offset(at_ms),
    }


def _with_offset(at_ms: int) -> str:
    from datetime import UTC, datetime, timedelta, timezone

    moment = datetime.fromtimestamp(at_ms / 1000, UTC).astimezone(timezone(timedelta(hours=2)))
    return moment.isoformat(timespec="milliseconds")


def _login(rng: random.Random, tag: str, at_ms: int) -> dict:
    return {
        "login_id": f"{tag}-l{uuid.UUID(int=rng.getrandbits(128)).hex[:12]}",
        "account_id": f"{tag}-a{rng.randrange(3)}",
        "success": rng.random() < 0.6,
        "ip": f"198.51.100.{rng.randrange(6)}",
        "device": rng.choice(["ios", "web", None]),
        "login_time": at_ms,
    }


def _served(settings, features: list[str], entities: list) -> dict:
    response = httpx.post(
        f"{settings.api_url}/v1/features",
        json={"features": features, "entities": entities},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_fraud_features_equal_the_reference_and_the_training_set(stack, spark_factory, tmp_path):
    from batch_layer.training import build_training_set

    settings = stack.settings
    rng = random.Random(5)
    tag = f"fr{uuid.uuid4().hex[:6]}"
    now = int(time.time() * 1000)
    cutoff = align_cutoff(now) - 5 * MINUTE_MS
    # History: 40 days back up to just before the cutoff, through both topics.
    payments = [_payment(rng, tag, rng.randrange(now - 40 * DAY_MS, cutoff)) for _ in range(160)]
    logins = [_login(rng, tag, rng.randrange(now - 8 * DAY_MS, cutoff)) for _ in range(70)]
    produce(settings, payments, fraud.transactions)
    produce(settings, logins, fraud.logins)
    # Older history loaded from a file, as a new user brings theirs: twice, with bad lines.
    loaded = [_payment(rng, tag, rng.randrange(now - 60 * DAY_MS, cutoff)) for _ in range(50)]
    history = tmp_path / "payments.jsonl"
    lines = [json.dumps(p) for p in loaded]
    lines[10:10] = ["{not json", json.dumps({**loaded[0], "amount": -1})]
    history.write_text("\n".join(lines) + "\n")
    for _ in range(2):
        result = CliRunner().invoke(
            app, ["lake", "load", "--source", "card_transactions", str(history)]
        )
        assert result.exit_code == 0, result.output
    rejects = [
        json.loads(line)
        for line in history.with_name("payments.jsonl.rejects.jsonl").read_text().splitlines()
    ]
    assert [(r["line"], r["reason"]) for r in rejects] == [
        (11, "not valid JSON"),
        (12, "amount: -1.0 is below the minimum 0"),
    ]
    payments += loaded
    wait_for(
        lambda: (
            len(lake_event_ids(settings, tag, fraud.transactions, "transaction_id", "card_id"))
            >= len(payments)
            and len(lake_event_ids(settings, tag, fraud.logins, "login_id", "account_id"))
            >= len(logins)
        ),
        180,
        "fraud history in both lake tables",
    )
    ids = lake_event_ids(settings, tag, fraud.transactions, "transaction_id", "card_id")
    assert len(ids) == len(set(ids)) == len(payments)  # the file's records once each
    run = stack.run_batch(cutoff)
    assert set(run["delta_versions"]) >= {"card_transactions", "account_logins"}, run

    # Live: after the cutoff, for the speed layer; one payment is dated 3 minutes ahead.
    live_now = int(time.time() * 1000)
    new_payments = [_payment(rng, tag, live_now - rng.randrange(0, 60_000)) for _ in range(40)]
    ahead_ms = live_now + 4 * MINUTE_MS + 30_000
    ahead = _payment(rng, tag, ahead_ms)
    ahead["card_id"], ahead["merchant_id"] = f"{tag}-c0", f"{tag}-m0"
    new_logins = [_login(rng, tag, live_now - rng.randrange(0, 60_000)) for _ in range(25)]
    produce(settings, [*new_payments, ahead], fraud.transactions)
    # The logins as a user sends them by hand: JSON Lines through `lfp send`.
    lines = "".join(json.dumps(login) + "\n" for login in new_logins)
    sent = CliRunner().invoke(app, ["send", "--source", "account_logins", "-"], input=lines)
    assert sent.exit_code == 0 and f"sent {len(new_logins)} records" in sent.output, sent.output

    records = {
        fraud.transactions.name: [
            fraud.transactions.check(e) for e in [*payments, *new_payments, ahead]
        ],
        fraud.logins.name: [fraud.logins.check(e) for e in [*logins, *new_logins]],
    }
    # Each group's speed watermark moves with the newest event it keeps (its filter).
    newest = {
        g.name: max(r[g.event_time] for r in records[g.source.name] if g.accepts(r))
        for g in REPO.groups
    }

    def caught_up() -> bool:
        watermarks = httpx.get(f"{settings.api_url}/readyz", timeout=10).json()
        return all(
            watermarks["speed_watermarks"].get(g.name, 0) >= newest[g.name] for g in REPO.groups
        )

    wait_for(caught_up, 180, "the speed layer to cover every fraud event")

    # Speed tiles are 5-minute tiles keyed by their start; only the payment dated ahead of
    # its Kafka record is kept under its exact time.
    client = redis.Redis.from_url(settings.redis_url)
    fields = client.hkeys(KeySpace(settings.key_prefix).speed_tiles("card_spend", f"{tag}-c0"))
    # (Fields "[start,version,width]" are correction tiles of the history, sent late.)
    starts = {int(f) for f in fields if not f.startswith(b"[")}
    client.close()
    assert ahead_ms in starts
    assert len(starts) > 1 and all(s % SPEED_TILE_MS == 0 for s in starts - {ahead_ms}), starts

    checked = 0
    # The composite entity first: its pair (c0, m0) holds the payment dated ahead.
    kinds = sorted({g.entity.join_keys for g in REPO.groups}, key=len, reverse=True)
    for entity_keys in kinds:
        groups = [g for g in REPO.groups if g.entity.join_keys == entity_keys]
        names = [f.qualified_name for g in groups for f in g.features]
        seen = {tuple(r[k] for k in entity_keys) for g in groups for r in records[g.source.name]}
        entities = [dict(zip(entity_keys, key, strict=True)) for key in sorted(seen)]
        entities.append(dict.fromkeys(entity_keys, f"{tag}-nobody"))
        body = _served(settings, names, entities)
        as_of = body["as_of"]
        if len(entity_keys) == 2:
            assert ahead_ms > as_of  # the early payment is still ahead of the query
        expected: dict[str, dict] = {}
        for g in groups:
            for key, values in evaluate(g, records[g.source.name], as_of).items():
                for name, value in values.items():
                    expected.setdefault(key, {})[f"{g.name}:{name}"] = value
        served_rows = {}
        for entity, vector in zip(entities, body["vectors"], strict=True):
            assert vector["entity_id"] == entity
            key = entity_id([entity[k] for k in entity_keys])
            served_rows[key] = dict(zip(names, vector["values"], strict=True))
            want = expected.get(key)
            for name, got in served_rows[key].items():
                if want is None:  # never seen: every value is its aggregation's identity
                    assert vector["statuses"][names.index(name)] == "no_data"
                    continue
                assert values_match(got, want[name]), (key, name, got, want[name])
                checked += 1

        # The training set at the API's as_of equals what was served.
        service = FeatureService(f"check_{len(entity_keys)}_{groups[0].name}", names)
        repo = FeatureRepo(REPO.groups, (service,))
        spark = spark_factory(settings)
        columns = ", ".join(f"`{k}` STRING" for k in entity_keys)
        spine = spark.createDataFrame(
            [(*(e[k] for k in entity_keys), as_of) for e in entities],
            f"{columns}, timestamp BIGINT",
        )
        rows = build_training_set(spark, settings, repo, service, spine).collect()
        for row in rows:
            key = entity_id([row[k] for k in entity_keys])
            for name in names:
                got = row[name.replace(":", "__", 1)]
                assert values_match(got, served_rows[key][name]), (key, name, got)
    assert checked > 100

    # The verifier checks composite entities too (a sample of the others).
    from batch_layer.verify import verify

    pairs = [(f"{tag}-c{c}", f"{tag}-m{m}") for c in range(2) for m in range(2)]
    report = verify(
        spark_factory(settings),
        settings,
        REPO,
        sample=3,
        entities={"card_merchant": pairs},
        settle_s=2,
    )
    assert report.mismatches == 0, report.examples
    assert report.entities >= len(pairs) and set(report.delta_versions) == {
        "card_transactions",
        "account_logins",
    }

    # Feast's shape: one list per join key of the composite entity, the same values.
    feature = "card_merchant_history:pair_spend_30d"
    ours = _served(settings, [feature], [{"card_id": f"{tag}-c1", "merchant_id": f"{tag}-m1"}])
    feast = httpx.post(
        f"{settings.api_url}/get-online-features",
        json={
            "features": [feature],
            "entities": {"card_id": [f"{tag}-c1"], "merchant_id": [f"{tag}-m1"]},
        },
        timeout=10,
    ).json()
    assert feast["metadata"]["feature_names"] == ["card_id", "merchant_id", "pair_spend_30d"]
    assert feast["results"][1]["values"] == [f"{tag}-m1"]
    assert values_match(feast["results"][2]["values"][0], ours["vectors"][0]["values"][0])
