"""Training outputs never replace the lake, the spine or the data directory (no Spark)."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from batch_layer.training import csv_header, output_conflict
from infra.cli import app


def test_outputs_inside_or_holding_protected_places_are_refused(tmp_path: Path) -> None:
    lake, spine, data = tmp_path / "data/lake", tmp_path / "in/spine.csv", tmp_path / "data"

    def conflict(output: Path | str) -> str | None:
        return output_conflict(str(output), str(spine), str(lake), str(data))

    assert "inside the lake" in conflict(lake / "raw_events")
    assert "inside the lake" in conflict(lake)
    assert "inside the lake" in conflict(f"file://{lake}/raw_events/_delta_log")
    assert "is or holds the spine" in conflict(spine)
    assert "is or holds the spine" in conflict(spine.parent)
    assert "is or holds the lake" in conflict(data)  # the lake is under the data dir
    assert "is or holds the lake" in conflict(tmp_path / "elsewhere/..")  # ".." resolved
    (tmp_path / "link").symlink_to(lake)
    assert "inside the lake" in conflict(tmp_path / "link/raw_events")  # through a link
    assert conflict(data / "training.parquet") is None
    assert conflict(tmp_path / "in/training.parquet") is None
    assert conflict(tmp_path / "data/lakeside") is None  # a name that starts like the lake
    # A remote lake: compared by scheme, host and path.
    remote = output_conflict("s3://b/lake/t", str(spine), "s3://b/lake", str(data))
    assert remote and "inside the lake" in remote
    assert output_conflict("s3://other/lake/t", str(spine), "s3://b/lake", str(data)) is None
    holds_data = output_conflict(str(tmp_path), str(spine), "s3://b/lake", str(data))
    assert holds_data and "is or holds the spine" in holds_data
    holds_data = output_conflict(str(data.parent), "s3://b/s.csv", "s3://b/lake", str(data))
    assert holds_data and "is or holds the data dir" in holds_data


@pytest.mark.parametrize("where", ["table", "lake", "spine", "data"])
def test_the_cli_refuses_with_one_line_before_starting_spark(tmp_path, monkeypatch, where):
    monkeypatch.setenv("LFP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("LFP_LAKE_URI", raising=False)
    monkeypatch.setenv("LFP_FEATURE_REPO", "demo.feature_repo")
    spine = tmp_path / "spine.csv"
    spine.write_text("user_id,timestamp\nu1,1\n")
    output = {
        "table": tmp_path / "data/lake/raw_events",
        "lake": tmp_path / "data/lake",
        "spine": spine,
        "data": tmp_path / "data",
    }[where]
    command = ["training-set", "build", "--service", "ranking_features"]
    result = CliRunner().invoke(app, [*command, "--spine", str(spine), "--output", str(output)])
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert (
        len(" ".join(lines).split("refusing --output:")) == 2 and "Traceback" not in result.output
    )
    assert spine.read_text().startswith("user_id")  # untouched


def test_a_csv_header_must_name_every_column_once(tmp_path: Path) -> None:
    path = tmp_path / "spine.csv"
    path.write_bytes(b"\xef\xbb\xbfuser_id,timestamp,label\nu,1,0\n")  # a BOM is not a name
    assert csv_header(path) == ["user_id", "timestamp", "label"]
    path.write_text("user_id,timestamp,user_id\n")
    with pytest.raises(ValueError, match=r"columns named twice in the header: \['user_id'\]"):
        csv_header(path)
    path.write_text("user_id,,label\n")
    with pytest.raises(ValueError, match="must name every column"):
        csv_header(path)
