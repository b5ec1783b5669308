"""The stance record: every metric of one contact, from whatever sources saw it.

Built in two pure steps around the rolling statistics: :func:`measure_stance` (timing,
insole, IMU impact, camera geometry, the landing decision made at IC) and
:func:`finish_stance` (symmetry, score, provenance). Metrics no source supports are None.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from poserun.processors.contact import G
from poserun.processors.imu import impact_peak_g
from poserun.processors.insole import InsoleLayout, stance_metrics
from poserun.processors.keypoints import JOINTS, stance_geometry
from poserun.processors.landing import rounded
from poserun.processors.records import LandingRecord, StanceRecord
from poserun.processors.score import pose_score

SIDES = ("left", "right")
POSE_NAMES = tuple(f"{side}_{j}" for side in SIDES for j in JOINTS)  # the rows of the joints array
INSOLE_KEYS = ("strike_zone", "cop_ic_fraction", "heel_contact", "heel_peak_fraction", "ball_load_fraction",
               "release_time_s", "release_ratio", "toe_pushoff_fraction", "loading_rate_bw_per_s", "peak_force_bw")
GEOMETRY_KEYS = ("overstride_m", "overstride_ratio", "knee_flexion_ic_deg", "knee_flexion_min_deg",
                 "fall_angle_deg", "waist_bend_deg", "pull_height_m", "pull_under_hip_m", "vertical_oscillation_m")
LANDING_KEYS = ("foot_landing_velocity_mps", "body_fall_velocity_mps", "body_fall_source", "forced_landing",
                "forced_landing_severity")


@dataclass
class InsoleStance:
    """An insole's samples around one stance, in newtons, with its layout and cell map."""

    times_ns: np.ndarray
    cells_n: np.ndarray
    layout: InsoleLayout
    cell_map: dict[str, list[float] | list[str]]
    body_weight_n: float
    on_bw: float
    heel_contact_bw: float


@dataclass
class Before:
    """What the athlete's recent contacts say about this one."""

    prev_ic_same: float | None  # this foot's previous IC
    ic_other: float | None  # the other foot's last IC
    to_other: float | None  # the other foot's last TO
    cadence_spm: float | None


def stride_s(ic: float, prev_ic_same: float | None) -> float | None:
    """This foot's stride ending at ``ic``, in s (None when there is no plausible previous IC)."""
    if prev_ic_same is None or not 0 < ic - prev_ic_same < 3e9:
        return None
    return (ic - prev_ic_same) / 1e9


def stride_start(ic: float, prev_ic_same: float | None) -> float | None:
    """Where the stride the camera geometry reads begins: the previous IC, when under 2 s ago."""
    stride = stride_s(ic, prev_ic_same)
    return prev_ic_same if stride and stride < 2 else None


def measure_stance(athlete: str, foot: str, ic: float, to: float, before: Before, *,
                   insole: InsoleStance | None, shank_impact: float, imu: tuple[np.ndarray, np.ndarray] | None,
                   keypoints: tuple[np.ndarray, ...] | None, stride_start: float | None,
                   leg_length_m: float, landing: LandingRecord | None) -> tuple[dict[str, Any], list[str]]:
    """The stance's metrics and the sources that gave some (besides the timing source). ``imu``:
    the foot IMU's columns over the 40 ms after IC; ``keypoints``: the metric frames from the
    stride's start (else IC) to TO (times, joints, and the toes if the keypoint set has them);
    ``shank_impact``: the shank's impact in m/s^2 (NaN: none)."""
    sources: list[str] = []
    rec: dict[str, Any] = {"type": "stance", "athlete": athlete, "foot": foot, "ic_ns": int(ic), "to_ns": int(to),
                           "support_time_s": round(float(to - ic) / 1e9, 4)}
    stride = stride_s(ic, before.prev_ic_same)
    to_other = before.to_other
    rec["flight_time_s"] = (round((ic - to_other) / 1e9, 4)
                            if to_other is not None and -1e9 < ic - to_other < 2e9 else None)
    ic_other = before.ic_other
    step_ok = ic_other is not None and 0 < ic - ic_other < 2e9
    rec["step_time_s"] = round((ic - ic_other) / 1e9, 4) if step_ok else None  # type: ignore[operator]
    rec["stride_time_s"] = rounded(stride, 4)
    rec["duty_factor"] = round((to - ic) / 1e9 / stride, 3) if stride else None
    rec["cadence_spm"] = before.cadence_spm
    # insole
    metrics: dict[str, Any] = dict.fromkeys(INSOLE_KEYS)
    if insole is not None:
        t, cells = insole.times_ns, insole.cells_n
        metrics.update(stance_metrics(t, cells, insole.layout, ic, to, insole.body_weight_n, insole.on_bw,
                                      insole.heel_contact_bw))
        inside = (t >= ic) & (t <= to)
        if inside.any():  # the stance's pressure map: each cell's peak, in body weights
            peak = cells[inside].max(axis=0) / insole.body_weight_n
            rec["pressure_map"] = {"peak_bw": peak.round(3).tolist(), **insole.cell_map}
        sources.append("insole")
    rec.update(metrics)
    # IMU impact (foot IMU; else the shank's dynamic acceleration at its impact)
    rec["impact_peak_g"] = round(shank_impact / G, 2) if math.isfinite(shank_impact) else None
    if imu is not None and len(imu[0]):
        rec["impact_peak_g"] = impact_peak_g(imu[0], imu[1][:, 2], ic)
        sources.append("imu")
    # camera geometry
    geo: dict[str, Any] = dict.fromkeys(GEOMETRY_KEYS)
    if keypoints is not None:
        at_ic = np.empty((8, 2))
        geo.update(stance_geometry(keypoints[0], keypoints[1], foot, ic, to, stride_start, leg_length_m,
                                   at_ic=at_ic, toes=keypoints[2] if len(keypoints) > 2 else None))
        sources.append("camera")
        hip = 0.5 * (at_ic[0] + at_ic[4])  # the stick figure at IC, relative to the hips' midpoint
        if math.isfinite(hip[0]) and math.isfinite(hip[1]):
            rel = (at_ic - hip).round(3).tolist()
            rec["pose_ic"] = {name: xy for name, xy in zip(POSE_NAMES, rel, strict=True)
                              if math.isfinite(xy[0]) and math.isfinite(xy[1])}
    rec.update(geo)
    # the landing decision, made at IC
    for k in LANDING_KEYS:
        rec[k] = landing[k] if landing is not None else None  # type: ignore[literal-required]
    return rec, sources


def finish_stance(rec: dict[str, Any], sources: list[str], symmetry: dict[str, float], event_source: str,
                  placement: str | None, score_weights: dict[str, float] | None) -> StanceRecord:
    """The measured stance with its symmetry, score and provenance: the complete record."""
    rec["support_symmetry_pct"] = symmetry.get("support_time_s")
    rec["symmetry_pct"] = symmetry
    score, breakdown = pose_score(rec, score_weights)
    rec["pose_score"] = score
    rec["pose_score_breakdown"] = breakdown
    rec["event_source"] = event_source
    if event_source == "imu_pelvis" and placement is not None:
        rec["imu_placement"] = placement
    rec["sources"] = list(dict.fromkeys([*event_source.split("+"), *sources]))
    return rec  # type: ignore[return-value]
