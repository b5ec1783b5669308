"""Body geometry from camera keypoints (rules R5-R7, R9, R10, and velocities for R4).

Keypoints are turned into metres in a sagittal frame (x = running
direction, z = up) using the camera meta; keypoints below the confidence
gate become NaN and every metric that needs them is absent (None). The
hip's vertical velocity at IC is fitted over the preceding flight with
gravity known (z + g t^2 / 2 is linear in t), which removes the bias a
plain finite difference has over a 60 fps window.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numba import njit

from poserun.processors.events import emit
from poserun.processors.jit import JIT

G = 9.80665
JOINTS = ("hip", "knee", "ankle", "shoulder")
# joint index in the metric array: side * 4 + joint
_NAMES = {(side, j): f"{side}_{j}" for side in ("left", "right") for j in JOINTS}
# motion-capture marker names per joint (case-insensitive; L/R prefix or suffix), best first;
# a joint given by several markers (ASIS + PSIS for the hip) is their mean
_MARKERS: dict[str, list[list[str]]] = {
    "hip": [["HIP"], ["GT"], ["TRO"], ["ASI", "PSI"], ["ASIS", "PSIS"], ["ASI"], ["ASIS"]],
    "knee": [["KNE"], ["KNEE"], ["LEK"], ["KJC"], ["FLE"], ["LFE"], ["LEPI"], ["EPI"]],
    # (a heel marker stands in for a missing ankle: the foot's lowest rear point, it lands first)
    "ankle": [["ANK"], ["ANKLE"], ["LM"], ["LMAL"], ["MAL"], ["AJC"], ["HEE"], ["HEEL"], ["CAL"], ["CALC"]],
    "shoulder": [["SHO"], ["SHOULDER"], ["ACR"], ["ACROMION"], ["SH"]],
}


def _by_tokens(names: list[str]) -> dict[tuple[str, str], int]:
    """(side letter, first word after the side) -> marker index, for names that spell the side as a word of
    their own and describe the marker after it (``R_kneejoint_LA``, ``L.Ankle.Lat``, ``Right Knee``):
    the first marker of each such pair wins."""
    out: dict[tuple[str, str], int] = {}
    for i, name in enumerate(names):
        words = [w for w in re.split(r"[_.\s-]+", name.upper()) if w]
        if len(words) >= 2 and words[0] in ("L", "R", "LEFT", "RIGHT"):
            out.setdefault((words[0][0], words[1]), i)
    return out


def _marker_groups(names: list[str]) -> list[list[int]]:
    """The markers of each joint (``_MARKERS``), left then right; an empty list for a joint the set
    lacks. A name matches exactly (``LKNE``, ``KNEE_R``, ``LeftKnee``), or by its first word after a
    side word when that word is an alias of four letters or more or starts with one
    (``R_kneejoint_LA``: knee)."""
    upper = {n.upper().replace("_", "").replace(".", "").replace(" ", ""): i for i, n in enumerate(names)}
    words = _by_tokens(names)
    groups: list[list[int]] = []
    for side in ("L", "R"):
        for j in JOINTS:
            found = None
            for alias in _MARKERS[j]:
                idx = []
                for part in alias:
                    for key in (side + part, part + side, ("LEFT" if side == "L" else "RIGHT") + part):
                        if key in upper:
                            idx.append(upper[key])
                            break
                    else:
                        hit = next((i for (s, w), i in words.items()
                                    if s == side and (w == part or (len(part) >= 4 and w.startswith(part)))), None)
                        if hit is not None:
                            idx.append(hit)
                if len(idx) == len(alias):
                    found = idx
                    break
            groups.append(found or [])
    return groups


_AXIS = {"x": 0, "y": 1, "z": 2}
# toe markers (the forefoot's tip: it leaves the ground last), best first; MediaPipe's foot_index
# and, where a set has no toe marker, the first metatarsal head (the medial forefoot, which leaves
# the ground just before the toe tip; the fifth leaves far earlier, on the Davis run 45 ms)
_TOES = ("TOE", "TOE1", "HALLUX", "FOOTINDEX", "FOOT_INDEX", "MT1", "MT2", "MET1", "P1MT")
# the foot's sole points, any of which may touch down first: heel (rearfoot strike), fifth metatarsal
# head (forefoot strike, lateral side first), first metatarsal, toe; MediaPipe's heel and foot_index
_SOLE = ("HEE", "HEEL", "CAL", "CALC", "TOE", "TOE1", "HALLUX", "FOOTINDEX", "FOOT_INDEX", "MT1", "MT2", "MT5",
         "MET1", "MET5", "P1MT", "P5MT")


def _sole_markers(names: list[str]) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """Every sole marker (``_SOLE``) of the left and right foot, by an exact form (``LHEE``, ``L_toe``,
    ``left_heel``, ``HEEL_L``) or the first word after a side word (``R.Heel.Bottom``); None unless
    both feet have one."""
    found: list[tuple[int, ...]] = []
    for side, word in (("L", "LEFT"), ("R", "RIGHT")):
        hits = []
        for i, n in enumerate(names):
            key = n.upper().replace(".", "_").replace(" ", "_")
            words = [w for w in re.split(r"[_.\s-]+", n.upper()) if w]
            by_word = len(words) >= 2 and words[0] in (side, word) and words[1] in _SOLE
            if by_word or any(key in (f"{side}_{a}", f"{side}{a}", f"{word}_{a}", f"{a}_{side}") for a in _SOLE):
                hits.append(i)
        if not hits:
            return None
        found.append(tuple(hits))
    return found[0], found[1]


def _toe_markers(names: list[str]) -> tuple[int, int] | None:
    """The left and right toe marker (``L_toe``, ``LTOE``, ``left_foot_index``), or None."""
    found = []
    for side, word in (("L", "LEFT"), ("R", "RIGHT")):
        hit = None
        for alias in _TOES:
            for i, n in enumerate(names):
                key = n.upper().replace(".", "_").replace(" ", "_")
                if key in (f"{side}_{alias}", f"{side}{alias}", f"{word}_{alias}", f"{alias}_{side}"):
                    hit = i
                    break
            if hit is not None:
                break
        if hit is None:
            return None
        found.append(hit)
    return found[0], found[1]


@dataclass(frozen=True)
class KeypointLayout:
    """Where the needed joints sit in a keypoint frame and how to turn values into metres
    in the sagittal plane (x = running direction, z = up)."""

    groups: tuple[tuple[int, ...], ...]  # per (side, joint): keypoints averaged into it
    dims: str
    scale: float  # metres per unit
    origin: tuple[float, float]  # (forward, up) value of the origin, in units
    fwd: tuple[int, float]  # column within a keypoint and sign of the running direction
    up: tuple[int, float]  # column within a keypoint and sign of up
    min_conf: float = 0.3
    toes: tuple[int, int] | None = None  # the left and right toe marker (toe-off from the toe), if any
    # each foot's sole markers (IC), if any; 3-D marker sets only: the rule is measured on motion
    # capture, not yet on video keypoints, which keep the ankle rule
    soles: tuple[tuple[int, ...], tuple[int, ...]] | None = None

    @classmethod
    def from_meta(cls, names: list[str], dims: str, unit: str, scale_m_per_px: float,
                  origin_px: tuple[float, float], y_axis: str, view: str,
                  up_axis: str | None = None, forward_axis: str | None = None) -> KeypointLayout | None:
        """``None`` when the keypoint set has no ankle (or heel) on a side, the feet that time the
        contacts, or its geometry cannot be put in the sagittal plane (a frontal camera; 3-D markers
        without axes). A joint the set lacks (no shoulders in a lower-body marker set) is NaN in
        every frame: the contacts are timed all the same, the metrics that need it are None."""
        pos = {n: i for i, n in enumerate(names)}
        keys = [(side, j) for side in ("left", "right") for j in JOINTS]
        markers = None if all(_NAMES[k] in pos for k in keys) else _marker_groups(names)
        groups = [[pos[_NAMES[k]]] if _NAMES[k] in pos else (markers[i] if markers else [])
                  for i, k in enumerate(keys)]
        if not groups[JOINTS.index("ankle")] or not groups[len(JOINTS) + JOINTS.index("ankle")]:
            return None
        scale = {"px": scale_m_per_px, "m": 1.0, "mm": 0.001}[unit]
        if view in ("sagittal_right", "sagittal_left") and dims in ("xyc", "xy"):
            fwd = (0, 1.0 if view == "sagittal_right" else -1.0)
            up = (1, -1.0 if y_axis == "down" else 1.0)
            origin = (origin_px[0], origin_px[1])
        elif view == "3d" and dims in ("xyz", "xyzc") and up_axis and forward_axis:
            fwd = (_AXIS[forward_axis[1]], 1.0 if forward_axis[0] == "+" else -1.0)
            up = (_AXIS[up_axis[1]], 1.0 if up_axis[0] == "+" else -1.0)
            origin = (0.0, 0.0)
        else:
            return None
        return cls(tuple(tuple(g) for g in groups), dims, scale, origin, fwd, up, toes=_toe_markers(names),
                   soles=_sole_markers(names) if view == "3d" else None)

    def to_metric(self, data: np.ndarray) -> np.ndarray:
        """(n, 8, 2) joint positions in metres (x forward, z up), NaN where not confident."""
        cols = self._single_columns
        if cols is not None:  # one keypoint per joint: one compiled pass
            raw = np.ascontiguousarray(data, dtype=np.float64)
            out = np.empty((raw.shape[0], 8, 2))
            to_metric_kernel(raw, cols, self.fwd[0], self.up[0], self.dims.find("c"), self.min_conf,
                             self.fwd[1] * self.scale, self.up[1] * self.scale, self.origin[0], self.origin[1], out)
            return out
        return self.to_metric_numpy(data)

    def toe_heights(self, data: np.ndarray) -> np.ndarray | None:
        """(n, 2) left and right toe heights in metres (NaN where not confident), None without toes."""
        if self.toes is None:
            return None
        stride = len(self.dims)
        raw = np.asarray(data, dtype=np.float64)
        cols = np.array(self.toes) * stride
        up = self.up[1] * (raw[:, cols + self.up[0]] - self.origin[1]) * self.scale
        conf = self.dims.find("c")
        if conf >= 0:
            up = np.where(raw[:, cols + conf] < self.min_conf, np.nan, up)
        return up

    def toe_points(self, data: np.ndarray) -> np.ndarray | None:
        """(n, 2, 2) left and right toe positions in metres (x forward, z up; NaN where not
        confident), the point of support of the fall angle; None without toes."""
        if self.toes is None:
            return None
        stride = len(self.dims)
        raw = np.asarray(data, dtype=np.float64)
        cols = np.array(self.toes) * stride
        out = np.empty((raw.shape[0], 2, 2))
        out[:, :, 0] = self.fwd[1] * (raw[:, cols + self.fwd[0]] - self.origin[0]) * self.scale
        out[:, :, 1] = self.up[1] * (raw[:, cols + self.up[0]] - self.origin[1]) * self.scale
        conf = self.dims.find("c")
        if conf >= 0:
            out[raw[:, cols + conf] < self.min_conf] = np.nan
        return out

    def sole_heights(self, data: np.ndarray) -> np.ndarray | None:
        """(n, 2) height in metres of each foot's lowest sole marker (NaN where none is confident),
        None without sole markers."""
        if self.soles is None:
            return None
        stride = len(self.dims)
        raw = np.asarray(data, dtype=np.float64)
        conf = self.dims.find("c")
        out = np.empty((raw.shape[0], 2))
        for f, markers in enumerate(self.soles):
            cols = np.array(markers, dtype=np.int64) * stride
            up = self.up[1] * (raw[:, cols + self.up[0]] - self.origin[1]) * self.scale
            if conf >= 0:
                up = np.where(raw[:, cols + conf] < self.min_conf, np.nan, up)
            low = np.where(np.isnan(up), np.inf, up).min(axis=1)
            out[:, f] = np.where(np.isinf(low), np.nan, low)
        return out

    @cached_property
    def _single_columns(self) -> np.ndarray | None:
        """Where each joint's keypoint starts in a frame, when every joint is one keypoint."""
        if not all(len(g) == 1 for g in self.groups):
            return None
        return np.array([g[0] * len(self.dims) for g in self.groups], dtype=np.int64)

    def to_metric_numpy(self, data: np.ndarray) -> np.ndarray:
        """:meth:`to_metric` in numpy: marker groups averaged into joints (and the kernel's twin)."""
        stride = len(self.dims)
        raw = np.asarray(data, dtype=np.float64)
        conf = self.dims.find("c")
        if all(len(g) == 1 for g in self.groups):  # one keypoint per joint: all at once
            cols = np.array([g[0] for g in self.groups]) * stride
            f = raw[:, cols + self.fwd[0]]
            u = raw[:, cols + self.up[0]]
            if conf >= 0:
                bad = raw[:, cols + conf] < self.min_conf
                f = np.where(bad, np.nan, f)
                u = np.where(bad, np.nan, u)
        else:
            f = np.empty((raw.shape[0], 8))
            u = np.empty((raw.shape[0], 8))
            for j, group in enumerate(self.groups):
                if not group:  # a joint the set lacks
                    f[:, j] = u[:, j] = np.nan
                    continue
                cols = np.asarray(group, dtype=np.int64) * stride
                fj, uj = raw[:, cols + self.fwd[0]], raw[:, cols + self.up[0]]
                if conf >= 0:
                    bad = raw[:, cols + conf] < self.min_conf
                    fj, uj = np.where(bad, np.nan, fj), np.where(bad, np.nan, uj)
                f[:, j], u[:, j] = fj.mean(axis=1), uj.mean(axis=1)
        out = np.empty((raw.shape[0], 8, 2))
        out[:, :, 0] = self.fwd[1] * (f - self.origin[0]) * self.scale
        out[:, :, 1] = self.up[1] * (u - self.origin[1]) * self.scale
        return out


