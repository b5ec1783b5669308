"""The pose score: rules R1-R10 of the Pose Method, each scored 0..1 and weighted.

Each rule maps one metric linearly between a 'bad' and a 'good' value
(clamped); rules whose metric is absent are left out and the weights of the
rest renormalised, so a missing sensor never counts as bad technique.
"""

from __future__ import annotations

from collections.abc import Mapping

# rule -> (metric, good value, bad value)
RULES: dict[str, tuple[str, float, float]] = {
    "R1_short_support": ("support_time_s", 0.20, 0.30),
    "R2_ball_of_foot": ("heel_peak_fraction", 0.05, 0.30),
    "R3_pull_not_push": ("toe_pushoff_fraction", 0.20, 0.45),
    "R4_no_forced_landing": ("forced_landing_severity", 1.0, 1.6),
    "R5_land_under_body": ("overstride_ratio", 0.10, 0.40),
    "R6_bent_knees": ("knee_flexion_ic_deg", 20.0, 5.0),
    "R7_fall_from_ankles": ("waist_bend_abs_deg", 3.0, 15.0),
    "R8_cadence": ("cadence_spm", 178.0, 155.0),
    "R9_low_bounce": ("vertical_oscillation_m", 0.06, 0.12),
    "R10_pull_under_hip": ("pull_under_hip_abs_m", 0.10, 0.40),
}
DEFAULT_WEIGHTS: dict[str, float] = {rule: 1.0 for rule in RULES}
MAGNITUDES = {"waist_bend_deg": "waist_bend_abs_deg", "pull_under_hip_m": "pull_under_hip_abs_m"}


def rule_score(value: float, good: float, bad: float) -> float:
    if good == bad:
        return 1.0 if value == good else 0.0
    s = (value - bad) / (good - bad)
    return max(0.0, min(1.0, s))


# per rule: the record's metric it reads (for a magnitude rule, the signed metric, else the
# magnitude itself if a caller gives it), good, bad
_READS = tuple((rule, next((k for k, m in MAGNITUDES.items() if m == metric), None), metric, good, bad)
               for rule, (metric, good, bad) in RULES.items())


def _number(value: object) -> bool:
    return (type(value) is float or type(value) is int
            or (isinstance(value, int | float) and not isinstance(value, bool)))


def pose_score(metrics: Mapping[str, object], weights: Mapping[str, float] | None = None
               ) -> tuple[float | None, dict[str, float]]:
    """(score 0-100 or None when no rule applies, per-rule scores 0-1)."""
    w = DEFAULT_WEIGHTS if weights is None else weights
    breakdown: dict[str, float] = {}
    total = weight = 0.0
    for rule, signed, metric, good, bad in _READS:
        value = metrics.get(signed) if signed is not None else None
        if value is not None and _number(value):
            value = abs(float(value))  # type: ignore[arg-type]
        else:
            value = metrics.get(metric)
            if not _number(value):
                continue
        rw = float(w.get(rule, 0.0))
        if rw <= 0:
            continue
        sc = rule_score(float(value), good, bad)  # type: ignore[arg-type]
        breakdown[rule] = round(sc, 3)
        total += rw * sc
        weight += rw
    if weight == 0:
        return None, breakdown
    return round(100.0 * total / weight, 1), breakdown
