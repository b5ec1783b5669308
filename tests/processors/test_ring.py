"""SampleRing.window against the obvious reference: every sample kept, one mask."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from poserun.processors.ring import SampleRing, append_rows


@given(st.lists(st.integers(1, 5), min_size=0, max_size=60), st.integers(1, 30),
       st.lists(st.tuples(st.integers(-50, 700), st.integers(0, 300)), min_size=1, max_size=10),
       st.integers(50, 2000))
def test_window_matches_reference(sizes: list[int], step: int, windows: list[tuple[int, int]],
                                  horizon: int) -> None:
    ring = SampleRing(horizon_ns=horizon)
    all_t, all_d = [], []
    t = 0
    for n in sizes:
        ts = t + step * np.arange(n, dtype=np.int64)
        data = np.column_stack((ts.astype(float), -ts.astype(float)))
        ring.push(ts, data)
        all_t.append(ts)
        all_d.append(data)
        t = int(ts[-1]) + step
    for start, length in windows:
        got_t, got_d = ring.window(start, start + length)
        if not all_t:
            assert len(got_t) == 0
            continue
        ref_t = np.concatenate(all_t)
        ref_d = np.concatenate(all_d)
        m = (ref_t >= start) & (ref_t <= start + length)
        # the ring keeps at least its horizon: compare where the reference is inside it
        kept = ref_t >= ref_t[-1] - horizon
        if m.any() and kept[m].all():
            np.testing.assert_array_equal(got_t, ref_t[m])
            np.testing.assert_array_equal(got_d, ref_d[m])
        elif not m.any():
            assert len(got_t) == 0


@settings(deadline=None)  # (the first example compiles append_rows for float64 rows)
@given(st.lists(st.integers(1, 5), min_size=1, max_size=80), st.integers(0, 3), st.integers(50, 400),
       st.booleans())
def test_kernel_appends_equal_pushes(blocks: list[int], capacity_log: int, horizon: int, direct: bool) -> None:
    """Rows appended by compiled code (``append_rows``, room made on demand) give the same
    history as blocks pushed from Python (a ring is fed one way or the other)."""
    ring = SampleRing(horizon_ns=horizon, capacity=8 << capacity_log, width=2)
    all_t, all_d = [], []
    t = 0
    for n in blocks:
        ts = t + 7 * np.arange(n, dtype=np.int64)
        data = np.column_stack((ts.astype(float), -ts.astype(float)))
        if direct:
            if not append_rows(ts, data, ring.times, ring.data, ring.bounds):
                ring.make_room(n, int(ts[-1]))
                assert append_rows(ts, data, ring.times, ring.data, ring.bounds)
        else:
            ring.push(ts, data)
        all_t.append(ts)
        all_d.append(data)
        t = int(ts[-1]) + 7
    ref_t, ref_d = np.concatenate(all_t), np.concatenate(all_d)
    start = int(ref_t[-1]) - horizon
    got_t, got_d = ring.window(start, np.inf)
    m = ref_t >= start
    np.testing.assert_array_equal(got_t, ref_t[m])
    np.testing.assert_array_equal(got_d, ref_d[m])
    assert ring.size <= max(8 << capacity_log, 4 * (len(ref_t) + 5))
    assert not append_rows(ts, np.zeros((n, 3)), ring.times, ring.data, ring.bounds)  # wrong width: refused


def test_window_bounds_that_are_not_plain_numbers() -> None:
    ring = SampleRing()
    ring.push(np.arange(5, dtype=np.int64) * 10, np.arange(10.0).reshape(5, 2))
    assert len(ring.window(np.nan, 100)[0]) == 0
    assert ring.window(-np.inf, np.inf)[0].tolist() == [0, 10, 20, 30, 40]
    assert ring.window(9.5, 30.5)[0].tolist() == [10, 20, 30]
    assert ring.window(-1e30, 1e30)[0].tolist() == [0, 10, 20, 30, 40]
