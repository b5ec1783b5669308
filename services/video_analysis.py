"""``poserun analyze VIDEO``: a video file -> camera keypoints -> the fusion processor -> a coach's report.

The video goes through the same two pieces as live: the camera gateway's :class:`KeypointPipeline`
(BlazePose, the region rule, the leg-length scale) makes the poserun messages, and
:meth:`FusionService.handle` takes them one by one in the order made, each received at its frame's own
video time (+1 ns, never 0) with the clock returning the same; so the records are those a live service
would give for these frames (``emitted_ns`` aside) and a run is deterministic. No broker.

Two passes over the file, so no image is kept but the few shown: the first runs the model and the
processor and keeps each athlete's keypoints per frame (33 x 3 float32, about 0.4 kB a frame); the
second decodes again and takes only the frames the report shows (the initial contact of each athlete's
stance of median support time, or the middle frame where the athlete was seen when no stance was found).
:func:`write_video_report` writes one self-contained HTML file (PNG images inline, nothing fetched).
"""

from __future__ import annotations

import base64
import dataclasses
import html
import re
import time
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from poserun.services.analyze import format_summary, median_of, summarize
from poserun.services.camera_pose import KEYPOINTS, opencv
from poserun.services.camera_tracks import Region
from poserun.services.fusion import FusionService
from poserun.services.gateway_camera import CameraOptions, CameraStats, KeypointPipeline, frames, open_capture
from poserun.settings import AthleteSettings, Settings
from poserun.sinks.base import Record

VISIBLE = 0.5  # keypoints less visible than this are not drawn
MAX_POSES = 108_000  # keypoint frames kept per athlete: an hour at 30 fps (about 43 MB); later ones counted
DEFAULT_LEG_M = AthleteSettings.model_fields["leg_length_m"].default  # what the pipeline assumes too
#: docs/accuracy.md: "Simulated sessions", camera only, all profiles (60 fps, simulated keypoints), and
#: "Camera keypoints from pixels" (BlazePose on the simulator's runner drawn as a mannequin).
ACCURACY_60FPS = ("In simulation at 60 fps (docs/accuracy.md, camera only, all profiles), contacts from the "
                  "ankle height came out about 20 ms early at initial contact (mean &minus;19.8 ms, mean absolute "
                  "error 20.0 ms) and about 22 ms early at toe-off (mean &minus;21.9 ms, MAE 22.0 ms); contact "
                  "time within about 10 ms (MAE 10.5 ms). Metrics read at initial contact inherit that: overstride "
                  "came out about 0.07 m long at 3.6 m/s. The foot velocity from the ankle is too noisy at 60 fps "
                  "for a reliable forced-landing decision (F1 0.18): camera-only forced landings should not drive "
                  "haptic cues. On BlazePose keypoints of the simulator's runner drawn as a mannequin "
                  "(docs/accuracy.md, camera keypoints from pixels) the processor found about half the "
                  "contacts at 30 and 60 fps, each within two frames of a true one, most toe-offs late, and "
                  "none at 120 fps: treat support times from video with caution. Nothing "
                  "was measured on filmed people.")

# MediaPipe's POSE_CONNECTIONS (mediapipe/python/solutions/pose_connections.py)
CONNECTIONS: tuple[tuple[int, int], ...] = (
    (0, 1), (1, 2), (2, 3), (3, 7), (0, 4), (4, 5), (5, 6), (6, 8), (9, 10),
    (11, 12), (11, 13), (13, 15), (15, 17), (15, 19), (15, 21), (17, 19),
    (12, 14), (14, 16), (16, 18), (16, 20), (16, 22), (18, 20),
    (11, 23), (12, 24), (23, 24), (23, 25), (24, 26), (25, 27), (26, 28),
    (27, 29), (28, 30), (29, 31), (30, 32), (27, 31), (28, 32))
_LEFT = frozenset({1, 2, 3, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31})
_RIGHT = frozenset({4, 5, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32})
LEFT_RGB, RIGHT_RGB, MIDDLE_RGB = (40, 110, 255), (235, 50, 40), (250, 200, 0)  # left blue, right red
_FACE = frozenset(range(11))
_FEET = {"left": (27, 29, 31), "right": (28, 30, 32)}  # ankle, heel, foot index

