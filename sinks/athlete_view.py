"""What the board's athlete view shows, built from stance records (pure: no I/O).

API for the dashboard sink (helper "board"):

- ``history_point(rec)``: one stance's point for the charts and the left/right table; the sink keeps
  these per athlete (``self.history[who].append(history_point(rec))``) and sends them as the
  ``detail`` message's ``history``.
- ``athlete_detail(rec, history, targets)``: the ``detail`` message's ``last``: the last stance
  (named metrics with units, pressure map, joints at IC, score by named rule), the rolling values
  and the left/right symmetry over the last ``WINDOW`` steps of ``history``, and the targets
  (``targets``: the athlete's entry of the context's ``athlete_targets``, ``Targets.as_dict()``;
  None: the defaults, which are the settings' ``Targets`` defaults).
  It costs a few medians (about 0.2 ms): ``DashboardSink.detail(who)`` keeps the last stance
  record and builds it when it sends a watching browser a detail, not for every stance.

``sinks/web/athlete.js`` draws these. Every figure carries its label and unit from ``METRICS``:
the page shows no raw field names.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from statistics import median
from typing import Any

from poserun.processors.score import DERIVED, RULES

#: The steps the rolling values and the left/right symmetry are taken over.
WINDOW = 20
#: Per metric: label, unit, scale (record value x scale = shown value) and decimals shown.
METRICS: dict[str, tuple[str, str, float, int]] = {
    "cadence_spm": ("cadence", "steps/min", 1.0, 0),
    "support_time_s": ("support time", "s", 1.0, 3),
    "flight_time_s": ("flight time", "s", 1.0, 3),
    "duty_factor": ("duty factor", "%", 100.0, 0),
    "strike_zone": ("lands on", "", 1.0, 0),
    "heel_peak_fraction": ("heel load (peak share)", "%", 100.0, 0),
    "ball_load_fraction": ("ball of foot load", "%", 100.0, 0),
    "toe_pushoff_fraction": ("toe push-off", "%", 100.0, 0),
    "release_ratio": ("pressure release (share of support)", "%", 100.0, 0),
    "loading_rate_bw_per_s": ("loading rate", "BW/s", 1.0, 0),
    "peak_force_bw": ("peak force", "BW", 1.0, 2),
    "impact_peak_g": ("impact peak", "g", 1.0, 1),
    "foot_landing_velocity_mps": ("foot landing speed", "m/s", 1.0, 2),
    "body_fall_velocity_mps": ("body fall speed", "m/s", 1.0, 2),
    "forced_landing_severity": ("forced landing (foot / body speed)", "x", 1.0, 2),
    "overstride_m": ("overstride (foot ahead of hip)", "m", 1.0, 2),
    "overstride_ratio": ("overstride (share of leg length)", "%", 100.0, 0),
    "knee_flexion_ic_deg": ("knee bend at landing", "\u00b0", 1.0, 0),
    "knee_flexion_min_deg": ("least knee bend in support", "\u00b0", 1.0, 0),
    "fall_angle_deg": ("fall angle at end of support", "\u00b0", 1.0, 1),
    "waist_bend_deg": ("waist bend", "\u00b0", 1.0, 1),
    "vertical_oscillation_m": ("bounce (hip up and down)", "m", 1.0, 3),
    "pull_height_m": ("pull height", "m", 1.0, 2),
    "pull_under_hip_m": ("pull: foot from under the hip", "m", 1.0, 2),
    "pose_score": ("pose score", "/100", 1.0, 0),
    "forced_share": ("forced landings", "%", 100.0, 0),
}
#: The last stance's figures the view lists, in this order (those the stance has).
LAST_STEP = ("support_time_s", "flight_time_s", "strike_zone", "ball_load_fraction", "heel_peak_fraction",
             "toe_pushoff_fraction", "release_ratio", "loading_rate_bw_per_s", "impact_peak_g",
             "foot_landing_velocity_mps", "body_fall_velocity_mps", "forced_landing_severity", "overstride_m",
             "overstride_ratio", "knee_flexion_ic_deg", "knee_flexion_min_deg", "fall_angle_deg", "waist_bend_deg",
             "vertical_oscillation_m", "pull_height_m", "pull_under_hip_m", "pose_score")
#: A history point's keys and the record keys they hold (short: a point per stance goes to the page).
POINT: dict[str, str] = {"support": "support_time_s", "cadence": "cadence_spm", "flight": "flight_time_s",
                         "score": "pose_score", "ball": "ball_load_fraction", "overstride": "overstride_m",
                         "knee": "knee_flexion_ic_deg", "load": "loading_rate_bw_per_s"}
#: The metrics compared left against right (history point key), in this order.
LR = ("support", "flight", "ball", "load", "overstride", "knee")
#: The rolling values (history point key), in this order.
ROLLING = ("cadence", "support", "flight", "score")
#: The Pose Method rules as ../shared/docs/pose-method-metrics.md names them (R1..R10).
RULE_NAMES: dict[str, str] = {
    "R1": "keep support time short",
    "R2": "support on the ball of the foot, never the heel",
    "R3": "pull the foot, don't push off the toes",
    "R4": "let the foot land by itself (no forced landing)",
    "R5": "land under the body",
    "R6": "keep the knees bent",
    "R7": "fall from the ankles, not the waist",
    "R8": "short quick steps (cadence about 180)",
    "R9": "the centre of mass barely bobs",
    "R10": "pull the foot straight up under the hip",
}
#: Targets without a configured one: cadence band around the spec's "about 180 steps/min" (R8's
#: good end is 178); support time at most 0.25 s (R1's half-score point, between the spec's
#: elite 0.15-0.20 s and recreational 0.25-0.30 s); forced landings in at most 1 step of 10.
DEFAULT_TARGETS: dict[str, Any] = {"cadence_spm": [170.0, 190.0], "support_time_s": 0.25, "forced_share": 0.10}
REGIONS = ("heel", "midfoot", "ball", "toes")


def _num(value: object) -> float | None:
    """A finite number as float, else None (bools, strings, NaN are not figures)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def rule_number(rule: str) -> int:
    """A rule key's number (``R10_pull_under_hip`` -> 10); unknown keys sort last."""
    m = re.match(r"R(\d+)(?:_|$)", rule)
    return int(m.group(1)) if m else 10**6