@njit(**JIT)
def to_metric_kernel(raw: np.ndarray, cols: np.ndarray, fwd_col: int, up_col: int, conf_col: int,
                     min_conf: float, fwd_gain: float, up_gain: float, fwd_origin: float, up_origin: float,
                     out: np.ndarray) -> None:
    """One keypoint per joint: ``out[i, j] = gain * (value - origin)`` forward and up, NaN
    where the keypoint's confidence is under ``min_conf``."""
    for i in range(raw.shape[0]):
        for j in range(cols.shape[0]):
            c = cols[j]
            if conf_col >= 0 and raw[i, c + conf_col] < min_conf:
                out[i, j, 0] = np.nan
                out[i, j, 1] = np.nan
            else:
                out[i, j, 0] = fwd_gain * (raw[i, c + fwd_col] - fwd_origin)
                out[i, j, 1] = up_gain * (raw[i, c + up_col] - up_origin)


def joint(points: np.ndarray, side: str, name: str) -> np.ndarray:
    return points[:, (0 if side == "left" else 4) + JOINTS.index(name), :]


@njit(**JIT)
def _interp(times_ns: np.ndarray, values: np.ndarray, t: float) -> float:
    """Linear interpolation over finite samples; NaN when ``t`` is not bracketed within 50 ms."""
    first = -1
    last = -1
    for i in range(values.shape[0]):
        if np.isfinite(values[i]):
            if first < 0:
                first = i
            last = i
    if first < 0 or first == last or t < float(times_ns[first]) or t > float(times_ns[last]):
        return np.nan
    prev = -1
    for i in range(first, last + 1):
        if not np.isfinite(values[i]):
            continue
        ti = float(times_ns[i])
        if ti >= t:
            if prev < 0:
                return values[i]
            tp = float(times_ns[prev])
            if ti - tp > 50e6:
                return np.nan
            if ti == t:
                return values[i]
            return (values[i] - values[prev]) / (ti - tp) * (t - tp) + values[prev]
        prev = i
    return np.nan


