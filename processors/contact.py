"""Foot contact from a pressure insole's total force: hysteresis on body weight.

A contact starts (IC) when the force rises through ``on`` and ends (TO)
when it falls through ``off`` (both fractions of body weight), with the
crossing instant interpolated between samples. A contact shorter than the
minimum stance, or one that begins sooner than the minimum swing after the
previous TO, is discarded and counted. The kernel carries its state across
calls, so any chunking of the same samples gives the same events.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from poserun.processors.events import emit
from poserun.processors.jit import JIT
from poserun.processors.ring import SampleRing, append_rows

G = 9.81

# state slots (float64 array; times as float64 ns, exact to 2**53 ns ~ 104 days)
_IN, _IC, _LAST_TO, _PREV_T, _PREV_F, _HAVE_PREV, _PEAK, _BASE = range(8)
STATE_SIZE = 8

# event rows: kind (1 = IC, 2 = TO, 3 = rejected short stance), time ns, ic ns, peak N
EV_IC, EV_TO, EV_SHORT = 1.0, 2.0, 3.0


_NO_EVENTS = np.empty((0, 4))


def new_state() -> np.ndarray:
    s = np.zeros(STATE_SIZE)
    s[_LAST_TO] = -1e30
    return s


@njit(**JIT)
def _cross(t0: float, f0: float, t1: float, f1: float, level: float) -> float:
    if f1 == f0:
        return t1
    frac = (level - f0) / (f1 - f0)
    if frac < 0.0:
        frac = 0.0
    elif frac > 1.0:
        frac = 1.0
    return t0 + frac * (t1 - t0)


@njit(**JIT)
def contact_kernel(times_ns: np.ndarray, force: np.ndarray, on_n: float, off_n: float,
                   min_stance_ns: float, min_swing_ns: float, state: np.ndarray,
                   events: np.ndarray, zero_tau_s: float = 0.0) -> int:
    """Scan samples; write event rows into ``events``; return how many were written.

    With ``zero_tau_s`` > 0 the unloaded level is tracked while the foot is in the air
    (an average over that time constant of the samples under the off threshold) and
    subtracted: insoles drift with temperature and wear, and a drifting zero would shift
    every threshold crossing."""
    n_ev = 0
    for i in range(times_ns.shape[0]):
        n_ev = _contact_step(float(times_ns[i]), force[i], on_n, off_n, min_stance_ns, min_swing_ns, state,
                             events, n_ev, zero_tau_s)
    return n_ev


@njit(**JIT)
def _contact_step(t: float, raw: float, on_n: float, off_n: float, min_stance_ns: float, min_swing_ns: float,
                  state: np.ndarray, events: np.ndarray, n_ev: int, zero_tau_s: float) -> int:
    """One sample of :func:`contact_kernel`; returns the new event count."""
    f = raw - state[_BASE]
    if zero_tau_s > 0.0 and state[_IN] < 0.5 and f < off_n and state[_HAVE_PREV] > 0.5:
        dt = (t - state[_PREV_T]) / 1e9
        k = dt / zero_tau_s
        if k > 1.0:
            k = 1.0
        if k > 0.0 and math.isfinite(raw):
            state[_BASE] += k * (raw - state[_BASE])
            f = raw - state[_BASE]
    have_prev = state[_HAVE_PREV] > 0.5
    pt = state[_PREV_T] if have_prev else t
    pf = state[_PREV_F] if have_prev else f
    if state[_IN] < 0.5:
        if f >= on_n and (not have_prev or pf < on_n):
            ic = _cross(pt, pf, t, f, on_n) if have_prev else t
            if ic - state[_LAST_TO] >= min_swing_ns:
                state[_IN] = 1.0
                state[_IC] = ic
                state[_PEAK] = f
                n_ev = emit(events, n_ev, EV_IC, ic, ic, f)
    else:
        if f > state[_PEAK]:
            state[_PEAK] = f
        if f < off_n:
            to = _cross(pt, pf, t, f, off_n)
            state[_IN] = 0.0
            kind = EV_TO if to - state[_IC] >= min_stance_ns else EV_SHORT
            if kind == EV_TO:
                state[_LAST_TO] = to
            n_ev = emit(events, n_ev, kind, to, state[_IC], state[_PEAK])
    state[_PREV_T] = t
    state[_PREV_F] = f
    state[_HAVE_PREV] = 1.0
    return n_ev


@njit(**JIT)
def contact_cells_kernel(times_ns: np.ndarray, cells: np.ndarray, scale: np.ndarray, on_n: float, off_n: float,
                         min_stance_ns: float, min_swing_ns: float, state: np.ndarray, events: np.ndarray,
                         zero_tau_s: float, keep: bool, ring_t: np.ndarray, ring_d: np.ndarray,
                         ring_bounds: np.ndarray) -> int:
    """Sum the (scaled) cells of each sample and run :func:`contact_kernel` on the total: one
    call per insole frame, no temporary arrays. With ``keep`` the raw samples are also appended
    to a :class:`~poserun.processors.ring.SampleRing`'s buffer. Returns the event count, -1 when
    the ring needs room first (nothing done), -2 when the cells do not match ``scale``."""
    if cells.shape[1] != scale.shape[0]:
        return -2
    if keep and not append_rows(times_ns, cells, ring_t, ring_d, ring_bounds):
        return -1
    n_ev = 0
    for i in range(times_ns.shape[0]):
        acc = 0.0
        for j in range(cells.shape[1]):
            acc += cells[i, j] * scale[j]
        n_ev = _contact_step(float(times_ns[i]), acc, on_n, off_n, min_stance_ns, min_swing_ns, state, events,
                             n_ev, zero_tau_s)
    return n_ev


@dataclass
class ContactDetector:
    """Streaming contact detection for one foot. Thresholds in body weights."""

    body_weight_n: float
    on_bw: float = 0.10
    off_bw: float = 0.05
    min_stance_s: float = 0.08
    min_swing_s: float = 0.10
    zero_tau_s: float = 0.0  # > 0: track a drifting zero (see contact_kernel)
    state: np.ndarray = field(default_factory=new_state)
    short_contacts: int = 0
    _events: np.ndarray = field(default_factory=lambda: np.empty((64, 4)), repr=False)

    def __post_init__(self) -> None:
        if not self.body_weight_n > 0:
            raise ValueError("body_weight_n must be positive")
        if not 0 < self.off_bw <= self.on_bw:
            raise ValueError("need 0 < off_bw <= on_bw")

    def update(self, times_ns: np.ndarray, force_n: np.ndarray) -> np.ndarray:
        """Feed samples; return event rows (kind, time_ns, ic_ns, peak_n) as float64."""
        times = np.ascontiguousarray(times_ns, dtype=np.int64)
        force = np.ascontiguousarray(force_n, dtype=np.float64)
        if times.shape != force.shape:
            raise ValueError("times and force must have the same length")
        events = np.empty((times.shape[0] + 1, 4))
        n = contact_kernel(times, force, self.on_bw * self.body_weight_n,
                           self.off_bw * self.body_weight_n, self.min_stance_s * 1e9,
                           self.min_swing_s * 1e9, self.state, events, self.zero_tau_s)
        out = events[:n]
        self.short_contacts += int(np.sum(out[:, 0] == EV_SHORT))
        return out

    def update_cells(self, times_ns: np.ndarray, cells: np.ndarray, scale: np.ndarray) -> np.ndarray:
        """Like :meth:`update` with the force summed from cell values times ``scale`` (N per unit)."""
        return self.cells_updater(scale)(times_ns, cells)

    def cells_updater(self, scale: np.ndarray, ring: SampleRing | None = None
                      ) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        """:meth:`update_cells` for one ``scale``, with its constants bound once (the per-frame
        path of an insole, where a Python attribute lookup costs as much as the kernel's work);
        with ``ring``, the kernel also keeps the raw samples there."""
        on_n, off_n = self.on_bw * self.body_weight_n, self.off_bw * self.body_weight_n
        min_stance_ns, min_swing_ns, zero_tau_s = self.min_stance_s * 1e9, self.min_swing_s * 1e9, self.zero_tau_s
        state = self.state
        keep = ring is not None
        no_ring = SampleRing(capacity=8, width=scale.shape[0])
        target = ring if ring is not None else no_ring

        def update(times_ns: np.ndarray, cells: np.ndarray) -> np.ndarray:
            buf = self._events
            if buf.shape[0] <= len(times_ns):
                buf = self._events = np.empty((len(times_ns) + 1, 4))
            n = contact_cells_kernel(times_ns, cells, scale, on_n, off_n, min_stance_ns, min_swing_ns, state, buf,
                                     zero_tau_s, keep, target.times, target.data, target.bounds)
            if n < 0:
                if n == -2 or cells.shape[1] != target.data.shape[1] or len(times_ns) == 0:
                    raise ValueError(f"{cells.shape[1]} cells, the insole's layout has {scale.shape[0]}")
                target.make_room(len(times_ns), int(times_ns[-1]))
                n = contact_cells_kernel(times_ns, cells, scale, on_n, off_n, min_stance_ns, min_swing_ns, state,
                                         buf, zero_tau_s, keep, target.times, target.data, target.bounds)
            if n == 0:
                return _NO_EVENTS
            out = buf[:n].copy()
            self.short_contacts += int(np.sum(out[:, 0] == EV_SHORT))
            return out
        return update
