from __future__ import annotations

import numpy as np
import pytest

from poserun.processors.keypoints import KeypointLayout, _interp, frame_at, landing_velocities, stance_geometry
from poserun.services.sim.profiles import get_profile
from poserun.services.sim.runner import AthleteSpec, SimRunner
from poserun.services.sim.team import CAMERA_ORIGIN, CAMERA_SCALE
from poserun.wire.meta import COCO17, MEDIAPIPE33
from tests.processors.reference import frame_at_ref, interp_ref, landing_velocities_ref, stance_geometry_ref

LAYOUT = KeypointLayout.from_meta(list(COCO17), "xyc", "px", CAMERA_SCALE, CAMERA_ORIGIN, "down", "sagittal_right")


def sim(profile: str) -> tuple[SimRunner, np.ndarray, np.ndarray]:
    r = SimRunner(AthleteSpec("a", "A", get_profile(profile), seed=4))
    r.advance(30)
    t = np.round(np.arange(0, 1740) * 1e9 / 60).astype(np.int64)
    kp = r.keypoints(t / 1e9, scale=CAMERA_SCALE, origin=CAMERA_ORIGIN, frame_speed=r.spec.speed_mps)
    assert LAYOUT is not None
    return r, t, LAYOUT.to_metric(kp)


def test_layouts() -> None:
    assert KeypointLayout.from_meta(list(MEDIAPIPE33), "xyc", "px", 0.004, (0, 0), "down", "sagittal_left")
    assert KeypointLayout.from_meta(["RHEE", "RTOE"], "xyzc", "m", 1, (0, 0), "up", "3d", "+z", "+x") is None
    assert KeypointLayout.from_meta(list(COCO17)[:10], "xyc", "px", 1, (0, 0), "down", "sagittal_right") is None
    assert KeypointLayout.from_meta(list(COCO17), "xyc", "px", 1, (0, 0), "down", "frontal") is None


PIG = ["LASI", "RASI", "LPSI", "RPSI", "LKNE", "RKNE", "LANK", "RANK", "LSHO", "RSHO", "LHEE", "RTOE"]


def test_motion_capture_markers_in_3d() -> None:
    lay = KeypointLayout.from_meta(PIG, "xyzc", "m", 1.0, (0, 0), "up", "3d", up_axis="+z", forward_axis="-y")
    assert lay is not None
    assert KeypointLayout.from_meta(PIG, "xyzc", "m", 1.0, (0, 0), "up", "3d") is None  # axes needed
    frame = np.zeros((1, len(PIG) * 4))
    pos = {"LASI": (0, -0.1, 1.0), "LPSI": (0, 0.1, 1.0), "LKNE": (0, -0.05, 0.5), "LANK": (0, 0.2, 0.08),
           "LSHO": (0, 0.0, 1.5)}
    for name, (x, y, z) in pos.items():
        k = PIG.index(name)
        frame[0, 4 * k: 4 * k + 4] = (x, y, z, 1.0)
    pts = lay.to_metric(frame)
    np.testing.assert_allclose(pts[0, 0], [0.0, 1.0])  # left hip: mean of ASIS and PSIS; forward is -y
    np.testing.assert_allclose(pts[0, 1], [0.05, 0.5])
    np.testing.assert_allclose(pts[0, 2], [-0.2, 0.08])
    frame[0, 4 * PIG.index("LKNE") + 3] = 0.0  # a missing marker
    assert np.isnan(lay.to_metric(frame)[0, 1]).all()


@pytest.mark.parametrize(("names", "knee", "ankle"), [
    (["R_acr", "L_acr", "R_asis", "L_asis", "R_psis", "L_psis", "R_kneejoint_LA", "L_kneejoint_LA",
      "R_ankle_LA", "L_ankle_LA"], "L_kneejoint_LA", "L_ankle_LA"),
    (["RSHO", "LSHO", "RASI", "LASI", "RKNE", "LKNE", "RANK", "LANK"], "LKNE", "LANK"),
    (["Right.Shoulder", "Left.Shoulder", "Right.Hip", "Left.Hip", "Right.Knee", "Left.Knee", "Right.Ankle",
      "Left.Ankle"], "Left.Knee", "Left.Ankle"),
])
def test_marker_names_of_several_conventions(names: list[str], knee: str, ankle: str) -> None:
    from poserun.processors.keypoints import _marker_groups

    groups = _marker_groups(names)
    assert groups is not None
    assert [names[i] for i in groups[1]] == [knee] and [names[i] for i in groups[2]] == [ankle]


