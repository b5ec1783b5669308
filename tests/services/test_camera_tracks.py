"""Which track is which athlete, and metres per pixel (services/camera_tracks.py): pure, on hand-built
tracks and keypoints."""

from __future__ import annotations

import math

import numpy as np
import pytest

from poserun.services.camera_pose import KEYPOINTS, Pose, Roi, Track
from poserun.services.camera_tracks import (
    ANKLE,
    ANKLE_OF_LEG,
    CALIBRATION_FRAMES,
    HEEL,
    HIP,
    KNEE,
    TOE,
    VISIBLE,
    Assigner,
    LegCalibration,
    Region,
    keypoint_rows,
    scale_from_marks,
)

W, H = 1000, 500  # image size for the assignment tests

# --------------------------------------------------------------------------------------------------
# Region
# --------------------------------------------------------------------------------------------------


def test_region_parse_good_specs() -> None:
    assert Region.parse("0,0,1,1") == Region()
    assert Region.parse("0,0.5,1,1") == Region(0.0, 0.5, 1.0, 1.0)
    assert Region.parse(" 0.25 , 0.1,0.75 ,0.9 ") == Region(0.25, 0.1, 0.75, 0.9)
    assert Region.parse("0,0,.5,1e0") == Region(0.0, 0.0, 0.5, 1.0)


@pytest.mark.parametrize("spec", ["", "0,0,1", "0,0,1,1,1", "a,b,c,d", "0;0;1;1", "0,0,1,", "0 0 1 1"])
def test_region_parse_rejects_malformed_specs(spec: str) -> None:
    with pytest.raises(ValueError, match=r"x0,y0,x1,y1 \(fractions of the image\), not") as err:
        Region.parse(spec)
    assert repr(spec) in str(err.value)  # says what it was given


@pytest.mark.parametrize("spec", ["1,0,0,1", "0.5,0,0.5,1", "0,0.6,1,0.4", "0,0,1.5,1", "-0.1,0,1,1",
                                  "0,0,1,1.01", "nan,0,1,1", "0,0,inf,1"])
def test_region_parse_rejects_impossible_regions(spec: str) -> None:
    with pytest.raises(ValueError, match=r"a region needs 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1"):
        Region.parse(spec)


@pytest.mark.parametrize("bounds", [(0.5, 0, 0.5, 1), (0.6, 0, 0.4, 1), (0, 0.3, 1, 0.3), (0, 0.7, 1, 0.2),
                                    (-0.01, 0, 1, 1), (0, 0, 1, 1.5)])
def test_region_validation(bounds: tuple[float, float, float, float]) -> None:
    with pytest.raises(ValueError, match="a region needs"):
        Region(*bounds)


def test_region_contains_at_its_edges() -> None:
    left, right = Region(0, 0, 0.5, 1), Region(0.5, 0, 1, 1)
    assert left.contains(0, 0, W, H) and not right.contains(0, 0, W, H)
    assert left.contains(499.999, 250, W, H) and not right.contains(499.999, 250, W, H)
    # the shared edge belongs to one region only: half-open [x0, x1)
    assert not left.contains(500, 250, W, H) and right.contains(500, 250, W, H)
    assert right.contains(999.999, 499.999, W, H)
    assert not right.contains(1000, 250, W, H) and not right.contains(700, 500, W, H)
    assert not left.contains(-0.001, 250, W, H) and not left.contains(100, -0.001, W, H)
    top = Region(0, 0, 1, 0.45)
    assert top.contains(10, 224.9, W, H) and not top.contains(10, 225, W, H)
    # in pixels of the image it is given
    assert Region(0.5, 0.5, 1, 1).contains(600, 300, W, H) and not Region(0.5, 0.5, 1, 1).contains(600, 300, 2 * W,
                                                                                                    2 * H)


# --------------------------------------------------------------------------------------------------
# Assigner
# --------------------------------------------------------------------------------------------------


def track(tid: int, hip: tuple[float, float], seen: bool = True) -> Track:
    """A track whose pose's mid-hip is at ``hip`` (keypoints 23 and 24 either side of it)."""
    xy = np.tile(np.asarray(hip, float), (KEYPOINTS, 1)) + np.arange(KEYPOINTS)[:, None] * (1.0, 0.5)
    xy[HIP[0]] = (hip[0] - 10, hip[1])
    xy[HIP[1]] = (hip[0] + 10, hip[1])
    roi = Roi(hip[0], hip[1], 200.0, 0.0)
    pose = Pose(xy, np.linspace(0.1, 1.0, KEYPOINTS), 0.9, roi) if seen else None
    return Track(tid, roi, pose)


def ids(out: dict[str, Track | None]) -> dict[str, int | None]:
    return {a: (t.id if t is not None else None) for a, t in out.items()}


