"""`lfp lake load`: history files validated, appended once, rejects kept with reasons."""

import contextlib
import json

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from typer.testing import CliRunner

from batch_layer.lake import open_table
from batch_layer.load import load_file
from fraud.feature_repo import logins, transactions
from infra.cli import app

T0 = 1_767_225_600_000  # 2026-01-01


def _payment(i: int, **changes) -> dict:
    return {
        "transaction_id": f"t{i}",
        "card_id": f"c{i % 3}",
        "account_id": "a1",
        "merchant_id": "m1",
        "amount": 10.5 + i,
        "currency": "EUR",
        "channel": "pos",
        "ts": f"2026-01-01T00:{i % 60:02d}:00Z",
        **changes,
    }


def _rows(settings, source) -> list[dict]:
    table = open_table(settings.table_uri(source.table_name))
    return [] if table is None else table.to_pyarrow_table().to_pylist()


def test_jsonl_loads_good_records_once_and_keeps_rejects(tmp_path, monkeypatch):
    from feature_core.settings import Settings

    settings = Settings(_env_file=None, data_dir=tmp_path)
    path = tmp_path / "history.jsonl"
    lines = [json.dumps(_payment(i)) for i in range(7)]
    lines.insert(2, "{broken")
    lines.insert(4, json.dumps(_payment(90, amount=-3)))
    lines.insert(6, json.dumps(_payment(91, currency="XXX")))
    path.write_text("\n".join(lines) + "\n")

    first = load_file(settings, transactions, path, chunk=3, now_ms=T0 + 86_400_000)
    assert (first.records, first.appended, first.rejected, first.skipped) == (10, 7, 3, 0)
    assert first.commits == 4  # bounded commits: 3 + 3 + 3 + 1 records
    rows = _rows(settings, transactions)
    assert sorted(r["transaction_id"] for r in rows) == [f"t{i}" for i in range(7)]
    assert {r["ts"] for r in rows} == {T0 + i * 60_000 for i in range(7)}  # ISO -> epoch ms
    rejects = [orjson.loads(line) for line in first.rejects_path.read_bytes().splitlines()]
    assert [(r["line"], r["reason"]) for r in rejects] == [
        (3, "not valid JSON"),
        (5, "amount: -3.0 is below the minimum 0"),
        (7, "currency: 'XXX' is not one of 'EUR', 'USD', 'GBP'"),
    ]

    # The same content again (even under another name): nothing appended twice.
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(path.read_bytes())
    again = load_file(settings, transactions, copy, chunk=3, now_ms=T0 + 86_400_000)
    assert (again.appended, again.rejected, again.skipped) == (0, 0, 10)
    assert len(_rows(settings, transactions)) == 7


def test_a_load_cut_short_resumes_after_its_last_commit(tmp_path):
    from feature_core.settings import Settings

    settings = Settings(_env_file=None, data_dir=tmp_path)
    path = tmp_path / "history.jsonl"
    path.write_text("\n".join(json.dumps(_payment(i)) for i in range(10)) + "\n")
    calls = []

    def crash_after_two_commits(n: int) -> None:
        calls.append(n)
        if len(calls) == 2:
            raise KeyboardInterrupt

    with contextlib.suppress(KeyboardInterrupt):
        load_file(settings, transactions, path, chunk=4, on_progress=crash_after_two_commits)
    assert len(_rows(settings, transactions)) == 8
    rest = load_file(settings, transactions, path, chunk=4)
    assert (rest.skipped, rest.appended) == (8, 2)
    assert sorted(r["transaction_id"] for r in _rows(settings, transactions)) == sorted(
        f"t{i}" for i in range(10)
    )


def test_csv_and_parquet_go_through_the_same_validator(tmp_path):
    from feature_core.settings import Settings

    settings = Settings(_env_file=None, data_dir=tmp_path)
    csv_path = tmp_path / "logins.csv"
    csv_path.write_text(
        "login_id,account_id,success,ip,login_time\n"
        "l1,a1,true,198.51.100.1,1767225600000\n"
        "l2,a1,false,,2026-01-01T00:01:00Z\n"
        "l3,a2,maybe,,1767225600000\n"
        "l4,,true,,1767225600000\n"
    )
    result = load_file(settings, logins, csv_path)
    assert (result.appended, result.rejected) == (2, 2)
    rows = {r["login_id"]: r for r in _rows(settings, logins)}
    assert rows["l1"]["success"] is True and rows["l2"]["success"] is False
    assert rows["l2"]["ip"] is None and rows["l2"]["login_time"] == T0 + 60_000
    reasons = [orjson.loads(x)["reason"] for x in result.rejects_path.read_bytes().splitlines()]
    assert reasons == ["success: 'maybe' is not a boolean", "account_id: required"]

    parquet_path = tmp_path / "logins.parquet"
    pq.write_table(
        pa.table(
            {
                "login_id": ["p1", "p2"],
                "account_id": ["a3", "a3"],
                "success": [True, None],
                "login_time": pa.array([T0, T0], pa.timestamp("ms", tz="UTC")),
            }
        ),
        parquet_path,
    )
    result = load_file(settings, logins, parquet_path)
    assert (result.appended, result.rejected) == (1, 1)
    assert {r["login_id"]: r["login_time"] for r in _rows(settings, logins)}["p1"] == T0


def test_lake_load_from_the_cli(tmp_path, monkeypatch):
    monkeypatch.setenv("LFP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LFP_FEATURE_REPO", "fraud.feature_repo")
    path = tmp_path / "history.jsonl"
    path.write_text(json.dumps(_payment(1)) + "\nnot json\n")
    runner = CliRunner()
    result = runner.invoke(app, ["lake", "load", "--source", "card_transactions", str(path)])
    assert result.exit_code == 0, result.output
    assert "2 records, 1 appended, 1 rejected" in " ".join(result.output.split())
    result = runner.invoke(app, ["lake", "load", str(path)])
    assert result.exit_code == 1 and "several sources" in result.output
    result = runner.invoke(app, ["lake", "load", "--source", "nope", str(path)])
    assert result.exit_code == 1 and "unknown source 'nope'" in result.output