# (record key, label, unit, digits) of the stance metrics the report shows when any stance carries them
METRICS: tuple[tuple[str, str, str, int], ...] = (
    ("cadence_spm", "cadence", "steps/min", 0),
    ("support_time_s", "support time", "s", 3),
    ("flight_time_s", "flight time", "s", 3),
    ("duty_factor", "duty factor", "", 2),
    ("overstride_m", "overstride (ankle ahead of the hip at IC)", "m", 3),
    ("overstride_ratio", "overstride / leg length", "", 2),
    ("knee_flexion_ic_deg", "knee flexion at IC", "deg", 0),
    ("knee_flexion_min_deg", "knee flexion, least over the stance", "deg", 0),
    ("fall_angle_deg", "fall angle (support to hip at toe-off)", "deg", 1),
    ("waist_bend_deg", "waist bend", "deg", 1),
    ("vertical_oscillation_m", "vertical oscillation", "m", 3),
    ("pull_height_m", "pull height", "m", 3),
    ("pull_under_hip_m", "pull, distance from the hip", "m", 3),
    ("pose_score", "pose score", "/100", 0),
)


def _configured_leg(settings: Settings, athlete: str) -> float | None:
    a = settings.athlete(athlete)
    return a.leg_length_m if a is not None else None


def _with_athletes(settings: Settings, options: CameraOptions) -> tuple[Settings, CameraOptions]:
    """The options with every athlete's leg length (the config's when the options lack one, else the
    default), and the settings with the regions' athletes the config does not list (so the processor
    uses the leg length the scale was made with)."""
    legs = {a: options.leg_length_m.get(a) or _configured_leg(settings, a) or DEFAULT_LEG_M for a in options.regions}
    options = dataclasses.replace(options, leg_length_m={**options.leg_length_m, **legs})
    extra = [AthleteSettings(id=a, leg_length_m=legs[a]) for a in options.regions if settings.athlete(a) is None]
    if extra:
        settings = settings.model_copy(update={"athletes": [*settings.athletes, *extra]})
    return settings, options


@dataclass
class AthletePoses:
    """One athlete's keypoints (33 x 3: x px, y px, visibility) at each frame the camera saw them, in
    time order; at most ``MAX_POSES`` kept (``not_kept`` counts the rest)."""

    times_ns: list[int] = field(default_factory=list)
    rows: list[np.ndarray] = field(default_factory=list)
    not_kept: int = 0

    def add(self, t_ns: int, rows: np.ndarray) -> None:
        if len(self.times_ns) >= MAX_POSES:
            self.not_kept += 1
            return
        self.times_ns.append(t_ns)
        self.rows.append(np.array(rows, dtype=np.float32).reshape(KEYPOINTS, 3))

    def __len__(self) -> int:
        return len(self.times_ns)

    def nearest(self, t_ns: int) -> tuple[int, np.ndarray] | None:
        """The kept frame closest in time to ``t_ns``."""
        if not self.times_ns:
            return None
        i = bisect_left(self.times_ns, t_ns)
        best = min((j for j in (i - 1, i) if 0 <= j < len(self.times_ns)), key=lambda j: abs(self.times_ns[j] - t_ns))
        return self.times_ns[best], self.rows[best]

    def middle(self) -> tuple[int, np.ndarray] | None:
        if not self.times_ns:
            return None
        i = len(self.times_ns) // 2
        return self.times_ns[i], self.rows[i]


@dataclass
class Picture:
    """What the report shows of an athlete: a frame's time and keypoints, the decoded image (RGB; None
    when the second pass did not find it) and the stance it illustrates (None: the middle frame seen)."""

    t_ns: int
    rows: np.ndarray
    rgb: np.ndarray | None = None
    stance: Record | None = None


