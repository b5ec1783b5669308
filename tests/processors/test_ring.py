"""SampleRing.window against the obvious reference: every sample kept, one mask."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from poserun.processors.ring import SampleRing


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
