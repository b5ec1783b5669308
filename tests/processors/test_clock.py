from __future__ import annotations

import numpy as np

from poserun.processors.clock import ClockOffset
from tests.processors.test_athlete import ALL, feed, new_state, streams


def test_robust_estimate_and_jitter() -> None:
    rng = np.random.default_rng(0)
    c = ClockOffset()
    assert not c.ready and c.applied_ns() == 0
    for k in range(30):
        ref = k * 700e6
        src = ref - 40e6 + rng.normal(0, 2e6)
        if k == 10:
            src = ref + 200e6  # a wrong match
        c.add(ref, src)
    assert c.ready and abs(c.offset_ns - 40e6) < 2e6
    assert 0.5e6 < c.jitter_ns < 4e6
    assert c.applied_ns() == round(c.offset_ns)
    small = ClockOffset()
    for k in range(5):
        small.add(k * 1e9, k * 1e9 - 3e6)
    assert small.ready and small.applied_ns() == 0  # within the reference's own timing error


def test_imu_on_its_own_clock_is_aligned() -> None:
    clocks = {"clock_offsets_ms": {"imu_foot_left": 40.0}, "clock_drift_ppm": {"imu_foot_left": 200.0}}
    team, blocks = streams(ALL, seconds=20.0, clocks=clocks)
    state = new_state(team)
    recs = feed(state, blocks)
    report = state.clocks()
    left = report["imu_foot_left"]
    assert left["applied"] and left["matches"] > 20
    assert -50 < left["offset_ms"] < -38  # 40 ms ahead, drifting 4 ms over 20 s, plus the insole's bias
    assert not report["imu_foot_right"]["applied"]
    late = [r for r in recs if r["type"] == "stance" and r["foot"] == "left"][6:]
    assert late and all(r["event_source"] == "insole+imu" for r in late)  # IC from the aligned IMU
    assert all(r["foot_landing_velocity_mps"] is not None and r["foot_landing_velocity_mps"] > 0.3 for r in late)
