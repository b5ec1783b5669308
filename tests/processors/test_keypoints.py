from __future__ import annotations

import numpy as np
import pytest

from poserun.processors.keypoints import KeypointLayout, landing_velocities, stance_geometry
from poserun.services.sim.profiles import get_profile
from poserun.services.sim.runner import AthleteSpec, SimRunner
from poserun.services.sim.team import CAMERA_ORIGIN, CAMERA_SCALE
from poserun.wire.meta import COCO17, MEDIAPIPE33

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


def test_low_confidence_keypoints_give_nulls() -> None:
    r, t, _ = sim("pose")
    kp = r.keypoints(t / 1e9, scale=CAMERA_SCALE, origin=CAMERA_ORIGIN, frame_speed=r.spec.speed_mps)
    kp[:, 2::3] = 0.1  # every confidence under the gate
    assert LAYOUT is not None
    pts = LAYOUT.to_metric(kp)
    s = next(s for s in r.stances if s.ic > 3)
    g = stance_geometry(t, pts, s.foot, s.ic * 1e9, s.to * 1e9, None, r.L)
    assert all(v is None for v in g.values())
