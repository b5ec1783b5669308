"""Per-stance pressure metrics from an insole (Pose Method rules R2, R3, R4).

Computed at toe-off over the stance's samples: strike zone and centre of
pressure at IC, heel contact and heel peak fraction, ball-of-foot load
fraction (impulse share), pressure release (ball-of-foot peak to TO),
toe push-off fraction (last 30 % of stance) and loading rate (first 20 %).
Regions are coded 0 heel, 1 midfoot, 2 ball, 3 toes (from the device meta).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from poserun.processors.jit import JIT

REGIONS = ("heel", "midfoot", "ball", "toes")
N_OUT = 11
# output slots
(STRIKE, COP_IC, HEEL_CONTACT, HEEL_PEAK_FRAC, BALL_FRAC, BALL_PEAK_NS, RELEASE_S, RELEASE_RATIO,
 TOE_PUSHOFF, LOADING_RATE, PEAK_N) = range(N_OUT)


@njit(**JIT)
def stance_metrics_kernel(times_ns: np.ndarray, cells: np.ndarray, region: np.ndarray,
                          along: np.ndarray, ic_ns: float, to_ns: float, on_n: float,
                          heel_n: float, bw_n: float, out: np.ndarray) -> None:
    """Fill ``out`` (NaN where a metric cannot be computed)."""
    for k in range(out.shape[0]):
        out[k] = np.nan
    n = times_ns.shape[0]
    c = cells.shape[1]
    tc = to_ns - ic_ns
    if n < 2 or not tc >= 1.0:  # under a nanosecond (or NaN) is no stance; tiny ones would underflow
        return
    total = np.zeros(n)
    reg = np.zeros((n, 4))
    for i in range(n):
        for j in range(c):
            v = cells[i, j]
            total[i] += v
            reg[i, region[j]] += v
    # strike zone and centre of pressure: the first loaded sample
    first = -1
    for i in range(n):
        if total[i] >= on_n:
            first = i
            break
    if first < 0:
        return
    best = 0
    for r in range(1, 4):
        if reg[first, r] > reg[first, best]:
            best = r
    out[STRIKE] = best
    cop = 0.0
    for j in range(c):
        cop += cells[first, j] * along[j]
    out[COP_IC] = cop / total[first]
    peak = 0.0
    heel_peak = 0.0
    ball_peak = -1.0
    ball_peak_t = 0.0
    for i in range(n):
        if total[i] > peak:
            peak = total[i]
        if reg[i, 0] > heel_peak:
            heel_peak = reg[i, 0]
        if reg[i, 2] > ball_peak:
            ball_peak = reg[i, 2]
            ball_peak_t = float(times_ns[i])
    out[PEAK_N] = peak
    out[HEEL_CONTACT] = 1.0 if heel_peak >= heel_n else 0.0
    out[HEEL_PEAK_FRAC] = heel_peak / peak if peak > 0 else np.nan
    # impulse shares (trapezoid on the actual sample times)
    imp_total = 0.0
    imp_ball = 0.0
    late_total = 0.0
    late_toes = 0.0
    late_from = ic_ns + 0.7 * tc
    for i in range(n - 1):
        dt = float(times_ns[i + 1] - times_ns[i])
        imp_total += 0.5 * (total[i] + total[i + 1]) * dt
        imp_ball += 0.5 * (reg[i, 2] + reg[i + 1, 2]) * dt
    for i in range(n):
        if times_ns[i] >= late_from:
            late_total += total[i]
            late_toes += reg[i, 3]
    out[BALL_FRAC] = imp_ball / imp_total if imp_total > 0 else np.nan
    out[TOE_PUSHOFF] = late_toes / late_total if late_total > 0 else np.nan
    if ball_peak > 0:
        out[BALL_PEAK_NS] = ball_peak_t
        out[RELEASE_S] = (to_ns - ball_peak_t) / 1e9
        out[RELEASE_RATIO] = (to_ns - ball_peak_t) / tc
    # loading rate: force at 20 % of stance (interpolated) over that time, in BW/s
    t20 = ic_ns + 0.2 * tc
    for i in range(n - 1):
        if times_ns[i] <= t20 <= times_ns[i + 1]:
            span = float(times_ns[i + 1] - times_ns[i])
            frac = (t20 - times_ns[i]) / span if span > 0 else 0.0
            f20 = total[i] + frac * (total[i + 1] - total[i])
            out[LOADING_RATE] = f20 / (0.2 * tc / 1e9) / bw_n
            break


@dataclass(frozen=True)
class InsoleLayout:
    """What the kernel needs from the device meta."""

    region: np.ndarray  # int64 per cell
    along: np.ndarray  # float64 per cell
    area_m2: np.ndarray | None = None  # kPa insoles
    across: np.ndarray | None = None  # float64 per cell (for drawing the pressure map)

    @classmethod
    def from_meta(cls, regions: list[str], positions: list[tuple[float, float]],
                  areas: list[float] | None, unit: str) -> InsoleLayout:
        return cls(np.array([REGIONS.index(r) for r in regions], dtype=np.int64),
                   np.array([p[0] for p in positions], dtype=np.float64),
                   np.asarray(areas, dtype=np.float64) if unit == "kPa" and areas else None,
                   np.array([p[1] for p in positions], dtype=np.float64))

    def newtons(self, cells: np.ndarray) -> np.ndarray:
        """Cell values in N (kPa x area when the insole reports pressure)."""
        return np.asarray(cells, dtype=np.float64) * self.scale[None, :]

    @property
    def scale(self) -> np.ndarray:
        """N per reported unit, per cell."""
        if self.area_m2 is None:
            return np.ones(self.region.shape[0])
        return 1000.0 * self.area_m2


def stance_metrics(times_ns: np.ndarray, cells_n: np.ndarray, layout: InsoleLayout, ic_ns: float,
                   to_ns: float, body_weight_n: float, on_bw: float = 0.10,
                   heel_bw: float = 0.05) -> dict[str, float | str | bool | None]:
    """Named insole metrics for one stance; ``None`` where the samples cannot support one."""
    out = np.empty(N_OUT)
    if cells_n.ndim != 2 or cells_n.shape[1] != layout.region.shape[0] or len(times_ns) != len(cells_n):
        raise ValueError("cells must be (samples, cells) matching the layout and the times")
    stance_metrics_kernel(np.ascontiguousarray(times_ns, dtype=np.int64),
                          np.ascontiguousarray(cells_n, dtype=np.float64), layout.region, layout.along,
                          float(ic_ns), float(to_ns), on_bw * body_weight_n, heel_bw * body_weight_n,
                          body_weight_n, out)

    def num(k: int, digits: int = 4) -> float | None:
        v = float(out[k])
        return None if math.isnan(v) else round(v, digits)

    strike = None if math.isnan(out[STRIKE]) else REGIONS[int(out[STRIKE])]
    return {
        "strike_zone": strike,
        "cop_ic_fraction": num(COP_IC, 3),
        "heel_contact": None if math.isnan(out[HEEL_CONTACT]) else bool(out[HEEL_CONTACT]),
        "heel_peak_fraction": num(HEEL_PEAK_FRAC, 3),
        "ball_load_fraction": num(BALL_FRAC, 3),
        "release_time_s": num(RELEASE_S),
        "release_ratio": num(RELEASE_RATIO, 3),
        "toe_pushoff_fraction": num(TOE_PUSHOFF, 3),
        "loading_rate_bw_per_s": num(LOADING_RATE, 2),
        "peak_force_bw": None if math.isnan(out[PEAK_N]) else round(float(out[PEAK_N]) / body_weight_n, 3),
    }