def test_the_mid_hip_is_between_keypoints_23_and_24() -> None:
    pose = track(1, (321.0, 123.0)).pose
    assert pose is not None and pose.hip_px == (321.0, 123.0)


def test_one_person_in_a_region_binds_and_stays_bound_when_a_second_enters() -> None:
    a = Assigner({"ada": Region()})
    assert ids(a.assign([track(7, (100, 100))], W, H)) == {"ada": 7}
    assert a.bound == {"ada": 7} and a.counts["bound"] == 1
    # a second person walks in: ada stays with track 7, nothing ambiguous
    for x in (900, 600, 200, 120):
        assert ids(a.assign([track(8, (x, 300)), track(7, (110, 100))], W, H)) == {"ada": 7}
    assert a.counts["bound"] == 1 and a.counts["ambiguous"] == 0 and a.counts["unbound"] == 0


def test_two_people_in_a_free_region_bind_no_one() -> None:
    a = Assigner({"ada": Region()})
    for _ in range(3):
        out = a.assign([track(1, (100, 100)), track(2, (800, 400))], W, H)
        assert out == {"ada": None}
        np.testing.assert_array_equal(keypoint_rows(out["ada"])[:, 2], 0.0)  # sent with confidence 0
    assert a.bound == {} and a.counts["ambiguous"] == 3 and a.counts["bound"] == 0
    # one leaves: the other is bound
    assert ids(a.assign([track(2, (800, 400))], W, H)) == {"ada": 2} and a.counts["bound"] == 1


def test_a_track_without_a_pose_is_not_a_candidate() -> None:
    a = Assigner({"ada": Region()})
    assert ids(a.assign([track(1, (100, 100)), track(2, (800, 400), seen=False)], W, H)) == {"ada": 1}
    assert a.counts["ambiguous"] == 0


def test_the_bound_track_leaving_the_region_unbinds() -> None:
    a = Assigner({"ada": Region(0, 0, 0.5, 1)})
    assert ids(a.assign([track(1, (100, 100))], W, H)) == {"ada": 1}
    # track 1 walks out to the right half as track 2 appears in ada's region: one new candidate, taken
    out = a.assign([track(1, (600, 100)), track(2, (300, 300))], W, H)
    assert ids(out) == {"ada": 2} and a.counts["unbound"] == 1 and a.counts["bound"] == 1
    assert a.counts["rebound"] == 1
    # track 1 walking back in does not take ada from track 2
    assert ids(a.assign([track(1, (200, 100)), track(2, (300, 300))], W, H)) == {"ada": 2}
    assert a.counts["unbound"] == 1


def test_someone_in_view_while_the_athlete_was_followed_never_becomes_the_athlete() -> None:
    # a runner (1) crosses the image while a coach (2) stands at the side: when the runner's track ends,
    # the coach is alone in the region, but was in view all along, so is someone else: no one is sent
    a = Assigner({"ada": Region()})
    assert ids(a.assign([track(1, (100, 100))], W, H)) == {"ada": 1}
    for x in (200, 400, 600):
        assert ids(a.assign([track(1, (x, 100)), track(2, (900, 500))], W, H)) == {"ada": 1}
    for _ in range(3):
        assert ids(a.assign([track(2, (900, 500))], W, H)) == {"ada": None}
    assert a.counts["unbound"] == 1 and a.counts["rebound"] == 0
    # a new track alone in the region (the runner found again, or a newcomer) is taken
    assert ids(a.assign([track(2, (900, 500)), track(3, (150, 100))], W, H)) == {"ada": 3}
    assert a.counts["rebound"] == 1 and a.blocked["ada"] == {2}
    # ids of ended tracks are forgotten (the blocked set stays bounded)
    a.assign([track(3, (150, 100))], W, H)
    assert a.blocked["ada"] == set()


def test_the_bound_track_disappearing_unbinds_and_rebinding_needs_a_single_candidate() -> None:
    a = Assigner({"ada": Region()})
    assert ids(a.assign([track(1, (100, 100))], W, H)) == {"ada": 1}
    # track 1 ends while two others are in the region: unbound, and no one can be told apart
    assert ids(a.assign([track(2, (300, 300)), track(3, (700, 300))], W, H)) == {"ada": None}
    assert a.bound == {} and a.counts["unbound"] == 1 and a.counts["ambiguous"] == 1
    assert ids(a.assign([track(2, (300, 300)), track(3, (700, 300))], W, H)) == {"ada": None}
    assert a.counts["unbound"] == 1 and a.counts["ambiguous"] == 2  # unbound counted once, when it happened
    # track 3 leaves: 2 is the only candidate
    assert ids(a.assign([track(2, (300, 300))], W, H)) == {"ada": 2} and a.bound == {"ada": 2}
    # the pose is lost (track without a pose): unbound again, no one left to bind
    assert ids(a.assign([track(2, (300, 300), seen=False)], W, H)) == {"ada": None}
    assert a.counts["unbound"] == 2 and a.bound == {}


