"""Moticon OpenGo live UDP lines, sans I/O: a datagram in, a parsed sample or a counted error out.

One ASCII line per datagram, numbers separated by white space (docs/gateways.md): the time,
then per insole (left, then right) acceleration xyz (g), angular rate xyz (deg/s), centre of
pressure xy, 16 pressures (N/cm^2) and the total force (N): 51 numbers by default.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

CELLS = 16
SIDE_FIELDS = ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z", "cop_x", "cop_y",
               *[f"p{i}" for i in range(CELLS)], "force"]
DEFAULT_FIELDS = ["time", *[f"left.{f}" for f in SIDE_FIELDS], *[f"right.{f}" for f in SIDE_FIELDS]]
RESET_BACK_S = 1.0  # the time going back by more than this: the app restarted (a new epoch)
RESET_JUMP_S = 10.0  # forward by more than this: also a new epoch, not a gap


def parse_fields(spec: str | None) -> list[str]:
    """A ``--fields`` spec: comma-separated names (``time``, ``left.p0``..., ``skip``); None: default."""
    if not spec:
        return list(DEFAULT_FIELDS)
    names = [n.strip() for n in spec.split(",") if n.strip()]
    known = set(DEFAULT_FIELDS)
    unknown = [n for n in names if n not in known and n != "skip"]
    if unknown:
        raise ValueError(f"unknown fields: {', '.join(unknown)}")
    real = [n for n in names if n != "skip"]
    if len(set(real)) != len(real):
        raise ValueError("a field is named twice")
    if "time" not in real:
        raise ValueError("the fields must name time")
    return names


@dataclass(frozen=True, slots=True)
class Side:
    """One insole in one sample: ``imu`` (6: g, deg/s), ``pressure`` (16, N/cm^2), ``force`` N."""

    imu: np.ndarray
    pressure: np.ndarray
    force: float
    cop: tuple[float, float]


@dataclass(frozen=True, slots=True)
class Sample:
    """A parsed line: the insoles' time (s), its epoch (counts resets) and the sides it carries."""

    time_s: float
    epoch: int
    sides: dict[str, Side]
    gap: int = 0  # sample periods missing before this one


@dataclass
class ParserStats:
    samples: int = 0
    errors: Counter[str] = field(default_factory=Counter)  # wrong_count, non_numeric, non_finite, time_back
    gaps: int = 0  # sample periods missing (by the insoles' time)
    resets: int = 0  # the insoles' time restarted or jumped

    def as_dict(self) -> dict[str, object]:
        return {"samples": self.samples, "errors": dict(self.errors), "gaps": self.gaps, "resets": self.resets}


class OpenGoParser:
    """Parse datagrams in arrival order; a late (time going back) line is counted and dropped."""

    def __init__(self, fields: list[str] | None = None, rate_hz: float = 100.0) -> None:
        self.fields = fields or list(DEFAULT_FIELDS)
        self.index = {n: i for i, n in enumerate(self.fields) if n != "skip"}
        self.period_s = 1.0 / rate_hz
        self.sides = [s for s in ("left", "right") if all(f"{s}.{f}" in self.index for f in SIDE_FIELDS)]
        self.stats = ParserStats()
        self.epoch = 0
        self.last_s: float | None = None

    def _error(self, why: str) -> None:
        self.stats.errors[why] += 1

    def feed(self, datagram: bytes) -> Sample | None:
        """One datagram; None (and a counted error) when it cannot be used."""
        words = datagram.split()
        if len(words) != len(self.fields):
            self._error("wrong_count")
            return None
        try:
            values = np.array([float(w) for w in words], dtype=np.float64)
        except ValueError:
            self._error("non_numeric")
            return None
        if not np.isfinite(values).all():
            self._error("non_finite")
            return None
        t = float(values[self.index["time"]])
        gap = 0
        if self.last_s is not None:
            dt = t - self.last_s
            if dt < -RESET_BACK_S or dt > RESET_JUMP_S:
                self.epoch += 1
                self.stats.resets += 1
            elif dt <= 0.0:
                self._error("time_back")
                return None
            else:
                gap = max(0, math.floor(dt / self.period_s + 0.5) - 1)
        self.last_s = t
        self.stats.gaps += gap
        self.stats.samples += 1
        sides = {}
        for s in self.sides:
            col = [self.index[f"{s}.{f}"] for f in SIDE_FIELDS]
            v = values[col]
            sides[s] = Side(imu=v[0:6], pressure=v[8:24], force=float(v[24]), cop=(float(v[6]), float(v[7])))
        return Sample(t, self.epoch, sides, gap)
