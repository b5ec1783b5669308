"""Per-source ordering: sequence gaps, late (old or duplicate) frames, clocks going back."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from poserun.wire.errors import FrameError, Reason
from poserun.wire.frame import Frame

#: A frame whose sequence goes back but whose time jumps ahead by this much is
#: taken as a gateway restart (its counters began again), not as a late frame.
RESTART_JUMP_NS = 1_000_000_000


class Verdict(StrEnum):
    ACCEPT = "accept"
    LATE = "late"


@dataclass(slots=True)
class SourceCursor:
    """Tracks the last accepted frame of one source.

    ``check`` returns ``ACCEPT`` or ``LATE`` (an older or repeated sequence
    number: counted and dropped; the fusion processor owns any reordering)
    and raises ``FrameError(time_backwards)`` when a newer frame's first
    sample is not after the previous frame's last sample.
    """

    last_seq: int = -1
    last_ns: int = -1
    gaps: int = 0
    restarts: int = 0

    def check(self, frame: Frame) -> Verdict:
        if self.last_seq < 0:
            self._take(frame)
            return Verdict.ACCEPT
        delta = (frame.seq - self.last_seq) & 0xFFFFFFFF
        if delta == 0 or delta >= 0x80000000:
            if frame.t0_ns > self.last_ns + RESTART_JUMP_NS:
                self.restarts += 1
                self._take(frame)
                return Verdict.ACCEPT
            return Verdict.LATE
        if frame.t0_ns <= self.last_ns:
            raise FrameError(
                Reason.TIME_BACKWARDS,
                f"frame {frame.seq} starts at {frame.t0_ns} ns, not after {self.last_ns} ns",
            )
        self.gaps += delta - 1
        self._take(frame)
        return Verdict.ACCEPT

    def _take(self, frame: Frame) -> None:
        self.last_seq = frame.seq
        self.last_ns = frame.last_ns
