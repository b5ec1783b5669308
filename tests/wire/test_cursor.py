from __future__ import annotations

import numpy as np
import pytest

from poserun.wire.cursor import SourceCursor, Verdict
from poserun.wire.errors import FrameError, Reason
from poserun.wire.frame import make_frame
from poserun.wire.streams import StreamKind


def fr(seq: int, t0: int, n: int = 4) -> object:
    return make_frame(StreamKind.IMU, seq, t0, np.zeros((n, 6)), period_ns=10)


def test_accepts_in_order_and_counts_gaps() -> None:
    c = SourceCursor()
    assert c.check(fr(0, 0)) is Verdict.ACCEPT
    assert c.check(fr(1, 40)) is Verdict.ACCEPT
    assert c.check(fr(4, 160)) is Verdict.ACCEPT
    assert c.gaps == 2


def test_late_and_duplicate_frames() -> None:
    c = SourceCursor()
    c.check(fr(5, 200))
    assert c.check(fr(5, 200)) is Verdict.LATE
    assert c.check(fr(3, 120)) is Verdict.LATE


def test_time_going_backwards_is_rejected() -> None:
    c = SourceCursor()
    c.check(fr(0, 1000))
    with pytest.raises(FrameError) as info:
        c.check(fr(1, 1010))  # starts before the previous frame's last sample (1030)
    assert info.value.reason is Reason.TIME_BACKWARDS


def test_sequence_wraps() -> None:
    c = SourceCursor()
    c.check(fr(2**32 - 1, 0))
    assert c.check(fr(0, 40)) is Verdict.ACCEPT
    assert c.gaps == 0


def test_restart_is_taken_as_new_start() -> None:
    c = SourceCursor()
    c.check(fr(500, 10_000))
    assert c.check(fr(0, 10_000 + 5_000_000_000)) is Verdict.RESTART
    assert c.restarts == 1


def test_a_clock_since_boot_after_a_reboot_is_a_restart() -> None:
    c = SourceCursor()
    c.check(fr(6500, 65_000_000_000))  # up 65 s
    assert c.check(fr(0, 100)) is Verdict.RESTART  # rebooted: sequence and clock from zero
    assert c.check(fr(1, 140)) is Verdict.ACCEPT


def test_one_frame_far_ahead_is_refused_alone() -> None:
    c = SourceCursor()
    c.check(fr(0, 0))
    with pytest.raises(FrameError) as info:
        c.check(fr(1, 7_200_000_000_000))  # +2 h: a glitch
    assert info.value.reason is Reason.TIME_JUMP and c.jumps == 1
    assert c.check(fr(2, 80)) is Verdict.ACCEPT  # the source goes on, not poisoned
    assert c.gaps == 1


def test_a_clock_that_really_stepped_ahead_is_confirmed_by_the_next_frame() -> None:
    c = SourceCursor()
    c.check(fr(0, 0))
    with pytest.raises(FrameError):
        c.check(fr(1, 3_600_000_000_000))
    assert c.check(fr(2, 3_600_000_000_040)) is Verdict.ACCEPT  # it continues from there: the new time


def test_a_long_gap_with_its_frames_lost_is_no_jump() -> None:
    c = SourceCursor()
    c.check(fr(0, 0, n=40))  # 40 samples of 10 ns: 390 ns per frame
    # 5 minutes of frames lost: the sequence says so, so the time may move on that much
    assert c.check(fr(1 + 769_230_769, 300_000_000_000, n=40)) is Verdict.ACCEPT


def test_one_sample_frames_after_a_long_outage_are_no_jump() -> None:
    """60 fps keypoints, one sample a frame: 12 s lost, and the sequence says so."""
    c = SourceCursor()
    period = 16_666_667
    for k in range(10):
        assert c.check(fr(k, k * period, n=1)) is Verdict.ACCEPT
    assert c.check(fr(9 + 720, (9 + 720) * period, n=1)) is Verdict.ACCEPT
    assert c.jumps == 0 and c.gaps == 719


def test_a_jump_is_confirmed_by_a_later_frame_even_with_losses_between() -> None:
    c = SourceCursor()
    c.check(fr(0, 0))
    with pytest.raises(FrameError):
        c.check(fr(1, 3_600_000_000_000))
    assert c.check(fr(3, 3_600_000_000_080)) is Verdict.ACCEPT  # frame 2 lost on the way


def test_an_announced_restart_takes_any_sequence_and_sees_a_clock_that_began_again() -> None:
    c = SourceCursor()
    c.check(fr(500, 50_000_000_000))
    c.expect_restart()
    assert c.check(fr(3, 100)) is Verdict.RESTART  # rebooted: its clock since boot is back at 0
    c.check(fr(4, 140))
    c.expect_restart()  # a reconnection, not a reboot: the clock went on
    assert c.check(fr(0, 1_000_000)) is Verdict.ACCEPT and c.restarts == 1
