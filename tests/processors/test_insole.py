from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from poserun.processors.insole import N_OUT, InsoleLayout, stance_metrics, stance_metrics_kernel
from poserun.services.sim.profiles import get_profile
from poserun.services.sim.runner import INSOLE_CELLS, AthleteSpec, SimRunner
from tests.processors.reference import insole_metrics

LAYOUT = InsoleLayout.from_meta([c[0] for c in INSOLE_CELLS], [(c[1], c[2]) for c in INSOLE_CELLS], None, "N")
BW = 70 * 9.81


def sim_stance(profile: str, seed: int = 1) -> tuple[np.ndarray, np.ndarray, float, float]:
    r = SimRunner(AthleteSpec("a", "A", get_profile(profile), seed=seed, body_mass_kg=70))
    r.advance(10)
    s = next(s for s in r.stances if s.foot == "left" and s.ic > 3)
    t = np.arange(int(s.ic * 100) - 2, int(s.to * 100) + 3) / 100
    return np.round(t * 1e9).astype(np.int64), r.insole("left", t), s.ic * 1e9, s.to * 1e9


@pytest.mark.parametrize("profile", ["pose", "heel_striker", "slow_cadence", "forced_lander"])
def test_kernel_equals_reference(profile: str) -> None:
    t, cells, ic, to = sim_stance(profile)
    out = np.empty(N_OUT)
    stance_metrics_kernel(t, cells, LAYOUT.region, LAYOUT.along, ic, to, 0.1 * BW, 0.05 * BW, BW, out)
    ref = insole_metrics(t.tolist(), cells.tolist(), LAYOUT.region.tolist(), LAYOUT.along.tolist(), ic, to,
                         0.1 * BW, 0.05 * BW, BW)
    got = dict(zip(["strike", "cop", "heel_contact", "heel_frac", "ball_frac", "_", "release_s",
                    "release_ratio", "toe_pushoff", "loading_rate", "peak"], out, strict=True))
    for key, value in ref.items():
        assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-9), key


def test_profiles_are_told_apart() -> None:
    pose = stance_metrics(*_args("pose"))
    heel = stance_metrics(*_args("heel_striker"))
    mid = stance_metrics(*_args("slow_cadence"))
    assert pose["strike_zone"] == "ball" and heel["strike_zone"] == "heel" and mid["strike_zone"] == "midfoot"
    assert pose["heel_contact"] is False and heel["heel_contact"] is True
    assert pose["toe_pushoff_fraction"] < 0.25 < heel["toe_pushoff_fraction"]
    assert pose["ball_load_fraction"] > heel["ball_load_fraction"]
    assert pose["release_ratio"] > heel["release_ratio"]  # the pull comes early
    assert 0.6 < pose["cop_ic_fraction"] < 0.8 and heel["cop_ic_fraction"] < 0.2
    assert 2.0 < pose["peak_force_bw"] < 3.2


def _args(profile: str) -> tuple[object, ...]:
    t, cells, ic, to = sim_stance(profile)
    return t, cells, LAYOUT, ic, to, BW


def test_unsupported_stance_gives_nulls() -> None:
    t = np.array([0, 10_000_000], dtype=np.int64)
    m = stance_metrics(t, np.zeros((2, 16)), LAYOUT, 0, 10_000_000, BW)
    assert all(v is None for v in m.values())
    with pytest.raises(ValueError):
        stance_metrics(t, np.zeros((2, 15)), LAYOUT, 0, 1, BW)


def test_kpa_layout_converts_to_newtons() -> None:
    lay = InsoleLayout.from_meta(["heel", "ball"], [(0.1, 0), (0.7, 0)], [0.001, 0.002], "kPa")
    np.testing.assert_allclose(lay.newtons(np.array([[100.0, 50.0]])), [[100.0, 100.0]])


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float32, st.tuples(st.integers(0, 30), st.just(16)),  # what the wire carries
                  elements=st.floats(allow_nan=True, allow_infinity=True, width=32)),
       st.floats(-1e9, 1e9), st.floats(-1e9, 1e9))
def test_any_input_never_crashes(cells: np.ndarray, ic: float, to: float) -> None:
    t = np.arange(len(cells), dtype=np.int64) * 10_000_000
    m = stance_metrics(t, cells, LAYOUT, ic, to, BW)
    assert set(m) >= {"strike_zone", "release_ratio", "loading_rate_bw_per_s"}
    if np.isfinite(cells).all():
        for v in m.values():
            assert v is None or isinstance(v, bool | str) or math.isfinite(v)
