"""The in-process batch view cache: bounded, least recently used, one pointer at a time."""

from __future__ import annotations

from online_store.batch_cache import BatchViewCache, CachedBatchView, parse_tiles

P1, P2 = '{"version":1}', '{"version":2}'


def test_entries_are_kept_for_the_newest_pointer_and_counted():
    cache = BatchViewCache(10)
    entry = cache.put(P1, "g", "u1", {"lifetime": {}})
    assert cache.pointer_text == P1
    assert cache.get("g", "u1") is entry and cache.get("g", "u2") is None
    assert (cache.hits, cache.misses) == (1, 1)

    cache.put(P2, "g", "u2", None)  # a new batch view: every entry of the old goes
    assert cache.pointer_text == P2 and len(cache) == 1
    assert cache.get("g", "u1") is None
    held = cache.get("g", "u2")
    assert held is not None and held.doc is None  # "no batch data" is cached too


def test_the_least_recently_used_entry_goes_first():
    cache = BatchViewCache(2)
    cache.put(P1, "g", "u1", None)
    cache.put(P1, "g", "u2", None)
    assert cache.get("g", "u1") is not None  # u1 used: u2 is now the oldest
    cache.put(P1, "g", "u3", None)
    assert len(cache) == 2
    assert cache.get("g", "u2") is None
    assert cache.get("g", "u1") is not None and cache.get("g", "u3") is not None


def test_zero_entries_turns_it_off_and_clear_forgets_the_pointer():
    off = BatchViewCache(0)
    entry = off.put(P1, "g", "u1", {"x": {}})
    assert entry.doc == {"x": {}} and len(off) == 0 and off.pointer_text == ""

    cache = BatchViewCache(5)
    cache.put(P1, "g", "u1", None)
    cache.clear()
    assert len(cache) == 0 and cache.pointer_text == ""


def test_speed_tiles_are_parsed_again_only_when_their_json_or_the_floor_changes():
    entry = CachedBatchView(None)
    first = entry.tiles(b"[300,[1],600,[2]]", None)
    assert first == {300: [1], 600: [2]}
    assert entry.tiles(b"[300,[1],600,[2]]", None) is first  # the merge memo's fast path
    changed = entry.tiles(b"[300,[1],600,[3]]", None)
    assert changed == {300: [1], 600: [3]} and changed is not first
    assert entry.tiles(b"[300,[1],600,[3]]", 600) == {600: [3]}  # before the cutoff: left out


def test_parse_tiles_pairs_starts_with_partials_from_the_cutoff_on():
    assert parse_tiles(b"[]", 0) == ({}, ())
    assert parse_tiles(b'[0,["a"],300,["b"],600,["c"]]', 300) == ({300: ["b"], 600: ["c"]}, ())


def test_parse_tiles_sets_correction_tiles_apart_whatever_their_start():
    tiles = b'[0,["a"],[0,7],["late"],300,["b"],[300,9],["later"]]'
    assert parse_tiles(tiles, 300) == ({300: ["b"]}, ((0, 7, ["late"]), (300, 9, ["later"])))
    late = ((0, 7, ["late"]), (300, 9, ["later"]))
    assert parse_tiles(tiles, None) == ({0: ["a"], 300: ["b"]}, late)
