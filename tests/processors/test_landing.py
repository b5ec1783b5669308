"""landing_record on its own: the forced-landing decision (foot velocity against ratio x body
velocity, beyond the measurement noise), the body's velocity from the camera hips, the flight model
g x flight / 2 (fused by inverse variance) or the configured oscillation, rounding and None, and
the record's keys against records.LandingRecord (processors/landing.py, docs/processor.md)."""

from __future__ import annotations

import math
import typing

import numpy as np
import pytest

from poserun.processors.landing import (
    CAMERA_BODY_SD,
    FLIGHT_BODY_SD,
    FOOT_SD,
    OSCILLATION_BODY_SD,
    landing_record,
)
from poserun.processors.records import KEYS, REQUIRED, LandingRecord

MS = 1_000_000
IC = 20_000_000_000  # 20 s
RATIO = 1.3
OSC = 0.05
G = 9.81  # g to the precision the tests need (the 3rd decimal of the values below is the same for 9.80665)
FLIGHT = 0.12  # s: the flight that ends at IC
FLIGHT_V = G * FLIGHT / 2  # 0.5886 m/s
OSC_V = math.sqrt(2 * G * OSC)  # 0.990 m/s


def imu_before(foot_v: float, ic: int = IC) -> tuple[np.ndarray, np.ndarray]:
    """A foot IMU's 60 ms before IC at 400 Hz: columns (vz up +, still, |a| - g, a_wz); the foot
    descends at ``foot_v`` until IC, the last 2.5 ms (the impact) read 0."""
    t = np.arange(ic - 60 * MS, ic + 1, 2_500_000, dtype=np.int64)
    cols = np.zeros((len(t), 4))
    cols[:, 0] = np.where(t <= ic - 3 * MS, -foot_v, 0.0)
    return t, cols


def camera_before(body_v: float, ankle_v: float, foot: str = "left", ic: int = IC,
                  fps: float = 100.0) -> tuple[np.ndarray, np.ndarray]:
    """Metric frames (times, (n, 8, 2) joints) of the 120 ms before IC: the hips in free fall
    reaching ``body_v`` (down) at IC, this foot's ankle coming down in a straight line at ``ankle_v``."""
    t = np.arange(ic - 120 * MS, ic + 1, round(1e9 / fps), dtype=np.int64)
    x = (t - ic) / 1e9
    pts = np.zeros((len(t), 8, 2))
    pts[:, :, 0] = 0.1
    hips = 0.95 - body_v * x - 0.5 * 9.80665 * x * x
    for j, z in ((0, hips), (1, 0.5), (3, 1.4), (4, hips), (5, 0.5), (7, 1.4), (2, 0.1), (6, 0.1)):
        pts[:, j, 1] = z
    ankle = 2 if foot == "left" else 6
    pts[:, ankle, 1] = 0.08 - ankle_v * x
    return t, pts


def record(*, imu: tuple[np.ndarray, np.ndarray] | None = None,
           keypoints: tuple[np.ndarray, np.ndarray] | None = None, other_to_ns: float | None = None,
           foot: str = "left", ratio: float = RATIO, osc: float = OSC) -> LandingRecord:
    return landing_record("ath", foot, float(IC), 7, "insole", imu=imu, keypoints=keypoints,
                          other_to_ns=other_to_ns, forced_landing_ratio=ratio, default_oscillation_m=osc)


def flight_to() -> float:
    return IC - FLIGHT * 1e9


def test_keys_are_the_landing_record_s() -> None:
    rec = record()
    # session and emitted_ns are the service's
    assert set(rec) == KEYS["landing"] - {"session", "emitted_ns", "id"}
    assert REQUIRED["landing"] - {"session", "emitted_ns", "id"} <= set(rec)
    hints = typing.get_type_hints(LandingRecord)
    assert set(rec) <= set(hints)


def test_identity_fields() -> None:
    rec = landing_record("ath-1", "right", IC + 0.7, 12, "imu_shank", imu=None, keypoints=None, other_to_ns=None,
                         forced_landing_ratio=RATIO, default_oscillation_m=OSC)
    assert rec["type"] == "landing"
    assert rec["athlete"] == "ath-1"
    assert rec["foot"] == "right"
    assert rec["ic_ns"] == IC and type(rec["ic_ns"]) is int
    assert rec["step"] == 12
    assert rec["source"] == "imu_shank"


def test_nothing_but_the_oscillation_model() -> None:
    rec = record()
    assert rec["foot_landing_velocity_mps"] is None
    assert rec["foot_velocity_source"] is None
    assert rec["body_fall_velocity_mps"] == pytest.approx(OSC_V, abs=1e-3)  # sqrt(2 g 0.05) = 0.990
    assert rec["body_fall_source"] == "model_oscillation"
    assert rec["forced_landing"] is None  # no foot velocity: no decision
    assert rec["forced_landing_severity"] is None