@njit(**JIT)
def _angle_deg(ax: float, ay: float, bx: float, by: float, cx: float, cy: float) -> float:
    """Angle at b (degrees) between b->a and b->c; NaN when either side has no length."""
    ux, uy, vx, vy = ax - bx, ay - by, cx - bx, cy - by
    nu = math.sqrt(ux * ux + uy * uy)
    nv = math.sqrt(vx * vx + vy * vy)
    if not (nu > 0.0 and nv > 0.0):
        return np.nan
    return math.degrees(math.acos(max(-1.0, min(1.0, (ux * vx + uy * vy) / (nu * nv)))))


@njit(**JIT)
def frame_at_kernel(times_ns: np.ndarray, pts: np.ndarray, t: float, out: np.ndarray) -> None:
    """All joints at ``t`` into ``out`` (J, 2): linear between the two frames around it; a joint
    missing in either frame falls back to its nearest confident frames (``_interp``)."""
    n = times_ns.shape[0]
    k = np.searchsorted(times_ns, t)
    near = 0 < k < n and float(times_ns[k] - times_ns[k - 1]) <= 50e6
    w = (t - float(times_ns[k - 1])) / float(times_ns[k] - times_ns[k - 1]) if near else 0.0
    for j in range(pts.shape[1]):
        for c in range(pts.shape[2]):
            v = pts[k - 1, j, c] + w * (pts[k, j, c] - pts[k - 1, j, c]) if near else np.nan
            if not np.isfinite(v):
                v = _interp(times_ns, pts[:, j, c], t)
            out[j, c] = v


