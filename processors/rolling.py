"""Rolling statistics over an athlete's recent contacts: steps, cadence, L/R symmetry.

The record builders only read these; the coordinator updates them: a landing's step number
comes from :meth:`Rolling.landed`, a stance's metrics go into the symmetry history
(:meth:`Rolling.symmetry`, which returns the symmetry) and its IC and TO into
:meth:`Rolling.stood`.
"""

from __future__ import annotations

import itertools
from collections import deque
from statistics import median

SYMMETRY_METRICS = ("support_time_s", "flight_time_s", "loading_rate_bw_per_s", "ball_load_fraction",
                    "release_ratio", "toe_pushoff_fraction", "impact_peak_g", "foot_landing_velocity_mps",
                    "overstride_m", "knee_flexion_ic_deg", "pull_height_m")
SYMMETRY_STANCES = 8  # stances per side in the symmetry means


class Rolling:
    """Steps so far, the last IC and TO per foot, the recent ICs (cadence) and the recent
    values of each symmetry metric per foot."""

    def __init__(self, cadence_window_steps: int = 8) -> None:
        self.steps = 0
        self.last_ic: dict[str, float] = {}
        self.last_to: dict[str, float] = {}
        self._ics: deque[tuple[float, str]] = deque(maxlen=max(cadence_window_steps + 1, 3))
        self._history: dict[tuple[str, str], deque[float]] = {}

    def landed(self, ic_ns: float, foot: str) -> int:
        """A landing: its step number."""
        self.steps += 1
        self._ics.append((ic_ns, foot))
        return self.steps

    def stood(self, foot: str, ic_ns: float, to_ns: float) -> None:
        """A stance is complete."""
        self.last_ic[foot] = ic_ns
        self.last_to[foot] = to_ns

    def cadence_spm(self) -> float | None:
        """Rolling median cadence over the last N steps (alternating feet only)."""
        ics = list(self._ics)
        steps = [
            (b[0] - a[0]) / 1e9 for a, b in itertools.pairwise(ics)
            if a[1] != b[1] and 0.15 < (b[0] - a[0]) / 1e9 < 1.5
        ]
        if steps:
            return round(60.0 / median(steps), 1)
        # one foot instrumented: two steps per stride of that foot
        strides = [(b[0] - a[0]) / 1e9 for a, b in itertools.pairwise(ics)
                   if a[1] == b[1] and 0.3 < (b[0] - a[0]) / 1e9 < 3.0]
        return round(120.0 / median(strides), 1) if strides else None

    def symmetry(self, foot: str, metrics: dict[str, object]) -> dict[str, float]:
        """Add a stance's metrics to its foot's history; 100 x (L - R) / mean per metric over the
        last stances of each side (metrics with both sides only)."""
        out: dict[str, float] = {}
        for metric in SYMMETRY_METRICS:
            value = metrics.get(metric)
            if isinstance(value, int | float) and not isinstance(value, bool):
                key = (foot, metric)
                history = self._history.get(key)
                if history is None:
                    history = self._history[key] = deque(maxlen=SYMMETRY_STANCES)
                history.append(float(value))
            left = self._history.get(("left", metric))
            right = self._history.get(("right", metric))
            if left and right:
                ml, mr = sum(left) / len(left), sum(right) / len(right)  # (np.mean costs 10 us a call)
                if abs(ml + mr) > 1e-9:
                    out[metric] = round(100.0 * (ml - mr) / (0.5 * (ml + mr)), 2)
        return out
