"""The sample candidates a run keeps for the next one (no Spark: files and arithmetic)."""

import math

import pytest

from batch_layer.carried_sample import (
    CARRY_HIGH,
    Carried,
    CarriedGroup,
    hex_bound,
    load_carried,
    samples_uri,
    save_carried,
)
from batch_layer.feature_stats import candidates_drawn, entity_priority, priority_bound


def _entry(entity: str, values: list, statuses: list | None = None):
    return (entity_priority(entity), entity, values, statuses or ["present"] * len(values))


def _group(bound: int | None, keep: int = 3, fingerprint: str = "f1", complete=None):
    return CarriedGroup(
        bound=hex_bound(bound),
        complete_below=hex_bound(complete),
        keep=keep,
        view_fingerprint=fingerprint,
    )


def test_the_candidates_read_back_as_written_values_statistics_tell_apart(tmp_path):
    """Values come back as the statistics see them: maps (keys as text), lists, None,
    booleans, integers apart from floats; hashes (64 bits) as they were."""
    uri = str(tmp_path / "_lfp_tiles")
    values = [{"red": 2, 7: 1}, [1, 2], None, True, 3, 3.0, "ü"]
    entries = [_entry("u1", values), _entry("u2", [None] * 7, ["no_data"] * 7)]
    assert save_carried(uri, 5, {"g": (_group(None), entries)}) == 2
    (carried,) = load_carried(uri, 5, {"g": "f1"}, keep=3).values()
    assert carried.bound is None and carried.complete_below is None
    first, second = sorted(carried.entries, key=lambda e: e[1])
    assert first == (entity_priority("u1"), "u1", [{"red": 2, "7": 1}, *values[1:]], first[3])
    assert type(first[2][4]) is int and type(first[2][5]) is float
    assert second[2:] == ([None] * 7, ["no_data"] * 7)


def test_only_matching_groups_of_the_asked_view_are_carried(tmp_path):
    uri = str(tmp_path / "_lfp_tiles")
    entries = [_entry(f"u{i}", [i]) for i in range(3)]
    save_carried(
        uri,
        8,
        {
            "same": (_group(None), entries),
            "redefined": (_group(None, fingerprint="old"), entries),
            "resized": (_group(None, keep=2), entries),
        },
    )
    found = load_carried(uri, 8, {"same": "f1", "redefined": "f1", "resized": "f1"}, keep=3)
    assert set(found) == {"same"}
    assert load_carried(uri, 7, {"same": "f1"}, keep=3) == {}  # no file of that view


def test_files_of_views_before_the_last_two_are_deleted(tmp_path):
    uri = str(tmp_path / "_lfp_tiles")
    for version in (1, 2, 3, 4):
        save_carried(uri, version, {"g": (_group(None), [_entry("u", [version])])})
    kept = sorted(p.name for p in (tmp_path / "_lfp_tiles" / "_lfp_samples").iterdir())
    assert kept == ["v3.parquet", "v4.parquet"]
    assert samples_uri(uri, 4).endswith("/_lfp_tiles/_lfp_samples/v4.parquet")


@pytest.mark.parametrize("keep", [40, 20_000])
def test_a_carried_set_is_used_while_it_holds_the_sample_and_not_far_more(keep):
    """Complete candidates under the bound: at least the sample, at most 1.5 times what a
    fresh bound draws; with no bound (every entity a candidate) only the upper limit."""
    bound = priority_bound(keep, 100 * keep)
    assert bound is not None
    most = math.floor(CARRY_HIGH * candidates_drawn(keep))

    def under(count: int, complete: int | None = None) -> Carried:
        return Carried(bound, complete, [(i, f"e{i}", [], []) for i in range(count)])

    assert under(keep).usable(keep) and under(most).usable(keep)
    assert not under(keep - 1).usable(keep) and not under(most + 1).usable(keep)
    # Candidates above the completeness limit do not count.
    assert not under(keep + 10, complete=keep - 1).usable(keep)
    assert under(keep + 10, complete=keep).usable(keep)
    everyone = Carried(None, None, [(i, f"e{i}", [], []) for i in range(most)])
    assert everyone.usable(keep)
