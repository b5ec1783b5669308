"""The coach's status per athlete over the last steps (sinks/coaching.py)."""

from __future__ import annotations

from typing import Any

from poserun.sinks.coaching import STALE_S, WINDOW, AthleteWindow

SOURCES = ["insole_left", "insole_right", "camera"]


def stance(i: int, **over: Any) -> dict[str, Any]:
    rec = {"type": "stance", "foot": "left" if i % 2 else "right", "cadence_spm": 182.0, "support_time_s": 0.21,
           "strike_zone": "ball", "heel_peak_fraction": 0.03, "overstride_ratio": 0.05, "overstride_m": 0.03,
           "knee_flexion_ic_deg": 22.0, "waist_bend_deg": 2.0, "toe_pushoff_fraction": 0.15,
           "vertical_oscillation_m": 0.05, "pull_under_hip_m": 0.02, "pose_score": 90.0, "fall_angle_deg": 25.0,
           "sources": SOURCES}
    rec.update(over)
    return rec


def run(n: int, forced_every: int = 0, t0: float = 0.0, **over: Any) -> tuple[AthleteWindow, float]:
    w = AthleteWindow({"cadence_spm": [170.0, 190.0], "support_time_s": 0.25, "forced_share": 0.10})
    t = t0
    for i in range(n):
        forced = bool(forced_every) and i % forced_every == 0
        w.add({"type": "landing", "forced_landing": forced, "forced_landing_severity": 1.6 if forced else None}, t)
        w.add(stance(i, **over), t + 0.1)
        t += 60 / 182
    return w, t


def test_good_form_is_ok_whatever_the_fall_angle() -> None:
    w, t = run(30, fall_angle_deg=40.0)
    s = w.status(t)
    assert s["level"] == "ok" and s["state"] == "running" and s["rule"] == ""
    assert s["steps"] == WINDOW and abs(s["medians"]["cadence_spm"] - 182.0) < 1e-9


def test_forced_lander_fix_with_count_and_cue() -> None:
    w, t = run(40, forced_every=2)
    s = w.status(t)
    assert s["level"] == "fix" and s["rule"] == "R4_no_forced_landing"
    assert s["fault"].startswith("forced landings 10 of the last 20 steps")
    assert "1.6x faster than the body" in s["fault"] and s["cue"] == "pull the foot, let it drop"


def test_heel_striker_and_overstrider_and_slow_cadence() -> None:
    s = run(20, strike_zone="heel", heel_peak_fraction=0.35)[0].status(6.0)
    assert s["rule"] == "R2_ball_of_foot" and "lands on the heel (20 of 20)" in s["fault"] and s["level"] == "fix"
    s = run(20, overstride_ratio=0.45, overstride_m=0.21)[0].status(6.0)
    assert s["fault"] == "reaching forward: overstride 0.21 m" and s["cue"] == "land under the hip"
    s = run(20, cadence_spm=158.0)[0].status(6.0)
    assert s["fault"] == "slow cadence 158 spm" and s["cue"] == "quicker steps" and s["level"] == "watch"


def test_targets_move_the_thresholds() -> None:
    w, t = run(20, support_time_s=0.29)
    assert w.status(t)["fault"] == "long support 0.29 s" and w.status(t)["level"] == "watch"
    w.targets["support_time_s"] = 0.30
    assert w.status(t)["level"] == "ok"


def test_lr_over_the_window() -> None:
    w = AthleteWindow()
    for i in range(20):
        w.add(stance(i, support_time_s=0.22 if i % 2 else 0.20), float(i))
    assert abs(w.lr()["support_time_s"] - 100 * 0.02 / 0.21) < 0.1


def test_stale_resting_and_sensor_lost() -> None:
    w, t = run(20)
    assert w.status(t + STALE_S + 0.1)["state"] == "stale"
    w.add({"type": "heartbeat"}, t + 1.5)  # heard from, but no stance for 3 step periods
    assert w.status(t + 1.6)["state"] == "resting"
    for i in range(6):
        w.add(stance(i, sources=["insole_left", "insole_right"]), t + 2 + i * 0.3)
    s = w.status(t + 4)
    assert s["state"] == "sensor lost" and s["fault"].startswith("sensor lost: camera")


def test_bad_values_are_ignored() -> None:
    w = AthleteWindow()
    for i in range(5):
        w.add(stance(i, cadence_spm="fast", support_time_s=float("nan"), foot=None), float(i))
    s = w.status(5.0)
    assert "cadence_spm" not in s["medians"] and "support_time_s" not in s["medians"]


def test_resting_from_the_rep_tracker() -> None:
    from poserun.processors.reps import RepTracker

    w = AthleteWindow()
    w.rest = RepTracker()
    ns = 1_000_000_000_000
    for i in range(10):
        w.add(stance(i, emitted_ns=ns + i * 330_000_000), i * 0.33)
    assert w.status(3.4)["state"] == "running"
    w.rest.advance(ns + 20 * 1_000_000_000)  # no stance for 20 s of the athlete's clock
    w.add({"type": "heartbeat"}, 3.5)
    assert w.status(3.6)["state"] == "resting"