def test_a_marker_word_must_be_an_alias_not_a_fragment() -> None:
    from poserun.processors.keypoints import _marker_groups

    # "R_shank_TA" must not pass for a knee, nor "L_tibtub" for an ankle: no joint, no layout
    names = ["R_acr", "L_acr", "R_asis", "L_asis", "R_shank_TA", "L_shank_TA", "R_tibtub", "L_tibtub"]
    groups = _marker_groups(names)
    assert groups[1] == groups[2] == groups[5] == groups[6] == []  # knees and ankles
    assert KeypointLayout.from_meta(names, "xyzc", "m", 1.0, (0, 0), "up", "3d", "+z", "+x") is None


LOWER_PIG = ["LASI", "RASI", "LPSI", "RPSI", "LTHI", "RTHI", "LKNE", "RKNE", "LTIB", "RTIB", "LANK", "RANK",
             "LHEE", "RHEE", "LTOE", "RTOE"]
RBDS = ["R.ASIS", "L.ASIS", "R.PSIS", "L.PSIS", "R.Knee", "L.Knee", "R.Heel.Bottom", "L.Heel.Bottom",
        "R.Heel.Top", "L.Heel.Top", "R.MT1", "L.MT1", "R.MT5", "L.MT5"]


def test_a_lower_body_marker_set_gives_a_layout_without_shoulders() -> None:
    lay = KeypointLayout.from_meta(LOWER_PIG, "xyzc", "m", 1.0, (0, 0), "up", "3d", "+z", "+y")
    assert lay is not None
    assert lay.groups[3] == lay.groups[7] == ()  # no shoulders
    assert [LOWER_PIG[i] for i in lay.groups[2]] == ["LANK"] and lay.toes == (14, 15)
    frame = np.ones((2, len(LOWER_PIG) * 4))
    pts = lay.to_metric(frame)
    assert np.isnan(pts[:, 3]).all() and np.isnan(pts[:, 7]).all()
    assert np.isfinite(pts[:, [0, 1, 2, 4, 5, 6]]).all()


def test_a_heel_stands_in_for_a_missing_ankle_and_a_metatarsal_for_the_toe() -> None:
    lay = KeypointLayout.from_meta(RBDS, "xyzc", "m", 1.0, (0, 0), "up", "3d", "+z", "+y")
    assert lay is not None
    assert [RBDS[i] for i in lay.groups[2]] == ["L.Heel.Bottom"]
    assert [RBDS[i] for i in lay.groups[6]] == ["R.Heel.Bottom"]
    assert lay.toes is not None and [RBDS[i] for i in lay.toes] == ["L.MT1", "R.MT1"]



@pytest.mark.parametrize("profile", ["pose", "overstrider"])
def test_geometry_against_truth(profile: str) -> None:
    r, t, pts = sim(profile)
    over, body = [], []
    for s in r.stances:
        if not 3 < s.ic < 27:
            continue
        g = stance_geometry(t, pts, s.foot, s.ic * 1e9, s.to * 1e9, (s.ic - 0.7) * 1e9, r.L)
        over.append(g["overstride_m"] - s.overstride)
        bv, _ = landing_velocities(t, pts, s.foot, s.ic * 1e9)
        body.append(bv - s.v_body)
        assert g["knee_flexion_ic_deg"] is not None and 0 < g["knee_flexion_ic_deg"] < 90
        assert g["pull_height_m"] is not None and g["vertical_oscillation_m"] is not None
    assert abs(np.mean(over)) < 0.01 and np.std(over) < 0.01
    assert abs(np.mean(body)) < 0.03 and np.std(body) < 0.12


