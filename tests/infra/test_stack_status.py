"""`lfp stack status`'s table stays readable at 80 columns with a consumer's problem."""

from __future__ import annotations

from rich.console import Console

from infra.cli.stack import lag_lines, status_table

#: The session stack's services and topics (the demo and the fraud example at once).
SERVICES = [
    ("broker", "healthy", 51593),
    ("redis", "healthy", 36911),
    ("topics", "done", None),
    ("lake-ingest", "unhealthy", None),
    ("speed-job", "healthy", None),
    ("batch-scheduler", "healthy", None),
    ("api", "healthy", 50917),
]
TOPICS = ("account-logins", "card-transactions", "events")


def test_a_consumer_that_is_not_consuming_is_marked_and_the_table_fits_80_columns():
    state = {
        "services": {
            name: {"state": s, "pid": 27670 + i, "port": port, "restarts": 17 * (i == 3)}
            for i, (name, s, port) in enumerate(SERVICES)
        }
    }
    lags = {
        "lake-ingest": dict(zip(TOPICS, (123_456, 7, 0), strict=True)),
        "speed-job": dict.fromkeys(TOPICS, 12),
    }
    problems = {"lake-ingest": "lake-ingest is crash-looping: it restarted 4 times ..."}
    console = Console(width=80, record=True, color_system=None, soft_wrap=True)
    console.print(status_table(state, lags, problems))
    for line in lag_lines(lags):  # as `stack status` prints them
        console.print(line, soft_wrap=False, markup=False, highlight=False)
    text = console.export_text()
    assert all(len(line) <= 80 for line in text.splitlines()), text
    assert "records behind" in text.splitlines()[1], text  # the header on one line
    ingest = text.split("lake-ingest")[1].splitlines()[0]
    assert "unhealthy !" in ingest and "17" in ingest and "123463" in ingest, text
    assert "!" not in text.split("speed-job")[1].splitlines()[0], text
    assert "36" in text.split("speed-job")[1].splitlines()[0], text
    flat = " ".join(text.split())
    assert "lake-ingest behind: account-logins 123456, card-transactions 7, events 0" in flat, text
    assert "speed-job behind: account-logins 12, card-transactions 12, events 12" in flat
