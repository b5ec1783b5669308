"""Foot IMU kernels: stationary phases, strapdown integration with zero-velocity
updates, and the impact at initial contact.

The foot's vertical velocity just before IC (rule R4, forced landing) comes
from integrating gravity-free acceleration in the world frame from the last
stationary (mid-stance) moment, where velocity is known to be zero and the
accelerometer gives the tilt. Orientation is propagated with the gyroscope
as a quaternion. Samples are in the body convention (x forward, y left,
z up when standing, SI units): :func:`to_body` converts using the meta.
The kernel carries its state across calls, so chunking does not matter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from poserun.processors.events import emit
from poserun.processors.jit import JIT

G = 9.80665
_DIRS = {"forward": (0, 1.0), "backward": (0, -1.0), "left": (1, 1.0), "right": (1, -1.0),
         "up": (2, 1.0), "down": (2, -1.0)}

# state slots
(_QW, _QX, _QY, _QZ, _VX, _VY, _VZ, _STILL_N, _HAVE, _PREV_T, _INIT) = range(11)
STATE_SIZE = 11


def axes_matrix(axes: dict[str, str]) -> np.ndarray:
    """3x3 matrix taking sensor (x, y, z) to body (forward, left, up) from the meta's axes."""
    m = np.zeros((3, 3))
    for col, axis in enumerate("xyz"):
        row, sign = _DIRS[axes[axis]]
        m[row, col] = sign
    return m


def to_body(data: np.ndarray, axes: dict[str, str], accel_unit: str, gyro_unit: str) -> np.ndarray:
    """(n, 6) accel m/s^2 + gyro rad/s in body axes, from raw IMU channels (3 or more)."""
    m = axes_matrix(axes)
    raw = np.asarray(data, dtype=np.float64)
    acc = raw[:, 0:3] * (G if accel_unit == "g" else 1.0)
    out = np.zeros((raw.shape[0], 6))
    out[:, 0:3] = acc @ m.T
    if raw.shape[1] >= 6:
        gyr = raw[:, 3:6] * (math.pi / 180.0 if gyro_unit == "deg/s" else 1.0)
        out[:, 3:6] = gyr @ m.T
    return out


@njit(**JIT)
def _qmul(a0: float, a1: float, a2: float, a3: float, b0: float, b1: float, b2: float,
          b3: float) -> tuple[float, float, float, float]:
    return (a0 * b0 - a1 * b1 - a2 * b2 - a3 * b3,
            a0 * b1 + a1 * b0 + a2 * b3 - a3 * b2,
            a0 * b2 - a1 * b3 + a2 * b0 + a3 * b1,
            a0 * b3 + a1 * b2 - a2 * b1 + a3 * b0)


@njit(**JIT)
def _tilt_quat(ax: float, ay: float, az: float) -> tuple[float, float, float, float]:
    """Quaternion rotating the measured gravity direction onto world up (no yaw)."""
    norm = math.sqrt(ax * ax + ay * ay + az * az)
    if norm < 1e-9:
        return 1.0, 0.0, 0.0, 0.0
    ux, uy, uz = ax / norm, ay / norm, az / norm
    # rotation from u to (0, 0, 1): axis u x z, angle acos(u . z)
    cx, cy = uy, -ux
    s = math.sqrt(cx * cx + cy * cy)
    if s < 1e-12:
        return (1.0, 0.0, 0.0, 0.0) if uz > 0 else (0.0, 1.0, 0.0, 0.0)
    angle = math.atan2(s, uz)
    h = 0.5 * angle
    k = math.sin(h) / s
    return math.cos(h), cx * k, cy * k, 0.0


