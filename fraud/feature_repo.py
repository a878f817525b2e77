"""Card-fraud features: ``LFP_FEATURE_REPO=fraud.feature_repo``.

Two sources on two topics: card transactions (an ISO-8601 timestamp field) and account
logins (a boolean outcome). Groups are keyed by card, by account and by the (card,
merchant) pair; windows run from 5 minutes to 30 days. ``fraud_card`` is the input of a
card-level fraud model; ``fraud_payment`` scores one payment: derived features
(``payment_risk``) set the payment's amount and country, given in the request, against its
card's and its (card, merchant) pair's history.
"""

from collections.abc import Iterator
from typing import Any

from feature_core import derived as fx
from feature_core.definitions import Aggregation, Entity, FeatureGroup, FeatureService
from feature_core.sources import EventSource, Field

CHANNELS = ("pos", "online", "atm")
CURRENCIES = ("EUR", "USD", "GBP")

transactions = EventSource(
    "card_transactions",
    topic="card-transactions",
    table="card_transactions",
    event_time="ts",
    description="Authorized card payments.",
    fields=[
        Field("transaction_id", "string", required=True, min_length=1, max_length=64),
        Field("card_id", "string", required=True, min_length=1, max_length=64),
        Field("account_id", "string", required=True, min_length=1, max_length=64),
        Field("merchant_id", "string", required=True, min_length=1, max_length=64),
        Field("amount", "float", required=True, min=0, max=1_000_000),
        Field("currency", "string", required=True, values=CURRENCIES),
        Field("channel", "string", required=True, values=CHANNELS),
        Field("country", "string", min_length=2, max_length=2),
        Field("ts", "timestamp", required=True, description="ISO-8601 with offset, or epoch ms."),
    ],
)

logins = EventSource(
    "account_logins",
    topic="account-logins",
    table="account_logins",
    event_time="login_time",
    description="Online-banking login attempts.",
    fields=[
        Field("login_id", "string", required=True, min_length=1, max_length=64),
        Field("account_id", "string", required=True, min_length=1, max_length=64),
        Field("success", "boolean", required=True),
        Field("ip", "string", max_length=45),
        Field("device", "string", max_length=64),
        Field("login_time", "timestamp", required=True),
    ],
)

card = Entity("card", join_key="card_id", description="A payment card.")
account = Entity("account", join_key="account_id", description="A customer account.")
card_merchant = Entity(
    "card_merchant", join_keys=["card_id", "merchant_id"], description="A card at one merchant."
)

card_spend = FeatureGroup(
    name="card_spend",
    entity=card,
    source=transactions,
    description="How much and how fast a card spends.",
    aggregations=[
        Aggregation("count", windows=["5m", "1h", "1d", "30d"], name="txn_count"),
        Aggregation("sum", column="amount", windows=["1h", "1d", "30d"], name="spend"),
        Aggregation("mean", column="amount", windows=["30d"], name="avg_amount"),
        Aggregation("max", column="amount", windows=["1d"], name="max_amount"),
        Aggregation(
            "approx_count_distinct", column="merchant_id", windows=["1d", "30d"], name="merchants"
        ),
        Aggregation("last", column="country", windows=["lifetime"], name="last_country"),
        # When the card last paid: the time since is a derived feature (payment_risk).
        Aggregation("last", column="ts", windows=["lifetime"], name="last_txn_time"),
        Aggregation("last_k", column="channel", windows=["1h"], k=5, name="recent_channels"),
        # How far this payment is from the card's usual amounts: their spread and the
        # amount only 5% of its month's payments exceed (served as amount_p95_30d).
        Aggregation("stddev", column="amount", windows=["30d"], name="amount_stddev"),
        Aggregation(
            "approx_percentile", column="amount", windows=["30d"], percentiles=[0.95], name="amount"
        ),
        # A map channel -> payments today, every declared channel a key (zeros included).
        Aggregation("count_by", column="channel", windows=["1d"], name="txns_by_channel"),
    ],
)

card_online = FeatureGroup(
    name="card_online",
    entity=card,
    source=transactions,
    filter={"channel": "online"},
    description="Card-not-present payments.",
    aggregations=[
        Aggregation("count", windows=["1h", "1d"], name="online_count"),
        Aggregation("sum", column="amount", windows=["1d"], name="online_spend"),
    ],
)

card_merchant_history = FeatureGroup(
    name="card_merchant_history",
    entity=card_merchant,
    source=transactions,
    description="Has this card paid this merchant before, since when, and how much.",
    aggregations=[
        Aggregation("count", windows=["1d", "30d"], name="pair_count"),
        Aggregation("sum", column="amount", windows=["30d"], name="pair_spend"),
        Aggregation("min", column="amount", windows=["30d"], name="pair_min_amount"),
        Aggregation("last", column="ts", windows=["lifetime"], name="last_seen"),
        # The first time the card paid this merchant: a relationship of years, or minutes.
        Aggregation("first", column="ts", windows=["lifetime"], name="first_seen"),
    ],
)

account_failed_logins = FeatureGroup(
    name="account_failed_logins",
    entity=account,
    source=logins,
    filter={"success": False},
    description="Failed login attempts: credential stuffing shows here first.",
    aggregations=[
        Aggregation("count", windows=["5m", "1h", "1d"], name="failed_logins"),
        # Every failure ever, each weighing half as much per hour of age: an attack going
        # on scores high, one from yesterday fades, with no window edge to fall off.
        Aggregation(
            "decayed_count", windows=["lifetime"], half_life="1h", name="failed_logins_decayed"
        ),
    ],
)

