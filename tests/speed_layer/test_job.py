"""The speed job's process set-up (the job itself runs in the integration tests)."""

from __future__ import annotations

import os

from feature_core.settings import Settings
from speed_layer.job import jvm_temp_dir


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
