"""The fused per-athlete state, fed with simulated streams as the service would."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poserun.processors.athlete import AthleteParams, AthleteState
from poserun.records import LandingRecord, StanceRecord
from poserun.services.fusion import configure
from poserun.services.sim.team import SimTeam, device_meta
from poserun.settings import SimSettings
from poserun.wire import decode

ALL = ["imu_foot_left", "imu_foot_right", "insole_left", "insole_right", "keypoints"]


def streams(sensors: list[str], seconds: float = 12.0, profile: str = "forced_lander",
            clocks: dict | None = None) -> tuple[SimTeam, list[tuple[str, np.ndarray, np.ndarray, int]]]:
    team = SimTeam("s", SimSettings(athletes=1, sensors=sensors, profiles=[profile], seed=3, bundle=False,
                                    **(clocks or {})))
    blocks = []
    for _ in range(int(seconds * 2)):
        msgs, _ = team.step(50)
        for m in sorted(msgs, key=lambda m: m.at_ns):
            fr = decode(m.payload)
            blocks.append((m.topic.rsplit("/", 1)[1], fr.times_ns(), np.array(fr.data), m.at_ns))
    return team, blocks


def new_state(team: SimTeam) -> AthleteState:
    spec = team.specs[0]
    state = AthleteState("a01", AthleteParams(body_mass_kg=spec.body_mass_kg, leg_length_m=spec.leg_length_m))
    for src in team.sources["a01"]:
        configure(state, device_meta(src.name, src.rate))
    return state


def feed(state: AthleteState, blocks: list[tuple[str, np.ndarray, np.ndarray, int]]) -> list[dict]:
    out = []
    for source, t, d, _ in blocks:
        out += state.push(source, t, d)
    return out


def regroup(blocks: list[tuple[str, np.ndarray, np.ndarray, int]], cuts: list[int]
            ) -> list[tuple[str, np.ndarray, np.ndarray, int]]:
    """The same samples in other chunk sizes: consecutive frames of a source merged, in time order."""
    rng = np.random.default_rng(sum(cuts) + len(cuts))
    merged: list[tuple[str, np.ndarray, np.ndarray, int]] = []
    pending: dict[str, list] = {}
    for source, t, d, at in blocks:
        pending.setdefault(source, []).append((t, d, at))
        if rng.random() < 0.3:
            for src, parts in sorted(pending.items()):
                merged.append((src, np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                               parts[-1][2]))
            pending = {}
    for src, parts in sorted(pending.items()):
        merged.append((src, np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                       parts[-1][2]))
    return merged


def test_records_carry_every_metric_the_sensors_support() -> None:
    team, blocks = streams(ALL)
    recs = feed(new_state(team), blocks)
    stances = [r for r in recs if r["type"] == "stance"][4:]
    landings = [r for r in recs if r["type"] == "landing"][4:]
    assert len(stances) > 25 and len(landings) > 25  # ~2.9 steps per second for 12 s
    for r in recs:
        model = LandingRecord if r["type"] == "landing" else StanceRecord
        model.model_validate(r | {"session": "s", "emitted_ns": 0, "id": "x"})
        json.dumps(r)
    must = ["support_time_s", "flight_time_s", "step_time_s", "cadence_spm", "duty_factor", "strike_zone",
            "cop_ic_fraction", "heel_contact", "heel_peak_fraction", "ball_load_fraction", "release_time_s",
            "release_ratio", "toe_pushoff_fraction", "loading_rate_bw_per_s", "impact_peak_g",
            "foot_landing_velocity_mps", "body_fall_velocity_mps", "forced_landing", "forced_landing_severity",
            "overstride_m", "overstride_ratio", "knee_flexion_ic_deg", "knee_flexion_min_deg", "fall_angle_deg",
            "waist_bend_deg", "vertical_oscillation_m", "pull_height_m", "pull_under_hip_m",
            "support_symmetry_pct", "pose_score"]
    for r in stances:
        missing = [k for k in must if r.get(k) is None]
        assert not missing, missing
        assert set(r["sources"]) == {"insole", "imu", "camera"}
        assert len(r["pose_score_breakdown"]) == 10
        assert {"support_time_s", "loading_rate_bw_per_s", "overstride_m"} <= set(r["symmetry_pct"])
    assert {r["body_fall_source"] for r in landings} == {"camera+model_flight"}
    assert any(r["forced_landing"] for r in landings) and not all(r["forced_landing"] for r in landings)


def test_metrics_without_a_source_are_null() -> None:
    team, blocks = streams(["imu_foot_left", "imu_foot_right"], profile="pose")
    recs = feed(new_state(team), blocks)
    stances = [r for r in recs if r["type"] == "stance"][4:]
    assert stances
    for r in stances:
        assert r["sources"] == ["imu"]
        for k in ("strike_zone", "heel_contact", "release_ratio", "overstride_m", "knee_flexion_ic_deg",
                  "vertical_oscillation_m"):
            assert r[k] is None, k
        assert r["impact_peak_g"] is not None and r["support_time_s"] > 0
    landings = [r for r in recs if r["type"] == "landing"][4:]
    assert {r["body_fall_source"] for r in landings} == {"model_flight"}


@settings(max_examples=8, deadline=None)
@given(st.lists(st.integers(0, 10_000), min_size=1, max_size=5))
def test_streaming_equals_batch(cuts: list[int]) -> None:
    team, blocks = streams(ALL, seconds=6.0)
    want = feed(new_state(team), blocks)
    got = feed(new_state(team), regroup(blocks, cuts))
    assert got == want


def test_state_stays_bounded_over_a_long_session() -> None:
    team, _ = streams(ALL, seconds=0.5)
    state = new_state(team)
    sizes = []
    for _ in range(120):  # two minutes of simulated running, checked every second
        msgs, _ = team.step(100)
        for m in sorted(msgs, key=lambda m: m.at_ns):
            fr = decode(m.payload)
            state.push(m.topic.rsplit("/", 1)[1], fr.times_ns(), np.array(fr.data))
        assert state.camera is not None
        sizes.append((len(state._pending), state.camera.ring.size, state.insoles["left"].ring.size,
                      state.imus["left"].ring.size, len(state._landing),
                      sum(len(s.times) for s in state._streams.values())))
    late = np.array(sizes[30:])
    early = np.array(sizes[5:30])
    assert (late.max(axis=0) <= early.max(axis=0) * 1.05 + 2).all()


@pytest.mark.parametrize("sensors", [["insole_left", "insole_right"], ["keypoints"]])
def test_other_subsets_run(sensors: list[str]) -> None:
    team, blocks = streams(sensors, seconds=4.0)
    recs = feed(new_state(team), blocks)
    stances = [r for r in recs if r["type"] == "stance"]
    assert len(stances) >= 8
    if "insole_left" in sensors:
        assert any(r["strike_zone"] == "ball" for r in stances)
        assert all(r["overstride_m"] is None for r in stances)
    else:  # camera only: events from the ankles, geometry from the whole body, no pressure metrics
        assert all(r["event_source"] == "camera" and r["strike_zone"] is None for r in stances)
        assert all(r["overstride_m"] is not None for r in stances[2:])


def test_a_source_dropping_out_hands_over_and_takes_back() -> None:
    team, blocks = streams(ALL, seconds=24.0)
    gap = (8e9, 14e9)  # the insoles go silent for six seconds
    kept = [b for b in blocks if not (b[0].startswith("insole") and gap[0] <= b[1][0] < gap[1])]
    recs = feed(new_state(team), kept)
    stances = [r for r in recs if r["type"] == "stance"]
    during = [r for r in stances if gap[0] + 0.5e9 < r["ic_ns"] < gap[1]]
    after = [r for r in stances if r["ic_ns"] > gap[1] + 1e9]
    before = [r for r in stances if 2e9 < r["ic_ns"] < gap[0]]
    assert before and all(r["event_source"] == "insole+imu" for r in before)
    assert len(during) >= 12 and all(r["event_source"] == "imu" for r in during)
    assert all(r["strike_zone"] is None and r["forced_landing"] is not None for r in during)
    assert after and all(r["event_source"] == "insole+imu" for r in after)
    for foot in ("left", "right"):  # never the same contact twice
        ics = sorted(r["ic_ns"] for r in stances if r["foot"] == foot)
        assert np.min(np.diff(ics)) > 0.4e9


def test_a_set_without_shoulders_or_hips_still_times_every_contact() -> None:
    """A lower-body marker set (no shoulders; here not even hips or knees) times the same contacts;
    the metrics that need the missing joints are null, not the events."""
    team, blocks = streams(["keypoints"], seconds=8.0, profile="pose")
    full = feed(new_state(team), blocks)
    meta = device_meta("keypoints", 60.0)
    names = list(meta.names)
    for dropped, kept_metrics in ((("shoulder",), ("overstride_m", "knee_flexion_ic_deg")),
                                  (("shoulder", "hip", "knee"), ())):
        keep = [i for i, n in enumerate(names) if not any(n.endswith(j) for j in dropped)]
        assert len(keep) < len(names)
        width = len(meta.dims)
        cols = [i * width + k for i in keep for k in range(width)]
        spec = team.specs[0]
        state = AthleteState("a01", AthleteParams(body_mass_kg=spec.body_mass_kg, leg_length_m=spec.leg_length_m))
        configure(state, meta.model_copy(update={"names": [names[i] for i in keep]}))
        part = feed(state, [(s, t, d[:, cols], at) for s, t, d, at in blocks])
        stances = [(r["foot"], r["ic_ns"], r["to_ns"]) for r in part if r["type"] == "stance"]
        assert stances == [(r["foot"], r["ic_ns"], r["to_ns"]) for r in full if r["type"] == "stance"]
        assert len(stances) >= 10
        last = [r for r in part if r["type"] == "stance"][-1]
        assert last["waist_bend_deg"] is None  # needs the shoulders
        for k in kept_metrics:
            assert last[k] is not None
        if "hip" in dropped:
            assert last["overstride_m"] is None and "pose_ic" not in last
