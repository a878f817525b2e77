"""`lfp features validate` and `lfp features describe` on a repo with derived features:
each problem is one `error:` line naming the feature and the problem, exit code 1, no
traceback; a valid repo's summary counts derived features and request fields; a derived
view is described feature by feature.

Runs the installed `lfp` in a subprocess as a user does (see test_validate_aggregations):
the repo is a module in a fresh directory on PYTHONPATH, on an 80-column terminal.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

LFP = Path(sys.executable).with_name("lfp")

REPO_MODULE = """
from feature_core import derived as fx
from feature_core.definitions import Aggregation, Entity, FeatureGroup, FeatureService
from feature_core.sources import EventSource, Field

payments = EventSource(
    "payments",
    topic="payments",
    event_time="ts",
    fields=[
        Field("card_id", "string", required=True),
        Field("merchant_id", "string", required=True),
        Field("amount", "float"),
        Field("channel", "string"),
        Field("ts", "timestamp", required=True),
    ],
)
card = Entity("card", join_key="card_id")
card_merchant = Entity("card_merchant", join_keys=["card_id", "merchant_id"])
card_spend = FeatureGroup(
    "card_spend",
    entity=card,
    source=payments,
    aggregations=[
        Aggregation("count", windows=["1h"], name="txns"),
        Aggregation("mean", "amount", ["30d"], name="avg_amount"),
        Aggregation("stddev", "amount", ["30d"], name="amount_stddev"),
        Aggregation("last", "channel", ["lifetime"], name="last_channel"),
    ],
)
pair = FeatureGroup(
    "pair",
    entity=card_merchant,
    source=payments,
    aggregations=[Aggregation("first", "ts", ["lifetime"], name="first_seen")],
)
amount = fx.RequestField("amount", "float", description="The scored payment's amount.")
{derived}
"""

#: Derived features used as intended, in a service over both entities.
PROPER_USE = """
risk = fx.DerivedFeatures(
    "risk",
    description="A payment against its card's history.",
    features={
        "amount_zscore": (amount - card_spend["avg_amount_30d"])
        / card_spend["amount_stddev_30d"],
        "new_merchant": fx.is_null(pair["first_seen_lifetime"]),
        "busy": card_spend["txns_1h"] >= 10,
        "busy_new_merchant": fx.feature("risk:busy") & fx.feature("risk:new_merchant"),
    },
)
scoring = FeatureService(
    "scoring", features=["risk:amount_zscore", "risk:busy_new_merchant", "card_spend:txns_1h"]
)
"""

#: case -> (derived features as a user writes them, the texts of each problem's line).
PROBLEMS = {
    "unknown_reference": (
        'risk = fx.DerivedFeatures("risk", features={"x": fx.feature("card_spend:nope") * 2})',
        [["risk:x", "unknown feature 'card_spend:nope'"]],
    ),
    "reference_without_a_group": (
        'risk = fx.DerivedFeatures("risk", features={"x": fx.feature("txns_1h") + 1})',
        [["risk:x", "unknown feature 'txns_1h'", "write 'group:feature'"]],
    ),
    "cycle": (
        'risk = fx.DerivedFeatures("risk", features={"a": fx.feature("risk:b") + 1, '
        '"b": fx.feature("risk:a") * 2})',
        [["derived features form a cycle", "risk:a -> risk:b -> risk:a"]],
    ),
    "type_error": (
        'risk = fx.DerivedFeatures("risk", features={"x": card_spend["last_channel_lifetime"] '
        "- amount})",
        [["risk:x", "'-' needs numbers, got string"]],
    ),
    "request_field_with_two_types": (
        'risk = fx.DerivedFeatures("risk", features={"x": fx.RequestField("amount", "integer") '
        '+ 1, "y": amount * 2})',
        [["request field amount", "integer", "float"]],
    ),
    "every_problem_at_once": (
        'risk = fx.DerivedFeatures("risk", features={'
        '"unknown": fx.feature("card_spend:nope"), '
        '"a": fx.feature("risk:b") + 1, "b": fx.feature("risk:a") + 1, '
        '"text": card_spend["last_channel_lifetime"] + 1, '
        '"as_integer": fx.RequestField("amount", "integer") * 2, "as_float": amount * 2})',
        [
            ["risk:unknown", "unknown feature 'card_spend:nope'"],
            ["derived features form a cycle"],
            ["risk:text", "'+' needs numbers, got string"],
            ["request field amount", "integer", "float"],
        ],
    ),
    # The module cannot even build the expression: the line names where.
    "and_on_expressions": (
        'risk = fx.DerivedFeatures("risk", features={"x": fx.when((amount > 1) and True, 1, 0)})',
        [["every_case.py:", "has no truth value", "use & | ~"]],
    ),
    "unknown_derived_feature": (
        'risk = fx.DerivedFeatures("risk", features={"x": amount * 2})\n'
        'more = fx.DerivedFeatures("more", features={"y": risk["nope"] + 1})',
        [["every_case.py:", "risk has no derived feature 'nope'"]],
    ),
    "service_reading_an_unknown_derived_feature": (
        'risk = fx.DerivedFeatures("risk", features={"x": amount * 2})\n'
        'svc = FeatureService("svc", features=["risk:y"])',
        [["feature service svc", "risk has no derived feature 'y'"]],
    ),
}


def lfp(directory: Path, module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`lfp ...` as a user runs it, with the repo module on PYTHONPATH."""
    env = {
        **os.environ,
        "PYTHONPATH": str(directory),
        "LFP_FEATURE_REPO": module,
        "LFP_DATA_DIR": str(directory / "data"),  # no lake tables yet: nothing to compare
        "COLUMNS": "80",
    }
    return subprocess.run(
        [str(LFP), *args],
        cwd=directory,  # no .env of the checkout
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def write_repo(directory: Path, module: str, derived: str) -> None:
    (directory / f"{module}.py").write_text(REPO_MODULE.format(derived=derived))


@pytest.mark.parametrize("case", PROBLEMS)
def test_each_problem_of_derived_features_is_one_error_line(tmp_path: Path, case: str) -> None:
    derived, expected = PROBLEMS[case]
    module = "every_case"
    write_repo(tmp_path, module, derived)
    done = lfp(tmp_path, module, "features", "validate")
    output = done.stdout + done.stderr
    lines = [line for line in output.splitlines() if line.strip()]
    assert done.returncode == 1, output
    assert "Traceback" not in output
    assert len(lines) == len(expected), output
    for line in lines:
        assert line.startswith("error: "), line
    for texts in expected:  # each problem has its line, in any order
        assert any(all(t in line for t in texts) for line in lines), (texts, lines)


def test_a_valid_repo_counts_derived_features_and_request_fields(tmp_path: Path) -> None:
    module = "proper_derived"
    write_repo(tmp_path, module, PROPER_USE)
    done = lfp(tmp_path, module, "features", "validate")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == (
        f"✓ {module}: 1 sources, 2 groups, 5 features, 4 derived features, "
        "1 request fields; lake tables compatible"
    )
    assert done.stderr == ""


def test_describe_shows_each_derived_feature_on_whole_lines(tmp_path: Path) -> None:
    module = "proper_derived"
    write_repo(tmp_path, module, PROPER_USE)
    done = lfp(tmp_path, module, "features", "describe", "risk")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "risk (derived features) A payment against its card's history."
    # Mixed entities: the join keys of both.
    assert "join keys: card_id, merchant_id" in lines
    assert "request field amount (float): The scored payment's amount." in lines
    # Each expression is one line even past 80 columns (copied, grepped as is).
    expression = "((request.amount - card_spend:avg_amount_30d) / card_spend:amount_stddev_30d)"
    at = lines.index("  amount_zscore (float)")
    assert lines[at + 1 : at + 4] == [
        f"    = {expression}",
        "    inputs: card_spend:avg_amount_30d, card_spend:amount_stddev_30d",
        "    request fields: amount (float)",
    ]
    at = lines.index("  busy_new_merchant (boolean)")
    assert lines[at + 1 : at + 3] == [
        "    = (risk:busy & risk:new_merchant)",
        "    inputs: risk:busy, risk:new_merchant",
    ]
    assert lines[at + 3 :] == []  # no request field read, none listed
    assert "  new_merchant (boolean)" in lines
    assert "    = is_null(pair:first_seen_lifetime)" in lines


def test_describe_of_a_service_names_its_join_keys_and_request_fields(tmp_path: Path) -> None:
    module = "proper_derived"
    write_repo(tmp_path, module, PROPER_USE)
    done = lfp(tmp_path, module, "features", "describe", "scoring")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[1:5] == [
        "join keys: card_id, merchant_id",
        "request fields: amount (float)",
        "   0. risk:amount_zscore",
        "   1. risk:busy_new_merchant",
    ]
    unknown = lfp(tmp_path, module, "features", "describe", "nope")
    assert unknown.returncode == 1
    assert "derived features: risk" in unknown.stdout
