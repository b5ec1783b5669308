"""Clock offsets between an athlete's sources, from the contacts they both see.

Gateways stamp samples with their own clocks. When two sources time the same
initial contacts (an insole and a foot IMU), the difference of their IC
times is the offset between their clocks plus detection noise. The estimate
is the median of the last ``window`` matched differences (robust to a wrong
match, follows drift), its jitter 1.4826 x the median absolute deviation.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from statistics import median


@dataclass
class ClockOffset:
    window: int = 15
    min_matches: int = 3
    search_ns: float = 250e6  # how far apart two ICs may be and still be the same contact
    _diffs: deque[float] = field(default_factory=deque)
    matches: int = 0
    offset_ns: float = 0.0
    jitter_ns: float = float("nan")
    applied: int = 0  # what applied_ns() returns, kept current by add() (read on every frame)

    def __post_init__(self) -> None:
        self._diffs = deque(maxlen=self.window)

    @property
    def ready(self) -> bool:
        return len(self._diffs) >= self.min_matches

    def tolerance_ns(self) -> float:
        """How far a matched IC may sit from the reference once the offset is known."""
        if not self.ready:
            return self.search_ns
        return max(15e6, 4.0 * self.jitter_ns)

    def add(self, reference_ns: float, source_raw_ns: float) -> bool:
        """Offer a pair of ICs (reference clock, this source's own clock). True if used."""
        diff = reference_ns - source_raw_ns
        if abs(diff - (self.offset_ns if self.ready else 0.0)) > self.tolerance_ns():
            return False
        self._diffs.append(diff)
        self.matches += 1
        if len(self._diffs) >= self.min_matches:  # (statistics.median: numpy's costs more on 15 values)
            med = median(self._diffs)
            self.offset_ns = med
            self.jitter_ns = 1.4826 * median([abs(d - med) for d in self._diffs])
            self.applied = round(med) if abs(med) > self.min_apply_ns else 0
        return True

    min_apply_ns: float = 10e6  # below this an offset is indistinguishable from detection bias

    def applied_ns(self) -> int:
        """The offset to add to this source's timestamps: the estimate once it is known and
        larger than ``min_apply_ns`` (the reference's own timing error, e.g. one insole sample;
        smaller differences are left alone rather than traded for the reference's bias)."""
        return self.applied

    def report(self) -> dict[str, float | int | bool | None]:
        return {"offset_ms": round(self.offset_ns / 1e6, 3) if self.ready else None,
                "jitter_ms": round(self.jitter_ns / 1e6, 3) if self.ready else None,
                "matches": self.matches, "applied": bool(self.applied_ns())}
