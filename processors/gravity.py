"""The gravity direction of a body-worn accelerometer, tracked as a slow average.

Shank and trunk sensors are worn at any tilt; over seconds their mean specific
force points up and is one g long (the average ground force is body weight), so
the detectors work along it without axis conventions.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from poserun.processors.jit import JIT


@njit(**JIT)
def track_gravity(state: np.ndarray, init_slot: int, prev_t_slot: int, t0_slot: int, t: float,
                  ax: float, ay: float, az: float, tau_s: float) -> None:
    """Fold one sample into the mean held in ``state[0:3]``: a running mean until ``tau_s``
    has passed since the first sample, then an exponential average over ``tau_s``. The
    caller keeps ``state[prev_t_slot]`` (the previous sample's time)."""
    if state[init_slot] < 0.5:
        state[0], state[1], state[2] = ax, ay, az
        state[init_slot] = 1.0
        state[t0_slot] = t
        return
    dt = (t - state[prev_t_slot]) / 1e9
    elapsed = (t - state[t0_slot]) / 1e9
    k = dt / tau_s if elapsed >= tau_s else (dt / (elapsed + dt) if elapsed + dt > 0.0 else 0.0)
    if not k > 0.0:
        k = 0.0
    elif k > 1.0:
        k = 1.0
    state[0] += k * (ax - state[0])
    state[1] += k * (ay - state[1])
    state[2] += k * (az - state[2])
