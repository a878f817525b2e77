"""Derived features in Feast's own SDK (Feast from PyPI, in .venv-feast, made by `make
install`): `lfp feast export` writes them as on-demand feature views that `feast apply`
registers, in Feast's environment without the platform, with their declared dtypes; where
Feast computes them itself (a local online store), their function is the platform's
evaluator and answers what the platform's plan computes.

No stack: a SQLite online store the test writes.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from feature_core.definitions import FeatureRepo
from serving_layer.feast_repo import export, on_demand_inputs, on_demand_values, value_dtype

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MODULE = "tests.integration.both_workloads"
REPO = FeatureRepo.from_module(MODULE)

#: Run in Feast's environment: the registered on-demand views' dtypes, then (with the
#: platform importable) fraud_payment read through Feast's own on-demand computation.
SCRIPT = """
import json, sys
import pandas as pd
from feast import FeatureStore

command = json.load(sys.stdin)
store = FeatureStore(repo_path=".")
if command.get("dtypes"):
    answer = {
        view.name: {field.name: str(field.dtype) for field in view.features}
        for view in store.list_on_demand_feature_views()
    }
else:
    row = command["card_spend"]
    frame = pd.DataFrame([row])
    frame["ts"] = pd.to_datetime(frame["ts"], unit="ms", utc=True)
    store.write_to_online_store("card_spend", frame)
    answer = store.get_online_features(
        features=store.get_feature_service("fraud_payment"), entity_rows=command["rows"]
    ).to_dict()
json.dump(answer, sys.stdout, default=str)
"""


@pytest.fixture(scope="module")
def feast_python() -> Path:
    python = Path(os.environ.get("LFP_FEAST_PYTHON", ROOT / ".venv-feast" / "bin" / "python"))
    if not python.exists():
        pytest.fail(f"Feast's environment is missing ({python}): run make install")
    return python


def in_feast(python: Path, repo_dir: Path, command: dict, env: dict[str, str]) -> Any:
    done = subprocess.run(
        [str(python), "-c", SCRIPT],
        input=json.dumps(command),
        cwd=repo_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_derived_features_are_on_demand_views_feast_registers_and_computes(
    feast_python: Path, tmp_path: Path
) -> None:
    repo_dir = tmp_path / "repo"
    export(REPO, MODULE, repo_dir, "lfp", {"type": "sqlite", "path": "data/online.db"})
    # Feast's environment alone: the platform is not importable there.
    bare = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    applied = subprocess.run(
        [str(feast_python.parent / "feast"), "apply"],
        cwd=repo_dir,
        env=bare,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert applied.returncode == 0, applied.stdout + applied.stderr
    registered = in_feast(feast_python, repo_dir, {"dtypes": True}, bare)
    assert registered == {
        view.name: {
            d.name: value_dtype(d.value_type.name, d.value_type.shape)
            for d in REPO.derived.values()
            if d.view == view.name
        }
        for view in REPO.derived_views
    }

    # Where Feast computes them itself, the platform must be importable: its source and
    # the one dependency Feast's environment lacks (orjson), from ours.
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "orjson").symlink_to(Path(orjson.__file__).parent)
    platform = {**bare, "PYTHONPATH": f"{ROOT}{os.pathsep}{shim}"}
    now = int(time.time() * 1000)
    card_spend = {f: None for f in REPO.group("card_spend").feature_names}
    card_spend |= {
        "card_id": "c1",
        "ts": now,
        "avg_amount_30d": 50.0,
        "amount_stddev_30d": 10.0,
        "max_amount_1d": 80.0,
        "last_txn_time_lifetime": now - 30_000,
        "last_country_lifetime": "DE",
    }
    rows = [
        {"card_id": "c1", "merchant_id": "m1", "amount": 90.0, "country": "FR"},
        {"card_id": "c1", "merchant_id": "m2", "amount": 50.0, "country": "DE"},
        {"card_id": "c2", "merchant_id": "m1", "amount": 5.0, "country": "DE"},
    ]
    answer = in_feast(feast_python, repo_dir, {"card_spend": card_spend, "rows": rows}, platform)
    # What the platform's evaluator computes from the same inputs (its query time differs:
    # the seconds since the last payment only by the time between the two calls).
    _, base, _ = on_demand_inputs(REPO, "payment_risk")
    inputs: dict[str, list[Any]] = {
        reference.partition(":")[2]: [
            card_spend.get(reference.partition(":")[2]) if r["card_id"] == "c1" else None
            for r in rows
        ]
        for reference in base
    }
    inputs |= {name: [r[name] for r in rows] for name in ("amount", "country")}
    expected = on_demand_values(MODULE, "payment_risk", inputs, query_time=now)
    assert expected["amount_zscore"] == [4.0, 0.0, None]
    for name, values in expected.items():
        if name == "seconds_since_last_txn":
            assert [v is None for v in answer[name]] == [False, False, True]
            assert all(30 <= v < 90 for v in answer[name][:2]), answer[name]
        else:
            assert answer[name] == values, name
