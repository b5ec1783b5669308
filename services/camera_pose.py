"""Image -> MediaPipe-33 keypoints of every person in it: BlazePose (detector + landmark model) on LiteRT.

The two models are the ones MediaPipe 0.10.21 ships in its wheel (``pose_detection.tflite`` and
``pose_landmark_full.tflite``, Apache-2.0), shipped here in ``poserun/services/models`` and run by
the plain LiteRT interpreter (``ai-edge-litert``), which works with numpy 2 where that MediaPipe
release pins numpy < 2 (docs/gateways.md, "Camera": why). The pipeline is MediaPipe's own graph
written out: SSD anchors and weighted NMS on the detector, a rotated region of interest from the
detection's hip and body-circle keypoints, the landmark model on that crop, and the next frame's
region from the landmarks' own alignment points (tracking: the detector only runs to find people).

Unlike MediaPipe's legacy solution, which follows one person, every detected person gets a track
(:class:`PoseTracker`); which track is which athlete is decided elsewhere (``camera_tracks``).
Pure computation on arrays: no capture, no clock, no I/O but reading the two model files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

KEYPOINTS = 33  # MediaPipe-33 (poserun.wire.meta.MEDIAPIPE33), then 6 auxiliary points the model adds
DETECT_SIZE = 224
LANDMARK_SIZE = 256
# MediaPipe's pose_detection_cpu graph: SSD anchors, 12 values per anchor (box + 4 keypoints)
_ANCHOR_STRIDES = (8, 16, 32, 32, 32)
_MIN_SCALE, _MAX_SCALE = 0.1484375, 0.75
DETECTION_SCORE = 0.5  # the graph's min_score_thresh
NMS_OVERLAP = 0.3  # the graph's min_suppression_threshold (weighted NMS)
ROI_SCALE = 1.25  # the detection -> ROI and landmarks -> ROI RectTransformation scale
PRESENCE = 0.5  # the landmark graph's pose presence threshold: below it the track is lost
SAME_PERSON = 0.5  # a detection holding more than half a track's region (or held by it) is that track
CONVERGED = 0.8  # two tracks this much on top of each other follow one person


class CameraExtraMissing(RuntimeError):
    """The camera extra (``pip install 'poserun[camera]'``) is not installed."""


def opencv() -> Any:
    """The ``cv2`` module, or :class:`CameraExtraMissing` saying what to install."""
    try:
        import cv2
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise CameraExtraMissing("the camera needs the camera extra: pip install 'poserun[camera]'") from exc
    return cv2


def _interpreter(model: Path, threads: int) -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise CameraExtraMissing("the camera needs the camera extra: pip install 'poserun[camera]'") from exc
    it = Interpreter(model_path=str(model), num_threads=threads)
    it.allocate_tensors()
    return it


def model_path(name: str) -> Path:
    """A model file shipped inside the package."""
    return Path(str(resources.files("poserun.services") / "models" / name))


def ssd_anchors() -> np.ndarray:
    """(2254, 2) anchor centres (x, y), normalised, as MediaPipe's SsdAnchorsCalculator makes them for
    the pose detector (fixed anchor size: only the centres matter)."""
    out: list[tuple[float, float]] = []
    layer = 0
    n = len(_ANCHOR_STRIDES)
    while layer < n:
        last = layer
        per_cell = 0
        while last < n and _ANCHOR_STRIDES[last] == _ANCHOR_STRIDES[layer]:
            # aspect ratio 1.0, plus the interpolated scale: 2 anchors per layer of this stride
            per_cell += 2
            last += 1
        side = math.ceil(DETECT_SIZE / _ANCHOR_STRIDES[layer])
        for y in range(side):
            for x in range(side):
                for _ in range(per_cell):
                    out.append(((x + 0.5) / side, (y + 0.5) / side))
        layer = last
    return np.asarray(out)


@dataclass(frozen=True)
class Roi:
    """A rotated square region of the image, in pixels: centre, side and rotation (radians; 0 = the
    person upright, the crop's up along the image's up)."""

    cx: float
    cy: float
    size: float
    rotation: float

    def corners(self) -> np.ndarray:
        """Image pixels of the crop's top-left, top-right and bottom-left corners."""
        c, s = math.cos(self.rotation), math.sin(self.rotation)
        half = self.size / 2
        pts = np.array([[-half, -half], [half, -half], [-half, half]])
        return np.column_stack([self.cx + c * pts[:, 0] - s * pts[:, 1], self.cy + s * pts[:, 0] + c * pts[:, 1]])

    def to_image(self, uv: np.ndarray) -> np.ndarray:
        """Crop coordinates (0..1 across the crop) -> image pixels."""
        c, s = math.cos(self.rotation), math.sin(self.rotation)
        x = (uv[:, 0] - 0.5) * self.size
        y = (uv[:, 1] - 0.5) * self.size
        return np.column_stack([self.cx + c * x - s * y, self.cy + s * x + c * y])

    @classmethod
    def from_points(cls, centre: np.ndarray, scale_point: np.ndarray) -> Roi:
        """MediaPipe's AlignmentPointsRectsCalculator (target angle 90°) then RectTransformation
        (scale 1.25, square): the body centre, and a point whose distance is the body circle's radius
        and whose direction is the body's up."""
        dx, dy = float(scale_point[0] - centre[0]), float(scale_point[1] - centre[1])
        rotation = math.pi / 2 - math.atan2(-dy, dx)
        rotation = (rotation + math.pi) % (2 * math.pi) - math.pi
        return cls(float(centre[0]), float(centre[1]), 2 * math.hypot(dx, dy) * ROI_SCALE, rotation)

    def _intersection(self, other: Roi) -> float:
        a0, a1 = (self.cx - self.size / 2, self.cy - self.size / 2), (self.cx + self.size / 2, self.cy + self.size / 2)
        b0, b1 = (other.cx - other.size / 2, other.cy - other.size / 2), (other.cx + other.size / 2,
                                                                            other.cy + other.size / 2)
        w = max(0.0, min(a1[0], b1[0]) - max(a0[0], b0[0]))
        h = max(0.0, min(a1[1], b1[1]) - max(a0[1], b0[1]))
        return w * h

    def iou(self, other: Roi) -> float:
        """Intersection over union of the two regions' axis-aligned squares (rotation ignored)."""
        inter = self._intersection(other)
        union = self.size**2 + other.size**2 - inter
        return inter / union if union > 0 else 0.0

    def overlap(self, other: Roi) -> float:
        """The share of the smaller region inside the other (axis-aligned squares): 1 when one holds the
        other, however loose (a detector's region around a tracked person is often twice its size)."""
        smaller = min(self.size, other.size) ** 2
        return self._intersection(other) / smaller if smaller > 0 else 0.0


