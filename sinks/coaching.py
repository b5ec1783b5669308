"""Who needs the coach's attention and what to tell them: a status per athlete over the last steps.

Pure (no I/O, no clock of its own: callers pass ``now_s``, a monotonic second). Per athlete a
rolling window of the last ``WINDOW`` stance and landing records gives a status
``{"level", "state", "fault", "cue", "rule", "medians", "lr"}``:

- each rule of the Pose Method (``../shared/docs/pose-method-metrics.md`` R1-R10) that the window
  has figures for is judged on the window's median (forced landings and heel strikes on their
  share) between the rule's good and bad values of :data:`poserun.processors.score.RULES`, moved
  by the athlete's targets where there are some (cadence band, longest support time, forced share;
  the distance between good and bad stays the rule's). A rule at least three quarters of the way
  to good is "ok", at most one quarter is "fix", between is "watch";
- the worst rule is the fault, said in words with numbers, with its cue;
- the fall angle is not judged (it describes the fall and grows with speed; R7 judges the waist bend);
- ``state``: "running", "resting" (``rest``, a processors.reps.RepTracker, says so; without one:
  no stance for 3 step periods), "stale" (no record for
  ``STALE_S``), "sensor lost" (a source that contributed in the window is missing from the latest
  stances).
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Mapping
from typing import Any

from poserun.processors.score import RULES, rule_score

WINDOW = 20
STALE_S = 3.0
#: resting: no stance for this many step periods (at the window's median cadence)
REST_STEPS = 3.0
#: the latest stances whose sources count as "contributing now" (two per foot: a source of one foot is
#: in every other stance)
RECENT_SOURCES = 4
LEVELS = ("ok", "watch", "fix")
#: a rule's score (0 bad .. 1 good) from which it is "ok", and up to which it is "fix"
OK_FROM, FIX_UPTO = 0.75, 0.25
#: a level changes only when the score is this far past the boundary (no flipping at the boundary:
#: the board re-sorts on a level change)
HYSTERESIS = 0.05
#: forced landings: the share from which a window is "bad", above the athlete's allowed share: a
#: quarter of the steps more (5 of 20) forced than allowed
FORCED_BAD_ABOVE = 0.25
#: the medians a tile shows (record key), in this order
MEDIANS = ("cadence_spm", "support_time_s", "flight_time_s", "pose_score", "ball_load_fraction",
           "overstride_m", "knee_flexion_ic_deg", "waist_bend_deg", "vertical_oscillation_m")
#: the figures compared left against right
LR = ("support_time_s", "flight_time_s", "ball_load_fraction", "overstride_m", "knee_flexion_ic_deg")
#: the cue per rule, in the spec's words
CUES: dict[str, str] = {
    "R1_short_support": "quicker off the ground: pull the foot sooner",
    "R2_ball_of_foot": "land on the ball of the foot, not the heel",
    "R3_pull_not_push": "pull the foot, don't push off the toes",
    "R4_no_forced_landing": "pull the foot, let it drop",
    "R5_land_under_body": "land under the hip",
    "R6_bent_knees": "keep the knees bent",
    "R7_fall_from_ankles": "fall from the ankles, not the waist",
    "R8_cadence": "quicker steps",
    "R9_low_bounce": "stay low: fall forward, not up",
    "R10_pull_under_hip": "pull the foot straight up under the hip",
}


def _num(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _level(score: float, before: str | None = None) -> str:
    """A rule score's level; with the level ``before``, kept while the score is within
    ``HYSTERESIS`` of the boundary it would cross."""
    level = "ok" if score >= OK_FROM else "fix" if score <= FIX_UPTO else "watch"
    if before is None or before == level:
        return level
    if {before, level} == {"ok", "watch"} and abs(score - OK_FROM) < HYSTERESIS:
        return before
    if {before, level} == {"watch", "fix"} and abs(score - FIX_UPTO) < HYSTERESIS:
        return before
    return level


def thresholds(rule: str, targets: Mapping[str, Any] | None) -> tuple[float, float]:
    """(good, bad) of a rule for this athlete: the rule's, moved by a target where there is one."""
    _metric, good, bad = RULES[rule]
    t = targets or {}
    if rule == "R8_cadence":
        band = t.get("cadence_spm")
        if isinstance(band, list | tuple) and len(band) == 2 and _num(band[0]) is not None:
            lo = float(band[0])
            return lo, lo - (good - bad)
    if rule == "R1_short_support":
        most = _num(t.get("support_time_s"))
        if most is not None:
            return most, most + (bad - good)
    return good, bad