def frame_at(times_ns: np.ndarray, pts: np.ndarray, t: float) -> np.ndarray:
    """All joints at time ``t`` (J, 2); see :func:`frame_at_kernel`."""
    out = np.empty(pts.shape[1:])
    frame_at_kernel(np.ascontiguousarray(times_ns, dtype=np.int64), np.ascontiguousarray(pts, dtype=np.float64),
                    float(t), out)
    return out


GEOMETRY = ("overstride_m", "overstride_ratio", "knee_flexion_ic_deg", "knee_flexion_min_deg", "fall_angle_deg",
            "waist_bend_deg", "pull_height_m", "pull_under_hip_m", "vertical_oscillation_m")


@njit(**JIT)
def _support_angle_deg(hip_x: float, hip_y: float, sup_x: float, sup_y: float) -> float:
    """Angle from vertical (degrees, + forward) of the line from the point of support to the hip."""
    dx, dy = hip_x - sup_x, hip_y - sup_y
    return math.degrees(math.atan2(dx, dy)) if np.isfinite(dx) and np.isfinite(dy) else np.nan


@njit(**JIT)
def _waist_bend_deg(pts_i: np.ndarray, sup_x: float, sup_y: float) -> float:
    """Trunk (hip midpoint to shoulder midpoint) angle minus the support-to-hip angle, degrees
    (+ = shoulders ahead of the pose line: bent forward at the waist), for one frame ``pts_i`` (J, 2)."""
    hip_x, hip_y = 0.5 * (pts_i[0, 0] + pts_i[4, 0]), 0.5 * (pts_i[0, 1] + pts_i[4, 1])
    tx, ty = 0.5 * (pts_i[3, 0] + pts_i[7, 0]) - hip_x, 0.5 * (pts_i[3, 1] + pts_i[7, 1]) - hip_y
    if not (np.isfinite(tx) and np.isfinite(ty)):
        return np.nan
    return math.degrees(math.atan2(tx, ty)) - _support_angle_deg(hip_x, hip_y, sup_x, sup_y)


