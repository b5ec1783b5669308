"""The sensor sources of one athlete, one object per stream, all with one protocol.

``feed(times_ns, data)`` takes a block of the stream's samples as the wire gives them and
returns the contact events it found, as ``(foot, rows)`` pairs with rows of
``(kind, time, ic, peak)`` (processors/events.py); ``warnings`` counts what the source found
wrong with its input (a declared unit that cannot be right, a contact given to the wrong
foot). The insole, foot IMU and camera keep the samples the stance metrics read later (a
ring); which source times a foot, and what becomes a record, is decided downstream
(processors/timing.py, processors/athlete.py).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from poserun.processors.checks import GravityCheck
from poserun.processors.clock import ClockOffset
from poserun.processors.contact import ContactDetector
from poserun.processors.imu import FootEvents, FootImu, axes_matrix, foot_imu_kernel
from poserun.processors.imu import G as G_IMU
from poserun.processors.insole import REGIONS, InsoleLayout
from poserun.processors.keypoints import JOINTS, CameraEvents, KeypointLayout
from poserun.processors.pelvis import PelvisEvents
from poserun.processors.ring import SampleRing
from poserun.processors.shank import ShankEvents

SIDES = ("left", "right")
ANKLES = [JOINTS.index("ankle"), len(JOINTS) + JOINTS.index("ankle")]  # left, right ankle in a metric frame
NO_EVENTS: list[tuple[str, np.ndarray]] = []  # (shared, never appended to)

Events = list[tuple[str, np.ndarray]]


class Source(Protocol):
    """What every sensor stream offers the athlete's coordinator."""

    warnings: Counter[str]

    def feed(self, times_ns: np.ndarray, data: np.ndarray) -> Events: ...


class InsoleSource:
    """A pressure insole: contacts from the total force (processors/contact.py), the raw cells
    kept for the stance metrics (converted to newtons when a stance is measured)."""

    def __init__(self, side: str, layout: InsoleLayout, detector: ContactDetector, ring: SampleRing) -> None:
        self.side, self.layout, self.detector, self.ring = side, layout, detector, ring
        self.warnings: Counter[str] = Counter()
        self._update = detector.cells_updater(layout.scale, ring)
        self._period: float | None = None
        self._cell_map: dict[str, list[float] | list[str]] | None = None

    def reconfigure(self, layout: InsoleLayout) -> None:
        """A new layout (a new meta): the cells' scale changes, the detector's state stays."""
        if self.ring.data is None or self.ring.data.shape[1] != len(layout.scale):
            self.ring = SampleRing(width=len(layout.scale))  # a new layout starts a new history
        self.layout = layout
        self._cell_map = None
        self._update = self.detector.cells_updater(layout.scale, self.ring)

    def feed(self, times_ns: np.ndarray, data: np.ndarray) -> Events:
        ev = self._update(times_ns, data)
        return [(self.side, ev)] if len(ev) else NO_EVENTS

    def period_ns(self, now_ns: float) -> float:
        """The insole's sample period, measured once on 100 ms of samples up to ``now_ns`` (10 ms
        until there are three)."""
        if self._period is None:
            t, _ = self.ring.window(now_ns - 100e6, math.inf)
            if len(t) <= 2:
                return 10e6
            self._period = float(np.median(np.diff(t)))
        return self._period

    def cell_map(self) -> dict[str, list[float] | list[str]]:
        """Where the cells sit (the pressure map's axes) and their regions, as lists made once per layout."""
        if self._cell_map is None:
            layout = self.layout
            across = layout.across if layout.across is not None else np.zeros_like(layout.along)
            self._cell_map = {"along": np.round(layout.along, 3).tolist(), "across": np.round(across, 3).tolist(),
                              "region": [REGIONS[int(r)] for r in layout.region]}
        return {k: list(v) for k, v in self._cell_map.items()}  # copies: a record is its own