@njit(**JIT)
def strapdown_kernel(times_ns: np.ndarray, imu: np.ndarray, still_acc: float, still_gyr: float,
                     still_min: int, state: np.ndarray, vz_out: np.ndarray, still_out: np.ndarray,
                     dev_out: np.ndarray, awz_out: np.ndarray) -> None:
    """Per sample: world vertical velocity (m/s, up +), stationary flag, |acc| - g, and the
    world vertical acceleration without gravity (m/s^2, up +; NaN before the first stationary phase)."""
    for i in range(times_ns.shape[0]):
        ax, ay, az = imu[i, 0], imu[i, 1], imu[i, 2]
        gx, gy, gz = imu[i, 3], imu[i, 4], imu[i, 5]
        if not (math.isfinite(ax) and math.isfinite(ay) and math.isfinite(az)
                and math.isfinite(gx) and math.isfinite(gy) and math.isfinite(gz)):
            vz_out[i] = np.nan
            still_out[i] = 0
            dev_out[i] = np.nan
            awz_out[i] = np.nan
            state[_STILL_N] = 0.0
            continue
        t = float(times_ns[i])
        amag = math.sqrt(ax * ax + ay * ay + az * az)
        gmag = math.sqrt(gx * gx + gy * gy + gz * gz)
        dev_out[i] = amag - G
        quiet = abs(amag - G) < still_acc and gmag < still_gyr
        state[_STILL_N] = state[_STILL_N] + 1.0 if quiet else 0.0
        still = state[_STILL_N] >= still_min
        awz_out[i] = np.nan
        if still:
            q = _tilt_quat(ax, ay, az)
            state[_QW], state[_QX], state[_QY], state[_QZ] = q[0], q[1], q[2], q[3]
            state[_VX] = 0.0
            state[_VY] = 0.0
            state[_VZ] = 0.0
            state[_INIT] = 1.0
        elif state[_INIT] > 0.5 and state[_HAVE] > 0.5:
            dt = (t - state[_PREV_T]) / 1e9
            if 0.0 < dt < 0.1:
                # propagate orientation with the body rate (first-order quaternion step)
                h = 0.5 * dt
                dq = _qmul(state[_QW], state[_QX], state[_QY], state[_QZ], 1.0, gx * h, gy * h, gz * h)
                nq = math.sqrt(dq[0] ** 2 + dq[1] ** 2 + dq[2] ** 2 + dq[3] ** 2)
                state[_QW], state[_QX], state[_QY], state[_QZ] = (dq[0] / nq, dq[1] / nq,
                                                                  dq[2] / nq, dq[3] / nq)
                qw, qx, qy, qz = state[_QW], state[_QX], state[_QY], state[_QZ]
                # world acceleration: rotate the specific force, remove gravity
                wx = (1 - 2 * (qy * qy + qz * qz)) * ax + 2 * (qx * qy - qw * qz) * ay + 2 * (qx * qz + qw * qy) * az
                wy = 2 * (qx * qy + qw * qz) * ax + (1 - 2 * (qx * qx + qz * qz)) * ay + 2 * (qy * qz - qw * qx) * az
                wz = 2 * (qx * qz - qw * qy) * ax + 2 * (qy * qz + qw * qx) * ay + (1 - 2 * (qx * qx + qy * qy)) * az
                state[_VX] += wx * dt
                state[_VY] += wy * dt
                state[_VZ] += (wz - G) * dt
                awz_out[i] = wz - G
        vz_out[i] = state[_VZ] if state[_INIT] > 0.5 else np.nan
        still_out[i] = 1 if still else 0
        state[_PREV_T] = t
        state[_HAVE] = 1.0


def new_state() -> np.ndarray:
    s = np.zeros(STATE_SIZE)
    s[_QW] = 1.0
    return s