@njit(**JIT)
def fall_kernel(times_ns: np.ndarray, pts: np.ndarray, support: np.ndarray, f: int, ic_ns: float,
                to_ns: float, at_to: np.ndarray, sup_to: np.ndarray) -> tuple[float, float]:
    """(fall angle at TO, waist bend over the fall), degrees, NaN where unsupported. ``support``
    (n, 2, 2): each foot's point of support per frame (its toe, else its ankle); ``f`` 0 left, 4 right.

    Where the joints at TO cannot be interpolated (a keypoint missing in the frame after it), the
    fall angle is the one of the stance's last frame with them, within 50 ms of TO.
    The fall runs from the first frame of the stance whose hip midpoint is at or ahead of the point
    of support (the pose; from IC when the hips land ahead of it) to TO. The waist bend is the
    median over the fall's frames and the interpolated TO instant: the bend held through the middle of
    the fall (the support line sweeps forward steadily), which one frame's wrong keypoint does not
    move as it would a mean; the largest value would only repeat the TO frame's."""
    s = f // 4
    frame_at_kernel(times_ns, pts, to_ns, at_to)
    frame_at_kernel(times_ns, support, to_ns, sup_to)
    hip_x, hip_y = 0.5 * (at_to[0, 0] + at_to[4, 0]), 0.5 * (at_to[0, 1] + at_to[4, 1])
    fall = _support_angle_deg(hip_x, hip_y, sup_to[s, 0], sup_to[s, 1])
    for i in range(times_ns.shape[0] - 1, -1, -1):  # TO not bracketed: the stance's last frame seen
        if np.isfinite(fall):
            break
        t = float(times_ns[i])
        if t <= to_ns and t >= max(ic_ns, to_ns - 50e6):
            fall = _support_angle_deg(0.5 * (pts[i, 0, 0] + pts[i, 4, 0]), 0.5 * (pts[i, 0, 1] + pts[i, 4, 1]),
                                      support[i, s, 0], support[i, s, 1])
    bends = np.empty(times_ns.shape[0] + 1)
    n = 0
    started = False
    for i in range(times_ns.shape[0]):
        t = float(times_ns[i])
        if t < ic_ns or t >= to_ns:
            continue
        sx, sy = support[i, s, 0], support[i, s, 1]
        if not started:
            ahead = 0.5 * (pts[i, 0, 0] + pts[i, 4, 0]) - sx
            if not (np.isfinite(ahead) and ahead >= 0.0):
                continue
            started = True
        b = _waist_bend_deg(pts[i], sx, sy)
        if np.isfinite(b):
            bends[n] = b
            n += 1
    b = _waist_bend_deg(at_to, sup_to[s, 0], sup_to[s, 1])
    if np.isfinite(b) and (started or hip_x - sup_to[s, 0] >= 0.0):  # no fall, no bend over it
        bends[n] = b
        n += 1
    return fall, (np.median(bends[:n]) if n > 0 else np.nan)


@njit(**JIT)
def stance_geometry_kernel(times_ns: np.ndarray, pts: np.ndarray, support: np.ndarray, f: int, ic_ns: float,
                           to_ns: float, stride_start_ns: float, leg_length_m: float, out: np.ndarray,
                           at_ic: np.ndarray) -> None:
    """The camera metrics of one stance into ``out`` (in ``GEOMETRY`` order, NaN where the
    keypoints cannot support one) and the joints at IC into ``at_ic``. ``f`` is the support
    side's joint offset (0 left, 4 right); ``support`` (n, 2, 2) each foot's point of support
    (see :func:`fall_kernel`); ``stride_start_ns`` NaN when unknown."""
    o = 4 - f
    at_mid = np.empty_like(at_ic)
    frame_at_kernel(times_ns, pts, ic_ns, at_ic)
    frame_at_kernel(times_ns, pts, 0.5 * (ic_ns + to_ns), at_mid)
    hip_ic_x = 0.5 * (at_ic[0, 0] + at_ic[4, 0])
    over = at_ic[f + 2, 0] - hip_ic_x
    out[0] = over
    out[1] = over / leg_length_m
    out[2] = 180.0 - _angle_deg(at_ic[f, 0], at_ic[f, 1], at_ic[f + 1, 0], at_ic[f + 1, 1],
                                at_ic[f + 2, 0], at_ic[f + 2, 1])
    flex_min = np.inf
    for i in range(times_ns.shape[0]):
        t = float(times_ns[i])
        if t < ic_ns or t > to_ns:
            continue
        ux, uy = pts[i, f, 0] - pts[i, f + 1, 0], pts[i, f, 1] - pts[i, f + 1, 1]
        vx, vy = pts[i, f + 2, 0] - pts[i, f + 1, 0], pts[i, f + 2, 1] - pts[i, f + 1, 1]
        den = math.sqrt(ux * ux + uy * uy) * math.sqrt(vx * vx + vy * vy)
        if den == 0.0:
            continue
        cos = (ux * vx + uy * vy) / den
        if np.isfinite(cos):
            flex = 180.0 - math.degrees(math.acos(max(-1.0, min(1.0, cos))))
            flex_min = min(flex_min, flex)
    out[3] = flex_min if flex_min < np.inf else np.nan
    out[4], out[5] = fall_kernel(times_ns, pts, support, f, ic_ns, to_ns, np.empty_like(at_ic),
                                 np.empty((2, 2)))
    hip_x = 0.5 * (at_mid[0, 0] + at_mid[4, 0])
    out[6] = at_mid[o + 2, 1] - at_mid[f + 2, 1]
    out[7] = at_mid[o + 2, 0] - hip_x
    out[8] = np.nan
    if np.isfinite(stride_start_ns):
        lo, hi = np.inf, -np.inf
        t_first, t_last, count = 0.0, 0.0, 0
        for i in range(times_ns.shape[0]):
            t = float(times_ns[i])
            y = 0.5 * (pts[i, 0, 1] + pts[i, 4, 1])
            if t < stride_start_ns or t > ic_ns or not np.isfinite(y):
                continue
            if count == 0:
                t_first = t
            t_last = t
            count += 1
            lo, hi = min(lo, y), max(hi, y)
        span = t_last - t_first if count >= 2 else 0.0
        if span > 0.6 * (ic_ns - stride_start_ns):
            out[8] = hi - lo