class AthleteWindow:
    """One athlete's last steps and what they say (module docstring)."""

    def __init__(self, targets: Mapping[str, Any] | None = None, window: int = WINDOW) -> None:
        self.targets: dict[str, Any] = dict(targets or {})
        self.stances: deque[Mapping[str, Any]] = deque(maxlen=window)
        self.landings: deque[bool] = deque(maxlen=window)  # forced or not, per landing
        self.severity: deque[float] = deque(maxlen=window)  # forced landings' severities
        self.window = window
        self.last_record_s: float | None = None
        self.last_stance_s: float | None = None
        self.level: str | None = None  # the level last said (hysteresis)
        self.rest: Any = None  # a processors.reps.RepTracker when the caller gives one

    def add(self, rec: Mapping[str, Any], now_s: float) -> None:
        """Take one record: landings and stances are the athlete heard from; a coach record (the
        board's own action) is not, so a dead sensor stays stale however often it is buzzed."""
        kind = rec.get("type")
        if kind in ("landing", "stance"):
            self.last_record_s = now_s
        if kind == "landing":
            forced = bool(rec.get("forced_landing"))
            self.landings.append(forced)
            sev = _num(rec.get("forced_landing_severity"))
            if forced and sev is not None:
                self.severity.append(sev)
        elif kind == "stance":
            self.stances.append(rec)
            self.last_stance_s = now_s
        if self.rest is not None:
            self.rest.feed(rec)

    # ------------------------------------------------------------ judging
    def _forced(self) -> tuple[int, int]:
        if self.landings:
            return sum(self.landings), len(self.landings)
        flags = [bool(s.get("forced_landing")) for s in self.stances if "forced_landing" in s]
        return sum(flags), len(flags)

    def medians(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for key in MEDIANS:
            m = _median([v for s in self.stances if (v := _num(s.get(key))) is not None])
            if m is not None:
                out[key] = round(m, 4)
        forced, n = self._forced()
        if n:
            out["forced_share"] = round(forced / n, 3)
        return out

    def lr(self) -> dict[str, float]:
        """Per figure, 100 x (L - R) / mean of the two sides' medians over the window (3 steps a side at least)."""
        out: dict[str, float] = {}
        for key in LR:
            sides = {f: [v for s in self.stances if s.get("foot") == f and (v := _num(s.get(key))) is not None]
                     for f in ("left", "right")}
            if len(sides["left"]) < 3 or len(sides["right"]) < 3:
                continue
            left, right = statistics.median(sides["left"]), statistics.median(sides["right"])
            mean = (left + right) / 2
            if abs(mean) > 1e-9:
                out[key] = round(100.0 * (left - right) / mean, 1)
        return out

    def judged(self) -> list[tuple[float, str, str]]:
        """Each rule the window can judge: (score 0-1, rule, the fault in words), worst first."""
        out: list[tuple[float, str, str]] = []
        st = list(self.stances)
        forced, seen = self._forced()
        if seen:
            allowed = _num(self.targets.get("forced_share"))
            good = allowed if allowed is not None else 0.0
            sc = rule_score(forced / seen, good, min(1.0, good + FORCED_BAD_ABOVE))
            words = f"forced landings {forced} of the last {seen} steps"
            if self.severity:
                words += f": foot {statistics.median(self.severity):.1f}x faster than the body at contact"
            out.append((sc, "R4_no_forced_landing", words))

        def med(key: str) -> float | None:
            return _median([v for s in st if (v := _num(s.get(key))) is not None])

        zones = [s.get("strike_zone") for s in st if isinstance(s.get("strike_zone"), str)]
        heel_peak = med("heel_peak_fraction")
        if zones or heel_peak is not None:
            _m, good, bad = RULES["R2_ball_of_foot"]
            heels = sum(z == "heel" for z in zones)
            value = heel_peak if heel_peak is not None else heels / len(zones)
            words = f"lands on the heel ({heels} of {len(zones)})" if zones else \
                f"heel takes {100 * value:.0f} % of the peak load"
            out.append((rule_score(value, good, bad), "R2_ball_of_foot", words))
        said = {
            "R1_short_support": ("support_time_s", lambda v: f"long support {v:.2f} s"),
            "R3_pull_not_push": ("toe_pushoff_fraction", lambda v: f"pushing off the toes ({100 * v:.0f} % of load)"),
            "R5_land_under_body": ("overstride_ratio", None),
            "R6_bent_knees": ("knee_flexion_ic_deg", lambda v: f"straight knee at landing ({v:.0f} deg)"),
            "R7_fall_from_ankles": ("waist_bend_deg", lambda v: f"bending at the waist ({v:.0f} deg)"),
            "R8_cadence": ("cadence_spm", lambda v: f"slow cadence {v:.0f} spm"),
            "R9_low_bounce": ("vertical_oscillation_m", lambda v: f"bouncing {100 * v:.0f} cm"),
            "R10_pull_under_hip": ("pull_under_hip_m", lambda v: f"foot pulled {100 * v:.0f} cm away from the hip"),
        }
        for rule, (key, words) in said.items():
            v = med(key)
            if v is None:
                continue
            value = max(0.0, v) if rule == "R7_fall_from_ankles" else abs(v) if rule == "R10_pull_under_hip" else v
            good, bad = thresholds(rule, self.targets)
            if rule == "R5_land_under_body":
                metres = med("overstride_m")
                text = f"reaching forward: overstride {metres:.2f} m" if metres is not None else \
                    f"reaching forward: overstride {100 * v:.0f} % of leg length"
            else:
                assert words is not None
                text = words(v)
            out.append((rule_score(value, good, bad), rule, text))
        out.sort(key=lambda item: item[0])
        return out

    def state(self, now_s: float) -> str:
        if self.last_record_s is None or now_s - self.last_record_s > STALE_S:
            return "stale"
        recent = list(self.stances)[-RECENT_SOURCES:]
        if len(self.stances) > RECENT_SOURCES and self.lost(recent):
            return "sensor lost"
        if self.rest is not None:
            return "resting" if getattr(self.rest, "state", "running") == "resting" else "running"
        cadence = _median([v for s in self.stances if (v := _num(s.get("cadence_spm"))) is not None])
        if self.last_stance_s is None or cadence is None or cadence <= 0:
            return "running" if self.last_stance_s is not None else "resting"
        return "resting" if now_s - self.last_stance_s > REST_STEPS * 60.0 / cadence else "running"

    def lost(self, recent: list[Mapping[str, Any]] | None = None) -> list[str]:
        """Sources that contributed to the window's earlier stances but to none of the latest."""
        recent = recent if recent is not None else list(self.stances)[-RECENT_SOURCES:]
        earlier = list(self.stances)[:-RECENT_SOURCES]
        now = {str(x) for s in recent for x in (s.get("sources") or ())}
        before = {str(x) for s in earlier for x in (s.get("sources") or ())}
        return sorted(before - now)

    def status(self, now_s: float) -> dict[str, Any]:
        """The athlete's status now (module docstring); level "ok" and no fault before any step."""
        judged = self.judged()
        state = self.state(now_s)
        level = "ok"
        fault, cue, rule = "", "", ""
        if judged:
            sc, rule, fault = judged[0]
            level = self.level = _level(sc, self.level)
            cue = CUES[rule]
            if level == "ok":
                fault, cue, rule = "good form", "", ""
        if state == "sensor lost":
            fault = "sensor lost: " + ", ".join(self.lost()) + (f"; {fault}" if fault else "")
        return {"level": level, "state": state, "fault": fault, "cue": cue, "rule": rule,
                "medians": self.medians(), "lr": self.lr(), "steps": len(self.stances)}


def worse(a: str, b: str) -> bool:
    """Level ``a`` is worse than ``b``."""
    return LEVELS.index(a) > LEVELS.index(b)
