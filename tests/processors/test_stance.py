"""measure_stance and finish_stance on their own: support, flight, step and stride time and the
duty factor from the Before values (docs/metrics.md), null metrics without sources, the impact in
g, the landing decision copied only when given, the insole's and camera's parts, and finish_stance's
symmetry, score, sources and imu_placement, with the keys held to records.StanceRecord."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from poserun.processors.insole import InsoleLayout
from poserun.processors.landing import landing_record
from poserun.processors.records import KEYS, REQUIRED, LandingRecord
from poserun.processors.stance import (
    GEOMETRY_KEYS,
    INSOLE_KEYS,
    LANDING_KEYS,
    POSE_NAMES,
    Before,
    InsoleStance,
    finish_stance,
    measure_stance,
    stride_s,
    stride_start,
)

MS = 1_000_000
S = 1_000_000_000
IC = 10 * S
TO = IC + 200 * MS
BW = 700.0
SERVICE = {"session", "emitted_ns", "id"}  # added by the service
OPTIONAL = {"pressure_map", "pose_ic", "imu_placement"}
NO_BEFORE = Before(prev_ic_same=None, ic_other=None, to_other=None, cadence_spm=None)
RUNNING = Before(prev_ic_same=IC - 700 * MS, ic_other=IC - 350 * MS, to_other=IC - 150 * MS, cadence_spm=171.4)


def measure(before: Before = NO_BEFORE, *, ic: float = IC, to: float = TO, foot: str = "left",
            insole: InsoleStance | None = None, shank_impact: float = math.nan,
            imu: tuple[np.ndarray, np.ndarray] | None = None,
            keypoints: tuple[np.ndarray, np.ndarray] | None = None,
            landing: LandingRecord | None = None) -> tuple[dict[str, Any], list[str]]:
    return measure_stance("ath", foot, ic, to, before, insole=insole, shank_impact=shank_impact, imu=imu,
                          keypoints=keypoints, stride_start=stride_start(ic, before.prev_ic_same),
                          leg_length_m=0.9, landing=landing)


def insole_stance() -> InsoleStance:
    """4 cells (heel, midfoot, ball, toes) at 100 Hz from IC - 20 ms to TO + 20 ms; loaded
    100 / 350 / 50 N on midfoot / ball / toes from IC to TO, the heel never."""
    layout = InsoleLayout(region=np.array([0, 1, 2, 3], dtype=np.int64), along=np.array([0.1, 0.4, 0.7, 0.95]),
                          across=np.array([0.5, 0.45, 0.55, 0.5]))
    t = np.arange(IC - 20 * MS, TO + 20 * MS + 1, 10 * MS, dtype=np.int64)
    cells = np.zeros((len(t), 4))
    inside = (t >= IC) & (t <= TO)
    cells[inside] = [0.0, 100.0, 350.0, 50.0]
    cell_map = {"along": [0.1, 0.4, 0.7, 0.95], "across": [0.5, 0.45, 0.55, 0.5]}
    return InsoleStance(t, cells, layout, cell_map, BW, 0.10, 0.05)


POSE = np.array([[0.00, 0.90], [0.05, 0.50], [0.10, 0.08], [0.05, 1.40],  # left hip, knee, ankle, shoulder
                 [0.02, 0.90], [-0.10, 0.55], [-0.30, 0.30], [0.07, 1.40]])  # right


def keypoints_still() -> tuple[np.ndarray, np.ndarray]:
    """Metric frames at 100 fps over the stance, the runner frozen in POSE."""
    t = np.arange(IC - 20 * MS, TO + 20 * MS + 1, 10 * MS, dtype=np.int64)
    return t, np.repeat(POSE[None], len(t), axis=0)


def imu_after(peak_g: float) -> tuple[np.ndarray, np.ndarray]:
    """A foot IMU's 40 ms after IC at 400 Hz: columns (vz, still, |a| - g, a_wz), |a| peaking at ``peak_g``."""
    g = 9.80665
    t = np.arange(IC, IC + 40 * MS + 1, 2_500_000, dtype=np.int64)
    cols = np.zeros((len(t), 4))
    cols[:, 2] = np.linspace(0.0, 1.0, len(t)) * g
    cols[4, 2] = (peak_g - 1.0) * g
    return t, cols