def support_points(pts: np.ndarray, toes: np.ndarray | None = None) -> np.ndarray:
    """(n, 2, 2) each foot's point of support per frame: the toe keypoint (``toes`` (n, 2, 2), left
    then right, x forward and z up in metres) for a foot whose toe is seen in any frame (NaN where
    it is not: interpolated like any joint), else the ankle. One kind per foot: a point chosen frame
    by frame would be interpolated between a toe and an ankle about 0.2 m apart."""
    ankles = np.ascontiguousarray(pts[:, [2, 6], :], dtype=np.float64)
    if toes is None:
        return ankles
    toes = np.asarray(toes, dtype=np.float64)
    seen = np.isfinite(toes).all(axis=2).any(axis=0)  # (2,): per foot
    return np.ascontiguousarray(np.where(seen[None, :, None], toes, ankles))


def stance_geometry(times_ns: np.ndarray, pts: np.ndarray, foot: str, ic_ns: float, to_ns: float,
                    stride_start_ns: float | None, leg_length_m: float,
                    at_ic: np.ndarray | None = None, toes: np.ndarray | None = None) -> dict[str, float | None]:
    """Camera metrics for one stance of ``foot``; None where the keypoints cannot support one.
    ``at_ic`` (J, 2), if given, receives the joints at IC (the record's stick figure); ``toes``
    (n, 2, 2), if the keypoint set has them, the toes as the point of support (else the ankles)."""
    out = np.empty(len(GEOMETRY))
    pts = np.ascontiguousarray(pts, dtype=np.float64)
    stance_geometry_kernel(np.ascontiguousarray(times_ns, dtype=np.int64), pts, support_points(pts, toes),
                           0 if foot == "left" else 4, float(ic_ns),
                           float(to_ns), math.nan if stride_start_ns is None else float(stride_start_ns),
                           float(leg_length_m), out, np.empty(pts.shape[1:]) if at_ic is None else at_ic)
    return {k: (round(float(v), 4) if math.isfinite(v) else None) for k, v in zip(GEOMETRY, out, strict=True)}


@njit(**JIT)
def _velocity(times_ns: np.ndarray, z: np.ndarray, t_ns: float, end_ns: float, window_ns: float,
              g: float) -> float:
    """Downward velocity (m/s, + down) at ``t_ns`` from the finite samples in [end - window, end]:
    the least-squares slope of ``z + g t^2 / 2`` (``g`` = G for a point in free fall, whose
    extrapolation is then exact; 0 for a straight line), t in s from ``t_ns``."""
    n = 0
    sx = 0.0
    sy = 0.0
    for i in range(times_ns.shape[0]):
        ti = float(times_ns[i])
        if ti <= end_ns and ti >= end_ns - window_ns and np.isfinite(z[i]):
            x = (ti - t_ns) / 1e9
            n += 1
            sx += x
            sy += z[i] + 0.5 * g * x * x
    if n < 2:
        return np.nan
    xm = sx / n
    ym = sy / n
    num = 0.0
    den = 0.0
    for i in range(times_ns.shape[0]):
        ti = float(times_ns[i])
        if ti <= end_ns and ti >= end_ns - window_ns and np.isfinite(z[i]):
            x = (ti - t_ns) / 1e9
            dx = x - xm
            num += dx * (z[i] + 0.5 * g * x * x - ym)
            den += dx * dx
    return -num / den if den > 0.0 else np.nan


@njit(**JIT)
def landing_velocities_kernel(times_ns: np.ndarray, pts: np.ndarray, f: int, ic_ns: float,
                              until_ns: float) -> tuple[float, float]:
    hips_z = 0.5 * (pts[:, 0, 1] + pts[:, 4, 1])
    return (_velocity(times_ns, hips_z, ic_ns, until_ns, 70e6, G),
            _velocity(times_ns, pts[:, f + 2, 1], ic_ns, until_ns, 40e6, 0.0))


def landing_velocities(times_ns: np.ndarray, pts: np.ndarray, foot: str, ic_ns: float,
                       until_ns: float | None = None) -> tuple[float, float]:
    """(body fall velocity from the hips, foot landing velocity from the ankle), m/s, + down,
    from the frames up to ``until_ns`` (default: IC): the hips over the last 70 ms as a body in
    free fall, the ankle over the last 40 ms as a straight line."""
    bv, fv = landing_velocities_kernel(np.ascontiguousarray(times_ns, dtype=np.int64),
                                       np.ascontiguousarray(pts, dtype=np.float64), 0 if foot == "left" else 4,
                                       float(ic_ns), float(ic_ns if until_ns is None else until_ns))
    return float(bv), float(fv)


# ------------------------------------------------------------------ events

(_K_GROUND, _K_INIT, _K_IN, _K_PREV_T, _K_PREV_Z, _K_HAVE, _K_IC, _K_LAST_TO,
 _K_GROUND_T, _K_INIT_T, _K_PREV_TT, _K_PREV_ZT, _K_HAVE_T, _K_ARMED, _K_LOW_SINCE,
 _K_TOP, _K_DESC, _K_RING_N) = range(18)
SOLE_RING = 16  # the sole's last samples (the stop and 15 before it, searched back for the touchdown)
_K_RING = 18  # then (t, z) pairs
CAM_STATE_SIZE = _K_RING + 2 * SOLE_RING


def new_camera_state() -> np.ndarray:
    s = np.zeros(CAM_STATE_SIZE)
    s[_K_LAST_TO] = -1e30
    s[_K_LOW_SINCE] = -1.0
    s[_K_TOP] = -math.inf
    return s


