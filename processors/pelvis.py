"""Contact events from a pelvis-, sacrum- or trunk-worn accelerometer (when nothing on the feet times them).

An accelerometer near the centre of mass measures the specific force
``a - g``, which is the total ground reaction force over body mass: about
zero in flight and one to three body weights in stance. Projected on the
gravity direction (tracked as a slow average, whose length is also one body
weight, so neither axis conventions nor units matter for this part) it is
a whole-body force plate, and the insole's hysteresis detector
(:func:`processors.contact.contact_kernel`) finds the contacts on it, in
body weights.

The trunk sees a rounded force, so a threshold crossing comes late at
initial contact and early at toe-off. Modelling stance force as the half
sine of a spring-mass runner, a level ``L`` under a peak ``P`` is crossed
``asin(L/P)/pi`` of the contact time from either end: toe-off is corrected
with this stance's own peak; initial contact, reported as soon as it is
seen (the haptic cue must not wait), with the previous stance's peak and
contact time (the first contact is left as measured). No constant is fitted
to any recording.

Between two contacts lies a flight, not a foot's swing: the one-foot minimum
swing (a foot cannot land again within 0.1 s of leaving the ground) does not
apply, since alternate contacts are on different feet, and uphill or slow
running has flights of 40-60 ms. A flight has no physical minimum (it shrinks
to nothing at the walk-run transition), so the only gap required between two
contacts is two sample periods of the sensor (from its meta): one sample
below the threshold can be a glitch, two are a flight.

Which foot: stance on the left foot pushes the body to the right, so the
sign of the lateral force over a stance (weighted by the vertical force)
names its foot, from the meta's axes. Contacts alternate; the side is
predicted at initial contact and checked at toe-off, a wrong prediction
turning the alternation round (counted as ``pelvis_side_flips``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from poserun.processors.contact import EV_IC, EV_SHORT, EV_TO, contact_kernel
from poserun.processors.contact import new_state as new_contact_state
from poserun.processors.gravity import track_gravity
from poserun.processors.imu import axes_matrix
from poserun.processors.jit import JIT

# gravity tracker state: mean x, y, z, started, previous time, first time
_MX, _MY, _MZ, _INIT, _PREV_T, _T0 = range(6)


@njit(**JIT)
def vertical_force_kernel(times_ns: np.ndarray, acc: np.ndarray, tau_s: float, state: np.ndarray,
                          out: np.ndarray) -> None:
    """Each sample's specific force along the tracked gravity direction, in body weights
    (``out``); the mean is a running mean until ``tau_s`` has passed, then exponential."""
    for i in range(times_ns.shape[0]):
        ax, ay, az = acc[i, 0], acc[i, 1], acc[i, 2]
        t = float(times_ns[i])
        if not (math.isfinite(ax) and math.isfinite(ay) and math.isfinite(az)):
            out[i] = np.nan
            continue
        track_gravity(state, _INIT, _PREV_T, _T0, t, ax, ay, az, tau_s)  # into state[_MX:_MZ + 1]
        state[_PREV_T] = t
        g2 = state[_MX] * state[_MX] + state[_MY] * state[_MY] + state[_MZ] * state[_MZ]
        out[i] = (ax * state[_MX] + ay * state[_MY] + az * state[_MZ]) / g2 if g2 > 0.0 else np.nan


def level_fraction(level: float, peak: float) -> float:
    """Share of a half-sine contact of height ``peak`` before it first reaches ``level``."""
    if not (peak > 0.0 and level > 0.0):
        return 0.0
    return math.asin(min(1.0, level / peak)) / math.pi


class PelvisEvents:
    """Streaming contact events from a trunk accelerometer, with the foot of each contact."""

    def __init__(self, axes: dict[str, str], *, rate_hz: float = 100.0, on_bw: float = 0.55, off_bw: float = 0.45,
                 min_stance_s: float = 0.08, tau_s: float = 2.0) -> None:
        if not 0 < off_bw <= on_bw:
            raise ValueError("need 0 < off_bw <= on_bw")
        if not rate_hz > 0:
            raise ValueError("need rate_hz > 0")
        self.lateral = axes_matrix(axes)[1]  # sensor (x, y, z) -> the body's left component
        self.on_bw, self.off_bw = on_bw, off_bw
        self.min_stance_ns = min_stance_s * 1e9
        self.min_gap_ns = 2e9 / rate_hz  # a flight is at least two samples (module docstring)
        self.tau_s = tau_s
        self._gravity = np.zeros(6)
        self._contact = new_contact_state()
        self._prev: tuple[float, float] | None = None  # (contact time ns, peak bw) of the last stance
        self._foot: str | None = None  # the foot of the contact in progress
        self._next = "left"  # the predicted foot of the next contact
        self._ic = 0.0  # the contact in progress, as reported
        self._lateral_sum = 0.0
        self.side_flips = 0

    def update(self, times_ns: np.ndarray, acc: np.ndarray) -> list[tuple[str, float, float, float, float]]:
        """Feed samples (specific force, any unit, sensor axes); return events as
        (foot, kind, time_ns, ic_ns, peak_bw), kinds as in processors/contact.py."""
        times = np.ascontiguousarray(times_ns, dtype=np.int64)
        raw = np.ascontiguousarray(acc[:, :3], dtype=np.float64)
        f_bw = np.empty(times.shape[0])
        vertical_force_kernel(times, raw, self.tau_s, self._gravity, f_bw)
        rows = np.empty((times.shape[0] + 1, 4))
        n = contact_kernel(times, np.nan_to_num(f_bw), self.on_bw, self.off_bw, self.min_stance_ns,
                           self.min_gap_ns, self._contact, rows)
        with np.errstate(invalid="ignore", over="ignore"):
            lateral = np.nan_to_num((raw @ self.lateral) * np.clip(np.nan_to_num(f_bw), 0.0, None),
                                    nan=0.0, posinf=0.0, neginf=0.0)
        out: list[tuple[str, float, float, float, float]] = []
        start = 0
        for kind, t, ic, peak in rows[:n]:
            if kind == EV_IC:
                self._lateral_sum = 0.0
                start = int(np.searchsorted(times, t, side="left"))
                self._foot = self._next
                shift = 0.0
                if self._prev is not None:
                    tc_prev, peak_prev = self._prev
                    shift = level_fraction(self.on_bw, peak_prev) * tc_prev
                self._ic = float(t) - shift
                out.append((self._foot, EV_IC, self._ic, self._ic, float(peak)))
                continue
            if self._foot is None:
                continue
            end = int(np.searchsorted(times, t, side="right"))
            self._lateral_sum += float(lateral[start:end].sum())
            start = end
            foot = self._foot
            if kind == EV_TO:
                s_on, s_off = level_fraction(self.on_bw, peak), level_fraction(self.off_bw, peak)
                tc = (float(t) - float(ic)) / max(1.0 - s_on - s_off, 0.2)
                self._prev = (tc, float(peak))
                seen = "left" if self._lateral_sum < 0 else "right"  # pushed right: on the left foot
                if self._lateral_sum != 0.0 and seen != foot:
                    self.side_flips += 1
                    foot_next = "right" if seen == "left" else "left"
                else:
                    foot_next = "right" if foot == "left" else "left"
                out.append((foot, EV_TO, float(t) + s_off * tc, self._ic, float(peak)))
                self._next = foot_next
            elif kind == EV_SHORT:
                out.append((foot, EV_SHORT, float(t), self._ic, float(peak)))
            self._foot = None
        if self._foot is not None:
            self._lateral_sum += float(lateral[start:].sum())
        return out