def test_the_oscillation_model_follows_the_configured_oscillation() -> None:
    rec = record(osc=0.08)
    assert rec["body_fall_velocity_mps"] == pytest.approx(math.sqrt(2 * G * 0.08), abs=1e-3)  # 1.253


def test_body_velocity_from_the_flight_model_without_a_camera() -> None:
    rec = record(other_to_ns=flight_to())
    assert rec["body_fall_velocity_mps"] == pytest.approx(FLIGHT_V, abs=1e-3)  # g x 0.12 / 2 = 0.589
    assert rec["body_fall_source"] == "model_flight"


@pytest.mark.parametrize("other_to", [IC - 0.6e9, IC + 0.05e9, float(IC)])
def test_no_flight_model_for_an_implausible_flight(other_to: float) -> None:
    """Over 0.5 s ago, or not before this IC (double support): the oscillation model."""
    rec = record(other_to_ns=other_to)
    assert rec["body_fall_source"] == "model_oscillation"
    assert rec["body_fall_velocity_mps"] == pytest.approx(OSC_V, abs=1e-3)


def test_a_foot_much_faster_than_the_body_is_forced() -> None:
    rec = record(imu=imu_before(1.5), other_to_ns=flight_to())
    assert rec["foot_landing_velocity_mps"] == 1.5
    assert rec["foot_velocity_source"] == "imu"
    assert rec["forced_landing"] is True
    assert rec["forced_landing_severity"] == pytest.approx(1.5 / FLIGHT_V, abs=2e-3)  # 2.548


def test_a_foot_over_the_ratio_but_within_noise_is_not_forced() -> None:
    # 1.3 x 0.5886 = 0.765; noise hypot(0.03, 1.3 x 0.05) = 0.072: 0.80 exceeds the ratio by 0.035 only
    noise = math.hypot(FOOT_SD["imu"], RATIO * FLIGHT_BODY_SD)
    assert noise == pytest.approx(0.0716, abs=1e-4)
    rec = record(imu=imu_before(0.80), other_to_ns=flight_to())
    assert rec["forced_landing_severity"] == pytest.approx(0.80 / FLIGHT_V, abs=2e-3)  # 1.359 > 1.3
    assert rec["forced_landing"] is False
    # 0.85 exceeds it by 0.085, more than the noise
    assert record(imu=imu_before(0.85), other_to_ns=flight_to())["forced_landing"] is True


def test_a_foot_slower_than_the_body_is_not_forced() -> None:
    rec = record(imu=imu_before(0.4), other_to_ns=flight_to())
    assert rec["forced_landing"] is False
    assert rec["forced_landing_severity"] == pytest.approx(0.4 / FLIGHT_V, abs=2e-3)  # 0.680


def test_the_oscillation_model_s_wide_noise_needs_a_larger_excess() -> None:
    # body 0.990 +- 0.3: noise hypot(0.03, 1.3 x 0.3) = 0.391; 1.3 x 0.990 = 1.288
    assert math.hypot(FOOT_SD["imu"], RATIO * OSCILLATION_BODY_SD) == pytest.approx(0.391, abs=1e-3)
    rec = record(imu=imu_before(1.5))  # excess 0.21: within noise
    assert rec["body_fall_source"] == "model_oscillation"
    assert rec["forced_landing"] is False
    assert rec["forced_landing_severity"] == pytest.approx(1.5 / OSC_V, abs=2e-3)  # 1.515
    assert record(imu=imu_before(2.0))["forced_landing"] is True  # excess 0.71


def test_the_ratio_is_configurable() -> None:
    # ratio 2: 2 x 0.5886 = 1.177 + noise hypot(0.03, 0.1) = 0.104 -> 1.28 needed; 1.5 is forced, 1.25 not
    assert record(imu=imu_before(1.5), other_to_ns=flight_to(), ratio=2.0)["forced_landing"] is True
    assert record(imu=imu_before(1.25), other_to_ns=flight_to(), ratio=2.0)["forced_landing"] is False


def test_the_foot_velocity_is_read_3_ms_before_ic() -> None:
    t, cols = imu_before(1.0)
    cols[t > IC - 3 * MS, 0] = -9.0  # within 3 ms of IC: not read
    cols[t < IC - 5 * MS, 0] = -7.0  # earlier samples: not the last one
    assert record(imu=(t, cols))["foot_landing_velocity_mps"] == 1.0


def test_no_foot_velocity_from_an_empty_or_unusable_imu() -> None:
    empty = (np.empty(0, np.int64), np.empty((0, 4)))
    rec = record(imu=empty, other_to_ns=flight_to())
    assert rec["foot_landing_velocity_mps"] is None and rec["foot_velocity_source"] is None
    assert rec["forced_landing"] is None and rec["forced_landing_severity"] is None
    t, cols = imu_before(1.0)
    cols[:, 0] = np.nan  # before the first stationary phase
    rec = record(imu=(t, cols), other_to_ns=flight_to())
    assert rec["foot_landing_velocity_mps"] is None and rec["forced_landing"] is None
    early = (t - 200 * MS, cols * 0 - 1.0)  # only samples over 50 ms before IC
    assert record(imu=early)["foot_landing_velocity_mps"] is None