@njit(**JIT)
def _sole_touchdown(st: np.ndarray, low: float, low_t: float, touch_m: float) -> float:
    """When the sole, whose descent stopped at ``low`` (at ``low_t``), touched down: the last
    crossing of ``low + touch_m`` in the ring, carried on to ``low`` at the descent's rate there (a
    foot lands moving; the threshold only keeps marker noise out), never after ``low_t``. Without
    such a crossing in the ring (a slow descent), ``low_t``."""
    n = int(min(st[_K_RING_N], SOLE_RING))
    level = low + touch_m
    newer_t, newer_z = low_t, low
    for k in range(1, n + 1):
        j = int((st[_K_RING_N] - k) % SOLE_RING)
        tj, zj = st[_K_RING + 2 * j], st[_K_RING + 2 * j + 1]
        if zj >= level > newer_z and newer_t > tj:
            rate = (zj - newer_z) / (newer_t - tj)  # m per ns, > 0 (coming down)
            cross = tj + (zj - level) / rate
            return min(cross + touch_m / rate, low_t)
        newer_t, newer_z = tj, zj
    return low_t


@njit(**JIT)
def _ground(state: np.ndarray, init: int, level: int, prev_t: int, t: float, z: float, drift: float) -> float:
    """The ground level of one height signal: its lowest value, allowed to drift up slowly."""
    if state[init] < 0.5:
        state[level] = z
        state[init] = 1.0
    else:
        dt = (t - state[prev_t]) / 1e9
        if dt > 0:
            state[level] += drift * dt
        if z < state[level]:
            state[level] = z
    return state[level]


@njit(**JIT)
def _camera_step(t: float, zi: float, wi: float, touch_m: float, lift_m: float, ground_drift: float,
                 min_stance_ns: float, min_swing_ns: float, st: np.ndarray, other: np.ndarray, foot: float,
                 events: np.ndarray, n_ev: int, back_to_ground: bool, sole: bool, swing_m: float) -> int:
    """One sample of one foot (``st``; ``other`` is the other foot's state); returns the event count."""
    was_in = st[_K_IN] > 0.5
    if st[_K_ARMED] < 0.5 and other[_K_ARMED] > 0.5 and st[_K_HAVE] > 0.5 and st[_K_HAVE_T] > 0.5:
        # both feet stand on one floor: the other foot has found it, so this one need not wait
        st[_K_GROUND], st[_K_GROUND_T] = other[_K_GROUND], other[_K_GROUND_T]
        st[_K_INIT], st[_K_INIT_T], st[_K_ARMED] = 1.0, 1.0, 1.0
    if math.isfinite(zi):
        g = _ground(st, _K_INIT, _K_GROUND, _K_PREV_T, t, zi, ground_drift)
        if st[_K_HAVE] > 0.5 and not was_in and st[_K_ARMED] > 0.5:
            pt, pz = st[_K_PREV_T], st[_K_PREV_Z]
            if sole:
                # the previous sample ended a descent of a swing's height, near the floor: touchdown
                if st[_K_DESC] > 0.5 and zi >= pz and st[_K_TOP] - pz >= swing_m and pz <= g + swing_m:
                    ic = _sole_touchdown(st, pz, pt, touch_m)
                    if ic - st[_K_LAST_TO] >= min_swing_ns:
                        st[_K_IN] = 1.0
                        st[_K_IC] = ic
                        n_ev = emit(events, n_ev, 1.0, ic, ic, foot)
            else:
                level = g + touch_m
                if zi <= level < pz:
                    ic = pt + (pz - level) / (pz - zi) * (t - pt)
                    if ic - st[_K_LAST_TO] >= min_swing_ns:
                        st[_K_IN] = 1.0
                        st[_K_IC] = ic
                        n_ev = emit(events, n_ev, 1.0, ic, ic, foot)
        if sole:  # what the sole rule reads: the descent, the swing's height, the last samples
            st[_K_DESC] = 1.0 if st[_K_HAVE] > 0.5 and zi < st[_K_PREV_Z] else 0.0
            if zi > st[_K_TOP]:
                st[_K_TOP] = zi
            j = int(st[_K_RING_N] % SOLE_RING)
            st[_K_RING + 2 * j] = t
            st[_K_RING + 2 * j + 1] = zi
            st[_K_RING_N] += 1.0
        st[_K_PREV_T] = t
        st[_K_PREV_Z] = zi
        st[_K_HAVE] = 1.0
    if math.isfinite(wi):
        gt = _ground(st, _K_INIT_T, _K_GROUND_T, _K_PREV_TT, t, wi, ground_drift)
        if st[_K_ARMED] < 0.5:
            if wi <= gt + touch_m:
                if st[_K_LOW_SINCE] < 0.0:
                    st[_K_LOW_SINCE] = t
            elif wi > gt + lift_m:
                if st[_K_LOW_SINCE] >= 0.0 and t - st[_K_LOW_SINCE] >= min_stance_ns:
                    st[_K_ARMED] = 1.0  # the foot stood on this ground and left it: it is real
                    st[_K_LAST_TO] = t  # and that lift was a toe-off: the next IC is a swing later
                st[_K_LOW_SINCE] = -1.0
        if st[_K_HAVE_T] > 0.5 and was_in:
            pt, pz = st[_K_PREV_TT], st[_K_PREV_ZT]
            level = gt + lift_m
            if pz < level <= wi:
                to = pt + (level - pz) / (wi - pz) * (t - pt)
                if back_to_ground and t > pt:
                    rise = (wi - pz) / (t - pt)  # m per ns, > 0 here
                    to = max(to - lift_m / rise, st[_K_IC])
                if to - st[_K_IC] >= min_stance_ns:
                    st[_K_IN] = 0.0
                    st[_K_LAST_TO] = to
                    st[_K_TOP] = -math.inf  # the next swing's height is measured from here
                    n_ev = emit(events, n_ev, 2.0, to, st[_K_IC], foot)
        st[_K_PREV_TT] = t
        st[_K_PREV_ZT] = wi
        st[_K_HAVE_T] = 1.0
    return n_ev


