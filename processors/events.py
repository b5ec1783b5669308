"""The event rows every contact kernel writes: (kind, time ns, IC time ns, peak)."""

from __future__ import annotations

import numpy as np
from numba import njit

from poserun.processors.jit import JIT


@njit(**JIT)
def emit(events: np.ndarray, n_ev: int, kind: float, t: float, ic: float, peak: float) -> int:
    """Write one row if there is room; return the new row count."""
    if n_ev < events.shape[0]:
        events[n_ev, 0] = kind
        events[n_ev, 1] = t
        events[n_ev, 2] = ic
        events[n_ev, 3] = peak
        return n_ev + 1
    return n_ev