@dataclass
class FootImuSource:
    """A foot-worn IMU: strapdown vertical velocity and contact events in one compiled call; its
    per-sample columns (vz, still, |a|-g, a_wz) kept in the ring. With ``clock`` (a foot IMU
    beside an insole) its samples are put on the insole's clock first."""

    side: str
    axes: dict[str, str]
    accel_unit: str
    gyro_unit: str
    strapdown: FootImu
    events: FootEvents
    ring: SampleRing = field(default_factory=SampleRing)
    clock: ClockOffset | None = None
    warnings: Counter[str] = field(default_factory=Counter)
    shift_ns: int = 0  # the clock shift applied to the last block
    matrix: np.ndarray = field(default_factory=lambda: np.eye(6))

    def __post_init__(self) -> None:
        # one 6x6 matrix: axes to body frame and units to SI, for accelerometer and gyroscope
        m = axes_matrix(self.axes)
        self.matrix = np.zeros((6, 6))
        self.matrix[:3, :3] = m.T * (G_IMU if self.accel_unit == "g" else 1.0)
        self.matrix[3:, 3:] = m.T * (math.pi / 180.0 if self.gyro_unit == "deg/s" else 1.0)
        self.unit = GravityCheck(G_IMU if self.accel_unit == "g" else 1.0)

    def to_body(self, raw: np.ndarray) -> np.ndarray:
        """Raw samples in the body frame, SI units (the numpy twin of the kernel's first step)."""
        raw = np.asarray(raw, dtype=np.float64)
        if raw.shape[1] >= 6:
            return raw[:, :6] @ self.matrix
        return raw[:, :3] @ self.matrix[:3, :]

    def feed(self, times_ns: np.ndarray, data: np.ndarray) -> Events:
        check_unit(self.unit, f"imu_foot_{self.side}", times_ns, data, self.warnings)
        self.shift_ns = self.clock.applied if self.clock is not None else 0
        if self.shift_ns:
            times_ns = times_ns + self.shift_ns
        n = len(times_ns)
        cols = np.empty((n, 4))
        events = np.empty((n + 1, 4))
        sd, ev = self.strapdown, self.events
        k = foot_imu_kernel(np.ascontiguousarray(times_ns, dtype=np.int64),
                            np.ascontiguousarray(data, dtype=np.float64), self.matrix, sd.still_acc,
                            sd.still_gyr, sd.still_min, sd.state, ev.ic_high, ev.ic_low, ev.to_min,
                            ev.min_swing_s * 1e9, ev.state, cols, events)
        self.ring.push(times_ns, cols)
        return [(self.side, events[:k])] if k else NO_EVENTS


class ShankSource:
    """A shank accelerometer (processors/shank.py): its impact onset and push-off."""

    def __init__(self, side: str, accel_unit: str) -> None:
        self.side = side
        self.scale = G_IMU if accel_unit == "g" else 1.0
        self.detector = ShankEvents()
        self.unit = GravityCheck(self.scale)
        self.warnings: Counter[str] = Counter()

    def feed(self, times_ns: np.ndarray, data: np.ndarray) -> Events:
        check_unit(self.unit, f"imu_shank_{self.side}", times_ns, data, self.warnings)
        ev = self.detector.update(times_ns, np.asarray(data[:, :3], dtype=np.float64) * self.scale)
        return [(self.side, ev)] if len(ev) else NO_EVENTS


class PelvisSource:
    """A pelvis, sacrum or trunk accelerometer: whole-body contacts, each given to a foot
    (processors/pelvis.py); a contact given to the wrong foot is counted."""

    def __init__(self, axes: dict[str, str], placement: str, rate_hz: float, min_stance_s: float) -> None:
        self.placement = placement
        self.detector = PelvisEvents(dict(axes), rate_hz=rate_hz, min_stance_s=min_stance_s)
        self.warnings: Counter[str] = Counter()

    def feed(self, times_ns: np.ndarray, data: np.ndarray) -> Events:
        flips = self.detector.side_flips
        out = [(foot, np.array([[kind, t, ic, peak]])) for foot, kind, t, ic, peak in
               self.detector.update(times_ns, data)]
        if self.detector.side_flips > flips:
            self.warnings["pelvis_side_flip"] += 1  # a contact was given to the wrong foot
        return out


class CameraSource:
    """Camera or marker keypoints: both feet's contacts from the ankle and toe heights, the
    metric frames kept for the stance geometry."""

    def __init__(self, layout: KeypointLayout, min_stance_s: float, min_swing_s: float) -> None:
        self.layout = layout
        self.ring = SampleRing()
        self.detector = CameraEvents(min_stance_s=min_stance_s, min_swing_s=min_swing_s)
        self.warnings: Counter[str] = Counter()

    def feed(self, times_ns: np.ndarray, data: np.ndarray) -> Events:
        pts = self.layout.to_metric(data)
        toes = self.layout.toe_points(data)  # kept after the joints: the fall angle's point of support
        flat = pts.reshape(len(times_ns), -1)
        self.ring.push(times_ns, flat if toes is None else np.concatenate([flat, toes.reshape(len(times_ns), -1)], 1))
        rows = self.detector.update(times_ns, pts[:, ANKLES, 1], self.layout.toe_heights(data),
                                   self.layout.sole_heights(data))
        if not len(rows):
            return NO_EVENTS
        out = []
        for k, foot in enumerate(SIDES):
            mine = rows[rows[:, 3] == k]
            if len(mine):
                mine[:, 3] = 0.0  # (the column is the foot here; a camera event has no peak)
                out.append((foot, mine))
        return out

    def window(self, start: float, end: float) -> tuple[np.ndarray, ...] | None:
        """The metric frames in [start, end] as (times, (n, 8, 2) joints), then (n, 2, 2) toes when
        the keypoint set has them; None under two frames."""
        t, d = self.ring.window(start, end)
        if len(t) < 2:
            return None
        pts = d[:, :16].reshape(len(t), 8, 2)
        return (t, pts) if d.shape[1] == 16 else (t, pts, d[:, 16:20].reshape(len(t), 2, 2))


def check_unit(check: GravityCheck, source: str, times_ns: np.ndarray, data: np.ndarray,
               warnings: Counter[str]) -> None:
    if not check.done and check.feed(times_ns, data):
        warnings[f"{source}_accel_unit_implausible"] += 1  # e.g. a file in g declared as m/s^2