@njit(**JIT)
def camera_events_kernel(times_ns: np.ndarray, z: np.ndarray, zt: np.ndarray, touch_m: float, lift_m: float,
                         ground_drift: float, min_stance_ns: float, min_swing_ns: float,
                         state: np.ndarray, events: np.ndarray, back_to_ground: bool = False,
                         sole: bool = False, swing_m: float = 0.03) -> int:
    """Contacts of both feet (column 0 left, 1 right of ``z``, ``zt`` and ``state``) from two heights
    each: IC when ``z`` (the ankle) comes down to ``touch_m`` above its ground level, or, with
    ``sole`` (``z`` is then the foot's lowest sole marker), when its descent from a swing (at least
    ``swing_m``) stops within ``swing_m`` of the ground level: the touchdown is then timed on this
    contact's own lowest height (see ``_sole_touchdown``), so a floor that is not level in the
    camera's frame does not move it. TO when ``zt``
    (the toe, or the ankle again when there is no toe) rises ``lift_m`` above its own (crossings
    interpolated; with ``back_to_ground`` the crossing is carried back to the ground level along the
    rise's slope there, since a toe leaves the ground already moving and reaches the threshold
    ``lift_m / v`` later). A ground level is the lowest height seen, allowed to drift up slowly (a
    track is not flat and cameras move). Until a foot has once been seen standing (within ``touch_m``
    of its ground level for the minimum stance) and then lifting, the lowest height seen may be a
    foot still in the air (a record that starts in flight), so it takes no IC before that, unless
    the other foot has found the floor first: both stand on one floor, and the unarmed foot takes
    the other's ground levels. That lift is the foot's toe-off (unrecorded: the stance it ends began
    before the foot was armed), so its next IC, as after any TO, is at least the minimum swing later:
    a foot whose first descent and contact passed for a stand (each sample the lowest yet is within
    ``touch_m`` of the ground level) is armed in that contact, not after it, and the ankle's noise
    there must not give an IC. A sample whose height is not finite is skipped for that height.
    Rows: (1 IC | 2 TO, time, ic, foot 0 | 1), in sample order."""
    n_ev = 0
    for i in range(times_ns.shape[0]):
        t = float(times_ns[i])
        for f in range(2):
            n_ev = _camera_step(t, z[i, f], zt[i, f], touch_m, lift_m, ground_drift, min_stance_ns, min_swing_ns,
                                state[f], state[1 - f], float(f), events, n_ev, back_to_ground, sole, swing_m)
    return n_ev


#: How far the toe must rise above its ground level to have left it: a toe marker on a shoe moves
#: a few millimetres while the forefoot is loaded (marker wobble, shoe flex), so twice that.
TOE_LIFT_M = 0.01


class CameraEvents:
    """Streaming IC/TO of both feet from keypoints (for feet that have no insole or IMU)."""

    def __init__(self, touch_m: float = 0.01, lift_m: float = 0.03, ground_drift_mps: float = 0.02,
                 min_stance_s: float = 0.08, min_swing_s: float = 0.10, toe_lift_m: float = TOE_LIFT_M) -> None:
        self.touch_m, self.lift_m, self.drift = touch_m, lift_m, ground_drift_mps
        self.toe_lift_m = toe_lift_m
        self.min_stance_ns, self.min_swing_ns = min_stance_s * 1e9, min_swing_s * 1e9
        self.state = np.stack([new_camera_state(), new_camera_state()])

    def update(self, times_ns: np.ndarray, ankle_z: np.ndarray, toe_z: np.ndarray | None = None,
               sole_z: np.ndarray | None = None) -> np.ndarray:
        """Event rows (kind, time, ic, foot 0 left | 1 right) from the heights (n, 2) of the soles'
        lowest markers (IC; the ankles' without sole markers) and the toes' (TO; the ankles' without
        toes)."""
        events = np.empty((2 * len(times_ns) + 2, 4))
        ankle = np.ascontiguousarray(ankle_z, dtype=np.float64)
        toe = ankle if toe_z is None else np.ascontiguousarray(toe_z, dtype=np.float64)
        ic = ankle if sole_z is None else np.ascontiguousarray(sole_z, dtype=np.float64)
        lift = self.lift_m if toe_z is None else self.toe_lift_m
        n = camera_events_kernel(np.ascontiguousarray(times_ns, dtype=np.int64), ic, toe, self.touch_m, lift,
                                 self.drift, self.min_stance_ns, self.min_swing_ns, self.state, events,
                                 toe_z is not None, sole_z is not None, self.lift_m)
        return events[:n].copy()