def test_two_athletes_never_get_the_same_track() -> None:
    # overlapping regions: one track inside both
    regions = {"ada": Region(0, 0, 0.6, 1), "bob": Region(0.4, 0, 1, 1)}
    a = Assigner(regions)
    out = a.assign([track(1, (500, 250))], W, H)
    assert ids(out) == {"ada": 1, "bob": None}  # the first athlete takes it; bob's region has no free one
    # a second person in the overlap: bob's only free candidate
    out = a.assign([track(1, (500, 250)), track(2, (550, 250))], W, H)
    assert ids(out) == {"ada": 1, "bob": 2}
    for _ in range(20):
        bound = [t.id for t in a.assign([track(2, (450, 250)), track(1, (520, 250))], W, H).values() if t]
        assert len(bound) == len(set(bound))


def test_a_track_bound_to_one_athlete_is_not_taken_by_another_whose_region_contains_it() -> None:
    regions = {"ada": Region(0.4, 0, 1, 1), "bob": Region(0, 0, 0.6, 1)}
    a = Assigner(regions)
    # bob is bound first (ada's region is empty), then walks into the overlap
    assert ids(a.assign([track(5, (100, 250))], W, H)) == {"ada": None, "bob": 5}
    out = a.assign([track(5, (500, 250))], W, H)
    assert ids(out) == {"ada": None, "bob": 5}  # ada, listed first, does not take bob's track
    assert a.bound == {"bob": 5} and a.counts["ambiguous"] == 0
    # a second person enters ada's region (outside bob's): ada's single free candidate
    assert ids(a.assign([track(5, (500, 250)), track(6, (900, 250))], W, H)) == {"ada": 6, "bob": 5}


def test_athletes_in_separate_lanes() -> None:
    a = Assigner({"top": Region.parse("0,0,1,0.45"), "bottom": Region.parse("0,0.45,1,1")})
    for k in range(30):
        out = a.assign([track(1, (300 + k, 130)), track(2, (900 - 20 * k, 370))], W, H)
        assert ids(out) == {"top": 1, "bottom": 2}
    assert a.counts == {"bound": 2}


# --------------------------------------------------------------------------------------------------
# keypoint_rows
# --------------------------------------------------------------------------------------------------


def test_keypoint_rows() -> None:
    t = track(3, (400.5, 200.25))
    rows = keypoint_rows(t)
    assert rows.shape == (KEYPOINTS, 3) and rows.dtype == np.float32
    assert t.pose is not None
    np.testing.assert_array_equal(rows[:, :2], t.pose.xy.astype(np.float32))
    np.testing.assert_array_equal(rows[:, 2], t.pose.visibility.astype(np.float32))
    assert rows[HIP[0]].tolist() == [390.5, 200.25, pytest.approx(0.1 + 0.9 * HIP[0] / 32)]
    for nobody in (None, track(4, (1, 1), seen=False)):
        empty = keypoint_rows(nobody)
        assert empty.shape == (KEYPOINTS, 3) and empty.dtype == np.float32 and not empty.any()


# --------------------------------------------------------------------------------------------------
# Scale
# --------------------------------------------------------------------------------------------------


def test_scale_from_marks() -> None:
    assert scale_from_marks((100, 200), (400, 600), 2.5) == pytest.approx(2.5 / 500)  # 3-4-5
    assert scale_from_marks((400, 600), (100, 200), 2.5) == pytest.approx(0.005)
    assert scale_from_marks((0, 0), (0, 1), 0.01) == pytest.approx(0.01)


@pytest.mark.parametrize(("a", "b", "d"), [((10, 10), (10, 10), 1.0), ((0, 0), (100, 0), 0.0),
                                           ((0, 0), (100, 0), -1.0)])
def test_scale_from_marks_rejects(a: tuple[float, float], b: tuple[float, float], d: float) -> None:
    with pytest.raises(ValueError, match="apart"):
        scale_from_marks(a, b, d)


THIGH, SHANK = 200.0, 180.0