@dataclass
class VideoAnalysis:
    """One video's analysis: the records, the service's counters, the pipeline's, each athlete's
    keypoints, scale and picture."""

    path: str
    session: str
    fps: float
    width: int
    height: int
    options: CameraOptions
    records: list[Record] = field(default_factory=list)
    snapshot: dict[str, Any] = field(default_factory=dict)
    camera: dict[str, Any] = field(default_factory=dict)  # CameraStats.as_dict()
    poses: dict[str, AthletePoses] = field(default_factory=dict)
    meta: dict[str, dict[str, Any]] = field(default_factory=dict)  # athlete -> scale_m_per_px, view
    pictures: dict[str, Picture] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)  # athlete -> the config's name
    seconds: float = 0.0  # wall time the analysis took
    first_ns: int = 0  # the video's own timestamps of its first and last image
    last_ns: int = 0

    @property
    def images(self) -> int:
        return int(self.camera.get("images", 0))

    @property
    def frame_ms(self) -> float:
        """The mean time between images from the video's own timestamps (a phone's slow motion often says
        another rate in its header than it filmed at), else the header's rate."""
        if self.images > 1 and self.last_ns > self.first_ns:
            return (self.last_ns - self.first_ns) / (self.images - 1) / 1e6
        return 1000.0 / self.fps if self.fps else 0.0

    @property
    def duration_s(self) -> float:
        return self.images * self.frame_ms / 1000.0

    def stances(self, athlete: str) -> list[Record]:
        """The athlete's stance records in time order (of initial contact; they are emitted at toe-off)."""
        return sorted((r for r in self.records if r.get("type") == "stance" and r.get("athlete") == athlete),
                      key=lambda r: int(r["ic_ns"]))

    def summary(self) -> list[dict[str, Any]]:
        """:func:`summarize`'s rows, one per athlete of the regions (with no stance too)."""
        rows = {r["athlete"]: r for r in summarize(self.records)}
        out = []
        for a in self.options.regions:
            out.append(rows.get(a) or {
                "session": self.session, "athlete": a, "stances": 0, "left": 0, "right": 0, "support_time_s": None,
                "flight_time_s": None, "cadence_spm": None, "pose_score": None, "forced_landings": 0,
                "landings": 0, "strike_zone": None, "event_source": None})
        return out

    def keypoint_frames(self) -> tuple[int, int]:
        """Keypoint frames the service took, and messages it refused (every reason, all sources)."""
        taken = int(self.snapshot.get("kinds", {}).get("keypoints", {}).get("frames", 0))
        return taken, sum(self.snapshot.get("rejected", {}).values())


