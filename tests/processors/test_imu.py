from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poserun.processors.imu import FootEvents, FootImu, G, axes_matrix, impact_peak_g, landing_velocity, to_body
from poserun.services.sim.profiles import PROFILES, get_profile
from poserun.services.sim.runner import AthleteSpec, SimRunner
from tests.processors.reference import strapdown_vz


def sim(profile: str, seconds: float = 20.0, seed: int = 4) -> tuple[SimRunner, np.ndarray, np.ndarray]:
    r = SimRunner(AthleteSpec("a", "A", get_profile(profile), seed=seed))
    r.advance(seconds)
    t = np.arange(0.5, seconds - 1, 1 / 400)
    return r, np.round(t * 1e9).astype(np.int64), r.imu("left", t)


def test_strapdown_equals_reference() -> None:
    _, t, imu = sim("heel_striker", 4.0)
    vz, *_ = FootImu(400).update(t, imu)
    ref = strapdown_vz(t.tolist(), imu.tolist(), 1.5, 0.8, 6)
    np.testing.assert_allclose(vz, ref, rtol=1e-9, atol=1e-9)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 4000), max_size=12))
def test_streaming_equals_batch(cuts: list[int]) -> None:
    _, t, imu = sim("forced_lander", 12.0)
    batch_imu = FootImu(400)
    vz, still, _dev, awz = batch_imu.update(t, imu)
    ev_batch = FootEvents().update(t, awz, vz, imu[:, 4], still)
    s_imu, s_ev = FootImu(400), FootEvents()
    parts, evs = [], []
    edges = sorted({c for c in cuts if c < len(t)})
    for a, b in zip([0, *edges], [*edges, len(t)], strict=True):
        out = s_imu.update(t[a:b], imu[a:b])
        parts.append(out)
        evs.append(s_ev.update(t[a:b], out[3], out[0], imu[a:b, 4], out[1]))
    np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), vz)
    np.testing.assert_array_equal(np.concatenate(evs), ev_batch)


@pytest.mark.parametrize("profile", list(PROFILES))
def test_landing_velocity_and_ic_against_truth(profile: str) -> None:
    r, t, imu = sim(profile, 30.0)
    vz, still, dev, awz = FootImu(400).update(t, imu)
    ev = FootEvents().update(t, awz, vz, imu[:, 4], still)
    ics = ev[ev[:, 0] == 1, 1]
    v_err, ic_err = [], []
    for s in r.stances:
        if s.foot != "left" or not 3 < s.ic < 28:
            continue
        v_err.append(landing_velocity(t, vz, s.ic * 1e9) - s.v_land)
        ic_err.append((ics[np.argmin(np.abs(ics - s.ic * 1e9))] - s.ic * 1e9) / 1e6)
        assert impact_peak_g(t, dev, s.ic * 1e9) > 2.0
    assert np.mean(np.abs(v_err)) < 0.05  # m/s
    assert np.mean(np.abs(ic_err)) < 1.5  # ms, at 400 Hz


def test_axes_and_units() -> None:
    m = axes_matrix({"x": "down", "y": "left", "z": "forward"})
    np.testing.assert_array_equal(m @ np.array([1.0, 0, 0]), [0, 0, -1])
    body = to_body(np.array([[-1.0, 0.0, 0.5]]), {"x": "down", "y": "left", "z": "forward"}, "g", "rad/s")
    np.testing.assert_allclose(body[0, :3], [0.5 * G, 0, G])
    body = to_body(np.array([[0, 0, 9.8, 0, 180.0, 0]]), {"x": "forward", "y": "left", "z": "up"},
                   "m/s^2", "deg/s")
    assert body[0, 4] == pytest.approx(np.pi)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=6, max_size=6),
                max_size=200))
def test_any_samples_never_crash(rows: list[list[float]]) -> None:
    data = np.array(rows, dtype=np.float64).reshape(-1, 6)
    t = np.arange(len(data), dtype=np.int64) * 2_500_000
    vz, still, _dev, awz = FootImu(400).update(t, data)
    FootEvents().update(t, awz, vz, data[:, 4], still)
    assert len(vz) == len(data)


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(1, 3000), max_size=10), st.sampled_from(["g", "m/s^2"]), st.booleans(),
       st.sampled_from([np.float32, np.float64]))
def test_fused_kernel_equals_the_separate_steps(cuts: list[int], unit: str, with_gyro: bool, dtype: type) -> None:
    """The athlete's one-call IMU path (axes and units, strapdown, events) against the three
    steps it fuses, run on the whole trace in numpy and the separate kernels."""
    from poserun.processors.sources import FootImuSource

    _, t, imu = sim("forced_lander", 8.0)
    axes = {"x": "down", "y": "left", "z": "forward"}
    m = axes_matrix(axes)
    raw = imu.copy()
    raw[:, :3] = imu[:, :3] @ m.T / (G if unit == "g" else 1.0)  # what such a device would report
    raw[:, 3:] = imu[:, 3:] @ m.T
    if not with_gyro:
        raw = raw[:, :3]
    raw = raw.astype(dtype)  # (frames carry float32)
    ref = FootImuSource("left", axes, unit, "rad/s", FootImu(400), FootEvents())
    body = ref.to_body(raw)
    vz, still, dev, awz = ref.strapdown.update(t, body)
    ev_want = ref.events.update(t, awz, vz, body[:, 4], still)
    fused = FootImuSource("left", axes, unit, "rad/s", FootImu(400), FootEvents())
    edges = sorted({c for c in cuts if c < len(t)})
    evs = [rows for a, b in zip([0, *edges], [*edges, len(t)], strict=True)
           for _foot, rows in fused.feed(t[a:b], raw[a:b])]
    np.testing.assert_allclose(np.concatenate(evs) if evs else np.empty((0, 4)), ev_want, rtol=1e-9, atol=1e-6)
    got_t, cols = fused.ring.window(t[0], t[-1])
    np.testing.assert_array_equal(got_t, t)
    np.testing.assert_allclose(cols, np.column_stack((vz, still, dev, awz)), rtol=1e-9, atol=1e-9)
