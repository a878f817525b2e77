"""`lfp lake load`: history files validated, appended once, rejects kept with reasons."""

import contextlib
import hashlib
import json

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st
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


# --- unreadable records are rejects; re-runs resume without duplicates ------------------

LOGIN_HEADER = "login_id,account_id,success,ip,device,login_time\n"


def _login(i: int, device: str = "phone") -> str:
    return f"l{i},a{i % 2},true,,{device},{T0 + i}\n"


def _ids(settings, source, column: str) -> list[str]:
    return sorted(r[column] for r in _rows(settings, source))


def test_a_csv_with_bad_bytes_and_a_huge_cell_loads_the_rest_with_two_rejects(tmp_path):
    """Invalid UTF-8 and a 200 KiB cell were a failed load that no re-run could finish:
    now each is one reject (line and reason) and every other row is appended. Quoted
    line breaks and a quote inside an unquoted cell read as the csv module reads them."""
    from feature_core.settings import Settings

    settings = Settings(_env_file=None, data_dir=tmp_path)
    path = tmp_path / "logins.csv"
    huge = f'l4,a0,true,,"{"x" * 200 * 1024}",{T0 + 4}\n'.encode()
    path.write_bytes(
        (LOGIN_HEADER + _login(1)).encode()
        + b"l2,a0,true,,caf\xe9,1767225600002\n"  # Latin-1, not UTF-8
        + _login(3, device='13" tablet').encode()  # a quote inside a cell is a character
        + huge
        + _login(5, device='"two\nlines"').encode()  # a quoted line break
        + _login(6).encode()
    )
    result = load_file(settings, logins, path, chunk=2)
    assert (result.records, result.appended, result.rejected) == (6, 4, 2)
    rows = {r["login_id"]: r for r in _rows(settings, logins)}
    assert sorted(rows) == ["l1", "l3", "l5", "l6"]
    assert rows["l3"]["device"] == '13" tablet' and rows["l5"]["device"] == "two\nlines"
    rejects = [orjson.loads(x) for x in result.rejects_path.read_bytes().splitlines()]
    assert [(r["line"], r["reason"]) for r in rejects] == [
        (3, "not valid UTF-8 (byte 16 of the record: 0xe9)"),
        (5, f"{len(huge):,} bytes, over the limit of 131,072 (LFP_LOAD_MAX_RECORD_BYTES)"),
    ]
    assert rejects[0]["record"].startswith("l2,a0,true,,caf\ufffd")
    assert len(rejects[1]["record"]) == 4096  # only the head of an oversized record is kept
    assert result.first_rejects[0].startswith("line 3: not valid UTF-8")
    # Done means done: the same file again appends nothing and rejects nothing.
    again = load_file(settings, logins, path, chunk=2)
    assert (again.appended, again.rejected, again.skipped) == (0, 0, 6)


def test_jsonl_bad_bytes_and_oversized_lines_are_rejects(tmp_path):
    from feature_core.settings import Settings

    settings = Settings(_env_file=None, data_dir=tmp_path, load_max_record_bytes=4096)
    path = tmp_path / "history.jsonl"
    path.write_bytes(
        json.dumps(_payment(1)).encode()
        + b'\n{"transaction_id": "t\xff"}\n'
        + json.dumps(_payment(2, merchant_id="m" * 5000)).encode()
        + b"\n"
        + json.dumps(_payment(3)).encode()  # no line break at the end
    )
    result = load_file(settings, transactions, path, now_ms=T0 + 86_400_000)
    assert (result.records, result.appended, result.rejected) == (4, 2, 2)
    assert _ids(settings, transactions, "transaction_id") == ["t1", "t3"]
    reasons = [orjson.loads(x)["reason"] for x in result.rejects_path.read_bytes().splitlines()]
    assert reasons[0].startswith("not valid UTF-8")
    assert reasons[1].endswith("over the limit of 4,096 (LFP_LOAD_MAX_RECORD_BYTES)")


def test_a_csv_load_killed_halfway_resumes_without_duplicates_or_gaps(tmp_path):
    from feature_core.settings import Settings

    settings = Settings(_env_file=None, data_dir=tmp_path)
    path = tmp_path / "logins.csv"
    lines = [_login(i) for i in range(20)]
    lines[7] = "l7,a1,maybe,,phone,1767225600007\n"  # a reject inside the committed part
    path.write_text(LOGIN_HEADER + "".join(lines))
    commits = []

    def killed_after_the_second_commit(n: int) -> None:
        commits.append(n)
        if len(commits) == 2:
            raise KeyboardInterrupt  # the process dies right after a commit

    with contextlib.suppress(KeyboardInterrupt):
        load_file(settings, logins, path, chunk=6, on_progress=killed_after_the_second_commit)
    assert len(_rows(settings, logins)) == 11  # 12 records handled, one of them a reject
    rest = load_file(settings, logins, path, chunk=6)
    assert (rest.skipped, rest.appended, rest.rejected) == (12, 8, 0)
    assert _ids(settings, logins, "login_id") == sorted(f"l{i}" for i in range(20) if i != 7)
    assert len(rest.rejects_path.read_bytes().splitlines()) == 1  # kept, not repeated