def leg_rows(hip: tuple[float, float] = (500.0, 300.0), toes: float = 1.0, visible: float = 0.9,
             legs: tuple[int, ...] = (0, 1)) -> np.ndarray:
    """Keypoints with both legs of a runner in profile: thigh 200 px, shank 180 px, knee bent (the thigh
    forward, the shank back); ``toes`` +1 puts the toes ahead of the heel to +x, -1 to -x. Legs not in
    ``legs`` are seen at visibility 0.2 and with a wrong length."""
    rows = np.zeros((KEYPOINTS, 3), np.float32)
    rows[:, 2] = 0.9
    for side in (0, 1):
        h = np.array([hip[0] + side * 4.0, hip[1]])
        knee = h + np.array([toes * 120.0, 160.0])  # 200 px
        ankle = knee + np.array([-toes * 108.0, 144.0])  # 180 px
        if side not in legs:
            knee = h + np.array([0.0, 300.0])  # would be a 300 + 300 px leg
            ankle = knee + np.array([0.0, 300.0])
        rows[HIP[side], :2], rows[KNEE[side], :2], rows[ANKLE[side], :2] = h, knee, ankle
        rows[HEEL[side], :2] = ankle + np.array([-toes * 15.0, 20.0])
        rows[TOE[side], :2] = ankle + np.array([toes * 45.0, 25.0])
        for k in (HIP[side], KNEE[side], ANKLE[side]):
            rows[k, 2] = visible if side in legs else 0.2
    return rows


def test_leg_rows_have_the_lengths_they_claim() -> None:
    r = leg_rows().astype(np.float64)
    for side in (0, 1):
        assert np.linalg.norm(r[HIP[side], :2] - r[KNEE[side], :2]) == THIGH
        assert np.linalg.norm(r[KNEE[side], :2] - r[ANKLE[side], :2]) == SHANK
        # a bent knee: hip to ankle is shorter than the leg
        assert np.linalg.norm(r[HIP[side], :2] - r[ANKLE[side], :2]) < THIGH + SHANK - 50


def test_leg_calibration_scale_once_ready() -> None:
    leg_m = 0.9
    cal = LegCalibration(leg_m)
    assert cal.scale_m_per_px() is None and not cal.ready
    rng = np.random.default_rng(4)
    for k in range(CALIBRATION_FRAMES):
        assert not cal.ready, f"ready after {k} frames"
        # the runner moves through the image; the leg's pixel length does not change
        cal.add(leg_rows(hip=(float(rng.integers(200, 800)), float(rng.integers(100, 300))), legs=(0,)))
    assert cal.ready
    assert cal.scale_m_per_px() == pytest.approx(leg_m * (1 - ANKLE_OF_LEG) / (THIGH + SHANK), rel=1e-12)


def test_leg_calibration_counts_frames_not_legs() -> None:
    """``CALIBRATION_FRAMES``: frames with a whole leg seen. Both legs seen in one frame is one frame."""
    cal = LegCalibration(0.9)
    for k in range(CALIBRATION_FRAMES - 1):
        cal.add(leg_rows())
        assert not cal.ready, f"ready after {k + 1} frames (< {CALIBRATION_FRAMES}) with both legs seen"
    cal.add(leg_rows())
    assert cal.ready
    assert cal.scale_m_per_px() == pytest.approx(0.9 * (1 - ANKLE_OF_LEG) / 380.0, rel=1e-12)


def test_leg_calibration_ignores_legs_not_seen() -> None:
    cal = LegCalibration(1.0)
    for _ in range(3 * CALIBRATION_FRAMES):
        cal.add(leg_rows(legs=()))  # both legs at visibility 0.2
    assert cal.legs_px == [] and cal.scale_m_per_px() is None and not cal.ready
    # one keypoint of the leg below VISIBLE is enough to drop that leg
    rows = leg_rows()
    rows[ANKLE[1], 2] = np.float32(VISIBLE - 0.01)
    cal.add(rows)
    assert cal.legs_px == [pytest.approx(THIGH + SHANK)]
    rows[ANKLE[1], 2] = VISIBLE  # at the threshold it counts
    cal.add(rows)
    assert len(cal.legs_px) == 3
    # a minority of badly seen frames (wrong lengths, still visible) does not move the median
    for _ in range(2 * CALIBRATION_FRAMES):
        cal.add(leg_rows(legs=(0,)))
    bad = leg_rows(legs=())
    bad[:, 2] = 0.9
    for _ in range(5):
        cal.add(bad)
    assert cal.scale_m_per_px() == pytest.approx((1 - ANKLE_OF_LEG) / 380.0, rel=1e-12)


def test_leg_calibration_view() -> None:
    assert LegCalibration(0.9).view() == "sagittal_right"  # no feet seen yet: the default
    right, left = LegCalibration(0.9), LegCalibration(0.9)
    for _ in range(5):
        right.add(leg_rows(toes=1.0))
        left.add(leg_rows(toes=-1.0))
    assert right.view() == "sagittal_right" and left.view() == "sagittal_left"
    assert right.scale_m_per_px() == pytest.approx(left.scale_m_per_px())  # the same leg, mirrored
    # feet seen at low visibility do not count
    hidden = LegCalibration(0.9)
    rows = leg_rows(toes=-1.0)
    rows[[HEEL[0], HEEL[1]], 2] = 0.3
    hidden.add(rows)
    assert hidden.facing == [] and hidden.view() == "sagittal_right"
    assert math.isclose(hidden.legs_px[0], THIGH + SHANK)
