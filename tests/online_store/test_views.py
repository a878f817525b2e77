"""What a read returns about the speed job's epoch: recomputing, and a gap in its tiles
that the serving batch view may or may not cover."""

from __future__ import annotations

import orjson

from feature_core.merge import BatchPointer
from feature_core.windows import DAY_MS
from online_store.views import SpeedEpochWatch, ViewsSnapshot, epoch_state


def test_the_epoch_says_whether_tiles_are_rewritten_and_where_a_gap_ends():
    assert epoch_state(None) == (False, None)
    assert epoch_state(orjson.dumps({"complete": False})) == (True, None)
    assert epoch_state(orjson.dumps({"complete": True, "gap_before": 600})) == (False, 600)


def test_an_epoch_gone_after_one_was_seen_reads_as_tiles_being_written_again():
    watch = SpeedEpochWatch()
    assert watch.state(None) == (False, None)  # no speed job yet: batch values alone
    assert watch.state(orjson.dumps({"complete": True})) == (False, None)
    assert watch.state(None) == (True, None)  # Redis lost the job's writes
    assert watch.state(orjson.dumps({"complete": False})) == (True, None)
    assert watch.state(orjson.dumps({"complete": True})) == (False, None)


def test_a_gap_is_open_until_a_batch_view_with_a_cutoff_at_or_after_its_end_serves():
    def gap(cutoff: int | None) -> int | None:
        pointer = BatchPointer(1, cutoff, DAY_MS) if cutoff is not None else None
        return ViewsSnapshot(pointer, {}, [], False, 600).speed_gap()

    assert gap(None) == 600
    assert gap(300) == 600
    # The pointer the merge reads carries it: windows reaching before it are stale.
    open_gap = ViewsSnapshot(BatchPointer(1, 300, DAY_MS), {}, [], False, 600)
    assert open_gap.pointer.speed_gap_before == 600
    assert ViewsSnapshot(BatchPointer(1, 900, DAY_MS), {}, [], False, 600).pointer == (
        BatchPointer(1, 900, DAY_MS)
    )
    assert gap(600) is None and gap(900) is None
    assert ViewsSnapshot(None, {}, [], False, None).speed_gap() is None