def test_camera_only_gives_both_velocities() -> None:
    rec = record(keypoints=camera_before(body_v=0.6, ankle_v=2.0))
    assert rec["body_fall_velocity_mps"] == pytest.approx(0.6, abs=1e-3)
    assert rec["body_fall_source"] == "camera"
    assert rec["foot_landing_velocity_mps"] == pytest.approx(2.0, abs=1e-3)
    assert rec["foot_velocity_source"] == "camera"
    # margin 2.0 - 1.3 x 0.6 = 1.22 over noise hypot(0.27, 1.3 x 0.075) = 0.29
    assert rec["forced_landing"] is True
    assert rec["forced_landing_severity"] == pytest.approx(2.0 / 0.6, abs=2e-3)


def test_the_camera_s_foot_noise_is_larger() -> None:
    # foot 1.0 from the camera, body 0.6 from the hips: 1.0 - 0.78 = 0.22 < hypot(0.27, 0.0975) = 0.287
    rec = record(keypoints=camera_before(body_v=0.6, ankle_v=1.0))
    assert rec["foot_velocity_source"] == "camera"
    assert rec["forced_landing"] is False
    # the same velocities with the foot from an IMU (noise hypot(0.03, 0.0975) = 0.102): forced
    rec = record(imu=imu_before(1.0), keypoints=camera_before(body_v=0.6, ankle_v=1.0))
    assert rec["foot_velocity_source"] == "imu"
    assert rec["forced_landing"] is True


def test_the_imu_s_foot_velocity_wins_over_the_camera_s() -> None:
    rec = record(imu=imu_before(1.2), keypoints=camera_before(body_v=0.6, ankle_v=2.5))
    assert rec["foot_landing_velocity_mps"] == 1.2
    assert rec["foot_velocity_source"] == "imu"
    assert rec["body_fall_source"] == "camera"


def test_camera_and_flight_are_fused_by_inverse_variance() -> None:
    rec = record(keypoints=camera_before(body_v=0.9, ankle_v=1.0), other_to_ns=flight_to())
    wc, wf = 1 / CAMERA_BODY_SD**2, 1 / FLIGHT_BODY_SD**2
    assert (CAMERA_BODY_SD, FLIGHT_BODY_SD) == (0.075, 0.05)
    expected = (wc * 0.9 + wf * FLIGHT_V) / (wc + wf)  # (177.8 x 0.9 + 400 x 0.5886) / 577.8 = 0.685
    assert rec["body_fall_velocity_mps"] == pytest.approx(expected, abs=1e-3)
    assert rec["body_fall_source"] == "camera+model_flight"


def test_frames_of_the_last_20_ms_are_not_read() -> None:
    t, pts = camera_before(body_v=0.6, ankle_v=2.0)
    late = t > IC - 20 * MS
    pts[late, 0, 1] = pts[late, 4, 1] = 5.0  # hips jump: not read
    pts[late, 2, 1] = -3.0  # ankle: not read
    rec = record(keypoints=(t, pts))
    assert rec["body_fall_velocity_mps"] == pytest.approx(0.6, abs=1e-3)
    assert rec["foot_landing_velocity_mps"] == pytest.approx(2.0, abs=1e-3)


def test_the_right_foot_reads_the_right_ankle() -> None:
    rec = record(foot="right", keypoints=camera_before(body_v=0.6, ankle_v=1.7, foot="right"))
    assert rec["foot_landing_velocity_mps"] == pytest.approx(1.7, abs=1e-3)


def test_camera_without_frames_before_ic_gives_the_models() -> None:
    t, pts = camera_before(body_v=0.6, ankle_v=2.0)
    pts[:, :, :] = np.nan  # nothing confident
    rec = record(keypoints=(t, pts), other_to_ns=flight_to())
    assert rec["body_fall_source"] == "model_flight"
    assert rec["foot_landing_velocity_mps"] is None


def test_a_body_that_does_not_fall_gives_no_decision() -> None:
    rec = record(imu=imu_before(1.0), keypoints=camera_before(body_v=0.0, ankle_v=1.0))
    assert rec["body_fall_velocity_mps"] == pytest.approx(0.0, abs=1e-3)
    assert rec["forced_landing"] is None  # no ratio to a body at rest
    assert rec["forced_landing_severity"] is None


def test_values_are_rounded_to_3_decimals() -> None:
    rec = record(imu=imu_before(1.23456), other_to_ns=IC - 0.1e9)
    assert rec["foot_landing_velocity_mps"] == 1.235
    body = rec["body_fall_velocity_mps"]
    sev = rec["forced_landing_severity"]
    assert isinstance(body, float) and isinstance(sev, float)
    assert body == round(body, 3) and sev == round(sev, 3)
    assert sev == pytest.approx(1.23456 / (G * 0.1 / 2), abs=2e-3)  # 2.517
    assert type(rec["forced_landing"]) is bool
