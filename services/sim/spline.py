"""Piecewise quintic Hermite curves: position, velocity and acceleration at any time.

Each knot fixes (time, value, rate, second rate), so a trajectory built from
knots is smooth enough for an accelerometer to be its second derivative and
for strapdown integration to give back the true velocity.
"""

from __future__ import annotations

import numpy as np


def quintic_coeffs(
    p0: float, v0: float, a0: float, p1: float, v1: float, a1: float, dt: float
) -> np.ndarray:
    """Coefficients c0..c5 in the local time u in [0, dt]."""
    t2, t3, t4, t5 = dt * dt, dt**3, dt**4, dt**5
    c0, c1, c2 = p0, v0, a0 / 2.0
    m = np.array([[t3, t4, t5], [3 * t2, 4 * t3, 5 * t4], [6 * dt, 12 * t2, 20 * t3]])
    rhs = np.array([
        p1 - (c0 + c1 * dt + c2 * t2),
        v1 - (c1 + 2 * c2 * dt),
        a1 - 2 * c2,
    ])
    c3, c4, c5 = np.linalg.solve(m, rhs)
    return np.array([c0, c1, c2, c3, c4, c5])


class KnotCurve:
    """A curve defined by knots appended in time order; old knots can be dropped."""

    def __init__(self) -> None:
        self._t: list[float] = []
        self._knots: list[tuple[float, float, float]] = []
        self._coeffs: list[np.ndarray] = []

    def add(self, t: float, p: float, v: float = 0.0, a: float = 0.0) -> None:
        if self._t and t <= self._t[-1]:
            raise ValueError(f"knot at {t} is not after {self._t[-1]}")
        if self._t:
            p0, v0, a0 = self._knots[-1]
            self._coeffs.append(quintic_coeffs(p0, v0, a0, p, v, a, t - self._t[-1]))
        self._t.append(t)
        self._knots.append((p, v, a))

    @property
    def end(self) -> float:
        return self._t[-1] if self._t else float("-inf")

    def drop_before(self, t: float) -> None:
        """Forget segments that end before ``t`` (bounded memory)."""
        k = 0
        while k + 1 < len(self._t) and self._t[k + 1] < t:
            k += 1
        if k:
            del self._t[:k], self._knots[:k], self._coeffs[:k]

    def eval(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(position, velocity, acceleration) at ``times`` (held flat outside the knots)."""
        times = np.asarray(times, dtype=float)
        n = len(self._coeffs)
        if n == 0:
            p = self._knots[0][0] if self._knots else 0.0
            return np.full_like(times, p), np.zeros_like(times), np.zeros_like(times)
        starts = np.asarray(self._t)
        idx = np.clip(np.searchsorted(starts, times, side="right") - 1, 0, n - 1)
        u = np.clip(times - starts[idx], 0.0, starts[idx + 1] - starts[idx])
        c = np.asarray(self._coeffs)[idx]
        p = c[:, 0] + u * (c[:, 1] + u * (c[:, 2] + u * (c[:, 3] + u * (c[:, 4] + u * c[:, 5]))))
        v = c[:, 1] + u * (2 * c[:, 2] + u * (3 * c[:, 3] + u * (4 * c[:, 4] + u * 5 * c[:, 5])))
        a = 2 * c[:, 2] + u * (6 * c[:, 3] + u * (12 * c[:, 4] + u * 20 * c[:, 5]))
        return p, v, a
