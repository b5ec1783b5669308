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
    assert c.check(fr(0, 10_000 + 5_000_000_000)) is Verdict.ACCEPT
    assert c.restarts == 1
