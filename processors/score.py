"""The pose score: rules R1-R10 of the Pose Method, each scored 0..1 and weighted.

Each rule maps one metric linearly between a 'bad' and a 'good' value
(clamped); rules whose metric is absent are left out and the weights of the
rest renormalised, so a missing sensor never counts as bad technique.
R7 ("fall from the ankles, not the waist; shoulder, hip, ankle aligned") reads the
waist bend: the angle between the trunk and the support-to-hip line over the fall. Only its
forward part counts (shoulders ahead of that line: bending at the waist). Its backward part
is what the legs do, not the posture: as the hips travel ahead of the support point during
push-off, the support-to-hip line tilts forward (about 30 degrees at toe-off at 3.6 m/s)
while an upright trunk stays near 5-10 degrees, so every upright runner reads negative and
would fail the rule. The fall angle is not scored: it grows with speed and is compared with
the athlete's own speed and history (docs/metrics.md).
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
    "R7_fall_from_ankles": ("waist_bend_forward_deg", 3.0, 15.0),
    "R8_cadence": ("cadence_spm", 178.0, 155.0),
    "R9_low_bounce": ("vertical_oscillation_m", 0.06, 0.12),
    "R10_pull_under_hip": ("pull_under_hip_abs_m", 0.10, 0.40),
}
DEFAULT_WEIGHTS: dict[str, float] = {rule: 1.0 for rule in RULES}
#: signed metric -> (the derived metric a rule reads, how: "abs" its magnitude, "forward" its positive part)
DERIVED: dict[str, tuple[str, str]] = {"waist_bend_deg": ("waist_bend_forward_deg", "forward"),
                                       "pull_under_hip_m": ("pull_under_hip_abs_m", "abs")}


def derive(how: str, value: float) -> float:
    """A signed metric as its rule reads it (:data:`DERIVED`)."""
    return abs(value) if how == "abs" else max(0.0, value)


def rule_score(value: float, good: float, bad: float) -> float:
    if good == bad:
        return 1.0 if value == good else 0.0
    s = (value - bad) / (good - bad)
    return max(0.0, min(1.0, s))


# per rule: the record's signed metric it derives its value from (None: it reads its metric
# itself, as it does when a caller gives the derived metric), how, the metric, good, bad
_READS = tuple((rule, *next(((k, how) for k, (m, how) in DERIVED.items() if m == metric), (None, "")), metric,
                good, bad) for rule, (metric, good, bad) in RULES.items())


def _number(value: object) -> bool:
    return (type(value) is float or type(value) is int
            or (isinstance(value, int | float) and not isinstance(value, bool)))


def pose_score(metrics: Mapping[str, object], weights: Mapping[str, float] | None = None
               ) -> tuple[float | None, dict[str, float]]:
    """(score 0-100 or None when no rule applies, per-rule scores 0-1)."""
    w = DEFAULT_WEIGHTS if weights is None else weights
    breakdown: dict[str, float] = {}
    total = weight = 0.0
    for rule, signed, how, metric, good, bad in _READS:
        value = metrics.get(signed) if signed is not None else None
        if value is not None and _number(value):
            value = derive(how, float(value))  # type: ignore[arg-type]
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
