"""One time base per athlete, from when frames arrive: sources on clocks of their own are put on it.

Every source of an athlete stamps frames on its gateway's clock (docs/protocol.md). Two
gateways that never synchronised (clocks since boot) can differ by minutes, which would
put an IMU's contacts nowhere near the insole's. What the service can measure without any
help from the gateways is when frames arrive. The athlete's time base is the clock of its
first source (the reference). Each source's quickest delivery (the running minimum of
``arrival - last sample time``) tells which of its frames came promptly; the latest prompt
frame of the reference (the anchor), carried on by the time between the two arrivals, says
what the reference's clock read at the last sample of a prompt frame of another source:
the difference is that source's clock offset, give or take the difference of the two
delivery delays (a few ms for sensors published as sampled). Late frames (a stalled link,
a catch-up burst) give no estimate. In a replay faster than real time the carried-on part
is small and the estimate is off by at most the frames' own length, which the tolerance
takes in.

A difference beyond :data:`TOLERANCE_NS` (0.5 s, plus the two frames' lengths: far above
delivery jitter, far below the seconds to hours between unsynchronised clocks) is a clock of
its own, and the source is shifted onto the time base by the median of its estimates.
Anything within it is left alone: shared or synchronised clocks are never moved (nothing is
held back for them), and the finer alignment (a foot IMU against the insole beside it,
processors/alignment.py) works on the remainder. A source on a clock of its own is shifted
once it has :data:`FRAMES_TO_DECIDE` estimates (its earlier frames wait, counted as
``aligning``, and are processed, shifted, once it is decided; at most :data:`MAX_HELD`, then
it is taken as unshifted); its shift then follows the drift of its clock, at most
:data:`DRIFT_STEP_NS` every :data:`RECHECK` frames (less than any sample period: its samples
stay in order); and it is decided again only when :data:`RECHECK` estimates in a row say
its clock moved beyond the tolerance (a step its cursor accepted).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from statistics import median
from typing import Any

TOLERANCE_NS = 500_000_000
FRAMES_TO_DECIDE = 10
MAX_HELD = 200  # frames of one source waiting for its offset (2 s at 10 ms frames)
ESTIMATES = 15
RECHECK = 64
PROMPT_NS = 100_000_000  # a frame delivered within this of its source's quickest delivery is prompt
DRIFT_STEP_NS = 200_000  # 200 us per RECHECK frames: follows up to ~300 ppm at 10 ms frames


@dataclass(slots=True)
class _Source:
    estimates: deque[int] = field(default_factory=lambda: deque(maxlen=ESTIMATES))
    shift: int | None = None  # decided: added to its timestamps (0: the reference's clock)
    frames: int = 0
    floor: int | None = None  # quickest delivery seen: min(arrival - last sample)
    disagree: int = 0  # estimates in a row beyond the tolerance from the shift
    held: list[tuple[Any, Any]] = field(default_factory=list)  # (times, data) while undecided


@dataclass
class AthleteTimebase:
    """The shifts (ns, added to a source's timestamps) that put an athlete's sources on one clock."""

    reference: str | None = None
    sources: dict[str, _Source] = field(default_factory=dict)
    realigned: int = 0
    _anchor: tuple[int, int, int] | None = None  # the reference's latest prompt frame: last sample, arrival, length

    def _prompt(self, s: _Source, last_sample_ns: int, arrival_ns: int) -> bool:
        delay = arrival_ns - last_sample_ns
        if s.floor is None or delay < s.floor:
            s.floor = delay
        return delay - s.floor <= PROMPT_NS

    def shift(self, source: str, first_sample_ns: int, last_sample_ns: int, arrival_ns: int) -> int | None:
        """The shift for this frame of ``source``; None while it is still being decided (then
        :meth:`hold` it)."""
        if self.reference is None:
            self.reference = source
        s = self.sources.get(source)
        if s is None:
            s = self.sources[source] = _Source()
        s.frames += 1
        prompt = self._prompt(s, last_sample_ns, arrival_ns)
        if source == self.reference:
            s.shift = 0
            if prompt:
                self._anchor = (last_sample_ns, arrival_ns, max(0, last_sample_ns - first_sample_ns))
            return 0
        estimate = None
        tolerance = TOLERANCE_NS
        if prompt and self._anchor is not None:
            a_last, a_arrival, a_length = self._anchor
            estimate = a_last + (arrival_ns - a_arrival) - last_sample_ns
            tolerance += a_length + max(0, last_sample_ns - first_sample_ns)
            s.estimates.append(estimate)
        if s.shift is None:
            if estimate is not None and abs(estimate) <= tolerance:  # the same clock, or close enough
                s.shift = 0
            elif len(s.estimates) >= FRAMES_TO_DECIDE:
                found = round(median(s.estimates))
                s.shift = found if abs(found) > tolerance else 0
            elif len(s.held) >= MAX_HELD:  # no prompt reference to judge by: taken as it comes
                s.shift = 0
            else:
                return None  # a clock of its own: sure of it, and of the offset, after a few frames
            return s.shift
        if estimate is None:
            return s.shift
        if abs(estimate - s.shift) > tolerance:
            s.disagree += 1
            if s.disagree >= RECHECK:  # its clock moved, said by a whole block in a row
                found = round(median(s.estimates))
                s.shift = found if abs(found) > tolerance else 0
                s.disagree = 0
                self.realigned += 1
            return s.shift
        s.disagree = 0
        if s.shift and s.frames % RECHECK == 0:  # a clock of its own drifts: follow it, in small steps
            s.shift += max(-DRIFT_STEP_NS, min(DRIFT_STEP_NS, round(median(s.estimates)) - s.shift))
        return s.shift

    def hold(self, source: str, times: Any, data: Any) -> None:
        """Keep a frame while its source's shift is undecided (at most MAX_HELD of them)."""
        self.sources[source].held.append((times, data))

    def release(self, source: str) -> list[tuple[Any, Any]]:
        """The frames held for ``source`` (its shift now decided), oldest first; forgotten here."""
        s = self.sources.get(source)
        if s is None or not s.held:
            return []
        held, s.held = s.held, []
        return held

    def report(self) -> dict[str, int]:
        """The sources shifted onto the reference's clock, and by how much (ns)."""
        return {name: s.shift for name, s in self.sources.items() if s.shift}