@dataclass(frozen=True)
class Pose:
    """One person in one image: the 33 keypoints in image pixels with their visibility (0..1), and
    the region to look in next frame."""

    xy: np.ndarray  # (33, 2) pixels
    visibility: np.ndarray  # (33,)
    presence: float
    next_roi: Roi

    @property
    def hip_px(self) -> tuple[float, float]:
        """The mid-hip point (between keypoints 23 and 24)."""
        m = (self.xy[23] + self.xy[24]) / 2
        return float(m[0]), float(m[1])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -80.0, 80.0)))


class BlazePose:
    """The two BlazePose models: people in an image (detector) and one person's keypoints in a region
    (landmarks). Not thread-safe; one per capture thread."""

    def __init__(self, threads: int = 1) -> None:
        self._cv2 = opencv()  # the camera extra: imported here so the module loads without it
        self._det = _interpreter(model_path("pose_detection.tflite"), threads)
        self._lmk = _interpreter(model_path("pose_landmark_full.tflite"), threads)
        self._det_in = self._det.get_input_details()[0]["index"]
        outs = {d["name"]: d["index"] for d in self._det.get_output_details()}
        self._det_boxes, self._det_scores = outs["Identity"], outs["Identity_1"]
        self._lmk_in = self._lmk.get_input_details()[0]["index"]
        outs = {d["name"]: d["index"] for d in self._lmk.get_output_details()}
        self._lmk_points, self._lmk_flag = outs["Identity"], outs["Identity_1"]
        self._anchors = ssd_anchors()

    def detect(self, rgb: np.ndarray) -> list[Roi]:
        """Regions of the people in an RGB image, best first (MediaPipe's pose detection graph:
        letterboxed to 224 px, scores above 0.5, weighted non-maximum suppression)."""
        h, w = rgb.shape[:2]
        side = max(h, w)
        scale = DETECT_SIZE / side
        pad_x, pad_y = (side - w) / 2, (side - h) / 2
        m = np.array([[scale, 0, pad_x * scale], [0, scale, pad_y * scale]], dtype=np.float64)
        img = self._cv2.warpAffine(rgb, m, (DETECT_SIZE, DETECT_SIZE), flags=self._cv2.INTER_LINEAR,
                                   borderMode=self._cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        tensor = (img.astype(np.float32) / 127.5 - 1.0)[None]
        self._det.set_tensor(self._det_in, tensor)
        self._det.invoke()
        raw = self._det.get_tensor(self._det_boxes)[0].astype(np.float64)
        scores = _sigmoid(np.clip(self._det.get_tensor(self._det_scores)[0, :, 0].astype(np.float64), -100, 100))
        keep = np.flatnonzero(scores >= DETECTION_SCORE)
        if keep.size == 0:
            return []
        a = self._anchors[keep]
        r = raw[keep] / DETECT_SIZE
        boxes = np.column_stack([r[:, 0] + a[:, 0], r[:, 1] + a[:, 1], r[:, 2], r[:, 3]])  # cx cy w h
        kps = r[:, 4:12].reshape(-1, 4, 2) + a[:, None, :]
        # back to image pixels: undo the letterbox
        boxes[:, :2] = boxes[:, :2] * side - (pad_x, pad_y)
        boxes[:, 2:] *= side
        kps = kps * side - (pad_x, pad_y)
        rois = []
        for group in _weighted_nms(boxes, scores[keep]):
            weights = scores[keep][group]
            k = (kps[group] * weights[:, None, None]).sum(axis=0) / weights.sum()
            rois.append(Roi.from_points(k[0], k[1]))
        return rois

    def landmarks(self, rgb: np.ndarray, roi: Roi) -> Pose | None:
        """One person's keypoints in a region, or None when the model says no person is there."""
        cv2 = self._cv2
        src = roi.corners().astype(np.float32)
        n = LANDMARK_SIZE
        dst = np.array([[0, 0], [n, 0], [0, n]], dtype=np.float32)
        m = cv2.getAffineTransform(src, dst)
        crop = cv2.warpAffine(rgb, m, (n, n), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=(0, 0, 0))
        self._lmk.set_tensor(self._lmk_in, (crop.astype(np.float32) / 255.0)[None])
        self._lmk.invoke()
        # (already a probability: MediaPipe's graph compares it to 0.5 as it is)
        presence = float(self._lmk.get_tensor(self._lmk_flag).ravel()[0])
        if presence < PRESENCE:
            return None
        pts = self._lmk.get_tensor(self._lmk_points)[0].astype(np.float64).reshape(39, 5)
        xy = roi.to_image(pts[:, :2] / n)
        visibility = _sigmoid(pts[:KEYPOINTS, 3])
        # the model's auxiliary points 33 (body centre) and 34 (body circle) place the next region
        return Pose(xy[:KEYPOINTS], visibility, presence, Roi.from_points(xy[33], xy[34]))


def _weighted_nms(boxes: np.ndarray, scores: np.ndarray) -> list[np.ndarray]:
    """Groups of detections (indices), best first: each the best remaining detection and all that overlap
    it by more than ``NMS_OVERLAP`` (IoU), as MediaPipe's weighted NonMaxSuppression blends them."""
    order = np.argsort(-scores)
    x0 = boxes[:, 0] - boxes[:, 2] / 2
    y0 = boxes[:, 1] - boxes[:, 3] / 2
    x1 = boxes[:, 0] + boxes[:, 2] / 2
    y1 = boxes[:, 1] + boxes[:, 3] / 2
    area = boxes[:, 2] * boxes[:, 3]
    groups = []
    while order.size:
        i = order[0]
        iw = np.clip(np.minimum(x1[i], x1[order]) - np.maximum(x0[i], x0[order]), 0, None)
        ih = np.clip(np.minimum(y1[i], y1[order]) - np.maximum(y0[i], y0[order]), 0, None)
        inter = iw * ih
        iou = inter / np.maximum(area[i] + area[order] - inter, 1e-12)
        member = iou > NMS_OVERLAP
        groups.append(order[member])
        order = order[~member]
    return groups


@dataclass
class Track:
    """A person followed from frame to frame by the landmark model's own next region."""

    id: int
    roi: Roi
    pose: Pose | None = None
    frames: int = 0


@dataclass
class PoseTracker:
    """Every person in a video: tracks continued by their landmark regions; the detector runs when no one
    is tracked, and every ``detect_every`` frames to find people who came in (a detection that holds more
    than half of a track's region, or half of whose region a track holds, is that track, not a new person).
    Two tracks whose regions overlap by more than 0.8 have met (two people one behind the other, or one
    person followed twice): both end, since which is whom is no longer known, and the detector looks again."""

    model: BlazePose
    detect_every: int = 15
    max_people: int = 6
    tracks: list[Track] = field(default_factory=list)
    _next_id: int = 1
    _frame: int = 0
    lost: int = 0  # tracks ended because the model no longer saw a person, or its hip left the image
    merged: int = 0  # tracks ended because they met another (two people overlapping, or one seen twice)

    def update(self, rgb: np.ndarray) -> list[Track]:
        """The tracks seen in this image (each with its pose)."""
        if not self.tracks or self._frame % self.detect_every == 0:
            for roi in self.model.detect(rgb):
                if len(self.tracks) >= self.max_people:
                    break
                if all(roi.overlap(t.roi) <= SAME_PERSON for t in self.tracks):
                    self.tracks.append(Track(self._next_id, roi))
                    self._next_id += 1
        self._frame += 1
        seen: list[Track] = []
        for t in self.tracks:
            pose = self.model.landmarks(rgb, t.roi)
            h, w = rgb.shape[:2]
            if pose is None or not (0 <= pose.hip_px[0] < w and 0 <= pose.hip_px[1] < h):
                self.lost += 1
                continue
            t.pose, t.roi = pose, pose.next_roi
            t.frames += 1
            seen.append(t)
        # two tracks on top of each other: which is whom is lost, so both end and the detector looks again
        met = {id(a) for k, a in enumerate(seen) for b in seen[k + 1:] if a.roi.overlap(b.roi) > CONVERGED}
        met |= {id(b) for k, a in enumerate(seen) for b in seen[k + 1:] if a.roi.overlap(b.roi) > CONVERGED}
        if met:
            self.merged += len(met)
            seen = [t for t in seen if id(t) not in met]
            self._frame = 0  # (the next frame detects)
        self.tracks = seen
        return seen
