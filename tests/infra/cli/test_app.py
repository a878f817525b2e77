"""The root app's own commands at 80 columns (`lfp config`, `lfp doctor`, `lfp verify`'s
report), and both entry points: the `lfp` console script and `python -m infra`."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from feature_core.settings import ENV_PREFIX, Settings
from infra.cli.app import print_report
from tests.infra.cli.terminal import assert_readable, header_of, lfp, row_of


def test_config_at_80_columns_shows_every_setting_whole(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.setenv("LFP_REDIS_URL", "redis://:secret-value@127.0.0.1:16379/0")
    result = lfp("config")
    assert result.exit_code == 0, result.output
    assert_readable(result.output)
    assert header_of(result.output) == ["environment", "variable", "value", "meaning"]
    for name in Settings.model_fields:
        assert f"{ENV_PREFIX}{name.upper()}" in result.output.split()
    assert "secret-value" not in result.output
    assert row_of(result.output, "LFP_REDIS_URL").split()[1].startswith("redis://:***@127.0.")


def test_doctor_lists_each_check_at_80_columns():
    result = lfp("doctor")
    assert_readable(result.output)
    for check in ("java", "javac", "redis-server", "pyspark", "pyflink", "broker binary"):
        assert check in row_of(result.output, check.split()[0])
    failed = "✗" in result.output
    assert result.exit_code == (1 if failed else 0), result.output
    assert failed or "✓ Java, redis-server, broker binary and engines are ready" in result.output


def test_a_verify_report_at_80_columns():
    from batch_layer.verify import ConsistencyReport

    entity = "card_id=card_000123456789,merchant_id=merchant_000987654321"
    report = ConsistencyReport.model_validate(
        {
            "delta_version": None,
            "delta_versions": {"card_transactions": 12, "account_logins": 3},
            "tolerance": 1e-9,
            "entities": 1_200,
            "values": 48_000,
            "mismatches": 1_234,
            "by_feature": {
                "card_merchant_history:pair_min_amount_30d": 1_234,
                "account_failed_logins:failed_logins_decayed_lifetime": 0,
            },
            "examples": [
                {
                    "feature": "card_merchant_history:pair_min_amount_30d",
                    "entity_id": entity,
                    "served": 12.5,
                    "expected": 11.25,
                    "status": "present",
                }
            ],
        }
    )
    console = Console(file=io.StringIO(), width=80, color_system=None, soft_wrap=True)
    print_report(console, report)
    out = console.file.getvalue()
    assert_readable(out)
    assert out.startswith("consistency: lake (account_logins v3, card_transactions v12) vs API")
    assert row_of(out, "card_merchant_history:pair_min_amount_30d").split()[-1] == "1,234"
    assert row_of(out, "account_failed_logins:failed_logins_decayed_lifetime").split()[-1] == "0"
    example = f"card_merchant_history:pair_min_amount_30d {entity}: served 12.5 (present), "
    assert f"{example}lake says 11.25" in " ".join(out.split())  # wrapped between words
    assert "INCONSISTENT: 1,234 of 48,000 values differ (1,200 entities, tolerance 1e-09)" in out


def test_the_console_script_and_python_m_infra_print_the_same_fitted_table(tmp_path):
    env = {**os.environ, "COLUMNS": "80", "LFP_FEATURE_REPO": "demo.feature_repo"}
    script = Path(sys.executable).parent / "lfp"
    outputs = []
    for command in ([str(script)], [sys.executable, "-m", "infra"]):
        done = subprocess.run(
            [*command, "features", "list"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert_readable(done.stdout)
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1]
    assert "purchase_amount_sum_lifetime" in outputs[0]
