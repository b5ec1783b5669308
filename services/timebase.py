"""One time base per athlete, from when frames arrive: sources on clocks of their own are put on it.

Every source of an athlete stamps frames on its gateway's clock (docs/protocol.md). Two
gateways that never synchronised (clocks since boot) can differ by minutes, which would
put an IMU's contacts nowhere near the insole's. What the service can measure without any
help from the gateways is when frames arrive. The athlete's time base is the clock of its
first source (the reference). When a frame of another source arrives, the reference's
latest frame, carried on by the time between the two arrivals, says what the reference's
clock reads at this frame's last sample: the difference is this source's clock offset,
give or take the difference of the two frames' delivery delays (a few ms for sensors
published as sampled). The median of the last :data:`ESTIMATES` such differences is the
estimate. It holds when frames come faster than real time (a replay at full speed): the
carried-on part is then small, and the estimate is off by at most the time between two
reference frames.

A difference beyond :data:`TOLERANCE_NS` (0.5 s: far above delivery jitter and a frame's
length, far below the seconds to hours between unsynchronised clocks) is a clock of its
own, and the source is shifted onto the time base by it. Anything within it is left alone:
shared or synchronised clocks are never moved (nothing is held back for them), and the
finer alignment (a foot IMU against the insole beside it, processors/alignment.py) works
on the remainder. A source on a clock of its own is shifted once it has
:data:`FRAMES_TO_DECIDE` estimates (its earlier frames wait, counted as ``aligning``, and
are processed, shifted, once it is decided), and again only when, judged every
:data:`RECHECK` frames, its clock moved by more than the tolerance (a step its cursor
accepted).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from statistics import median
from typing import Any

TOLERANCE_NS = 500_000_000
FRAMES_TO_DECIDE = 10
ESTIMATES = 15
RECHECK = 64


@dataclass(slots=True)
class _Source:
    estimates: deque[int] = field(default_factory=lambda: deque(maxlen=ESTIMATES))
    shift: int | None = None  # decided: added to its timestamps (0: the reference's clock)
    frames: int = 0
    held: list[tuple[Any, Any]] = field(default_factory=list)  # (times, data) while undecided


@dataclass
class AthleteTimebase:
    """The shifts (ns, added to a source's timestamps) that put an athlete's sources on one clock."""

    reference: str | None = None
    sources: dict[str, _Source] = field(default_factory=dict)
    realigned: int = 0
    _ref_last_ns: int = 0  # the reference's latest frame: its last sample time, and when it arrived
    _ref_arrival_ns: int = 0

    def shift(self, source: str, last_sample_ns: int, arrival_ns: int) -> int | None:
        """The shift for this frame of ``source``; None while it is still being decided."""
        if self.reference is None:
            self.reference = source
        if source == self.reference:
            self._ref_last_ns, self._ref_arrival_ns = last_sample_ns, arrival_ns
            return 0
        s = self.sources.get(source)
        if s is None:
            s = self.sources[source] = _Source()
        s.frames += 1
        estimate = self._ref_last_ns + (arrival_ns - self._ref_arrival_ns) - last_sample_ns
        s.estimates.append(estimate)
        if s.shift is None:
            if abs(estimate) <= TOLERANCE_NS:  # the same clock, or one close enough: nothing held back
                s.shift = 0
            elif len(s.estimates) < FRAMES_TO_DECIDE:
                return None  # a clock of its own: sure of it, and of the offset, after a few frames
            else:
                found = round(median(s.estimates))
                s.shift = found if abs(found) > TOLERANCE_NS else 0
        elif s.frames % RECHECK == 0:
            now = round(median(s.estimates))
            if abs(now - s.shift) > TOLERANCE_NS:
                s.shift = now if abs(now) > TOLERANCE_NS else 0
                self.realigned += 1
        return s.shift

    def hold(self, source: str, times: Any, data: Any) -> None:
        """Keep a frame while its source's shift is undecided (at most FRAMES_TO_DECIDE of them)."""
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
