"""Which person in a camera's image is which athlete, and how many pixels make a metre.

The rule (docs/gateways.md, "Several athletes per camera"): each athlete of a camera has a region of
the image (a lane; the whole image for one athlete). An athlete is bound to a pose track when that
track's mid-hip is inside the region and it is the only candidate there; it stays bound while the
model follows that track and its hip stays in the region. Two candidates in one free region bind no
one (``ambiguous``, counted: confidence 0 until one is left). A track is one person (each frame's
region comes from that person's own landmarks; two tracks that meet both end), so a bound athlete's
keypoints come from one body until the track ends; a track that was in view while the athlete was
bound to another is someone else and never becomes the athlete. After the athlete's track ended, the
first new track alone in the region is taken as the athlete (``rebound``): the camera cannot tell who
a newcomer is.

Scale (``camera.scale_m_per_px``): two marks a known distance apart in the image, or the athlete's
leg length from the config against the sum of the thigh and shank in pixels (which knee flexion does
not shorten), corrected for the ankle's height by Winter's anthropometric proportions. Pure
computation: tracks in, keypoint arrays out.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from poserun.services.camera_pose import KEYPOINTS, Track

# MediaPipe-33 indices
HIP, KNEE, ANKLE, HEEL, TOE = (23, 24), (25, 26), (27, 28), (29, 30), (31, 32)
# Winter (Biomechanics and Motor Control of Human Movement, 4th ed., fig. 4.1): greater trochanter at
# 0.530 and lateral malleolus at 0.039 of the standing height: hip-to-ankle is 1 - 0.039/0.530 of the leg
ANKLE_OF_LEG = 0.039 / 0.530
VISIBLE = 0.5  # keypoints at least this visible count for calibration
CALIBRATION_FRAMES = 15  # frames with a whole leg seen before a leg-length scale is trusted


@dataclass(frozen=True)
class Region:
    """A part of the image, as fractions of its width and height (0..1)."""

    x0: float = 0.0
    y0: float = 0.0
    x1: float = 1.0
    y1: float = 1.0

    def __post_init__(self) -> None:
        if not (0.0 <= self.x0 < self.x1 <= 1.0 and 0.0 <= self.y0 < self.y1 <= 1.0):
            raise ValueError(f"a region needs 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1, not {self}")

    @classmethod
    def parse(cls, spec: str) -> Region:
        """``x0,y0,x1,y1`` (fractions of the image)."""
        try:
            values = [float(v) for v in spec.split(",")]
        except ValueError:
            raise ValueError(f"a region is x0,y0,x1,y1 (fractions of the image), not {spec!r}") from None
        if len(values) != 4:
            raise ValueError(f"a region is x0,y0,x1,y1 (fractions of the image), not {spec!r}")
        return cls(*values)

    def contains(self, x: float, y: float, width: int, height: int) -> bool:
        return self.x0 * width <= x < self.x1 * width and self.y0 * height <= y < self.y1 * height


@dataclass
class Assigner:
    """Athletes bound to tracks by the region rule; counts what it could not decide.

    A track that was alive while another track was bound to an athlete is someone else, and is never
    bound to that athlete (``blocked``): when the athlete's track ends, only a track that appears
    afterwards, alone in the region, can take its place."""

    regions: dict[str, Region]
    bound: dict[str, int] = field(default_factory=dict)  # athlete -> track id
    blocked: dict[str, set[int]] = field(default_factory=dict)  # athlete -> ids known to be someone else
    counts: Counter[str] = field(default_factory=Counter)
    _ever: set[str] = field(default_factory=set)  # athletes bound at least once

    def assign(self, tracks: list[Track], width: int, height: int) -> dict[str, Track | None]:
        """Each athlete's track in this frame, or None (not seen, or not decidable)."""
        by_id = {t.id: t for t in tracks if t.pose is not None}
        alive = set(by_id)
        inside = {a: [t for t in by_id.values() if r.contains(*t.pose.hip_px, width, height)]  # type: ignore[union-attr]
                  for a, r in self.regions.items()}
        for athlete, tid in list(self.bound.items()):
            t = by_id.get(tid)
            if t is None or t not in inside[athlete]:
                del self.bound[athlete]
                self.counts["unbound"] += 1
        for athlete in self.regions:  # (ids never come back: the dead are forgotten)
            known = self.blocked.setdefault(athlete, set())
            known &= alive
            if athlete in self.bound:
                known |= alive - {self.bound[athlete]}
        taken = set(self.bound.values())
        out: dict[str, Track | None] = {}
        for athlete in self.regions:
            if athlete in self.bound:
                out[athlete] = by_id[self.bound[athlete]]
                continue
            free = [t for t in inside[athlete] if t.id not in taken and t.id not in self.blocked[athlete]]
            if len(free) == 1:
                self.bound[athlete] = free[0].id
                taken.add(free[0].id)
                self.counts["rebound" if athlete in self._ever else "bound"] += 1
                self._ever.add(athlete)
                out[athlete] = free[0]
            else:
                if len(free) > 1:
                    self.counts["ambiguous"] += 1
                out[athlete] = None
        return out


