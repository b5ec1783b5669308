"""The OpenGo gateway's clock rule and cell forces (no sockets)."""

from __future__ import annotations

import numpy as np

from poserun.services.gateway_moticon import ClockMap, cell_forces
from poserun.services.moticon_parse import Sample


def at(t: float, epoch: int = 0) -> Sample:
    return Sample(t, epoch, {})


def test_insole_time_from_the_least_delayed_arrival() -> None:
    c = ClockMap()
    assert c.map(at(5.00), 1_000_000_000) == 1_000_000_000
    assert c.map(at(5.01), 1_030_000_000) == 1_010_000_000  # delayed: the insoles' own time
    assert c.map(at(5.02), 1_031_000_000) == 1_020_000_000
    assert c.map(at(5.05), 1_040_000_000) == 1_040_000_000  # less delayed than the first: anchor moves back
    assert c.map(at(5.06), 1_090_000_000) == 1_050_000_000
    assert c.map(at(0.00, epoch=1), 2_000_000_000) == 2_000_000_000  # a reset anchors anew


def test_cell_forces_add_up_to_the_total_force() -> None:
    p = np.array([1.0, 3.0] + [0.0] * 14)
    assert np.allclose(cell_forces(p, 200.0)[:2], [50.0, 150.0])
    assert not cell_forces(np.zeros(16), 10.0).any()