def video_session(path: str | Path) -> str:
    """A session id from a video's file name (``my run (1).mp4`` -> ``my-run-1``): ids allow only
    ``A-Z a-z 0-9 _ . -``, at most 64, starting with a letter or digit."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(path).stem).strip("-_.")[:64].strip("-_.")
    return name or "video"


def representative_stance(stances: Sequence[Record]) -> Record | None:
    """The stance of median support time (the lower middle one of an even count)."""
    timed = sorted((r for r in stances if isinstance(r.get("support_time_s"), int | float)),
                   key=lambda r: (r["support_time_s"], r["ic_ns"]))
    return timed[(len(timed) - 1) // 2] if timed else None


def analyze_video(path: str | Path, settings: Settings, options: CameraOptions, *, session: str = "video",
                  progress: Callable[[int, int], None] | None = None) -> VideoAnalysis:
    """The processor's records for a video file, with the keypoints and the report's pictures.
    ``progress(n, total)`` is told every 10 images (``total`` 0 when the file does not say)."""
    cv2 = opencv()

    started = time.monotonic()
    settings, options = _with_athletes(settings, options)
    cap, live = open_capture(str(path))
    if live:
        cap.release()
        raise OSError(f"{path}: not a video file (analyze needs a file; a camera or stream goes to the gateway)")
    try:
        fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
        width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        total = max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0))
        pipeline = KeypointPipeline(session, options, fps, width, height,
                                    device=f"video {Path(path).name} {width}x{height} {fps:g} fps")
        clock = [0]
        service = FusionService(settings, clock=lambda: clock[0])
        out = VideoAnalysis(str(path), session, fps, width, height, options,
                            poses={a: AthletePoses() for a in options.regions},
                            names={a.id: a.name for a in settings.athletes if a.id in options.regions and a.name})
        seen = dict(pipeline.stats.seen)
        for n, (t_ns, rgb) in enumerate(frames(cap, live, pipeline.stats), 1):
            if n == 1:
                out.first_ns = t_ns
            out.last_ns = t_ns
            messages = pipeline.feed(t_ns, rgb)
            clock[0] = t_ns + 1
            for topic, payload, _retain in messages:
                out.records += service.handle(topic, payload, t_ns + 1)
            for a, count in pipeline.stats.seen.items():
                if count != seen[a]:
                    out.poses[a].add(t_ns, pipeline.last_poses[a])
            seen = dict(pipeline.stats.seen)
            if progress is not None and n % 10 == 0:
                progress(n, total)
    finally:
        cap.release()
    pipeline.finish()
    out.snapshot, out.camera = service.snapshot(), pipeline.stats.as_dict()
    if progress is not None:
        progress(out.images, total or out.images)
    for a, st in pipeline.athletes.items():
        if st.meta is not None and st.meta.camera is not None:
            out.meta[a] = {"scale_m_per_px": st.meta.camera.scale_m_per_px, "view": st.meta.camera.view,
                           "leg_length_m": options.leg_length_m.get(a)}
    for a, poses in out.poses.items():
        stance = representative_stance(out.stances(a))
        chosen = poses.nearest(int(stance["ic_ns"])) if stance is not None else poses.middle()
        if chosen is not None:
            out.pictures[a] = Picture(chosen[0], chosen[1], stance=stance)
    _grab_images(path, out)
    out.seconds = time.monotonic() - started
    return out


def _grab_images(path: str | Path, analysis: VideoAnalysis) -> None:
    """The second pass: decode again and keep the image of each picture's frame (the decoder gives the
    same timestamps; failing that, the nearest frame)."""
    wanted = {p.t_ns for p in analysis.pictures.values()}
    if not wanted:
        return
    best: dict[int, tuple[int, np.ndarray]] = {}
    cap, live = open_capture(str(path))
    try:
        for t_ns, rgb in frames(cap, live, CameraStats()):
            for w in wanted:
                if w not in best or abs(t_ns - w) < abs(best[w][0] - w):
                    best[w] = (t_ns, rgb)
            if all(best.get(w, (None,))[0] == w for w in wanted):
                break
    finally:
        cap.release()
    for p in analysis.pictures.values():
        if p.t_ns in best:
            p.rgb = best[p.t_ns][1]


# ------------------------------------------------------------------ pictures
def _colour(i: int, j: int) -> tuple[int, int, int]:
    if i in _LEFT and j in _LEFT:
        return LEFT_RGB
    if i in _RIGHT and j in _RIGHT:
        return RIGHT_RGB
    return MIDDLE_RGB


def person_box(rows: np.ndarray) -> tuple[float, float, float, float] | None:
    """The visible keypoints' bounding box (x0, y0, x1, y1) in pixels, or None when none is visible."""
    vis = rows[:, 2] >= VISIBLE
    if not vis.any():
        return None
    xy = rows[vis, :2]
    return float(xy[:, 0].min()), float(xy[:, 1].min()), float(xy[:, 0].max()), float(xy[:, 1].max())