def _leaning_figure(bend_deg: float, early_bend_deg: float, toes: bool) -> tuple[np.ndarray, ...]:
    """A rigid figure pivoting forward over its left point of support through a 0.2 s stance: the
    support-to-hip line turns from -12 to +18 degrees; the trunk sits ``bend_deg`` ahead of that
    line once the hips are past the support (``early_bend_deg`` before), so the answers are known."""
    t = np.arange(0, 0.3, 1 / 100)
    times = np.round(t * 1e9).astype(np.int64)
    ic, to = 0.05, 0.25
    phi = np.radians(-12 + 30 * np.clip((t - ic) / (to - ic), 0, 1))
    support = np.array([0.3, 0.0])  # the ball of the left foot
    ankle = support + np.array([-0.15, 0.08])
    hip = support + 0.9 * np.stack([np.sin(phi), np.cos(phi)], axis=1)
    trunk = phi + np.radians(np.where(phi >= 0, bend_deg, early_bend_deg))
    shoulder = hip + 0.5 * np.stack([np.sin(trunk), np.cos(trunk)], axis=1)
    pts = np.empty((len(t), 8, 2))
    for off in (0, 4):
        pts[:, off] = hip
        pts[:, off + 3] = shoulder
    pts[:, 2] = ankle
    pts[:, 1] = 0.5 * (hip + ankle) + np.array([0.05, 0.0])
    pts[:, 6] = hip + np.array([-0.3, -0.5])  # the swing leg
    pts[:, 5] = hip + np.array([0.1, -0.4])
    toe = np.broadcast_to(np.stack([support, [np.nan, np.nan]]), (len(t), 2, 2)).copy() if toes else None
    return times, pts, toe, ic * 1e9, to * 1e9


@pytest.mark.parametrize("toes", [False, True])
@pytest.mark.parametrize(("bend", "early"), [(0.0, 0.0), (7.0, 25.0), (-4.0, -4.0)])
def test_fall_angle_and_waist_bend_of_a_rigid_leaning_figure(bend: float, early: float, toes: bool) -> None:
    times, pts, toe, ic, to = _leaning_figure(bend, early, toes)
    g = stance_geometry(times, pts, "left", ic, to, None, 0.9, toes=toe)
    want = stance_geometry_ref(times, pts, "left", ic, to, None, 0.9, toes=toe)
    # the fall angle at TO, from the support point (the toe; the ankle without one) to the hips
    fall = 18.0 if toes else np.degrees(np.arctan2(0.9 * np.sin(np.radians(18)) + 0.15,
                                                    0.9 * np.cos(np.radians(18)) - 0.08))
    assert g["fall_angle_deg"] == pytest.approx(fall, abs=1e-3)
    assert want["fall_angle_deg"] == pytest.approx(fall, abs=1e-3)
    if toes:  # the bend before the hips pass over the support (the landing) is not the fall's
        assert g["waist_bend_deg"] == pytest.approx(bend, abs=1e-3)
    else:  # from the ankle the pose line is another line, but the trunk's rigid bend still shows
        assert g["waist_bend_deg"] == pytest.approx(want["waist_bend_deg"], abs=2e-4)
        assert abs(g["waist_bend_deg"] - bend) < 12
    assert g["waist_bend_deg"] == pytest.approx(want["waist_bend_deg"], abs=2e-4)


def test_a_toe_lost_after_toe_off_is_interpolated_not_swapped_for_the_ankle() -> None:
    """The point of support is one kind per foot: a toe missing in the frame after TO is bridged
    from the toe's own frames, not replaced by the ankle 0.17 m behind it."""
    times, pts, toe, ic, to = _leaning_figure(0.0, 0.0, True)
    assert toe is not None
    after = int(np.searchsorted(times, to))  # the first frame at or after TO
    toe[after:after + 2, 0] = np.nan
    for geometry in (stance_geometry, stance_geometry_ref):
        g = geometry(times, pts, "left", ic, to, None, 0.9, toes=toe)
        assert g["fall_angle_deg"] == pytest.approx(18.0, abs=1e-3)


def test_no_fall_no_waist_bend() -> None:
    """Hips that never reach the point of support during the stance: the fall never began."""
    times, pts, toe, ic, to = _leaning_figure(5.0, 5.0, True)
    assert toe is not None
    toe[:, 0] += 1.0  # the support point a metre ahead: the hips stay behind it throughout
    for geometry in (stance_geometry, stance_geometry_ref):
        assert geometry(times, pts, "left", ic, to, None, 0.9, toes=toe)["waist_bend_deg"] is None


def test_low_confidence_keypoints_give_nulls() -> None:
    r, t, _ = sim("pose")
    kp = r.keypoints(t / 1e9, scale=CAMERA_SCALE, origin=CAMERA_ORIGIN, frame_speed=r.spec.speed_mps)
    kp[:, 2::3] = 0.1  # every confidence under the gate
    assert LAYOUT is not None
    pts = LAYOUT.to_metric(kp)
    s = next(s for s in r.stances if s.ic > 3)
    g = stance_geometry(t, pts, s.foot, s.ic * 1e9, s.to * 1e9, None, r.L)
    assert all(v is None for v in g.values())


