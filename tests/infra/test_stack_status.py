"""`lfp stack status`'s table stays readable at 80 columns with a consumer's problem."""

from __future__ import annotations

from rich.console import Console

from infra.cli import _status_table


def test_a_consumer_that_is_not_consuming_is_marked_and_the_table_fits_80_columns():
    state = {
        "services": {
            "broker": {"state": "healthy", "pid": 101, "port": 19092, "restarts": 0},
            "lake-ingest": {"state": "restarting", "pid": 4242, "port": None, "restarts": 17},
            "speed-job": {"state": "healthy", "pid": 4343, "port": None, "restarts": 0},
        }
    }
    lags = {
        "lake-ingest": {"events": 123_456, "transactions": 7, "clicks": 0},
        "speed-job": {"events": 12},
    }
    problems = {"lake-ingest": "lake-ingest is crash-looping: it restarted 4 times ..."}
    console = Console(width=80, record=True, color_system=None)
    console.print(_status_table(state, lags, problems))
    text = console.export_text()
    assert all(len(line) <= 80 for line in text.splitlines()), text
    ingest = text.split("lake-ingest")[1].splitlines()[0]
    assert "restarting !" in ingest and "clicks 0" in ingest, text
    assert "events 123456" in text and "transactions 7" in text, text  # never split
    assert "!" not in text.split("speed-job")[1].splitlines()[0], text
