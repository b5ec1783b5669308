"""The athlete view's payload (sinks/athlete_view.py): named figures with units, left/right over
the last 20 steps (not one stance), the pressure map with its regions, the stick figure's pose
line, the score by named rule in order R1..R10, and the targets. On the simulator's records through
the real fusion service, and on hand-made records whose answers are worked out here."""

from __future__ import annotations

import json
import re
from pathlib import Path
from statistics import median
from typing import Any

import pytest

from poserun.processors.score import RULES
from poserun.settings import Targets
from poserun.sinks.athlete_view import (
    DEFAULT_TARGETS,
    LAST_STEP,
    METRICS,
    RULE_NAMES,
    WINDOW,
    athlete_detail,
    history_point,
    pressure,
    rule_number,
    symmetry,
    targets_of,
)
from tests.services.sim_feed import feed

SPEC = Path(__file__).resolve().parents[2].parent / "shared" / "docs" / "pose-method-metrics.md"


@pytest.fixture(scope="module")
def stances() -> list[dict[str, Any]]:
    records, _ = feed(athletes=1, seed=4, seconds=12)
    out = [r for r in records if r["type"] == "stance"]
    assert len(out) > WINDOW + 5
    return out


def step(foot: str, support: float, **more: Any) -> dict[str, Any]:
    return {"type": "stance", "athlete": "a1", "foot": foot, "ic_ns": int(more.pop("t", 0) * 1e9),
            "support_time_s": support, **more}


def test_every_figure_has_a_label_and_unit_and_no_raw_field_name(stances: list[dict]) -> None:
    d = athlete_detail(stances[-1], [history_point(r) for r in stances], None)
    assert {f["key"] for f in d["last_step"]} >= {"support_time_s", "strike_zone", "ball_load_fraction",
                                                  "knee_flexion_ic_deg", "overstride_m"}
    for f in d["last_step"] + d["rolling"]["figures"] + d["symmetry"]:
        assert f["label"] and "_" not in f["label"], f
        assert f["unit"] or f["key"] == "strike_zone", f
    shown = {f["key"]: f["value"] for f in d["last_step"]}
    assert shown["support_time_s"] == pytest.approx(stances[-1]["support_time_s"])
    assert shown["ball_load_fraction"] == pytest.approx(100 * stances[-1]["ball_load_fraction"], abs=0.01)  # in %
    assert [f["key"] for f in d["last_step"]] == [k for k in LAST_STEP if k in shown]  # the table's order
    assert all(k in METRICS for k in LAST_STEP)
    json.dumps(d)  # it goes to the page as it is


def test_left_right_is_the_median_of_each_foot_over_the_last_20_steps() -> None:
    history = [history_point(step("left", 9.9, t=i)) for i in range(10)]  # older than the window: not counted
    lefts = [0.20, 0.21, 0.22, 0.26, 0.19, 0.20, 0.21, 0.23, 0.20, 0.22]
    rights = [0.18, 0.19, 0.18, 0.20, 0.17, 0.19, 0.18, 0.18, 0.30, 0.19]
    for i, (left, right) in enumerate(zip(lefts, rights, strict=True)):
        history += [history_point(step("left", left, t=10 + 2 * i)), history_point(step("right", right, t=11 + 2 * i))]
    [support] = [m for m in symmetry(history) if m["key"] == "support_time_s"]
    left, right = median(lefts), median(rights)
    assert (support["left"], support["right"], support["n_left"], support["n_right"]) == (
        pytest.approx(left), pytest.approx(right), 10, 10)
    assert support["pct"] == pytest.approx(round(100 * (left - right) / ((left + right) / 2), 1))
    # one odd step moves a median by little, where the last-stance figure would jump
    history.append(history_point(step("right", 0.40, t=40)))
    [after] = [m for m in symmetry(history) if m["key"] == "support_time_s"]
    assert abs(after["pct"] - support["pct"]) < 6


def test_one_foot_only_has_no_percentage_and_absent_metrics_are_left_out() -> None:
    history = [history_point(step("left", 0.2, t=i)) for i in range(5)]
    rows = symmetry(history)
    assert [m["key"] for m in rows] == ["support_time_s"]  # nothing else measured
    assert rows[0]["right"] is None and rows[0]["pct"] is None


def test_rules_are_named_as_the_spec_and_in_order_r1_to_r10(stances: list[dict]) -> None:
    d = athlete_detail(stances[-1], [], None)
    assert [r["id"] for r in d["rules"]] == [f"R{i}" for i in range(1, 11)]
    assert [r["rule"] for r in d["rules"]] == sorted(RULES, key=rule_number)
    spec = dict(re.findall(r"^\| (R\d+) \| ([^|]+) \|", SPEC.read_text(), flags=re.M))
    assert set(spec) == set(RULE_NAMES)
    for r in d["rules"]:  # each name is the spec's rule, shortened: its first words are the spec's
        first = re.split(r"[,(]", r["name"])[0].strip().split()[:2]
        assert spec[r["id"]].split()[:2] == first, (r["name"], spec[r["id"]])
        assert r["value"] == stances[-1]["pose_score_breakdown"].get(r["rule"])
        assert "_" not in r["metric"], r  # the rule's metric by its label