# ------------------------------------------------------------------ stride helpers

def test_stride_s() -> None:
    assert stride_s(IC, IC - 700 * MS) == pytest.approx(0.7)
    assert stride_s(IC, None) is None
    assert stride_s(IC, IC - 3 * S) is None  # 3 s or more: not one stride
    assert stride_s(IC, IC + 100 * MS) is None  # after this IC
    assert stride_s(IC, IC) is None


def test_stride_start_under_2_s() -> None:
    assert stride_start(IC, IC - 700 * MS) == IC - 700 * MS
    assert stride_start(IC, IC - 2.5 * S) is None  # a stride, but over 2 s
    assert stride_start(IC, None) is None


# ------------------------------------------------------------------ timing metrics

def test_timing_metrics_from_the_before_values() -> None:
    rec, sources = measure(RUNNING)
    assert rec["type"] == "stance" and rec["athlete"] == "ath" and rec["foot"] == "left"
    assert rec["ic_ns"] == IC and rec["to_ns"] == TO
    assert type(rec["ic_ns"]) is int and type(rec["to_ns"]) is int
    assert rec["support_time_s"] == 0.2  # TO - IC
    # IC - the other foot's last TO: the flight that ends at this IC (the record is made at TO, before
    # the next IC; docs/metrics.md defines it as the next IC - this TO, the flight after the stance)
    assert rec["flight_time_s"] == 0.15
    assert rec["step_time_s"] == 0.35  # IC - the other foot's IC
    assert rec["stride_time_s"] == 0.7  # IC - this foot's previous IC
    assert rec["duty_factor"] == 0.286  # 0.2 / 0.7
    assert rec["cadence_spm"] == 171.4  # passed on
    assert sources == []


def test_a_negative_flight_is_double_support_and_reported() -> None:
    before = Before(prev_ic_same=None, ic_other=IC - 350 * MS, to_other=IC + 50 * MS, cadence_spm=None)
    rec, _ = measure(before)
    assert rec["flight_time_s"] == -0.05


def test_timing_metrics_are_rounded() -> None:
    before = Before(prev_ic_same=IC - 712_345_678, ic_other=IC - 351_234_567, to_other=IC - 123_456_789,
                    cadence_spm=None)
    rec, _ = measure(before, to=IC + 212_345_678)
    assert rec["support_time_s"] == 0.2123
    assert rec["flight_time_s"] == 0.1235
    assert rec["step_time_s"] == 0.3512
    assert rec["stride_time_s"] == 0.7123
    assert rec["duty_factor"] == 0.298  # 0.212346 / 0.712346


def test_no_previous_contacts_no_timing_metrics() -> None:
    rec, _ = measure(NO_BEFORE)
    assert rec["support_time_s"] == 0.2
    for k in ("flight_time_s", "step_time_s", "stride_time_s", "duty_factor", "cadence_spm"):
        assert rec[k] is None, k


def test_implausible_previous_contacts_give_none() -> None:
    before = Before(prev_ic_same=IC - 4 * S, ic_other=IC - 2.5 * S, to_other=IC - 2.5 * S, cadence_spm=None)
    rec, _ = measure(before)
    assert rec["stride_time_s"] is None and rec["duty_factor"] is None
    assert rec["step_time_s"] is None
    assert rec["flight_time_s"] is None
    # the other foot's IC after this one is no step
    rec, _ = measure(Before(prev_ic_same=None, ic_other=IC + 10 * MS, to_other=None, cadence_spm=None))
    assert rec["step_time_s"] is None


# ------------------------------------------------------------------ without sources

def test_without_sources_every_sensor_metric_is_null() -> None:
    rec, sources = measure(RUNNING)
    assert sources == []
    for k in (*INSOLE_KEYS, *GEOMETRY_KEYS, *LANDING_KEYS, "impact_peak_g"):
        assert k in rec and rec[k] is None, k
    assert "pressure_map" not in rec and "pose_ic" not in rec


