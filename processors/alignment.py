"""Clock alignment of a foot IMU beside an insole, and the finer IC it then gives.

Gateways need not share a clock. Where a foot wears both, each IMU impact close to an
insole IC is one sample of the IMU clock's offset (processors/clock.py); once the offset
is known, the IMU's samples are shifted onto the insole's clock before they are processed,
and its impact, finer than the insole's sample period, times the stance's IC.
"""

from __future__ import annotations

from collections import deque

from poserun.processors.clock import ClockOffset

SIDES = ("left", "right")


class ImuAlignment:
    """Per foot: the insole's recent ICs, the IMU's recent impacts (with the shift they were
    taken under) and the IMU clock's offset estimate."""

    def __init__(self) -> None:
        self.clocks: dict[str, ClockOffset] = {}  # by source name (imu_foot_<side>)
        self.imu_ics: dict[str, deque[tuple[float, int]]] = {s: deque(maxlen=8) for s in SIDES}
        self.insole_ics: dict[str, deque[float]] = {s: deque(maxlen=8) for s in SIDES}

    def clock_of(self, source: str) -> ClockOffset:
        """The offset estimate of a supporting source (made on first use)."""
        clock = self.clocks.get(source)
        if clock is None:
            clock = self.clocks[source] = ClockOffset()
        return clock

    def insole_ic(self, foot: str, ic_ns: float) -> None:
        self.insole_ics[foot].append(ic_ns)

    def imu_impacts(self, foot: str, impacts: list[tuple[float, int]], beside_insole: bool) -> None:
        """New IMU impacts (time on the shifted clock, shift); beside an insole, each paired with
        the insole IC near it is one sample of the offset. Done as IMU data is processed, so no
        record waits for it."""
        self.imu_ics[foot].extend(impacts)
        if not beside_insole:
            return
        clock = self.clock_of(f"imu_foot_{foot}")
        refs = self.insole_ics[foot]
        for t, shift in impacts:
            near = [r for r in refs if abs(r - t) <= clock.tolerance_ns() + 20e6]
            if near:
                clock.add(min(near, key=lambda r: abs(r - t)), t - shift)

    def refine(self, foot: str, ic_ns: float, period_ns: float) -> tuple[float, bool]:
        """An insole IC is quantised to its sample period; a foot IMU impact within one period
        of it times the same contact more finely, once the IMU's clock offset is known:
        (IC, whether the IMU gave it)."""
        clock = self.clock_of(f"imu_foot_{foot}")
        cands = [t for t, _shift in self.imu_ics[foot] if abs(t - ic_ns) <= period_ns + 2e6]
        if not cands or not clock.ready:
            return ic_ns, False
        return min(cands, key=lambda t: abs(t - ic_ns)), True

    def report(self) -> dict[str, dict[str, float | int | None]]:
        """Estimated offset (added to the source's timestamps) and jitter per aligned source."""
        return {src: c.report() for src, c in sorted(self.clocks.items())}