def _holes(pts: np.ndarray, rng: np.random.Generator, share: float) -> np.ndarray:
    out = pts.copy()
    out[rng.random(out.shape[:2]) < share] = np.nan  # a joint missing in a frame loses x and y
    return out


def _toes(pts: np.ndarray, rng: np.random.Generator, share: float) -> np.ndarray:
    """Toe points 0.15 m ahead of each ankle on the ground line below it, with holes."""
    toes = pts[:, [2, 6], :] + np.array([0.15, -0.06])
    toes[rng.random(toes.shape[:2]) < share] = np.nan
    return toes


@pytest.mark.parametrize("share", [0.0, 0.05, 0.3])
def test_geometry_kernel_matches_its_numpy_twin(share: float) -> None:
    rng = np.random.default_rng(7)
    for profile in ("pose", "heel_striker"):
        r, t, pts = sim(profile)
        pts = _holes(pts, rng, share)
        drop = rng.random(len(t)) < share / 2  # and whole frames missing (gaps in time)
        t, pts = t[~drop], pts[~drop]
        stances = list(r.stances)[2:30]
        for s in stances:
            start = (s.ic - 0.7) * 1e9 if s.foot == "left" else None
            at_ic = np.empty((8, 2))
            toes = _toes(pts, rng, share) if s.step % 3 == 0 else None  # the toe as support, some holes
            got = stance_geometry(t, pts, s.foot, s.ic * 1e9, s.to * 1e9, start, r.L, at_ic=at_ic, toes=toes)
            want = stance_geometry_ref(t, pts, s.foot, s.ic * 1e9, s.to * 1e9, start, r.L, toes=toes)
            assert got.keys() == want.keys()
            for k in got:
                assert (got[k] is None) == (want[k] is None), k
                if got[k] is not None:
                    assert got[k] == pytest.approx(want[k], abs=2e-4), k
            for when in (s.ic * 1e9, s.to * 1e9, s.ic * 1e9 + 1.7e6, t[0] - 5.0, float(t[-1])):
                np.testing.assert_allclose(frame_at(t, pts, when), frame_at_ref(t, pts, when),
                                           rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(at_ic, frame_at_ref(t, pts, stances[-1].ic * 1e9), rtol=1e-9, atol=1e-12)


def test_interp_matches_numpy() -> None:
    rng = np.random.default_rng(3)
    for _ in range(300):
        n = int(rng.integers(0, 12))
        t = np.cumsum(rng.integers(1, 40_000_000, n)).astype(np.int64)
        v = rng.normal(size=n)
        v[rng.random(n) < 0.3] = np.nan
        for q in rng.uniform(-1e6, (t[-1] if n else 0) + 1e6, 5).tolist() + t[:3].astype(float).tolist():
            a, b = _interp(t, v, q), interp_ref(t, v, q)
            assert (np.isnan(a) and np.isnan(b)) or a == pytest.approx(b, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("share", [0.0, 0.3])
def test_landing_velocities_kernel_matches_its_numpy_twin(share: float) -> None:
    rng = np.random.default_rng(11)
    r, t, pts = sim("forced_lander")
    pts = _holes(pts, rng, share)
    for s in list(r.stances)[2:40]:
        for until in (None, s.ic * 1e9 - 20e6):
            got = landing_velocities(t, pts, s.foot, s.ic * 1e9, until_ns=until)
            want = landing_velocities_ref(t, pts, s.foot, s.ic * 1e9, until_ns=until)
            for a, b in zip(got, want, strict=True):
                assert (np.isnan(a) and np.isnan(b)) or a == pytest.approx(b, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("layout_args", [
    (list(COCO17), "xyc", "px", CAMERA_SCALE, CAMERA_ORIGIN, "down", "sagittal_right"),
    (list(MEDIAPIPE33), "xyc", "px", 0.004, (10.0, 700.0), "up", "sagittal_left"),
])
def test_to_metric_kernel_matches_numpy(layout_args: tuple) -> None:
    lay = KeypointLayout.from_meta(*layout_args)
    assert lay is not None
    rng = np.random.default_rng(2)
    raw = rng.uniform(0, 1000, (50, len(layout_args[0]) * 3))
    raw[:, 2::3] = rng.uniform(0, 1, (50, len(layout_args[0])))  # confidences, some under the gate
    np.testing.assert_array_equal(lay.to_metric(raw), lay.to_metric_numpy(raw))
    assert np.isnan(lay.to_metric(raw)).any() and not np.isnan(lay.to_metric(raw)).all()