def test_a_rule_without_its_sensor_is_not_measured_and_unknown_keys_are_dropped() -> None:
    d = athlete_detail(step("left", 0.2, pose_score_breakdown={"R1_short_support": 1.0, "posture": 0.3}), [], None)
    values = {r["id"]: r["value"] for r in d["rules"]}
    assert values["R1"] == 1.0 and values["R5"] is None and len(values) == 10


def test_the_pressure_map_carries_each_cell_s_region_and_each_region_s_peak(stances: list[dict]) -> None:
    m = pressure(stances[-1])
    assert m is not None and m["labelled"]
    assert {c["region"] for c in m["cells"]} == {"heel", "midfoot", "ball", "toes"}
    peaks = stances[-1]["pressure_map"]["peak_bw"]
    assert m["max_bw"] == max(peaks)
    assert m["regions"]["ball"] == max(p for p, r in zip(peaks, stances[-1]["pressure_map"]["region"], strict=True)
                                       if r == "ball")
    old = {"pressure_map": {k: v for k, v in stances[-1]["pressure_map"].items() if k != "region"}}
    unlabelled = pressure(old)  # a recording from before the map had regions: cells without them
    assert unlabelled is not None and not unlabelled["labelled"] and unlabelled["regions"] == {}
    assert pressure({"pressure_map": {"peak_bw": [1], "along": [0.1, 0.2], "across": [0]}}) is None
    assert pressure({"pressure_map": "junk"}) is None


def test_the_figure_s_pose_line_runs_from_the_support_ankle_through_the_hip_to_the_shoulders(
        stances: list[dict]) -> None:
    rec = stances[-1]
    f = athlete_detail(rec, [], None)["figure"]
    j = rec["pose_ic"]
    assert f["support"] == j[f"{rec['foot']}_ankle"] and f["hip"] == [0.0, 0.0]
    assert f["shoulder"] == pytest.approx([(j["left_shoulder"][i] + j["right_shoulder"][i]) / 2 for i in (0, 1)])
    assert f["ground_y"] == min(j["left_ankle"][1], j["right_ankle"][1])
    assert athlete_detail(step("left", 0.2), [], None)["figure"] is None  # no camera
    assert athlete_detail(step("left", 0.2, pose_ic={"left_hip": ["x", 1]}), [], None)["figure"] is None


def test_rolling_values_are_medians_of_the_last_20_and_the_forced_share(stances: list[dict]) -> None:
    history = [history_point(r) for r in stances]
    d = athlete_detail(stances[-1], history, None)
    roll = {f["key"]: f for f in d["rolling"]["figures"]}
    last20 = stances[-WINDOW:]
    assert d["rolling"]["steps"] == WINDOW
    assert roll["support_time_s"]["value"] == pytest.approx(median(r["support_time_s"] for r in last20), abs=1e-4)
    forced = [r["forced_landing"] for r in last20 if r["forced_landing"] is not None]
    assert roll["forced_share"]["value"] == pytest.approx(100 * sum(forced) / len(forced), abs=0.1)


def test_targets_from_the_config_else_defaults_and_bad_ones_are_not_used() -> None:
    assert targets_of(None) | {"source": None} == DEFAULT_TARGETS | {"source": None}
    t = targets_of({"cadence_spm": (175, 185), "support_time_s": 0.22})
    assert (t["cadence_spm"], t["support_time_s"], t["forced_share"]) == ([175.0, 185.0], 0.22, 0.10)
    assert t["source"] == {"cadence_spm": "config", "support_time_s": "config", "forced_share": "default"}
    none = targets_of({"cadence_spm": None, "support_time_s": 0.22, "forced_share": None})  # null: no target
    assert (none["cadence_spm"], none["forced_share"]) == (None, None) and none["source"]["forced_share"] == "none"
    assert targets_of(Targets().as_dict()) | {"source": None} == DEFAULT_TARGETS | {"source": None}  # the same
    bad = targets_of({"cadence_spm": [190, 170], "support_time_s": -1, "forced_share": 2})
    assert set(bad["source"].values()) == {"default"}


def test_bad_values_never_break_the_payload() -> None:
    rec = {"foot": "sideways", "support_time_s": float("nan"), "cadence_spm": "fast", "forced_landing": 1,
           "pose_score_breakdown": [1, 2], "pose_ic": None, "pressure_map": None}
    d = athlete_detail(rec, [history_point(rec), {"foot": None}], {"cadence_spm": "x"})
    assert d["foot"] is None and d["last_step"] == [] and d["symmetry"] == [] and d["pressure"] is None
    assert history_point(rec)["support"] is None and history_point(rec)["forced"] is None
    json.dumps(d, allow_nan=False)


def test_a_target_of_no_forced_landings_is_zero_not_the_default() -> None:
    from poserun.sinks.athlete_view import targets_of

    t = targets_of({"cadence_spm": [170.0, 190.0], "support_time_s": 0.25, "forced_share": 0.0})
    assert t["forced_share"] == 0.0 and t["source"]["forced_share"] == "config"
