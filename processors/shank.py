"""Contact events from a shank-worn accelerometer (rules R1, R8 when nothing better is worn).

A shank sensor does not see the foot touch down; it sees the leg's impact
shortly after and the leg's swing after toe-off. The detector works on the
dynamic acceleration (the specific force less gravity; gravity is tracked as a
slow moving average, so a sensor mounted upside down or tilted needs no axis
convention) and marks:

* the impact onset (IC): the dynamic acceleration rises through ``impact_g``
  after a swing; IC is the last minimum before that rise (the moment the
  ground force has cancelled the leg's late-swing acceleration and the
  transient starts), refined between samples, not the impact peak that
  follows it by about three samples (about 20 ms at 140 Hz). It is reported
  once the peak has passed, with the peak's size;
* the push-off (TO): the deepest along-gravity deceleration between
  ``min_stance_s`` and ``max_stance_s`` after IC (reported once that window
  has passed; it lags toe-off by about 15-25 ms).

Until the gravity direction is known (half of ``tau_s`` after the first
sample) the dynamic acceleration is taken as ``| |a| - 1 g |``, a lower bound of
its size that needs no direction, so the first strides are timed too; an
accelerometer whose mean is far from 1 g (a wrong unit) waits instead.
docs/accuracy.md gives the measured figures. Pelvis/sacrum sensors have their
own detector (processors/pelvis.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from poserun.processors.events import emit
from poserun.processors.gravity import track_gravity
from poserun.processors.jit import JIT

G = 9.80665
# state slots (gravity first: track_gravity keeps it in state[0:3])
(_GX, _GY, _GZ, _GINIT, _MODE, _PREV_T, _PREV_UP, _PREV_DYN, _PEAK, _PEAK_T, _IC, _MIN, _MIN_T,
 _MIN_PREV, _MIN_NEXT, _LAST_TO, _HAVE, _T0, _TR_T, _TR_V, _TR_PREV, _TR_NEXT, _PERIOD) = range(23)
STATE_SIZE = 23
_SWING, _IMPACT, _STANCE = 1.0, 2.0, 3.0
# the running mean of a correctly scaled accelerometer is this close to 1 g within a stride
_G_LOW, _G_HIGH = 0.5 * G, 2.0 * G


def new_state() -> np.ndarray:
    s = np.zeros(STATE_SIZE)
    s[_MODE] = _SWING
    s[_LAST_TO] = -1e30
    s[_TR_T] = math.nan
    return s


@njit(**JIT)
def _vertex(y0: float, y1: float, y2: float) -> float:
    """Offset (in samples, within +-0.5) of the extreme of the parabola through three samples."""
    den = y0 - 2.0 * y1 + y2
    if den == 0.0 or not math.isfinite(den):
        return 0.0
    off = 0.5 * (y0 - y2) / den
    return min(0.5, max(-0.5, off))


@njit(**JIT)
def shank_events_kernel(times_ns: np.ndarray, acc: np.ndarray, tau_s: float, impact: float,
                        min_stance_ns: float, max_stance_ns: float, min_swing_ns: float,
                        state: np.ndarray, events: np.ndarray) -> int:
    """acc in m/s^2 (any axes). Rows: (1 IC | 2 TO, time, ic, peak)."""
    n_ev = 0
    for i in range(times_ns.shape[0]):
        ax, ay, az = acc[i, 0], acc[i, 1], acc[i, 2]
        if not (math.isfinite(ax) and math.isfinite(ay) and math.isfinite(az)):
            continue
        t = float(times_ns[i])
        if state[_GINIT] > 0.5:
            state[_PERIOD] = t - state[_PREV_T]
        track_gravity(state, _GINIT, _PREV_T, _T0, t, ax, ay, az, tau_s)  # into state[_GX:_GZ + 1]
        gn = math.sqrt(state[_GX] ** 2 + state[_GY] ** 2 + state[_GZ] ** 2)
        if gn < 1e-6:
            state[_PREV_T] = t
            continue
        up = (ax * state[_GX] + ay * state[_GY] + az * state[_GZ]) / gn - gn
        settled = t - state[_T0] >= tau_s * 0.5e9
        if settled:
            # the impact runs along the shank, not along gravity: the dynamic acceleration's size
            dyn = math.sqrt((ax - state[_GX]) ** 2 + (ay - state[_GY]) ** 2 + (az - state[_GZ]) ** 2)
        else:  # direction not known yet: a lower bound of that size from the known length of gravity
            dyn = abs(math.sqrt(ax * ax + ay * ay + az * az) - G)
        mode = state[_MODE]
        if state[_HAVE] > 0.5 and (settled or _G_LOW <= gn <= _G_HIGH):
            if mode == _SWING:
                # the last minimum since toe-off, with its neighbours for the vertex
                if math.isnan(state[_TR_T]) or dyn < state[_PREV_DYN]:
                    state[_TR_T] = t
                    state[_TR_V] = dyn
                    state[_TR_PREV] = state[_PREV_DYN]
                    state[_TR_NEXT] = math.nan
                elif math.isnan(state[_TR_NEXT]):
                    state[_TR_NEXT] = dyn
                if dyn >= impact and state[_PREV_DYN] < impact and t - state[_LAST_TO] >= min_swing_ns:
                    state[_MODE] = _IMPACT
                    state[_PEAK] = dyn
                    state[_PEAK_T] = t
            elif mode == _IMPACT:
                if dyn > state[_PEAK]:
                    state[_PEAK] = dyn
                    state[_PEAK_T] = t
                else:  # the peak has passed: time the onset
                    ic = state[_TR_T]
                    if ic != state[_PEAK_T]:
                        ic += _vertex(state[_TR_PREV], state[_TR_V], state[_TR_NEXT]) * state[_PERIOD]
                    state[_MODE] = _STANCE
                    state[_IC] = ic
                    state[_MIN] = 1e30
                    state[_MIN_NEXT] = 0.0
                    n_ev = emit(events, n_ev, 1.0, ic, ic, state[_PEAK])
            else:  # stance: the deepest deceleration after the minimum stance
                since = t - state[_IC]
                if since >= min_stance_ns:
                    if up < state[_MIN]:
                        state[_MIN] = up
                        state[_MIN_T] = t
                        state[_MIN_PREV] = state[_PREV_UP]
                        state[_MIN_NEXT] = math.nan
                    elif math.isnan(state[_MIN_NEXT]):
                        state[_MIN_NEXT] = up
                if since >= max_stance_ns and state[_MIN] < 1e29:
                    step = 0.0
                    nxt = state[_MIN_NEXT]
                    if math.isfinite(nxt):
                        step = _vertex(state[_MIN_PREV], state[_MIN], nxt)
                    to = state[_MIN_T] + step * state[_PERIOD]
                    state[_LAST_TO] = to
                    state[_MODE] = _SWING
                    state[_TR_T] = math.nan
                    n_ev = emit(events, n_ev, 2.0, to, state[_IC], state[_MIN])
        state[_PREV_DYN] = dyn
        state[_PREV_UP] = up
        state[_PREV_T] = t
        state[_HAVE] = 1.0
    return n_ev


@dataclass
class ShankEvents:
    """Streaming shank contact events. ``acc`` in m/s^2, any sensor orientation."""

    tau_s: float = 2.0  # gravity tracking time constant
    impact_g: float = 4.0  # dynamic acceleration at the impact, in g
    min_stance_s: float = 0.10
    max_stance_s: float = 0.50
    min_swing_s: float = 0.15
    state: np.ndarray = field(default_factory=new_state)

    def update(self, times_ns: np.ndarray, acc: np.ndarray) -> np.ndarray:
        events = np.empty((len(times_ns) + 1, 4))
        n = shank_events_kernel(np.ascontiguousarray(times_ns, dtype=np.int64),
                                np.ascontiguousarray(acc, dtype=np.float64), self.tau_s, self.impact_g * G,
                                self.min_stance_s * 1e9, self.max_stance_s * 1e9, self.min_swing_s * 1e9,
                                self.state, events)
        return events[:n].copy()