def draw_skeleton(rgb: np.ndarray, rows: np.ndarray, *, thickness: int | None = None,
                  foot: str | None = None) -> np.ndarray:
    """A copy of the RGB image with the 33-keypoint skeleton on it (left side blue, right red, the
    middle yellow); keypoints less visible than ``VISIBLE`` and their segments are left out. ``foot``:
    the landing foot, ringed."""
    cv2 = opencv()

    img = np.ascontiguousarray(rgb, dtype=np.uint8).copy()
    box = person_box(rows)
    if box is None:
        return img
    if thickness is None:
        thickness = max(2, round((box[3] - box[1]) / 120))
    vis = rows[:, 2] >= VISIBLE
    pt = [(round(float(x)), round(float(y))) for x, y in rows[:, :2]]
    for i, j in CONNECTIONS:
        if vis[i] and vis[j]:
            cv2.line(img, pt[i], pt[j], _colour(i, j), thickness, cv2.LINE_AA)
    for i in range(KEYPOINTS):
        if vis[i]:
            c = LEFT_RGB if i in _LEFT else RIGHT_RGB if i in _RIGHT else MIDDLE_RGB
            cv2.circle(img, pt[i], thickness + 1, (255, 255, 255), -1, cv2.LINE_AA)
            cv2.circle(img, pt[i], thickness, c, -1, cv2.LINE_AA)
    if foot in _FEET:
        for i in _FEET[foot][1:]:
            if vis[i]:
                cv2.circle(img, pt[i], 4 * thickness, (255, 255, 255), max(1, thickness // 2), cv2.LINE_AA)
    return img


def crop_person(rgb: np.ndarray, rows: np.ndarray, *, margin: float = 0.35, max_height: int = 420) -> np.ndarray:
    """The part of the image around the person (the keypoints' box and ``margin`` of its height about
    it), scaled down to at most ``max_height`` pixels."""
    cv2 = opencv()

    h, w = rgb.shape[:2]
    box = person_box(rows)
    if box is None:
        crop = rgb
    else:
        pad = margin * max(box[3] - box[1], box[2] - box[0], 20.0)
        x0, y0 = max(0, int(box[0] - pad)), max(0, int(box[1] - pad))
        x1, y1 = min(w, int(box[2] + pad) + 1), min(h, int(box[3] + pad) + 1)
        crop = rgb[y0:y1, x0:x1]
    if crop.shape[0] > max_height:
        f = max_height / crop.shape[0]
        crop = cv2.resize(crop, (max(1, round(crop.shape[1] * f)), max_height), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(crop)


def overview(rgb: np.ndarray, rows: np.ndarray, region: Region | None, *, width: int = 480) -> np.ndarray:
    """The whole frame, small, with the athlete's region (grey) and the person's box (yellow): whom the
    camera followed."""
    cv2 = opencv()

    h, w = rgb.shape[:2]
    f = min(1.0, width / w)
    img = cv2.resize(np.ascontiguousarray(rgb), (max(1, round(w * f)), max(1, round(h * f))),
                     interpolation=cv2.INTER_AREA)
    if region is not None:
        cv2.rectangle(img, (round(region.x0 * w * f), round(region.y0 * h * f)),
                      (round(region.x1 * w * f) - 1, round(region.y1 * h * f) - 1), (200, 200, 200), 1)
    box = person_box(rows)
    if box is not None:
        corner0 = (round(box[0] * f) - 3, round(box[1] * f) - 3)
        cv2.rectangle(img, corner0, (round(box[2] * f) + 3, round(box[3] * f) + 3), MIDDLE_RGB, 2)
    return img


def stick_figure(rows: np.ndarray, *, facing_left: bool = False, scale_m_per_px: float | None = None,
                 foot: str | None = None, size: tuple[int, int] = (260, 320)) -> np.ndarray:
    """The pose alone, side view, on white (RGB): drawn facing right (mirrored when the athlete runs to
    the left of the image), with the ground under the lowest visible foot point, the vertical through the
    hips (grey, dashed) and, when the scale is known, a 0.5 m bar."""
    cv2 = opencv()

    w, h = size
    img = np.full((h, w, 3), 255, dtype=np.uint8)
    vis = rows[:, 2] >= VISIBLE
    body = [i for i in range(11, KEYPOINTS) if vis[i]]
    if len(body) < 2:
        cv2.putText(img, "no keypoints", (10, h // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (90, 90, 90), 1, cv2.LINE_AA)
        return img
    xy = rows[:, :2].astype(np.float64).copy()
    if facing_left:
        xy[:, 0] = -xy[:, 0]
    pts = xy[[i for i in range(KEYPOINTS) if vis[i]]]
    feet = [i for i in (27, 28, 29, 30, 31, 32) if vis[i]]
    ground = float(xy[feet, 1].max()) if feet else float(pts[:, 1].max())
    top = float(pts[:, 1].min())
    span_y = max(ground - top, 1.0)
    span_x = max(float(pts[:, 0].max() - pts[:, 0].min()), 1.0)
    f = min(0.78 * h / span_y, 0.8 * w / span_x)
    gy = round(0.88 * h)
    cx = (float(pts[:, 0].max()) + float(pts[:, 0].min())) / 2

    def to_px(i: int) -> tuple[int, int]:
        return round(w / 2 + (xy[i, 0] - cx) * f), round(gy - (ground - xy[i, 1]) * f)

    cv2.line(img, (8, gy), (w - 8, gy), (120, 120, 120), 2)  # the ground
    if vis[23] and vis[24]:
        hx = round(w / 2 + ((xy[23, 0] + xy[24, 0]) / 2 - cx) * f)
        for y in range(8, gy, 10):  # dashed vertical through the hips
            cv2.line(img, (hx, y), (hx, min(gy, y + 5)), (170, 170, 170), 1)
    t = 3
    for i, j in CONNECTIONS:
        if i in _FACE or j in _FACE or not (vis[i] and vis[j]):
            continue
        cv2.line(img, to_px(i), to_px(j), _colour(i, j) if _colour(i, j) != MIDDLE_RGB else (60, 60, 60), t,
                 cv2.LINE_AA)
    face = [i for i in _FACE if vis[i]]
    if face:
        head = np.mean([to_px(i) for i in face], axis=0)
        cv2.circle(img, (round(head[0]), round(head[1])), max(6, round(0.055 * span_y * f)), (60, 60, 60), 2,
                   cv2.LINE_AA)
    if foot in _FEET:
        for i in _FEET[foot][1:]:
            if vis[i]:
                cv2.circle(img, to_px(i), 6, (0, 0, 0), 1, cv2.LINE_AA)
    if scale_m_per_px:
        bar = round(0.5 / scale_m_per_px * f)
        if 4 < bar < w - 20:
            y = h - 12
            cv2.line(img, (10, y), (10 + bar, y), (0, 0, 0), 2)
            cv2.putText(img, "0.5 m", (18 + bar, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return img


def png_base64(rgb: np.ndarray) -> str:
    """An RGB image as base64 PNG (for a ``data:`` URI)."""
    cv2 = opencv()

    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb, dtype=np.uint8), cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 RGB image
        raise ValueError("PNG encoding failed")
    return base64.b64encode(buf.tobytes()).decode("ascii")


# ------------------------------------------------------------------ the report
def _fmt(v: float | None, digits: int, unit: str = "") -> str:
    if v is None:
        return "&ndash;"
    return f"{v:.{digits}f}" + (f" {html.escape(unit)}" if unit and unit != "/100" else unit)


def _img(rgb: np.ndarray, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{png_base64(rgb)}">'


def _seconds(t_ns: int) -> str:
    return f"{t_ns / 1e9:.3f} s"


def _athlete_section(analysis: VideoAnalysis, athlete: str) -> str:
    name = analysis.names.get(athlete)
    title = html.escape(athlete + (f" ({name})" if name and name.lower() != athlete.lower() else ""))
    poses = analysis.poses.get(athlete, AthletePoses())
    seen = int(analysis.camera.get("seen", {}).get(athlete, len(poses)))
    meta = analysis.meta.get(athlete)
    parts = [f'<section><h2>{title}</h2>']
    facts = [f"seen in {seen} of {analysis.images} frames"]
    if meta:
        side = "to the left" if meta.get("view") == "sagittal_left" else "to the right"
        leg = meta.get("leg_length_m")
        how = (f"from the leg length {leg:.2f} m" if leg and analysis.options.scale_m_per_px is None
               else "from the two marks")
        facts.append(f"scale {meta['scale_m_per_px'] * 1000:.2f} mm per pixel ({how})")
        facts.append(f"facing {side} in the image (toes ahead of heels)")
    else:
        facts.append("no scale: the legs were never seen well enough to measure them, so no frame was sent")
    parts.append("<p>" + html.escape("; ".join(facts)) + ".</p>")
    stances = analysis.stances(athlete)
    landings = [r for r in analysis.records if r.get("type") == "landing" and r.get("athlete") == athlete]
    if not stances:
        parts.append(f'<p class="none">No stances: the processor found no running contacts in {seen} frames '
                     f"where the athlete was seen.</p>")
    else:
        left = sum(1 for r in stances if r.get("foot") == "left")
        decided = [r for r in landings if r.get("forced_landing") is not None]
        forced = sum(1 for r in decided if r.get("forced_landing"))
        rows = [("stances", f"{len(stances)} (left {left}, right {len(stances) - left})")]
        for key, label, unit, digits in METRICS:
            v = median_of([r.get(key) for r in stances])
            if v is not None:
                rows.append((f"{label}, median", _fmt(v, digits, unit)))
        undecided = len(landings) - len(decided)
        rows.append(("forced landings", f"{forced} of the {len(decided)} landings the processor could decide"
                     + (f" ({undecided} undecided)" if undecided else "")))
        parts.append('<table class="metrics">' + "".join(
            f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in rows) + "</table>")
        parts.append(_stance_table(stances))
    parts.append(_picture(analysis, athlete, seen))
    parts.append("</section>")
    return "\n".join(parts)


def _stance_table(stances: Sequence[Record], limit: int = 40) -> str:
    cols = [("foot", None, 0), ("ic_ns", "IC", 3), ("support_time_s", "support s", 3),
            ("overstride_m", "overstride m", 3), ("knee_flexion_ic_deg", "knee IC deg", 0),
            ("fall_angle_deg", "fall deg", 1), ("forced_landing", "forced", 0)]
    head = "".join(f"<th>{html.escape(label or key)}</th>" for key, label, _ in cols)
    body = []
    for r in stances[:limit]:
        cells = []
        for key, _label, digits in cols:
            v = r.get(key)
            if key == "ic_ns":
                cells.append(f"{v / 1e9:.3f} s")
            elif key == "forced_landing":
                cells.append("&ndash;" if v is None else "yes" if v else "no")
            elif isinstance(v, int | float):
                cells.append(f"{v:.{digits}f}")
            else:
                cells.append(html.escape(str(v)) if v is not None else "&ndash;")
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    more = f"<p>and {len(stances) - limit} more stances.</p>" if len(stances) > limit else ""
    return (f"<details><summary>each stance</summary><table class=\"stances\"><tr>{head}</tr>{''.join(body)}"
            f"</table>{more}</details>")


def _picture(analysis: VideoAnalysis, athlete: str, seen: int) -> str:
    pic = analysis.pictures.get(athlete)
    if pic is None:
        return "<p>No picture: the camera never saw this athlete in its region.</p>"
    foot = str(pic.stance["foot"]) if pic.stance is not None else None
    meta = analysis.meta.get(athlete, {})
    if pic.stance is not None:
        caption = (f"Initial contact of the {foot} foot at {_seconds(int(pic.stance['ic_ns']))} (frame at "
                   f"{_seconds(pic.t_ns)}), the stance of median support time "
                   f"({float(pic.stance['support_time_s']):.3f} s).")
    else:
        caption = f"The middle frame where the athlete was seen ({_seconds(pic.t_ns)} of the video)."
    caption += (" Keypoints drawn where their visibility is at least 0.5; left side blue, right red."
                + (" The landing foot is ringed." if foot else ""))
    imgs = []
    if pic.rgb is not None:
        drawn = draw_skeleton(pic.rgb, pic.rows, foot=foot)
        imgs.append(_img(crop_person(drawn, pic.rows), f"{athlete}: video frame with the keypoints"))
        imgs.append(_img(overview(pic.rgb, pic.rows, analysis.options.regions.get(athlete)),
                         f"{athlete}: the whole frame, the athlete boxed"))
    else:
        caption += " (The frame could not be decoded again: the stick figure only.)"
    imgs.append(_img(stick_figure(pic.rows, facing_left=meta.get("view") == "sagittal_left",
                                  scale_m_per_px=meta.get("scale_m_per_px"), foot=foot),
                     f"{athlete}: stick figure"))
    side = " (mirrored: drawn facing right)" if meta.get("view") == "sagittal_left" else ""
    return (f'<figure>{"".join(imgs)}<figcaption>{html.escape(caption)} The stick figure: the same pose, side view'
            f"{side}, ground under the lowest foot point, dashed line the vertical through the hips."
            "</figcaption></figure>")


_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:1em auto;padding:0 1em;color:#222}
h1{font-size:1.4em}h2{font-size:1.2em;border-top:1px solid #ccc;padding-top:.6em}
table{border-collapse:collapse;margin:.5em 0}th,td{padding:2px 10px;text-align:left;border-bottom:1px solid #eee}
td{font-variant-numeric:tabular-nums}figure{margin:.5em 0}figure img{margin:0 8px 8px 0;vertical-align:top;
border:1px solid #ddd}figcaption{font-size:.9em;color:#555}.none{font-weight:bold}.note{font-size:.9em;color:#444}
details{margin:.4em 0}"""


def video_report_html(analysis: VideoAnalysis) -> str:
    """The report as one HTML document (images inline)."""
    fps = analysis.fps
    taken, refused = analysis.keypoint_frames()
    cam = analysis.camera
    ms = analysis.frame_ms
    head = (f"<p>{analysis.width}&times;{analysis.height} px, {1000 / ms if ms else fps:.4g} frames per second (from "
            f"the video's timestamps; its header says {fps:g}), {analysis.images} frames "
            f"({analysis.duration_s:.1f} s); session <code>{html.escape(analysis.session)}</code>; analysed in "
            f"{analysis.seconds:.1f} s.</p>")
    timing = (f'<p class="note"><b>Timing.</b> One frame is {ms:.1f} ms here: '
              "the video holds nothing between two frames, so that is its time resolution; the processor places "
              f"each contact between the frames around it. {ACCURACY_60FPS}</p>")
    counters = (f'<p class="note">Pipeline: {cam.get("images", 0)} images, {cam.get("frames", 0)} keypoint frames '
                f"sent (frames where an athlete is not seen go with confidence 0), "
                f"{cam.get('dropped_uncalibrated', 0)} dropped before the scale was known, "
                f"{cam.get('bad_timestamps', 0)} bad timestamps, {cam.get('tracks_lost', 0)} tracks lost. "
                f"Processor: {taken} keypoint frames taken, {refused} refused, "
                f"{analysis.snapshot.get('records', len(analysis.records))} records.</p>")
    sections = [_athlete_section(analysis, a) for a in analysis.options.regions]
    title = f"poserun: {Path(analysis.path).name}"
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_CSS}</style></head><body>\n<h1>{html.escape(title)}</h1>\n{head}\n{timing}\n"
            + "\n".join(sections) + f"\n{counters}\n</body></html>\n")


def write_video_report(analysis: VideoAnalysis, path: str | Path) -> Path:
    """Write the self-contained HTML report (per athlete: stances, median metrics, forced landings and the
    pose at initial contact; or plainly that no stance was found, with whom the camera followed)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(video_report_html(analysis), encoding="utf-8")
    return out


def format_video_summary(analysis: VideoAnalysis) -> str:
    """For the terminal: the per-athlete table, the frames each athlete was seen in and the counters."""
    lines = [format_summary(analysis.summary()), ""]
    for a in analysis.options.regions:
        seen = analysis.camera.get("seen", {}).get(a, 0)
        meta = analysis.meta.get(a)
        scale = (f"scale {meta['scale_m_per_px'] * 1000:.2f} mm/px, {meta['view']}" if meta
                 else "no scale (no frame sent)")
        lines.append(f"{a}: seen in {seen} of {analysis.images} frames; {scale}")
    cam = analysis.camera
    taken, refused = analysis.keypoint_frames()
    lines.append(f"video: {analysis.width}x{analysis.height}, {analysis.frame_ms:.1f} ms a frame (header: "
                 f"{analysis.fps:g} fps), {analysis.images} frames, analysed in {analysis.seconds:.1f} s")
    lines.append(f"pipeline: {cam.get('frames', 0)} keypoint frames, {cam.get('never_calibrated', 0)} never sent "
                 f"(no scale or direction), {cam.get('bad_images', 0)} bad images, "
                 f"{cam.get('dropped_uncalibrated', 0)} dropped "
                 f"uncalibrated, {cam.get('bad_timestamps', 0)} bad timestamps, {cam.get('tracks_lost', 0)} tracks "
                 f"lost, assign {cam.get('assign', {})}")
    lines.append(f"processor: {taken} keypoint frames taken, {refused} refused, {len(analysis.records)} records")
    return "\n".join(lines)
