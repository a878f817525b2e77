"""`lfp features validate` on a user's feature repo: each misuse of an aggregation's options
is one line naming the aggregation and the problem, exit code 1, no traceback.

Runs the installed `lfp` in a subprocess as a user does: the repo is a module in a fresh
directory on PYTHONPATH, named by LFP_FEATURE_REPO, on an 80-column terminal.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from feature_core.definitions import FeatureRepo

LFP = Path(sys.executable).with_name("lfp")

REPO_MODULE = """
from feature_core.definitions import Aggregation, Entity, FeatureGroup
from feature_core.sources import EventSource, Field

payments = EventSource(
    "payments",
    topic="payments",
    event_time="ts",
    fields=[
        Field("card_id", "string", required=True),
        Field("merchant_id", "string"),
        Field("amount", "float"),
        Field("channel", "string", values=("pos", "online", "atm")),
        Field("ts", "timestamp", required=True),
    ],
)
card = Entity("card", join_key="card_id")
card_spend = FeatureGroup(
    "card_spend",
    entity=card,
    source=payments,
    aggregations=[
        Aggregation("count", windows=["1h"]),
        {aggregations}
    ],
)
"""

#: case -> (the aggregation as a user writes it, what its one line must name).
MISUSES = {
    "percentile_above_one": (
        'Aggregation("approx_percentile", "amount", ["1d"], name="amount_pcts", '
        "percentiles=[0.5, 1.5])",
        ["amount_pcts", "approx_percentile", "1.5", "outside (0, 1)"],
    ),
    "percentile_of_zero": (
        'Aggregation("approx_percentile", "amount", ["1d"], name="amount_pcts", percentiles=[0.0])',
        ["amount_pcts", "approx_percentile", "0.0", "outside (0, 1)"],
    ),
    "percentile_of_one": (
        'Aggregation("approx_percentile", "amount", ["1d"], name="amount_pcts", '
        "percentiles=[0.5, 1])",
        ["amount_pcts", "approx_percentile", "outside (0, 1)"],
    ),
    "count_by_on_a_float": (
        'Aggregation("count_by", "amount", ["1d"], name="by_amount", max_keys=10)',
        ["by_amount", "count_by", "'amount' is a float field"],
    ),
    "session_gap_below_the_speed_tile": (
        'Aggregation("count", windows=["session:2m"], name="visit_events")',
        ["visit_events", "session:2m", "at least the 5-minute speed tile"],
    ),
    "half_life_of_zero": (
        'Aggregation("decayed_count", windows=["1d"], name="recent", half_life="0s")',
        ["recent", "decayed_count", "half_life must be a positive duration"],
    ),
    "decayed_sum_half_life_of_zero_minutes": (
        'Aggregation("decayed_sum", "amount", ["1d"], name="recent_spend", half_life="0m")',
        ["recent_spend", "decayed_sum", "half_life must be a positive duration"],
    ),
}

#: Every option above used as intended.
PROPER_USE = """
        Aggregation("approx_percentile", "amount", ["1d"], percentiles=[0.5, 0.99]),
        Aggregation("count_by", "channel", ["1d"]),
        Aggregation("count_by", "merchant_id", ["30d"], max_keys=20),
        Aggregation("count", windows=["session:5m", "session:30m"], name="visit_events"),
        Aggregation("decayed_count", windows=["lifetime"], half_life="1d"),
        Aggregation("decayed_sum", "amount", ["lifetime"], half_life="30m"),
"""


def write_repo(directory: Path, module: str, aggregations: str) -> None:
    (directory / f"{module}.py").write_text(REPO_MODULE.format(aggregations=aggregations))


def validate(directory: Path, module: str) -> subprocess.CompletedProcess[str]:
    """`lfp features validate` as a user runs it, with the repo module on PYTHONPATH."""
    env = {
        **os.environ,
        "PYTHONPATH": str(directory),
        "LFP_FEATURE_REPO": module,
        "LFP_DATA_DIR": str(directory / "data"),  # no lake tables yet: nothing to compare
        "COLUMNS": "80",
    }
    return subprocess.run(
        [str(LFP), "features", "validate"],
        cwd=directory,  # no .env of the checkout
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("case", MISUSES)
def test_a_misused_option_is_one_line_naming_the_aggregation_and_the_problem(
    tmp_path: Path, case: str
) -> None:
    aggregation, named = MISUSES[case]
    module = f"misuse_{case}"
    write_repo(tmp_path, module, f"{aggregation},")
    done = validate(tmp_path, module)
    output = done.stdout + done.stderr
    lines = [line for line in output.splitlines() if line.strip()]
    assert done.returncode == 1, output
    assert "Traceback" not in output
    assert len(lines) == 1, output
    (line,) = lines
    assert line.startswith("error: "), line
    for text in named:
        assert text in line, (text, line)


def test_the_same_options_used_as_intended_validate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = "proper_use_of_options"
    write_repo(tmp_path, module, PROPER_USE)
    done = validate(tmp_path, module)
    assert done.returncode == 0, done.stdout + done.stderr
    monkeypatch.syspath_prepend(str(tmp_path))
    features = sum(len(g.features) for g in FeatureRepo.from_module(module).groups)
    assert features == 1 + 2 + 1 + 1 + 2 + 1 + 1  # count; two percentiles; ...; two sessions
    assert done.stdout.strip() == (
        f"✓ {module}: 1 sources, 1 groups, {features} features; lake tables compatible"
    )
    assert done.stderr == ""
