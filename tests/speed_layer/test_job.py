"""The speed job's process set-up (the job itself runs in the integration tests)."""

from __future__ import annotations

import os

import pandas as pd
import redis

from feature_core.settings import Settings
from speed_layer.job import RedisLoss, jvm_temp_dir


def test_the_flink_jvm_gets_an_emptied_temp_dir_under_the_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("JVM_ARGS", "-Xss2m")  # also restores JVM_ARGS after the test
    stale = tmp_path / "flink-tmp" / "flink-table-planner_old.jar"
    stale.parent.mkdir()
    stale.write_bytes(b"left by a killed JVM")

    temp = jvm_temp_dir(Settings(data_dir=tmp_path))

    assert temp == (tmp_path / "flink-tmp").resolve() and temp.is_dir()
    assert not stale.exists()
    assert os.environ["JVM_ARGS"] == f"-Xss2m -Djava.io.tmpdir={temp}"


def test_a_data_dir_with_a_space_keeps_the_system_temp_dir(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv("JVM_ARGS", raising=False)
    with caplog.at_level("WARNING"):
        assert jvm_temp_dir(Settings(data_dir=tmp_path / "my data")) is None
    assert "JVM_ARGS" not in os.environ
    assert "system temp dir" in caplog.text


def test_redis_losing_the_jobs_writes_marks_the_tiles_incomplete_at_once(redis_process, tmp_path):
    """The epoch says the tiles are being written again as soon as the job sees Redis lost
    them, before it restarts: the API answers 503 from then, whatever batch view serves."""
    settings = Settings(
        _env_file=None,
        redis_url=f"redis://127.0.0.1:{redis_process.port}/0",
        redis_password_file=os.devnull,  # the test's own Redis has none
    )
    loss = RedisLoss(settings, tmp_path, wait_s=10)
    loss.start({"events": "instance-1"}, 0, empty_state=True)
    loss.remember(complete=True)
    assert not loss.lost_writes()

    redis.Redis(host="127.0.0.1", port=redis_process.port).flushall()

    assert loss.lost_writes()
    epoch = loss.store.speed_epoch()
    assert epoch is not None and epoch["complete"] is False
    assert epoch["topics"] == {"events": "instance-1"}  # kept for the restarted job


def _parser_rows(source, raw: bytes) -> list[tuple]:

    from speed_layer.job import make_parser

    # The function Flink's Python workers run on each batch of records.
    parse = make_parser(source, 3_600_000)._func
    frame = parse(pd.Series([raw, b"{}"], dtype=object))
    return [tuple(row) for row in frame.itertuples(index=False)][:1]


def test_the_speed_parser_accepts_and_rejects_as_lake_ingest_does():
    import json
    import time

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from feature_core.sources import InvalidRecord
    from fraud.feature_repo import logins, transactions

    now = int(time.time() * 1000)
    value = st.one_of(
        st.none(), st.booleans(), st.integers(-2, 2**64), st.floats(), st.text(max_size=4)
    )
    fields = {
        name: st.one_of(value, st.sampled_from(samples))
        for name, samples in {
            "transaction_id": ["t1"],
            "card_id": ["c1"],
            "account_id": ["a1"],
            "merchant_id": ["m1"],
            "amount": [3, 2.5, -1.0],
            "currency": ["EUR", "XXX"],
            "channel": ["pos", "web"],
            "country": ["DE", "DEU"],
            "ts": [now, "2026-01-01T00:00:00Z", "2026-01-01T00:00:00", now + 10**9],
            "login_id": ["l1"],
            "success": [True, False],
            "login_time": [now - 1, now - 7_200_000],
            "ip": ["198.51.100.1"],
        }.items()
    }
    records = st.fixed_dictionaries({}, optional=fields)

    @settings(max_examples=400, deadline=None)
    @given(records, st.sampled_from([transactions, logins]), st.booleans())
    def check(data, source, garble):
        raw = json.dumps(data).encode() + (b"}" if garble else b"")
        (row,) = _parser_rows(source, raw)
        try:
            record = source.parse(raw, int(time.time() * 1000))
        except InvalidRecord:
            assert row[0] == "invalid"
            return
        assert row[0] in ("ok", "late")
        assert list(row[1:]) == [record[name] for name in source.columns]

    check()