account_logins = FeatureGroup(
    name="account_logins",
    entity=account,
    source=logins,
    description="Login behaviour of an account.",
    aggregations=[
        Aggregation("count", windows=["1h", "7d"], name="logins"),
        Aggregation("approx_count_distinct", column="ip", windows=["7d"], name="distinct_ips"),
        Aggregation("last", column="device", windows=["lifetime"], name="last_device"),
    ],
)

account_spend = FeatureGroup(
    name="account_spend",
    entity=account,
    source=transactions,
    description="Spending of all of an account's cards.",
    aggregations=[
        Aggregation("count", windows=["7d"], name="account_txns"),
        Aggregation("sum", column="amount", windows=["7d"], name="account_spend"),
    ],
)

fraud_card = FeatureService(
    name="fraud_card",
    description="Card-level input of a fraud model.",
    features=[
        "card_spend:txn_count_5m",
        "card_spend:txn_count_1h",
        "card_spend:spend_1h",
        "card_spend:spend_1d",
        "card_spend:avg_amount_30d",
        "card_spend:max_amount_1d",
        "card_spend:merchants_1d",
        "card_spend:last_country_lifetime",
        "card_spend:recent_channels_1h",
        "card_spend:amount_stddev_30d",
        "card_spend:amount_p95_30d",
        "card_spend:txns_by_channel_1d",
        "card_online:online_count_1h",
        "card_online:online_spend_1d",
    ],
    defaults={
        "card_spend:avg_amount_30d": 0.0,
        "card_spend:last_country_lifetime": "",
        "card_spend:amount_stddev_30d": 0.0,  # fewer than two payments: no spread seen
        "card_spend:amount_p95_30d": 0.0,
    },
)

# --- derived features -----------------------------------------------------------------
# The payment being scored against the card's history, computed by the platform at request
# time (serving) and at each spine row's time (training sets) by one evaluator.

#: The scored payment's amount and country: the request's context (/v1), a spine's columns.
amount = fx.RequestField("amount", "float", description="The scored payment's amount.")
country = fx.RequestField(
    "country", "string", description="The scored payment's country (ISO 3166 alpha-2)."
)

payment_risk = fx.DerivedFeatures(
    "payment_risk",
    description="The scored payment against its card's and (card, merchant) pair's history.",
    features={
        # How many standard deviations the amount lies from the card's 30-day mean. Null
        # with status undefined while the card's payments show no spread (all one amount:
        # a standard deviation of 0); null for a card with one payment in 30 days (no
        # spread yet: status present) or none (status no_data).
        "amount_zscore": (amount - card_spend["avg_amount_30d"]) / card_spend["amount_stddev_30d"],
        # The card never paid this merchant: no first payment to the pair, ever (status
        # no_data then, as the pair has none; the value is still true).
        "new_merchant": fx.is_null(card_merchant_history["first_seen_lifetime"]),
        # The amount against the card's largest payment today: above 1 is a new high.
        "amount_over_max_1d": amount / card_spend["max_amount_1d"],
        # Seconds since the card's last payment (null for a card that never paid):
        # card testing fires payments seconds apart.
        "seconds_since_last_txn": fx.seconds_since(card_spend["last_txn_time_lifetime"]),
        # The payment is from another country than the card's last one.
        "country_changed": country.ne(card_spend["last_country_lifetime"]),
    },
)

fraud_payment = FeatureService(
    name="fraud_payment",
    description="One payment scored: keys card_id and merchant_id, context amount and country.",
    features=[
        "payment_risk:amount_zscore",
        "payment_risk:new_merchant",
        "payment_risk:amount_over_max_1d",
        "payment_risk:seconds_since_last_txn",
        "payment_risk:country_changed",
        "card_spend:txn_count_5m",
        "card_spend:txn_count_1h",
        "card_online:online_count_1h",
        "card_merchant_history:pair_count_30d",
    ],
)

fraud_account = FeatureService(
    name="fraud_account",
    description="Account-level input: logins and spend.",
    features=[
        "account_failed_logins:failed_logins_5m",
        "account_failed_logins:failed_logins_1h",
        "account_failed_logins:failed_logins_decayed_lifetime",
        "account_logins:logins_1h",
        "account_logins:distinct_ips_7d",
        "account_logins:last_device_lifetime",
        "account_spend:account_spend_7d",
    ],
)

fraud_card_merchant = FeatureService(
    name="fraud_card_merchant",
    description="Pair-level input: is this merchant new for this card?",
    features=[
        "card_merchant_history:pair_count_30d",
        "card_merchant_history:pair_spend_30d",
        "card_merchant_history:last_seen_lifetime",
        "card_merchant_history:first_seen_lifetime",
    ],
)


def live_events(
    rate: float, duration_s: float, seed: int = 7
) -> Iterator[tuple[EventSource, dict[str, Any]]]:
    """`lfp generate` with this repo: card payments and logins of a few hundred customers,
    with now and then an account under a credential-stuffing attack."""
    from fraud.generator import Bank

    yield from Bank(seed=seed).live(rate, duration_s)
