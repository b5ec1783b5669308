from __future__ import annotations

import itertools

import numpy as np
import pytest

from poserun.services.sim.profiles import PROFILES, get_profile
from poserun.services.sim.runner import INSOLE_CELLS, AthleteSpec, SimRunner
from poserun.services.sim.spline import KnotCurve
from poserun.services.sim.team import SimTeam
from poserun.settings import SimSettings
from poserun.wire import bundle as wire_bundle
from poserun.wire import decode, topics
from poserun.wire.meta import parse_meta


def runner(profile: str, seed: int = 3, **kw: float) -> SimRunner:
    r = SimRunner(AthleteSpec("a", "A", get_profile(profile), seed=seed, **kw))
    r.advance(30.0)
    return r


def test_spline_is_smooth_and_exact_at_knots() -> None:
    c = KnotCurve()
    c.add(0.0, 0.0, 1.0)
    c.add(1.0, 2.0, 0.0, 3.0)
    c.add(2.0, -1.0)
    p, v, a = c.eval(np.array([0.0, 1.0, 2.0]))
    np.testing.assert_allclose(p, [0, 2, -1], atol=1e-12)
    np.testing.assert_allclose(v, [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(a[1], 3.0, atol=1e-9)
    t = np.linspace(0, 2, 20001)
    p, v, _ = c.eval(t)
    np.testing.assert_allclose(np.gradient(p, t)[5:-5], v[5:-5], atol=1e-3)
    with pytest.raises(ValueError):
        c.add(1.5, 0.0)


@pytest.mark.parametrize("name", list(PROFILES))
def test_imu_integrates_to_the_true_landing_velocity(name: str) -> None:
    r = runner(name)
    dt = 1 / 400
    t = np.arange(2.0, 28.0, dt)
    imu = r.imu("left", t)
    pitch = r.foot_kinematics("left", t)["pitch"]  # truth orientation: integration test only
    az_world = imu[:, 0] * -np.sin(pitch) + imu[:, 2] * np.cos(pitch) - 9.81
    stances = [s for s in r.stances if s.foot == "left" and 3 < s.ic < 27]
    errors = []
    for prev, st in itertools.pairwise(stances):
        mid = (prev.ic + prev.to) / 2
        m = (t >= mid) & (t < st.ic)
        errors.append(np.sum(az_world[m]) * dt + st.v_land)
    assert np.mean(np.abs(errors)) < 0.06, "vertical velocity at IC off by more than 6 cm/s"


@pytest.mark.parametrize("name", list(PROFILES))
def test_streams_agree_on_contact(name: str) -> None:
    r = runner(name)
    t = np.arange(1.0, 28.0, 0.001)
    force = r.insole("left", t).sum(axis=1)
    stances = [s for s in r.stances if s.foot == "left" and 2 < s.ic < 27]
    for st in stances:
        during = (t > st.ic + 0.01) & (t < st.to - 0.01)
        before = (t > st.ic - 0.05) & (t < st.ic - 0.002)
        assert force[during].min() > 0.0
        assert force[before].max() == 0.0
        k = r.foot_kinematics("left", np.array([st.ic - 0.001, st.ic + 0.3 * st.tc]))
        assert k["z"][0] > 0  # the foot is still in the air just before IC
        assert abs(k["vz"][1]) < 1e-6  # and at rest in early stance (before the heel lifts)
    # the hip's downward velocity at IC is the truth body velocity
    ic = np.array([s.ic for s in stances])
    _, _, vz = r.hip(ic)
    np.testing.assert_allclose(-vz, [s.v_body for s in stances], atol=0.02)


def first_loaded_region(r: SimRunner) -> str:
    st = next(s for s in r.stances if s.foot == "right" and s.ic > 2)
    t = np.linspace(st.ic + 0.002, st.ic + 0.02, 5)
    cells = r.insole("right", t)[0]
    return INSOLE_CELLS[int(np.argmax(cells))][0]


def _knee_flexion(hip: np.ndarray, knee: np.ndarray, ankle: np.ndarray) -> np.ndarray:
    u, v = hip - knee, ankle - knee
    cos = (u * v).sum(axis=1) / (np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1))
    return 180.0 - np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


@pytest.mark.parametrize(("name", "speed"), [(n, 3.6) for n in PROFILES] + [("pose", 3.2), ("slow_cadence", 4.2)])
def test_the_stance_leg_never_needs_to_be_longer_than_thigh_and_shank(name: str, speed: float) -> None:
    r = runner(name, speed_mps=speed)
    t = np.arange(2.0, 12.0, 1 / 500)
    j = r.joints(t, 0.0)
    limit = r._thigh + r._shank
    mins, mids = [], []
    for st in r.stances:
        if not 2.5 < st.ic < 11.0:
            continue
        m = (t >= st.ic) & (t <= st.to)
        hip, knee, ankle = (j[f"{st.foot}_{k}"][m] for k in ("hip", "knee", "ankle"))
        assert np.linalg.norm(ankle - hip, axis=1).max() < limit - 1e-4  # the knee never locks straight
        flex = _knee_flexion(hip, knee, ankle)
        mins.append(flex.min())
        mids.append(flex[len(flex) // 2])
    assert len(mins) > 10
    # most extended at toe-off, never straight (R6); bent most around mid-stance
    assert 8.0 < np.min(mins) and np.max(mins) < 40.0
    if name == "pose":  # good form: mid-stance flexion in the literature's range (docs/simulator.md)
        assert 30.0 < np.median(mids) < 55.0


def test_profiles_differ_as_coached() -> None:
    pose, heel, over = runner("pose"), runner("heel_striker"), runner("overstrider")
    assert first_loaded_region(pose) == "ball"
    assert first_loaded_region(heel) == "heel"
    assert first_loaded_region(runner("slow_cadence")) == "midfoot"
    tc = {n: np.mean([s.tc for s in r.stances]) for n, r in
          (("pose", pose), ("heel", heel), ("over", over))}
    assert tc["pose"] < 0.22 < tc["heel"]
    assert np.mean([s.overstride for s in over.stances]) > 0.3 > np.mean([s.overstride for s in pose.stances])
    step = np.diff([s.ic for s in pose.stances])
    assert 170 < 60 / np.median(step) < 190
    forced = runner("forced_lander", seed=11)
    share = np.mean([s.forced for s in forced.stances])
    assert 0.25 < share < 0.55
    assert not any(s.forced for s in pose.stances)
    for s in forced.stances:  # labels have margin: no ambiguous ratios near the threshold
        ratio = s.v_land / s.v_body
        assert ratio > 1.5 or ratio < 1.15


def test_team_is_deterministic_and_bounded() -> None:
    a = SimTeam("s", SimSettings(athletes=3, seed=5))
    b = SimTeam("s", SimSettings(athletes=3, seed=5))
    for _ in range(4):
        ma, _ = a.step(20)
        mb, _ = b.step(20)
        assert [(m.topic, m.payload) for m in ma] == [(m.topic, m.payload) for m in mb]
    c = SimTeam("s", SimSettings(athletes=3, seed=6))
    assert [m.payload for m in c.step(20)[0]] != [m.payload for m in ma]
    # memory stays flat: planning state does not grow with session length
    sizes = []
    for _ in range(40):
        a.step(50)
        sizes.append(sum(len(r.stances) for r in a.runners.values()))
    assert max(sizes[20:]) <= max(sizes[:20]) + 3


def test_team_frames_decode_and_match_meta() -> None:
    team = SimTeam("s", SimSettings(athletes=2, camera_fps=60, truth=True, bundle=False))
    metas = {m.topic: parse_meta(m.payload) for m in team.meta_messages()}
    msgs, truth = team.step(100)
    per_source: dict[str, list[int]] = {}
    for m in msgs:
        fr = decode(m.payload)
        t = topics.parse(m.topic)
        meta = metas[topics.meta_topic("s", t.athlete or "", t.source or "")]
        assert fr.channels == len(meta.channels)
        per_source.setdefault(m.topic, []).extend(fr.times_ns().tolist())
    for topic, times in per_source.items():
        rate = metas[topic.replace("/data/", "/meta/")].rate_hz
        assert len(times) == pytest.approx(rate * 1.0, abs=1)
        assert np.all(np.diff(times) > 0)
    assert sum(len(v) for v in truth.values()) >= 4  # ~2.5 stances per athlete in 1 s
    assert team.truth_messages(truth)


def test_json_frames_option() -> None:
    team = SimTeam("s", SimSettings(athletes=1, json_frames=True, bundle=False))
    msgs, _ = team.step(5)
    assert all(m.payload.startswith(b"{") for m in msgs)
    assert all(decode(m.payload).samples >= 1 for m in msgs)


def test_bundles_carry_the_same_frames_as_single_messages() -> None:
    """A hub's bundles (the default) hold exactly the frames the sensors would send one by one, each
    source's in order, one bundle per athlete per frame period, due when its last frame is."""
    single = SimTeam("s", SimSettings(athletes=2, seed=4, bundle=False))
    hub = SimTeam("s", SimSettings(athletes=2, seed=4))
    per_source: dict[str, list[bytes]] = {}
    got: dict[str, list[bytes]] = {}
    due: dict[bytes, int] = {}
    bundles = messages = 0
    for _ in range(3):
        for m in single.step(50)[0]:
            per_source.setdefault(m.topic, []).append(m.payload)
            due[m.payload] = m.at_ns
        for m in hub.step(50)[0]:
            messages += 1
            t = topics.parse(m.topic)
            if t.source == topics.BUNDLE:
                bundles += 1
                entries = wire_bundle.unpack(m.payload)
                assert m.frames == len(entries) >= 2
                assert m.at_ns == max(due[p] for _, p in entries)  # sent when its last frame is complete
                assert len({-(-due[p] // 10_000_000) for _, p in entries}) == 1  # one frame period, (k-1, k]
                for source, payload in entries:
                    got.setdefault(topics.data_topic("s", t.athlete or "", source), []).append(payload)
            else:
                got.setdefault(m.topic, []).append(m.payload)
    # a message per athlete per frame period (a period cut by the simulation's half-second step: two)
    assert 2 * 150 <= messages <= 2 * 150 + 2 * 3 and bundles >= 2 * 150 - 2 * 3
    assert got == per_source  # the same frames, each source's in its order
