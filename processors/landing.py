"""The landing record: the forced-landing decision at initial contact (rule R4).

A landing is forced when the foot comes down faster than the body falls, by more than
``forced_landing_ratio`` and by more than the measurements' noise explains. The foot's
velocity comes from its IMU (else the camera); the body's from the fusion of what is there
(the camera's hips, the ballistic flight model), else a model of the configured vertical
oscillation. A pure function of the data before IC: the haptic cue cannot wait for more.
"""

from __future__ import annotations

import math

import numpy as np

from poserun.processors.contact import G
from poserun.processors.imu import landing_velocity
from poserun.processors.keypoints import landing_velocities
from poserun.processors.records import LandingRecord

CAMERA_LEAD_NS = 20e6  # a landing needs camera frames up to this long before IC (60 fps: the last one)
CAMERA_BODY_SD = 0.075  # m/s, hip velocity fitted over 60 fps frames (measured on the simulator)
FLIGHT_BODY_SD = 0.05  # m/s, ballistic model g * flight / 2 (asymmetric flights)
OSCILLATION_BODY_SD = 0.3  # m/s, free fall from a configured oscillation: a guess
FOOT_SD = {"imu": 0.03, "camera": 0.27}  # m/s, foot velocity before IC (measured on the simulator)


def landing_record(athlete: str, foot: str, ic_ns: float, step: int, source: str, *,
                   imu: tuple[np.ndarray, np.ndarray] | None, keypoints: tuple[np.ndarray, ...] | None,
                   other_to_ns: float | None, forced_landing_ratio: float,
                   default_oscillation_m: float) -> LandingRecord:
    """``imu``: the foot IMU's (times, columns) in the 60 ms before IC; ``keypoints``: the
    metric frames (times, joints) of the 120 ms before IC; ``other_to_ns``: the other foot's
    last toe-off (the flight that ends here)."""
    foot_v = body_v = None
    foot_src = body_src = None
    if imu is not None and len(imu[0]):
        foot_v = landing_velocity(imu[0], imu[1][:, 0], ic_ns)
        foot_src = "imu" if foot_v is not None else None
    estimates: list[tuple[float, float, str]] = []  # (value, sd, source)
    if keypoints is not None:
        bv, fv = landing_velocities(keypoints[0], keypoints[1], foot, ic_ns, until_ns=ic_ns - CAMERA_LEAD_NS)
        if math.isfinite(bv):
            estimates.append((bv, CAMERA_BODY_SD, "camera"))
        if foot_v is None and math.isfinite(fv):
            foot_v, foot_src = fv, "camera"
    if other_to_ns is not None and 0 < ic_ns - other_to_ns < 0.5e9:
        estimates.append((G * (ic_ns - other_to_ns) / 2e9, FLIGHT_BODY_SD, "model_flight"))
    if estimates:  # inverse-variance fusion of the independent estimates
        weights = [1.0 / (sd * sd) for _, sd, _ in estimates]
        body_v = sum(w * v for w, (v, _, _) in zip(weights, estimates, strict=True)) / sum(weights)
        body_sd = 1.0 / math.sqrt(sum(weights))
        body_src = "+".join(src for _, _, src in estimates)
    else:
        body_v, body_src = math.sqrt(2 * G * default_oscillation_m), "model_oscillation"
        body_sd = OSCILLATION_BODY_SD
    forced = severity = None
    if foot_v is not None and body_v is not None and body_v > 0.05:
        severity = float(foot_v / body_v)
        # forced only when the excess is larger than what the measurements' noise explains
        margin = foot_v - forced_landing_ratio * body_v
        noise = math.hypot(FOOT_SD.get(foot_src or "", 0.3), forced_landing_ratio * body_sd)
        forced = bool(margin > noise)
    return {
        "type": "landing", "athlete": athlete, "foot": foot, "ic_ns": int(ic_ns), "step": step,  # type: ignore[typeddict-item]
        "source": source,
        "foot_landing_velocity_mps": rounded(foot_v, 3), "foot_velocity_source": foot_src,
        "body_fall_velocity_mps": rounded(body_v, 3), "body_fall_source": body_src,
        "forced_landing": forced, "forced_landing_severity": rounded(severity, 3),
    }


def rounded(v: float | None, digits: int) -> float | None:
    return None if v is None or not math.isfinite(v) else round(float(v), digits)
