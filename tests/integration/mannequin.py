"""A video of the simulator's runner drawn as a flat mannequin (limbs, trunk, head, shoes), for the camera tests.

BlazePose finds the mannequin in every frame, so a test can run real pixels through the camera
gateway and the processor and compare the contacts with the simulator's truth. It is a drawing,
not a person: what it proves is the path (decode, pose, calibration, publishing, records), not the
pose model's accuracy on athletes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from poserun.services.sim.runner import Stance
from poserun.services.sim.team import SimTeam
from poserun.settings import load_settings

WIDTH, HEIGHT = 1280, 720
SCALE_M_PER_PX = 0.0035
GROUND_Y = 650


def render(path: Path, seconds: float, fps: float = 60.0) -> tuple[list[Stance], float]:
    """Write the clip (mp4) of a treadmill-like view (the camera follows the runner); the runner's true
    stances and leg length."""
    import cv2

    team = SimTeam("mannequin", load_settings(overrides={"sim": {"athletes": 1}}).sim)
    runner = team.runners[team.specs[0].athlete_id]
    t = np.arange(round(seconds * fps)) / fps
    runner.advance(seconds + 0.5)
    joints = runner.joints(t, runner.spec.speed_mps)
    px = {k: np.column_stack([v[:, 0] / SCALE_M_PER_PX + WIDTH / 2, GROUND_Y - v[:, 1] / SCALE_M_PER_PX])
          for k, v in joints.items()}
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (WIDTH, HEIGHT))
    for i in range(len(t)):
        img = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
        img[:GROUND_Y] = (200, 180, 150)
        img[GROUND_Y:] = (60, 110, 60)

        def limb(a: str, b: str, colour: tuple[int, int, int], width: int, img: np.ndarray = img, i: int = i) -> None:
            p, q = px[a][i].astype(int), px[b][i].astype(int)
            cv2.line(img, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), colour, width, cv2.LINE_AA)

        for side, colour in (("left", (40, 60, 140)), ("right", (60, 90, 200))):  # far side first
            if side == "left":
                limb("left_shoulder", "left_elbow", colour, 22)
                limb("left_elbow", "left_wrist", colour, 18)
            limb(f"{side}_hip", f"{side}_knee", colour, 40)
            limb(f"{side}_knee", f"{side}_ankle", colour, 30)
            shoe = np.array([px[f"{side}_{k}"][i] for k in ("ankle", "heel", "ball", "toe")], np.int32)
            cv2.fillConvexPoly(img, cv2.convexHull(shoe), (30, 30, 30))
            if side == "left":
                limb("left_hip", "left_shoulder", (50, 50, 170), 70)
        limb("right_shoulder", "right_elbow", (80, 110, 220), 22)
        limb("right_elbow", "right_wrist", (80, 110, 220), 18)
        head = px["left_ear"][i].astype(int)
        cv2.circle(img, (int(head[0]), int(head[1])), 34, (120, 160, 210), -1, cv2.LINE_AA)
        out.write(img)
    out.release()
    return [s for s in runner.stances if s.to <= seconds], float(runner.L)
