"""MediaPipe's own BlazePose (the legacy ``solutions`` API) over a video: the reference for bench/camera.py.

Run it in a virtual environment of its own, since mediapipe 0.10.21 pins numpy < 2 (poserun does not
need it: its camera runs the same two models on LiteRT)::

    python3 -m venv /tmp/mpref && /tmp/mpref/bin/pip install mediapipe==0.10.21
    /tmp/mpref/bin/python bench/camera_mediapipe_ref.py VIDEO ref.npy
    .venv/bin/python bench/camera.py --video VIDEO --mediapipe-ref ref.npy

It writes, per frame, MediaPipe's 33 keypoints (x px, y px, visibility; NaN when it found no one):
model complexity 1 (the full model, the one that ships in the wheel), no smoothing, tracking on.
"""

import sys

import cv2
import mediapipe as mp
import numpy as np

cap = cv2.VideoCapture(sys.argv[1])
out = []
with mp.solutions.pose.Pose(static_image_mode=False, model_complexity=1, smooth_landmarks=False,
                            enable_segmentation=False) as pose:
    while True:
        ok, img = cap.read()
        if not ok:
            break
        h, w = img.shape[:2]
        r = pose.process(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
        if r.pose_landmarks is None:
            out.append(np.full((33, 3), np.nan))
            continue
        out.append(np.array([[lm.x * w, lm.y * h, lm.visibility] for lm in r.pose_landmarks.landmark]))
np.save(sys.argv[2], np.array(out))
print(f"{len(out)} frames, a person in {int(np.isfinite(np.array(out)[:, 0, 0]).sum())}")
