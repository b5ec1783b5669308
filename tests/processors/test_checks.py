"""GravityCheck: an accelerometer's declared unit against the gravity its mean must show."""

from __future__ import annotations

import numpy as np
import pytest

from poserun.processors.checks import G, GravityCheck


def swinging_segment(seconds: float = 12.0, rate: float = 200.0) -> tuple[np.ndarray, np.ndarray]:
    """A shank swinging +-50 degrees at 1.4 Hz with impacts: specific force in m/s^2."""
    t = np.arange(0, seconds, 1 / rate)
    angle = np.radians(50) * np.sin(2 * np.pi * 1.4 * t)
    acc = np.stack([G * np.sin(angle), np.zeros_like(t), G * np.cos(angle)], axis=1)
    acc[::140, 2] += 8 * G  # an impact now and then
    return np.round(t * 1e9).astype(np.int64), acc


@pytest.mark.parametrize(("scale", "to_si", "wrong"), [(1.0, 1.0, False), (1 / G, G, False),
                                                       (1 / G, 1.0, True), (1.0, G, True)])
def test_a_wrong_unit_is_flagged_once(scale: float, to_si: float, wrong: bool) -> None:
    t, acc = swinging_segment()
    check = GravityCheck(to_si)
    verdicts = [check.feed(t[k:k + 40], acc[k:k + 40] * scale) for k in range(0, len(t), 40)]
    assert sum(verdicts) == (1 if wrong else 0) and check.done
    assert check.mean_g is not None and (0.3 <= check.mean_g <= 3.0) != wrong


def test_nothing_is_said_before_the_span_or_on_nan() -> None:
    t, acc = swinging_segment(seconds=5.0)
    check = GravityCheck(1.0)
    assert not check.feed(t, acc / G) and not check.done  # 5 s < 10 s: no verdict yet
    nan = np.full((10, 3), np.nan)
    assert not GravityCheck(1.0, seconds=0.0).feed(np.arange(10), nan)