def test_a_measured_and_finished_stance_has_the_stance_record_s_keys() -> None:
    rec, sources = measure(RUNNING)
    out = finish_stance(rec, sources, {}, "insole", None, None)
    assert set(out) == KEYS["stance"] - SERVICE - OPTIONAL
    assert REQUIRED["stance"] - SERVICE <= set(out)


def test_every_part_gives_every_key() -> None:
    landing = landing_record("ath", "left", IC, 3, "imu_pelvis", imu=None, keypoints=None, other_to_ns=None,
                             forced_landing_ratio=1.3, default_oscillation_m=0.05)
    rec, sources = measure(RUNNING, insole=insole_stance(), imu=imu_after(4.0), keypoints=keypoints_still(),
                           landing=landing)
    out = finish_stance(rec, sources, {"support_time_s": 1.5}, "imu_pelvis", "sacrum", None)
    assert set(out) == KEYS["stance"] - SERVICE


# ------------------------------------------------------------------ impact

def test_the_shank_impact_in_g() -> None:
    rec, sources = measure(shank_impact=4 * 9.81)  # m/s^2
    assert rec["impact_peak_g"] == 4.0
    assert sources == []  # the shank is the timing source, named by finish_stance


def test_the_foot_imu_s_impact_wins_over_the_shank_s() -> None:
    rec, sources = measure(shank_impact=4 * 9.81, imu=imu_after(6.5))
    assert rec["impact_peak_g"] == 6.5  # the largest |a| in the 40 ms after IC, in g
    assert sources == ["imu"]


def test_an_empty_imu_window_is_no_source() -> None:
    rec, sources = measure(imu=(np.empty(0, np.int64), np.empty((0, 4))))
    assert rec["impact_peak_g"] is None
    assert sources == []


# ------------------------------------------------------------------ the landing decision

def test_the_landing_decision_is_copied_when_given() -> None:
    landing: LandingRecord = {
        "type": "landing", "athlete": "ath", "foot": "left", "ic_ns": IC, "step": 5, "source": "insole",
        "foot_landing_velocity_mps": 1.7, "foot_velocity_source": "imu", "body_fall_velocity_mps": 0.6,
        "body_fall_source": "model_flight", "forced_landing": True, "forced_landing_severity": 2.833}
    rec, sources = measure(RUNNING, landing=landing)
    assert {k: rec[k] for k in LANDING_KEYS} == {
        "foot_landing_velocity_mps": 1.7, "body_fall_velocity_mps": 0.6, "body_fall_source": "model_flight",
        "forced_landing": True, "forced_landing_severity": 2.833}
    assert "foot_velocity_source" not in rec and "step" not in rec  # not stance keys
    assert "source" not in rec
    assert sources == []


def test_without_a_landing_its_keys_are_null() -> None:
    rec, _ = measure(RUNNING, landing=None)
    assert all(rec[k] is None for k in LANDING_KEYS)


# ------------------------------------------------------------------ insole and camera

def test_the_insole_s_metrics_and_pressure_map() -> None:
    rec, sources = measure(RUNNING, insole=insole_stance())
    assert sources == ["insole"]
    assert rec["strike_zone"] == "ball"  # the region with the most load at the first loaded sample
    assert rec["heel_contact"] is False  # the heel never loaded
    assert rec["peak_force_bw"] == pytest.approx(500 / 700, abs=1e-3)
    assert rec["cop_ic_fraction"] == pytest.approx((100 * 0.4 + 350 * 0.7 + 50 * 0.95) / 500, abs=1e-3)  # 0.665
    assert rec["pressure_map"] == {"peak_bw": [0.0, 0.143, 0.5, 0.071],  # each cell's peak / BW
                                   "along": [0.1, 0.4, 0.7, 0.95], "across": [0.5, 0.45, 0.55, 0.5]}
    assert all(k in rec for k in INSOLE_KEYS)