@dataclass
class FootImu:
    """Streaming foot IMU processing; keeps per-sample vertical velocity for lookups."""

    rate_hz: float
    still_acc: float = 1.5  # m/s^2 around g
    still_gyr: float = 0.8  # rad/s
    still_ms: float = 15.0
    state: np.ndarray = field(default_factory=new_state)

    @property
    def still_min(self) -> int:
        return max(2, round(self.still_ms / 1000.0 * self.rate_hz))

    def update(self, times_ns: np.ndarray, imu_body: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(vertical velocity, stationary flag, |acc| - g, world vertical acceleration) per sample."""
        n = len(times_ns)
        vz = np.empty(n)
        still = np.empty(n, dtype=np.int8)
        dev = np.empty(n)
        awz = np.empty(n)
        strapdown_kernel(np.ascontiguousarray(times_ns, dtype=np.int64),
                         np.ascontiguousarray(imu_body, dtype=np.float64), self.still_acc, self.still_gyr,
                         self.still_min, self.state, vz, still, dev, awz)
        return vz, still, dev, awz


def landing_velocity(times_ns: np.ndarray, vz: np.ndarray, ic_ns: float, lead_ns: float = 3_000_000) -> float | None:
    """Downward foot velocity (m/s, positive down) at the last sample ``lead_ns`` before IC."""
    m = (times_ns <= ic_ns - lead_ns) & (times_ns >= ic_ns - 50_000_000)
    if not m.any():
        return None
    v = float(vz[m][-1])
    return None if math.isnan(v) else -v


def impact_peak_g(times_ns: np.ndarray, dev: np.ndarray, ic_ns: float, window_ns: float = 40_000_000) -> float | None:
    """Largest |acc| - g (in g) in the first ``window_ns`` after IC."""
    m = (times_ns >= ic_ns) & (times_ns <= ic_ns + window_ns)
    if not m.any():
        return None
    v = dev[m]
    v = v[np.isfinite(v)]
    return round(float(v.max() + G) / G, 2) if len(v) else None


# ---------------------------------------------------------------- events

# event-detector state slots
(_E_MODE, _E_IC, _E_STILL_SEEN, _E_PEAK, _E_PEAK_T, _E_PEAK_PREV, _E_LAST_TO, _E_PREV_G, _E_AFTER,
 _E_VZ_MIN) = range(10)
_HIST = 10  # slots 10..: ring of the last 4 (time, acceleration) pairs, then its count
EV_STATE_SIZE = _HIST + 9
_SWING, _STANCE = 1.0, 2.0


def new_event_state() -> np.ndarray:
    s = np.zeros(EV_STATE_SIZE)
    s[_E_LAST_TO] = -1e30
    return s


@njit(**JIT)
def foot_events_kernel(times_ns: np.ndarray, awz: np.ndarray, vz: np.ndarray, pitch_rate: np.ndarray,
                       still: np.ndarray, ic_high: float, ic_low: float, to_min: float, min_swing_ns: float,
                       state: np.ndarray, events: np.ndarray) -> int:
    """IC: while the foot descends (vz < -0.2 m/s), the world vertical acceleration rises through
    ``ic_high`` (the impact); IC is where it crossed ``ic_low`` just before (interpolated).
    TO: the peak of the toes-down pitch rate after a stationary phase (parabolic refine).
    Rows: (kind 1 IC / 2 TO, time, ic, peak)."""
    n_ev = 0
    for i in range(times_ns.shape[0]):
        t = float(times_ns[i])
        a = awz[i]
        w = pitch_rate[i]
        if not math.isfinite(w):
            continue
        mode = state[_E_MODE]
        if mode == 0.0:
            if w > to_min:
                state[_E_MODE] = _SWING
                state[_E_LAST_TO] = t
                state[_E_VZ_MIN] = 0.0
        elif mode == _SWING:
            v = vz[i]
            if math.isfinite(v) and v < state[_E_VZ_MIN]:
                state[_E_VZ_MIN] = v
            if math.isfinite(a) and a >= ic_high and state[_E_VZ_MIN] < -0.2 \
                    and t - state[_E_LAST_TO] >= min_swing_ns:
                # walk back through the recent samples to the low-threshold crossing
                ic = t
                pt, pa = t, a
                count = int(state[_HIST + 8])
                for k in range(count):
                    j = (count - 1 - k)
                    ht = state[_HIST + 2 * j]
                    ha = state[_HIST + 2 * j + 1]
                    if ha < ic_low:
                        frac = (ic_low - ha) / (pa - ha) if pa != ha else 1.0
                        ic = ht + frac * (pt - ht)
                        break
                    pt, pa = ht, ha
                    ic = ht
                state[_E_MODE] = _STANCE
                state[_E_IC] = ic
                state[_E_STILL_SEEN] = 0.0
                state[_E_PEAK] = 0.0
                state[_E_AFTER] = 0.0
                n_ev = emit(events, n_ev, 1.0, ic, ic, a)
        else:  # stance: wait for a stationary phase, then the pitch-rate peak of the push
            if still[i] == 1:
                state[_E_STILL_SEEN] = 1.0
            elif state[_E_STILL_SEEN] > 0.5:
                if w > state[_E_PEAK]:
                    state[_E_PEAK] = w
                    state[_E_PEAK_T] = t
                    state[_E_PEAK_PREV] = state[_E_PREV_G]
                elif state[_E_PEAK] > to_min:
                    y0, y1, y2 = state[_E_PEAK_PREV], state[_E_PEAK], w
                    dt = t - state[_E_PEAK_T]
                    den = y0 - 2.0 * y1 + y2
                    off = 0.5 * (y0 - y2) / den if den != 0.0 else 0.0
                    off = min(0.5, max(-0.5, off))
                    to = state[_E_PEAK_T] + off * dt
                    state[_E_MODE] = _SWING
                    state[_E_LAST_TO] = to
                    state[_E_VZ_MIN] = 0.0
                    n_ev = emit(events, n_ev, 2.0, to, state[_E_IC], state[_E_PEAK])
            if t - state[_E_IC] > 1.5e9:  # no push-off found: give the stance up
                state[_E_MODE] = _SWING
                state[_E_LAST_TO] = t
                state[_E_VZ_MIN] = 0.0
        # history of (time, world vertical acceleration), newest last
        if math.isfinite(a):
            count = int(state[_HIST + 8])
            if count == 4:
                for k in range(3):
                    state[_HIST + 2 * k] = state[_HIST + 2 * k + 2]
                    state[_HIST + 2 * k + 1] = state[_HIST + 2 * k + 3]
                count = 3
            state[_HIST + 2 * count] = t
            state[_HIST + 2 * count + 1] = a
            state[_HIST + 8] = count + 1
        state[_E_PREV_G] = w
    return n_ev


@njit(**JIT)
def foot_imu_kernel(times_ns: np.ndarray, raw: np.ndarray, matrix: np.ndarray, still_acc: float,
                    still_gyr: float, still_min: int, sd_state: np.ndarray, ic_high: float, ic_low: float,
                    to_min: float, min_swing_ns: float, ev_state: np.ndarray, cols: np.ndarray,
                    events: np.ndarray) -> int:
    """A batch of one foot IMU in one call: raw samples to the body frame in SI units
    (``raw @ matrix``, accelerometer-only rows using its first three rows), then
    :func:`strapdown_kernel` and :func:`foot_events_kernel`. ``cols`` receives (vertical
    velocity, stationary flag, |acc| - g, world vertical acceleration) per sample; the
    event rows go to ``events``, their count is returned."""
    n = times_ns.shape[0]
    k = 6 if raw.shape[1] >= 6 else 3
    body = np.empty((n, 6))
    for i in range(n):
        for j in range(6):
            acc = 0.0
            for m in range(k):
                acc += raw[i, m] * matrix[m, j]
            body[i, j] = acc
    vz = np.empty(n)
    still = np.empty(n, dtype=np.int8)
    dev = np.empty(n)
    awz = np.empty(n)
    strapdown_kernel(times_ns, body, still_acc, still_gyr, still_min, sd_state, vz, still, dev, awz)
    pitch = np.empty(n)
    for i in range(n):
        cols[i, 0] = vz[i]
        cols[i, 1] = still[i]
        cols[i, 2] = dev[i]
        cols[i, 3] = awz[i]
        pitch[i] = body[i, 4]
    return foot_events_kernel(times_ns, awz, vz, pitch, still, ic_high, ic_low, to_min, min_swing_ns,
                              ev_state, events)


@dataclass
class FootEvents:
    """Streaming IC/TO detection from a foot IMU (used when the foot has no insole)."""

    ic_high: float = 4.0 * G  # world vertical acceleration of the impact, m/s^2
    ic_low: float = 1.0 * G
    to_min: float = 3.0  # rad/s, toes-down pitch rate at push-off
    min_swing_s: float = 0.10
    state: np.ndarray = field(default_factory=new_event_state)

    def update(self, times_ns: np.ndarray, awz: np.ndarray, vz: np.ndarray, pitch_rate: np.ndarray,
               still: np.ndarray) -> np.ndarray:
        events = np.empty((len(times_ns) + 1, 4))
        n = foot_events_kernel(np.ascontiguousarray(times_ns, dtype=np.int64), np.ascontiguousarray(awz),
                               np.ascontiguousarray(vz), np.ascontiguousarray(pitch_rate, dtype=np.float64),
                               np.ascontiguousarray(still, dtype=np.int8), self.ic_high, self.ic_low,
                               self.to_min, self.min_swing_s * 1e9, self.state, events)
        return events[:n].copy()