def keypoint_rows(track: Track | None) -> np.ndarray:
    """(33, 3) x, y, confidence for the wire (``xyc``): confidence 0 where no one is seen."""
    out = np.zeros((KEYPOINTS, 3), dtype=np.float32)
    if track is not None and track.pose is not None:
        out[:, :2] = track.pose.xy
        out[:, 2] = track.pose.visibility
    return out


def scale_from_marks(a: tuple[float, float], b: tuple[float, float], distance_m: float) -> float:
    """Metres per pixel from two image points ``distance_m`` apart (on the athlete's plane)."""
    px = math.hypot(b[0] - a[0], b[1] - a[1])
    if px <= 0 or distance_m <= 0:
        raise ValueError("the two marks must be apart, and their distance positive")
    return distance_m / px


@dataclass
class LegCalibration:
    """Metres per pixel from the athlete's leg length: the median over frames of hip-knee-ankle in pixels
    is ``leg_length_m * (1 - ANKLE_OF_LEG)``; also which way the athlete faces (the median of toe minus
    heel along the image's x)."""

    leg_length_m: float
    legs_px: list[float] = field(default_factory=list)
    facing: list[float] = field(default_factory=list)
    frames: int = 0  # frames with at least one whole leg seen
    foot_frames: int = 0  # frames with at least one foot (heel and toe) seen

    def add(self, rows: np.ndarray) -> None:
        """One frame's (33, 3) keypoints."""
        xy, c = rows[:, :2].astype(np.float64), rows[:, 2]
        legs, feet = len(self.legs_px), len(self.facing)
        for side in (0, 1):
            h, k, a = HIP[side], KNEE[side], ANKLE[side]
            if min(c[h], c[k], c[a]) >= VISIBLE:
                self.legs_px.append(float(np.linalg.norm(xy[h] - xy[k]) + np.linalg.norm(xy[k] - xy[a])))
            if min(c[HEEL[side]], c[TOE[side]]) >= VISIBLE:
                self.facing.append(float(xy[TOE[side], 0] - xy[HEEL[side], 0]))
        self.frames += len(self.legs_px) > legs
        self.foot_frames += len(self.facing) > feet

    @property
    def ready(self) -> bool:
        """The scale is known (``CALIBRATION_FRAMES`` frames with a leg seen)."""
        return self.frames >= CALIBRATION_FRAMES

    @property
    def facing_ready(self) -> bool:
        """The direction is known (``CALIBRATION_FRAMES`` frames with a foot seen)."""
        return self.foot_frames >= CALIBRATION_FRAMES

    def scale_m_per_px(self) -> float | None:
        if not self.legs_px:
            return None
        return self.leg_length_m * (1.0 - ANKLE_OF_LEG) / float(np.median(self.legs_px))

    def view(self) -> str:
        """``sagittal_right`` when the toes point to +x of the image (the athlete runs to the right)."""
        return "sagittal_left" if self.facing and float(np.median(self.facing)) < 0 else "sagittal_right"
