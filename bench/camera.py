"""The camera's pose model: milliseconds per image and per person, agreement with MediaPipe itself, and
camera-only contacts on the simulator's runner drawn as a mannequin.

    .venv/bin/python bench/camera.py [--video VIDEO] [--mediapipe-ref ref.npy] [--contacts]

Times ``PoseTracker`` (BlazePose detector + full landmark model on LiteRT, one thread) over a video
(default: the Sports2D demo, two people) and over the simulator's runner drawn as a mannequin (one
person, 60 fps; tests/integration/mannequin.py). With ``--mediapipe-ref`` (bench/camera_mediapipe_ref.py)
it prints how far poserun's keypoints lie from MediaPipe's own for the person MediaPipe follows. With
``--contacts``, 10 s mannequin clips at 30, 60 and 120 fps go through the camera pipeline and the fusion
processor (camera only), and the stances are compared with the simulator's: a check of the path, not
of accuracy on people.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from poserun.services.camera_pose import BlazePose, PoseTracker
from tests.integration import mannequin

DEMO = Path(__file__).resolve().parents[2] / "shared" / "data" / "video" / "sports2d_demo" / "demo.mp4"


def run(video: Path, ref: np.ndarray | None) -> None:
    cap = cv2.VideoCapture(str(video))
    tracker = PoseTracker(BlazePose())
    spent, people, errors, n = 0.0, 0, [], 0
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        t0 = time.perf_counter()
        tracks = tracker.update(rgb)
        spent += time.perf_counter() - t0
        people += len(tracks)
        if ref is not None and n < len(ref) and np.isfinite(ref[n, 0, 0]) and tracks:
            hip = (ref[n, 23, :2] + ref[n, 24, :2]) / 2
            best = min(tracks, key=lambda t: float(np.hypot(*(np.array(t.pose.hip_px) - hip))))
            errors.append(float(np.median(np.linalg.norm(best.pose.xy - ref[n, :, :2], axis=1))))
        n += 1
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    print(f"{video.name} ({w}x{h}): {n} images, {people} poses; {1000 * spent / n:.1f} ms per image, "
          f"{1000 * spent / max(people, 1):.1f} ms per pose, {n / spent:.0f} images/s")
    if errors:
        print(f"  against MediaPipe 0.10.21 in {len(errors)} frames: median keypoint distance per frame "
              f"p50 {np.median(errors):.1f} px, p90 {np.percentile(errors, 90):.1f} px "
              f"({100 * np.median(errors) / h:.2f} % of the image height)")


def contacts(fps: float, seconds: float = 10.0) -> None:
    from poserun.services.camera_tracks import Region
    from poserun.services.fusion import FusionService
    from poserun.services.gateway_camera import CameraOptions, KeypointPipeline, frames, open_capture
    from poserun.settings import load_settings

    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "mannequin.mp4"
        truth, leg = mannequin.render(clip, seconds, fps)
        cap, live = open_capture(str(clip))
        settings = load_settings(overrides={"athletes": [{"id": "m", "leg_length_m": leg}]})
        pipe = KeypointPipeline("bench", CameraOptions({"m": Region()}, {"m": leg}, moving=True), fps,
                                mannequin.WIDTH, mannequin.HEIGHT)
        clock = [0]
        svc = FusionService(settings, clock=lambda: clock[0])
        records = []
        for t, rgb in frames(cap, live, pipe.stats):
            for topic, payload, _ in pipe.feed(t, rgb):
                clock[0] = t + 1
                records += svc.handle(topic, payload, t + 1)
        cap.release()
    stances = [r for r in records if r["type"] == "stance"]
    ic, tc = [], []
    for r in stances:
        s = min((s for s in truth if s.foot == r["foot"]), key=lambda s: abs(r["ic_ns"] / 1e9 - s.ic))
        ic.append(r["ic_ns"] / 1e9 - s.ic)
        tc.append(r["support_time_s"] - (s.to - s.ic))
    scale = pipe.athletes["m"].meta.camera.scale_m_per_px if pipe.athletes["m"].meta else float("nan")
    line = f"mannequin {fps:g} fps: {len(stances)} stances of {len(truth)}; scale {scale * 1000:.2f} mm/px " \
           f"(drawn at {mannequin.SCALE_M_PER_PX * 1000:.2f})"
    if stances:
        line += (f"; IC error mean {1000 * np.mean(ic):+.1f} ms, MAE {1000 * np.mean(np.abs(ic)):.1f} ms; "
                 f"support time error median {1000 * np.median(tc):+.0f} ms")
    print(line)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", type=Path, default=DEMO)
    ap.add_argument("--mediapipe-ref", type=Path)
    ap.add_argument("--contacts", action="store_true", help="camera-only contacts on the mannequin, 30-120 fps")
    args = ap.parse_args()
    run(args.video, np.load(args.mediapipe_ref) if args.mediapipe_ref else None)
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "mannequin.mp4"
        mannequin.render(clip, seconds=6.0)
        run(clip, None)
    if args.contacts:
        for fps in (30.0, 60.0, 120.0):
            contacts(fps)


if __name__ == "__main__":
    main()