def test_a_grown_file_loads_only_its_new_lines_and_an_edited_one_is_refused(tmp_path):
    from batch_layer.load import ChangedFile
    from feature_core.settings import Settings

    settings = Settings(_env_file=None, data_dir=tmp_path)
    path = tmp_path / "logins.csv"
    path.write_text(LOGIN_HEADER + "".join(_login(i) for i in range(5)))
    assert load_file(settings, logins, path).appended == 5
    with path.open("a") as file:
        file.write("\n" + _login(5) + _login(6))  # grew (a blank line is nothing)
    grown = load_file(settings, logins, path, chunk=1)
    assert (grown.skipped, grown.appended) == (5, 2)
    assert _ids(settings, logins, "login_id") == sorted(f"l{i}" for i in range(7))

    # An edit inside what was loaded: the lake cannot tell which rows are in already.
    path.write_text(LOGIN_HEADER + _login(0, "tablet") + "".join(_login(i) for i in range(1, 8)))
    with pytest.raises(ChangedFile, match=r"first [\d,]+ bytes were loaded before"):
        load_file(settings, logins, path)
    assert len(_rows(settings, logins)) == 7
    # New content at a path used before: --fresh loads it whole (once).
    path.write_text(LOGIN_HEADER + _login(100) + _login(101))
    assert load_file(settings, logins, path, fresh=True).appended == 2
    assert load_file(settings, logins, path).skipped == 2


def test_an_edit_after_the_committed_part_resumes_with_the_edited_rows(tmp_path):
    """The old way out of a failed load (fix the bad row, run again) needs no duplicates:
    the part before the committed offset is unchanged, so the load resumes there."""
    from feature_core.settings import Settings

    settings = Settings(_env_file=None, data_dir=tmp_path)
    path = tmp_path / "logins.csv"
    rows = [_login(i) for i in range(6)]
    path.write_text(LOGIN_HEADER + "".join(rows))
    with contextlib.suppress(KeyboardInterrupt):
        load_file(settings, logins, path, chunk=3, on_progress=_raise(KeyboardInterrupt))
    rows[4] = _login(4, "fixed")
    path.write_text(LOGIN_HEADER + "".join(rows))
    rest = load_file(settings, logins, path, chunk=3)
    assert (rest.skipped, rest.appended) == (3, 3)
    loaded = {r["login_id"]: r["device"] for r in _rows(settings, logins)}
    assert sorted(loaded) == [f"l{i}" for i in range(6)] and loaded["l4"] == "fixed"


def _raise(error: type[BaseException]):
    def fail(_: int) -> None:
        raise error

    return fail


def test_records_done_follows_the_documented_rule():
    from batch_layer.load import ChangedFile, records_done

    prefixes = {100: 7}
    assert records_done(12, 100, 500, prefixes.get) == 12  # the whole content was loaded
    assert records_done(None, None, 500, prefixes.get) == 0  # never seen
    assert records_done(None, 100, 500, prefixes.get) == 7  # its prefix is what was loaded
    with pytest.raises(ChangedFile):
        records_done(None, 120, 500, prefixes.get)  # the loaded prefix changed
    with pytest.raises(ChangedFile):
        records_done(None, 600, 500, prefixes.get)  # shorter than what was loaded
    assert records_done(None, 120, 500, prefixes.get, fresh=True) == 0


_CELLS = st.text(alphabet='ab,"\n\r ', max_size=8)


@examples(max_examples=300, deadline=None)
@given(st.lists(st.lists(_CELLS, min_size=1, max_size=4), max_size=6), st.booleans())
def test_csv_records_split_as_the_csv_module_reads(rows, raw):
    """Records split at line breaks outside quoted fields, by the csv module's rules:
    whatever the module reads from the file, record by record, is what the splitter
    hands on (files written by csv.writer, and raw text with stray quotes)."""
    import csv
    import io

    from batch_layer.load import _Bytes, _csv_rows, csv_records

    if raw:
        text = "\n".join(",".join(row) for row in rows)
    else:
        out = io.StringIO(newline="")
        csv.writer(out, lineterminator="\n").writerows(rows)
        text = out.getvalue()
    expected = list(csv.reader(io.StringIO(text, newline="")))
    got = []
    for _, record, _ in csv_records(_Bytes(io.BytesIO(text.encode()), 1 << 20)):
        got.extend(_csv_rows(record.decode()))
    assert got == expected


