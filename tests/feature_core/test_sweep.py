"""The sweep engine (training sets) against the reference evaluator: every aggregation and
window, skewed keys, ties at one millisecond, nulls, query times anywhere."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from feature_core import sketches
from feature_core.merge import values_match
from feature_core.reference import default_values, evaluate
from feature_core.sweep import group_values
from feature_core.windows import DAY_MS, MINUTE_MS
from tests.feature_core.aggregations import catalog

WINDOWS = ["5m", "1h", "1d", "lifetime", "session:30m"]
GROUP = catalog.group(WINDOWS)
COLUMNS = ("x", "n", "s", "b", "c")
BASE = 20_000 * DAY_MS
#: Texts that fall into two registers of a precision-4 sketch with various ranks, so that
#: windows often hold one register's ranks in every order (a text's cell is fixed).
TEXTS = [text for text in (f"v{i}" for i in range(400)) if sketches.cell(text, 4)[0] in (0, 3)][:24]

times = st.one_of(
    st.integers(BASE - 2 * DAY_MS, BASE),
    st.sampled_from([BASE - MINUTE_MS, BASE - 5 * MINUTE_MS, BASE - 3600_000, BASE]),
)
events = st.lists(
    st.fixed_dictionaries(
        {
            # Skewed: the first key gets most events.
            "k": st.sampled_from(["hot"] * 6 + ["a", "b"]),
            "t": times,
            "x": st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False)),
            "n": st.one_of(st.none(), st.integers(-50, 50)),
            "s": st.sampled_from([*TEXTS, None]),
            "b": st.one_of(st.none(), st.booleans()),
            "c": catalog.VALUES["c"],
        }
    ),
    min_size=8,
    max_size=60,
)
queries = st.lists(
    st.one_of(times, st.integers(BASE - 3 * DAY_MS, BASE + DAY_MS)), min_size=1, max_size=12
)


@settings(max_examples=150, deadline=None)
@given(events, queries)
def test_every_feature_at_every_query_time_equals_the_reference(events, query_times) -> None:
    names = [f.name for f in GROUP.features]
    for key in ("hot", "a", "b", "never"):
        own = [e for e in events if e["k"] == key]
        columns = {c: [e[c] for e in own] for c in COLUMNS}
        got = group_values(
            GROUP,
            names,
            np.array([e["t"] for e in own], dtype=np.int64),
            columns,
            np.array(query_times, dtype=np.int64),
        )
        for t, row in zip(query_times, got, strict=True):
            want = evaluate(GROUP, own, t).get(key) or default_values(GROUP)
            for name, value in zip(names, row, strict=True):
                assert values_match(value, want[name]), (key, t, name, value, want[name])


@settings(max_examples=150, deadline=None)
@given(events, queries)
def test_every_primitives_partial_over_every_window_equals_the_algebras(events, query_times):
    """Partials, not finalized values: a sketch's registers must match exactly even where
    its estimate (linear counting) would hide a wrong rank."""
    from feature_core.aggregations import Primitive
    from feature_core.sweep import column_events, session_ranges, window_ranges
    from feature_core.windows import Window
    from tests.feature_core.aggregations.catalog import PRIMITIVE_CASES, close

    own = sorted((e for e in events if e["k"] == "hot"), key=lambda e: e["t"])
    times_ = np.array([e["t"] for e in own], dtype=np.int64)
    ends = np.array(sorted(query_times), dtype=np.int64)
    for text in WINDOWS:
        window = Window.parse(text)
        if window.is_session:
            ranges = session_ranges(times_, ends, window.gap_ms or 0)
        else:
            ranges = window_ranges(times_, [window.start(int(t)) for t in ends], ends)
        for primitive, column in PRIMITIVE_CASES:
            values = None if column is None else [e[column] for e in own]
            column_values = column_events(times_, values)
            got = primitive.windowed(column_values, ranges)
            # The generic two-stack form gives the same partials as each specialized one.
            assert close(Primitive.windowed(primitive, column_values, ranges), got)
            for t, partial in zip(ends.tolist(), got, strict=True):
                covers = window.events_in(times_.tolist(), t)
                want = primitive.identity
                for e in own:
                    if covers(e["t"]):
                        value = e[column] if column else True
                        want = primitive.merge(want, primitive.lift(value, e["t"]))
                assert close(partial, want), (text, primitive, t)