def test_the_camera_s_stick_figure_at_ic() -> None:
    rec, sources = measure(RUNNING, keypoints=keypoints_still())
    assert sources == ["camera"]
    hip = 0.5 * (POSE[0] + POSE[4])  # (0.01, 0.90)
    expected = {name: list(np.round(POSE[k] - hip, 3)) for k, name in enumerate(POSE_NAMES)}
    assert rec["pose_ic"].keys() == expected.keys()
    for name, xy in expected.items():
        assert rec["pose_ic"][name] == pytest.approx(xy, abs=1e-9), name
    assert rec["pose_ic"]["left_knee"] == pytest.approx([0.04, -0.4])
    assert all(k in rec for k in GEOMETRY_KEYS)


def test_sources_in_order_insole_imu_camera() -> None:
    _, sources = measure(RUNNING, insole=insole_stance(), imu=imu_after(3.0), keypoints=keypoints_still())
    assert sources == ["insole", "imu", "camera"]


# ------------------------------------------------------------------ finish_stance

def test_finish_adds_symmetry_and_provenance() -> None:
    rec, sources = measure(RUNNING, imu=imu_after(3.0))
    sym = {"support_time_s": -4.5, "loading_rate_bw_per_s": 12.0}
    out = finish_stance(rec, sources, sym, "insole+imu", None, None)
    assert out["support_symmetry_pct"] == -4.5
    assert out["symmetry_pct"] == sym
    assert out["event_source"] == "insole+imu"
    assert out["sources"] == ["insole", "imu"]  # the event source's parts first, no duplicate
    assert "imu_placement" not in out


def test_no_support_symmetry_without_its_figure() -> None:
    rec, sources = measure(RUNNING)
    out = finish_stance(rec, sources, {"flight_time_s": 3.0}, "insole", None, None)
    assert out["support_symmetry_pct"] is None
    assert out["symmetry_pct"] == {"flight_time_s": 3.0}


@pytest.mark.parametrize(("event_source", "measured", "expected"), [
    ("insole", ["insole"], ["insole"]),
    ("insole", ["insole", "imu", "camera"], ["insole", "imu", "camera"]),
    ("insole+imu", ["insole", "imu"], ["insole", "imu"]),
    ("imu_shank", [], ["imu_shank"]),
    ("camera", ["camera"], ["camera"]),
    ("imu", ["camera", "imu"], ["imu", "camera"]),
    ("imu_pelvis", ["camera"], ["imu_pelvis", "camera"]),
])
def test_sources_start_with_the_event_source_without_duplicates(event_source: str, measured: list[str],
                                                                 expected: list[str]) -> None:
    rec, _ = measure(RUNNING)
    assert finish_stance(rec, list(measured), {}, event_source, None, None)["sources"] == expected


@pytest.mark.parametrize(("event_source", "placement", "kept"), [
    ("imu_pelvis", "sacrum", True),
    ("imu_pelvis", "trunk", True),
    ("imu_pelvis", None, False),
    ("insole", "sacrum", False),  # a pelvis sensor worn, but the insole timed the stance
    ("camera", "pelvis", False),
])
def test_imu_placement_only_for_a_pelvis_timed_stance(event_source: str, placement: str | None,
                                                      kept: bool) -> None:
    rec, sources = measure(RUNNING)
    out = finish_stance(rec, sources, {}, event_source, placement, None)
    if kept:
        assert out["imu_placement"] == placement
    else:
        assert "imu_placement" not in out


def test_the_pose_score_of_the_rules_present() -> None:
    # support 0.25 s is halfway from good (0.20) to bad (0.30); cadence 166.5 halfway 178 -> 155
    before = Before(prev_ic_same=None, ic_other=None, to_other=None, cadence_spm=166.5)
    rec, sources = measure(before, to=IC + 250 * MS)
    out = finish_stance(rec, sources, {}, "insole", None, None)
    assert out["pose_score_breakdown"] == {"R1_short_support": 0.5, "R8_cadence": 0.5}
    assert out["pose_score"] == 50.0
    # weights: only R1 counts
    rec, sources = measure(Before(None, None, None, 178.0), to=IC + 250 * MS)
    out = finish_stance(rec, sources, {}, "insole", None, {"R1_short_support": 1.0})
    assert out["pose_score_breakdown"] == {"R1_short_support": 0.5}
    assert out["pose_score"] == 50.0