@examples(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(st.sampled_from(["good", "bad_bytes", "huge", "invalid"]), min_size=1, max_size=14),
    st.integers(1, 5),
    st.integers(1, 4),
    st.integers(0, 4),
)
def test_any_kill_and_rerun_loads_every_record_exactly_once(kinds, chunk, kill_at, grow):
    """Property: a load killed after any commit, re-run (after the file grew, or not),
    leaves each good record in the lake exactly once and each bad one in the rejects."""
    import tempfile
    from pathlib import Path

    from feature_core.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(_env_file=None, data_dir=Path(tmp), load_max_record_bytes=2048)
        path = Path(tmp) / "logins.csv"

        def line(i: int, kind: str) -> bytes:
            if kind == "bad_bytes":
                return f"l{i},a1,true,,\xff,{T0}\n".encode("latin-1")
            if kind == "huge":
                return _login(i, '"' + "y" * 3000 + '"').encode()
            if kind == "invalid":
                return _login(i).replace("true", "maybe").encode()
            return _login(i).encode()

        body = [line(i, k) for i, k in enumerate(kinds)]
        path.write_bytes(LOGIN_HEADER.encode() + b"".join(body))
        calls = []

        def kill(n: int) -> None:
            calls.append(n)
            if len(calls) == kill_at:
                raise KeyboardInterrupt

        with contextlib.suppress(KeyboardInterrupt):
            load_file(settings, logins, path, chunk=chunk, on_progress=kill)
        extra = [line(len(kinds) + j, "good") for j in range(grow)]
        path.write_bytes(LOGIN_HEADER.encode() + b"".join(body + extra))
        load_file(settings, logins, path, chunk=chunk)
        good = [f"l{i}" for i, k in enumerate(kinds) if k == "good"]
        good += [f"l{len(kinds) + j}" for j in range(grow)]
        assert _ids(settings, logins, "login_id") == sorted(good)
        rejected = path.with_name("logins.csv.rejects.jsonl")
        lines = rejected.read_bytes().splitlines() if rejected.exists() else []
        assert sorted(orjson.loads(x)["line"] for x in lines) == [
            i + 2 for i, k in enumerate(kinds) if k != "good"
        ]


@examples(max_examples=300, deadline=None)
@given(st.text(alphabet='ab,"\n\r ', max_size=40), st.integers(1, 6), st.integers(1, 5))
def test_oversized_records_are_cut_at_the_same_places(text, limit, part):
    """A record over the limit is read through in parts and only its head kept; where
    records start and how long they are does not depend on the limit or the parts."""
    import io

    from batch_layer.load import _Bytes, csv_records

    data = text.encode()
    whole = [(n, size) for n, _, size in csv_records(_Bytes(io.BytesIO(data), 1 << 20))]
    small = _Bytes(io.BytesIO(data), limit)
    small.part_bytes = part
    cut = [(n, size, len(raw)) for n, raw, size in csv_records(small)]
    assert [(n, size) for n, size, _ in cut] == whole
    assert all(kept <= limit or kept == size for _, size, kept in cut)
    assert (
        small.offset == len(data) and small.digest.hexdigest() == hashlib.sha256(data).hexdigest()
    )


def test_a_number_past_64_bits_is_a_reject_not_a_failed_load(tmp_path):
    """orjson has no form for an integer past 64 bits: writing such a record's reject
    stopped the load, at the same row on every rerun."""
    from feature_core.settings import Settings

    settings = Settings(_env_file=None, data_dir=tmp_path)
    path = tmp_path / "logins.csv"
    path.write_text(LOGIN_HEADER + _login(1) + "l2,a0,true,,phone,1" + "0" * 40 + "\n" + _login(3))
    result = load_file(settings, logins, path)
    assert (result.records, result.appended, result.rejected) == (3, 2, 1)
    rejects = [json.loads(x) for x in result.rejects_path.read_bytes().splitlines()]
    assert [r["line"] for r in rejects] == [3]


@given(st.binary(max_size=80), st.integers(1, 9))
def test_records_are_counted_in_blocks_as_lines_are(data, block_bytes):
    """The progress bar's count reads blocks (a file without line breaks costs one block
    of memory), and counts what reading it line by line counts."""
    import tempfile
    from pathlib import Path

    from batch_layer.load import count_records

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "events.jsonl"
        path.write_bytes(data)
        assert count_records(path, block_bytes) == sum(1 for x in data.split(b"\n") if x.strip())
