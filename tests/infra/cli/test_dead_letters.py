"""`lfp dead-letters spilled` at 80 columns: envelopes made and spilled with the runtime's
own functions, as lake ingest spills them."""

from __future__ import annotations

import time

from runtime.dead_letters import append_spilled, envelope, spill_path
from tests.infra.cli.terminal import assert_readable, header_of, lfp

REASON = (
    "field 'amount': -3.5 is below the minimum 0; field 'currency': 'XBT' is not one of "
    "['EUR', 'USD', 'GBP']; field 'ts': missing (required)"
)
SEND_ERROR = "KafkaTimeoutError: Failed to update metadata after 60.0 secs for the topic"


def _spill(data_dir, topic: str, offsets: range) -> None:
    letters = []
    for offset in offsets:
        raw = b'{"transaction_id": "t-%d", "amount": -3.5, "currency": "XBT"}' % offset
        letter = envelope(raw, REASON, topic, 0, offset, 64_000)
        letter.update(
            dead_letter_topic=f"{topic}.dlq",
            send_error=SEND_ERROR,
            spilled_at=int(time.time() * 1000),
        )
        letters.append(letter)
    append_spilled(spill_path(data_dir, f"{topic}.dlq"), letters)


def test_spilled_at_80_columns_and_wide(tmp_path, monkeypatch):
    monkeypatch.setenv("LFP_DATA_DIR", str(tmp_path))
    _spill(tmp_path, "card-transactions", range(1_234_560, 1_234_563))
    _spill(tmp_path, "events", range(3))

    result = lfp("dead-letters", "spilled")
    assert result.exit_code == 0, result.output
    *table, where = result.output.splitlines()
    assert_readable("\n".join(table))  # the last line names the folder: kept whole
    assert where == f"6 spilled, in {tmp_path / 'dead-letters'}"
    assert {"record", "reason"} <= set(header_of(result.output))
    flat = " ".join(result.output.split())
    assert "card-transactions:0@1234560" in result.output  # whole, on one line
    # Wrapped between words, and clipped after the last whole word of 120 characters.
    assert f"{REASON[:117]} (+19 characters: --wide)" in flat and REASON[117] == " "
    assert "6 spilled, in" in flat

    wide = lfp("dead-letters", "spilled", "--wide")
    assert wide.exit_code == 0, wide.output
    header = " ".join(header_of(wide.output))
    assert header == "spilled record bytes reason send error"
    assert "…" not in wide.output and "characters: --wide" not in wide.output  # not clipped
    words = set(wide.output.split())
    assert set(REASON.split()) <= words and set(SEND_ERROR.split()) <= words
    roomy = lfp("dead-letters", "spilled", "--wide", columns=400)
    assert all(REASON in line and SEND_ERROR in line for line in roomy.output.splitlines()[2:8])