def history_point(rec: Mapping[str, Any]) -> dict[str, Any]:
    """One stance's chart point: initial contact (``t``, ns on the athlete's time base), foot,
    forced landing, and the ``POINT`` figures (None where the stance has none)."""
    point: dict[str, Any] = {"t": rec.get("ic_ns"), "foot": rec.get("foot"),
                             "forced": rec.get("forced_landing") if isinstance(rec.get("forced_landing"), bool)
                             else None}
    for short, key in POINT.items():
        point[short] = _num(rec.get(key))
    return point


def _figure(key: str, value: Any) -> dict[str, Any]:
    label, unit, scale, decimals = METRICS[key]
    shown = value if isinstance(value, str) else round(value * scale, decimals + 1)
    return {"key": key, "label": label, "unit": unit, "value": shown, "decimals": decimals}


def last_step(rec: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The stance's named figures with units (``LAST_STEP`` order, those it has)."""
    out = []
    for key in LAST_STEP:
        value = rec.get(key)
        if key == "strike_zone":
            if value in REGIONS:
                out.append(_figure(key, value))
            continue
        v = _num(value)
        if v is not None:
            out.append(_figure(key, v))
    return out


def _recent(history: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return list(history)[-WINDOW:]


def rolling(history: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Medians over the last ``WINDOW`` steps (and the share of forced landings), named."""
    pts = _recent(history)
    figures = []
    for short in ROLLING:
        values = [v for p in pts if (v := _num(p.get(short))) is not None]
        if values:
            figures.append(_figure(POINT[short], median(values)) | {"n": len(values)})
    judged = [p["forced"] for p in pts if isinstance(p.get("forced"), bool)]
    if judged:
        figures.append(_figure("forced_share", sum(judged) / len(judged)) | {"n": len(judged)})
    return {"steps": len(pts), "figures": figures}


def symmetry(history: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Left against right over the last ``WINDOW`` steps: per metric the median of each foot's
    steps and 100 x (L - R) / mean of the two (None when a foot has no value or the mean is 0)."""
    pts = _recent(history)
    out = []
    for short in LR:
        side = {foot: [v for p in pts if p.get("foot") == foot and (v := _num(p.get(short))) is not None]
                for foot in ("left", "right")}
        if not side["left"] and not side["right"]:
            continue
        left = median(side["left"]) if side["left"] else None
        right = median(side["right"]) if side["right"] else None
        pct = None
        if left is not None and right is not None and (mean := (left + right) / 2) != 0:
            pct = round(100.0 * (left - right) / abs(mean), 1)
        label, unit, scale, decimals = METRICS[POINT[short]]
        out.append({"key": POINT[short], "label": label, "unit": unit, "decimals": decimals,
                    "left": None if left is None else round(left * scale, decimals + 1),
                    "right": None if right is None else round(right * scale, decimals + 1),
                    "pct": pct, "n_left": len(side["left"]), "n_right": len(side["right"])})
    return out


def score_rules(breakdown: object) -> list[dict[str, Any]]:
    """Every scored rule, R1..R10 in order, named, with its score 0-1 (None: not measured on this
    stance); keys of ``breakdown`` that are no rule are left out."""
    given = breakdown if isinstance(breakdown, Mapping) else {}
    out = []
    for rule in sorted(RULES, key=rule_number):
        number = f"R{rule_number(rule)}"
        metric = RULES[rule][0]
        metric = next((signed for signed, (derived, _how) in DERIVED.items() if derived == metric), metric)
        out.append({"rule": rule, "id": number, "name": RULE_NAMES.get(number, rule),
                    "metric": METRICS[metric][0] if metric in METRICS else metric,
                    "value": _num(given.get(rule))})
    return out


def pressure(rec: Mapping[str, Any]) -> dict[str, Any] | None:
    """The stance's pressure map as cells (where, peak in body weights, region) with each region's
    peak and the legend's top (the largest cell peak); None without a usable map."""
    m = rec.get("pressure_map")
    if not isinstance(m, Mapping):
        return None
    peaks, along, across = m.get("peak_bw"), m.get("along"), m.get("across")
    if not (isinstance(peaks, list) and isinstance(along, list) and isinstance(across, list)
            and len(peaks) == len(along) == len(across) and peaks):
        return None
    region = m.get("region")
    regions = region if isinstance(region, list) and len(region) == len(peaks) else [None] * len(peaks)
    cells = []
    for p, a, c, r in zip(peaks, along, across, regions, strict=True):
        pv, av, cv = _num(p), _num(a), _num(c)
        if pv is None or av is None or cv is None:
            continue
        cells.append({"peak_bw": pv, "along": av, "across": cv, "region": r if r in REGIONS else None})
    if not cells:
        return None
    by_region = {r: max((c["peak_bw"] for c in cells if c["region"] == r), default=None) for r in REGIONS}
    return {"cells": cells, "regions": {r: v for r, v in by_region.items() if v is not None},
            "max_bw": max(c["peak_bw"] for c in cells), "labelled": any(c["region"] for c in cells)}


def figure(rec: Mapping[str, Any]) -> dict[str, Any] | None:
    """The side view at initial contact: the joints (m, relative to the hips' midpoint), the
    support point (the landing foot's ankle: the joints hold no ball-of-foot keypoint), the
    shoulders' midpoint (the pose line runs support - hip - shoulder); None without joints."""
    pose = rec.get("pose_ic")
    if not isinstance(pose, Mapping):
        return None
    joints = {k: [float(v[0]), float(v[1])] for k, v in pose.items()
              if isinstance(k, str) and isinstance(v, list | tuple) and len(v) == 2
              and all(_num(x) is not None for x in v)}
    if not joints:
        return None
    foot = rec.get("foot") if rec.get("foot") in ("left", "right") else None
    support = joints.get(f"{foot}_ankle") if foot else None
    shoulders = [joints[k] for k in ("left_shoulder", "right_shoulder") if k in joints]
    shoulder = [sum(s[0] for s in shoulders) / len(shoulders), sum(s[1] for s in shoulders) / len(shoulders)] \
        if shoulders else None
    ankles = [joints[k][1] for k in ("left_ankle", "right_ankle") if k in joints]
    return {"joints": joints, "foot": foot, "support": support, "hip": [0.0, 0.0], "shoulder": shoulder,
            "ground_y": min(ankles) if ankles else None,
            "fall_angle_deg": _num(rec.get("fall_angle_deg")), "waist_bend_deg": _num(rec.get("waist_bend_deg"))}


def targets_of(targets: Mapping[str, Any] | None) -> dict[str, Any]:
    """The athlete's targets (cadence band, support time max, forced share max): as configured
    (None: configured as no target), the default where not given or not valid; ``source`` per
    target says which ("config", "none" or "default")."""
    given = targets if isinstance(targets, Mapping) else {}
    out: dict[str, Any] = {"source": {}}
    for key in ("cadence_spm", "support_time_s", "forced_share"):
        v = given.get(key)
        if key in given and v is None:
            out[key], out["source"][key] = None, "none"
            continue
        if key == "cadence_spm":
            ok = isinstance(v, Sequence) and not isinstance(v, str) and len(v) == 2 \
                and all(_num(b) is not None for b in v) and float(v[0]) < float(v[1])
            value: Any = [float(v[0]), float(v[1])] if ok else None  # type: ignore[index]
        else:
            value = _num(v)
            ok = value is not None and (0 <= value <= 1 if key == "forced_share" else value > 0)  # (0 %: none)
        out[key], out["source"][key] = (value, "config") if ok else (
            list(DEFAULT_TARGETS[key]) if key == "cadence_spm" else DEFAULT_TARGETS[key], "default")
    return out


def athlete_detail(rec: Mapping[str, Any], history: Iterable[Mapping[str, Any]],
                   targets: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The athlete view's payload: the last stance (``last_step``, ``pressure``, ``figure``,
    ``rules``, its foot, score and time) and, over the last ``WINDOW`` steps of ``history``, the
    ``rolling`` values and the left/right ``symmetry``; with the ``targets``."""
    pts = list(history)
    return {"foot": rec.get("foot") if rec.get("foot") in ("left", "right") else None,
            "t": rec.get("ic_ns"), "emitted_ns": rec.get("emitted_ns"), "pose_score": _num(rec.get("pose_score")),
            "last_step": last_step(rec), "pressure": pressure(rec), "figure": figure(rec),
            "rules": score_rules(rec.get("pose_score_breakdown")), "rolling": rolling(pts),
            "symmetry": symmetry(pts), "targets": targets_of(targets), "window": WINDOW}
