"""Per-source ordering: sequence gaps, late (old or duplicate) frames, clocks going back,
a gateway restarting with a new clock, one frame stamped far ahead."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from poserun.wire.errors import FrameError, Reason
from poserun.wire.frame import Frame

#: A frame whose sequence goes back but whose time jumps ahead by this much is
#: taken as a gateway restart (its counters began again), not as a late frame;
#: likewise one whose sequence and time both go back by this much (a clock since
#: boot, after a reboot).
RESTART_JUMP_NS = 1_000_000_000
#: A frame this far ahead of what its sequence number allows (beyond the frames it says were
#: lost) is a clock glitch, not data: refused alone, unless the next frame confirms the new time.
MAX_JUMP_NS = 10_000_000_000


class Verdict(StrEnum):
    ACCEPT = "accept"
    LATE = "late"
    RESTART = "restart"  # accepted, on a new clock epoch: what came before is another time base


@dataclass(slots=True)
class SourceCursor:
    """Tracks the last accepted frame of one source.

    ``check`` returns ``ACCEPT``, ``LATE`` (an older or repeated sequence number: counted and
    dropped; the fusion processor owns any reordering) or ``RESTART`` (the gateway began
    again: a sequence that goes back with a time that jumps ahead, or with a time that goes
    back as a clock since boot does after a reboot). It raises ``FrameError(time_backwards)``
    when a newer frame's first sample is not after the previous frame's last sample, and
    ``FrameError(time_jump)`` for a frame far ahead of its source (more than ``MAX_JUMP_NS``
    beyond what its sequence allows, judged on the source's own time per frame): that frame
    alone is refused, so one glitch cannot make every later frame look old; a later frame that
    continues from it confirms the new time.
    """

    last_seq: int = -1
    last_ns: int = -1
    gaps: int = 0
    restarts: int = 0
    jumps: int = 0
    _last_t0: int = -1
    _frame_ns: float = 0.0  # the source's time per sequence step, as seen
    _jump_seq: int = -1  # the refused far-ahead frame, which the next one may confirm
    _jump_ns: int = -1
    _restart_expected: bool = False

    def expect_restart(self) -> None:
        """The gateway said it (re)started: take the next frame's sequence whatever it is, and if
        its time has gone back, call it a restart (a clock since boot)."""
        self._restart_expected = True

    def check(self, frame: Frame) -> Verdict:
        if self.last_seq < 0:
            self._take(frame)
            return Verdict.ACCEPT
        if self._restart_expected:
            self._restart_expected = False
            back = frame.t0_ns <= self.last_ns
            if back:
                self.restarts += 1
            self._take(frame)
            self._frame_ns = 0.0
            return Verdict.RESTART if back else Verdict.ACCEPT
        delta = (frame.seq - self.last_seq) & 0xFFFFFFFF
        if delta == 0 or delta >= 0x80000000:
            if frame.t0_ns > self.last_ns + RESTART_JUMP_NS or frame.last_ns < self.last_ns - RESTART_JUMP_NS:
                self.restarts += 1
                self._take(frame)
                return Verdict.RESTART
            return Verdict.LATE
        if frame.t0_ns <= self.last_ns:
            raise FrameError(
                Reason.TIME_BACKWARDS,
                f"frame {frame.seq} starts at {frame.t0_ns} ns, not after {self.last_ns} ns",
            )
        step = max(frame.last_ns - frame.t0_ns, self._frame_ns, 1)  # (a one-sample frame has no span)
        allowed = MAX_JUMP_NS + delta * 4 * step
        if frame.t0_ns - self.last_ns > allowed:
            since = (frame.seq - self._jump_seq) & 0xFFFFFFFF
            confirms = self._jump_seq >= 0 and 0 < since < 0x80000000 \
                and 0 < frame.t0_ns - self._jump_ns <= MAX_JUMP_NS + since * 4 * step
            if not confirms:
                self.jumps += 1
                self._jump_seq, self._jump_ns = frame.seq, frame.last_ns
                raise FrameError(
                    Reason.TIME_JUMP,
                    f"frame {frame.seq} starts {(frame.t0_ns - self.last_ns) / 1e9:.1f} s after the source's "
                    f"last sample, {delta} frame(s) on: refused alone",
                )
        self.gaps += delta - 1
        if self._last_t0 >= 0 and frame.t0_ns > self._last_t0:
            self._frame_ns = (frame.t0_ns - self._last_t0) / delta
        self._take(frame)
        return Verdict.ACCEPT

    def _take(self, frame: Frame) -> None:
        self.last_seq = frame.seq
        self.last_ns = frame.last_ns
        self._last_t0 = frame.t0_ns
        self._jump_seq = -1
