"""ImuAlignment on its own: foot IMU impacts paired with the insole's ICs give the IMU clock's
offset (processors/clock.py), and once it is known an impact within one insole period refines the
insole's IC (processors/alignment.py, docs/processor.md "Time" and "IC refinement")."""

from __future__ import annotations

import pytest

from poserun.processors.alignment import ImuAlignment
from poserun.processors.clock import ClockOffset

MS = 1_000_000
S = 1_000_000_000
PERIOD = 10 * MS  # a 100 Hz insole
OFFSET = 40 * MS  # the IMU clock runs 40 ms behind the insole's: insole time = IMU time + 40 ms
STRIDE = 700 * MS


def insole_ics(n: int, start: int = 10 * S) -> list[int]:
    return [start + k * STRIDE for k in range(n)]


def aligned(foot: str = "left", n: int = 3) -> tuple[ImuAlignment, list[int]]:
    """An alignment that has matched ``n`` contacts (each IMU impact at its insole IC - OFFSET,
    on the IMU's own clock, no shift applied yet)."""
    a = ImuAlignment()
    ics = insole_ics(n)
    for t in ics:
        a.insole_ic(foot, t)
        a.imu_impacts(foot, [(float(t - OFFSET), 0)], beside_insole=True)
    return a, ics


def test_clock_of_makes_one_estimate_per_source() -> None:
    a = ImuAlignment()
    clock = a.clock_of("imu_foot_left")
    assert isinstance(clock, ClockOffset)
    assert a.clock_of("imu_foot_left") is clock
    assert a.clock_of("imu_foot_right") is not clock
    assert set(a.clocks) == {"imu_foot_left", "imu_foot_right"}


def test_matched_impacts_give_the_offset() -> None:
    a, _ = aligned(n=3)
    clock = a.clocks["imu_foot_left"]
    assert clock.matches == 3
    assert clock.ready
    assert clock.offset_ns == OFFSET  # reference - IMU = +40 ms, identical each time
    assert clock.jitter_ns == 0.0
    assert clock.applied_ns() == OFFSET  # over one insole period (10 ms): applied
    assert a.report() == {"imu_foot_left": {"offset_ms": 40.0, "jitter_ms": 0.0, "matches": 3, "applied": True}}


def test_the_offset_is_the_median_of_the_matches() -> None:
    a = ImuAlignment()
    clock = a.clock_of("imu_foot_left")
    for k, diff in enumerate([38, 41, 40, 39, 42]):
        t = 10 * S + k * STRIDE
        a.insole_ic("left", t)
        shift = clock.applied_ns()  # as the IMU source shifts its samples once the offset is applied
        a.imu_impacts("left", [(float(t - diff * MS + shift), shift)], beside_insole=True)
    clock = a.clocks["imu_foot_left"]
    assert clock.matches == 5
    assert clock.offset_ns == pytest.approx(40 * MS)  # median of 38..42
    # MAD: |38-40|, |41-40|, 0, |39-40|, |42-40| -> median 1 ms -> jitter 1.4826 ms
    assert clock.jitter_ns == pytest.approx(1.4826 * MS)


def test_two_matches_are_not_enough() -> None:
    a, _ = aligned(n=2)
    clock = a.clocks["imu_foot_left"]
    assert clock.matches == 2
    assert not clock.ready
    assert clock.applied_ns() == 0
    assert a.report()["imu_foot_left"]["offset_ms"] is None


def test_an_imu_without_an_insole_gives_no_offset() -> None:
    a = ImuAlignment()
    for t in insole_ics(4):
        a.insole_ic("left", t)
        a.imu_impacts("left", [(float(t - OFFSET), 0)], beside_insole=False)
    assert "imu_foot_left" not in a.clocks or a.clocks["imu_foot_left"].matches == 0
    assert len(a.imu_ics["left"]) == 4  # the impacts are still kept


def test_an_impact_far_from_every_insole_ic_is_no_match() -> None:
    a = ImuAlignment()
    a.insole_ic("left", 10 * S)
    a.imu_impacts("left", [(float(10 * S - 400 * MS), 0)], beside_insole=True)  # 400 ms away
    assert a.clock_of("imu_foot_left").matches == 0


def test_an_impact_is_paired_with_the_nearest_insole_ic() -> None:
    a = ImuAlignment()
    for k in range(3):
        t = 10 * S + k * STRIDE
        a.insole_ic("left", t)
        a.insole_ic("left", t + 200 * MS)
        a.imu_impacts("left", [(float(t + 150 * MS), 0)], beside_insole=True)
    clock = a.clocks["imu_foot_left"]
    assert clock.matches == 3
    # each paired with the IC 50 ms after it (offset +50 ms), not the one 150 ms before (-150 ms)
    assert clock.offset_ns == 50 * MS


def test_the_shift_an_impact_was_taken_under_is_removed() -> None:
    a, ics = aligned(n=3)
    # after the offset is applied the IMU's samples arrive shifted by it: an impact 5 ms after the
    # insole IC on the shifted clock is 35 ms before it on the IMU's own clock
    for k in range(1, 4):
        t = ics[-1] + k * STRIDE
        a.insole_ic("left", t)
        a.imu_impacts("left", [(float(t + 5 * MS), OFFSET)], beside_insole=True)
    clock = a.clocks["imu_foot_left"]
    assert clock.matches == 6
    assert clock.offset_ns == pytest.approx(37.5 * MS)  # median of 40, 40, 40, 35, 35, 35


def test_feet_are_aligned_separately() -> None:
    a, _ = aligned("left", n=3)
    assert "imu_foot_right" not in a.clocks
    assert a.refine("right", 20 * S, PERIOD) == (20 * S, False)


# ------------------------------------------------------------------ refine

def test_no_refinement_before_the_offset_is_known() -> None:
    a, ics = aligned(n=2)
    t = ics[-1] + STRIDE
    a.insole_ic("left", t)
    a.imu_impacts("left", [(float(t + 4 * MS), OFFSET)], beside_insole=False)  # within one period
    assert a.refine("left", t, PERIOD) == (t, False)


def test_an_impact_within_one_period_refines_the_ic_once_the_offset_is_known() -> None:
    a, ics = aligned(n=3)
    t = ics[-1] + STRIDE
    a.insole_ic("left", t)
    a.imu_impacts("left", [(float(t + 4 * MS), OFFSET)], beside_insole=True)
    assert a.refine("left", t, PERIOD) == (t + 4 * MS, True)
    assert a.refine("left", t, PERIOD)[1] is True


def test_an_impact_over_one_period_away_does_not_refine() -> None:
    a, ics = aligned(n=3)
    t = ics[-1] + STRIDE
    a.imu_impacts("left", [(float(t - 15 * MS), OFFSET)], beside_insole=False)  # 1.5 periods before
    assert a.refine("left", t, PERIOD) == (t, False)
    # the same impact is within one period of a 20 ms (50 Hz) insole
    assert a.refine("left", t, 20 * MS) == (t - 15 * MS, True)


def test_the_nearest_impact_refines() -> None:
    a, ics = aligned(n=3)
    t = ics[-1] + STRIDE
    a.imu_impacts("left", [(float(t - 6 * MS), OFFSET), (float(t + 3 * MS), OFFSET)], beside_insole=False)
    assert a.refine("left", t, PERIOD) == (t + 3 * MS, True)


def test_without_impacts_the_ic_stays() -> None:
    a, ics = aligned(n=3)
    t = ics[-1] + 10 * STRIDE  # no impact near
    assert a.refine("left", t, PERIOD) == (t, False)
