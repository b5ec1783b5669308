"""``poserun gateway camera``: a video file, webcam or network stream -> MediaPipe-33 keypoints over MQTT.

:class:`KeypointPipeline` turns timestamped images into poserun messages (per athlete: the keypoint
meta, retained, then one frame per image) and is shared with ``poserun analyze VIDEO``; the capture
loop here only reads images, stamps them and publishes. An athlete's frames wait until its scale is
known (two marks given, or its leg length measured on its first frames: ``camera_tracks``), so the meta
a service sees first is already the right one; no frame is published before its meta.

Time: a file's frames carry the video's own timestamps (the container's presentation times, so a
phone's variable-rate slow motion stays right), from 0 at its first frame; a live source's frames the
gateway's monotonic clock when the image was read (the capture clock).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from poserun.services.camera_pose import KEYPOINTS, BlazePose, PoseTracker, opencv
from poserun.services.camera_tracks import Assigner, LegCalibration, Region, keypoint_rows, scale_from_marks
from poserun.services.gateway_sim import status_message
from poserun.services.mqtt_publisher import gateway_publisher
from poserun.settings import BrokerSettings, Settings
from poserun.wire import frame as wf
from poserun.wire import meta as wm
from poserun.wire import topics
from poserun.wire.mqtt import Will
from poserun.wire.streams import StreamKind

log = logging.getLogger(__name__)
SOURCE = "keypoints"
HOLD_S = 5.0  # the longest an athlete's frames wait for its scale; older ones are dropped (counted)
STATS_EVERY_S = 10.0
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".mpg", ".mpeg")


@dataclass(frozen=True)
class CameraOptions:
    """What the coach tells the gateway: who is where, and how to get metres."""

    regions: dict[str, Region]  # athlete -> region of the image (one athlete: the whole image)
    leg_length_m: dict[str, float] = field(default_factory=dict)  # for athletes without a marks scale
    scale_m_per_px: float | None = None  # from two marks, for every athlete of this camera
    view: str = "auto"  # sagittal_right | sagittal_left | auto (from where the toes point)
    moving: bool = False  # the camera follows the athlete (panning, treadmill)
    origin_px: tuple[float, float] | None = None  # default: the bottom centre of the image


def _pair(spec: str, what: str) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in spec.split(","))
    except ValueError:
        raise ValueError(f"{what} is X,Y (pixels), not {spec!r}") from None
    return x, y


def camera_options(settings: Settings, *, athlete: str | None = None, regions: Iterable[str] = (),
                   marks: str | None = None, marks_m: float | None = None, view: str = "auto",
                   moving: bool = False, origin: str | None = None) -> CameraOptions:
    """The options from the command line's words: ``athlete`` (the whole image) or ``ATHLETE=X0,Y0,X1,Y1``
    regions, the marks' ``X1,Y1,X2,Y2`` pixels ``marks_m`` apart, and each athlete's leg length from
    ``settings`` (0.9 m for one the config does not list). Raises ValueError on anything malformed."""
    areas: dict[str, Region] = {}
    for spec in regions:
        name, sep, box = spec.partition("=")
        if not sep:
            raise ValueError(f"a region is ATHLETE=X0,Y0,X1,Y1, not {spec!r}")
        if name in areas:
            raise ValueError(f"athlete {name!r} has two regions")
        areas[topics.check_id(name, "athlete")] = Region.parse(box)
    if athlete:
        if areas:
            raise ValueError("give --athlete (the whole image) or --region per athlete, not both")
        areas[topics.check_id(athlete, "athlete")] = Region()
    if not areas:
        raise ValueError("name the athlete (--athlete) or the athletes' regions (--region ATHLETE=X0,Y0,X1,Y1)")
    scale = None
    if marks is not None or marks_m is not None:
        if marks is None or marks_m is None:
            raise ValueError("--marks needs --marks-m (their distance in metres), and the other way round")
        try:
            x1, y1, x2, y2 = (float(v) for v in marks.split(","))
        except ValueError:
            raise ValueError(f"--marks is X1,Y1,X2,Y2 (pixels), not {marks!r}") from None
        scale = scale_from_marks((x1, y1), (x2, y2), marks_m)
    legs = {a.id: a.leg_length_m for a in settings.athletes}
    return CameraOptions(areas, {a: legs.get(a, 0.9) for a in areas}, scale, view, moving,
                         _pair(origin, "--origin") if origin else None)


@dataclass
class CameraStats:
    images: int = 0
    frames: int = 0
    seen: dict[str, int] = field(default_factory=dict)  # athlete -> frames with the athlete found
    dropped_uncalibrated: int = 0  # frames that waited over HOLD_S for their athlete's scale and view
    never_calibrated: int = 0  # frames still waiting when the source ended (no meta: never sent)
    bad_images: int = 0  # images the model failed on (sent with confidence 0)
    bad_timestamps: int = 0
    read_failures: int = 0  # a live source's failed reads (it is opened again)
    seconds: float = 0.0
    assign: dict[str, int] = field(default_factory=dict)
    tracks_lost: int = 0
    tracks_merged: int = 0
    reconnects: int = 0
    publish_dropped: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


@dataclass
class _Athlete:
    calibration: LegCalibration
    meta: wm.KeypointMeta | None = None
    held: list[tuple[int, np.ndarray]] = field(default_factory=list)
    seq: int = 0


class KeypointPipeline:
    """Timestamped RGB images in, ``(topic, payload, retain)`` messages out (meta before frames).

    An athlete's meta is made once its scale (two marks, or its leg on its first frames) and its view
    (given, or where its toes point) are known; its frames wait until then (at most ``HOLD_S``)."""

    def __init__(self, session: str, options: CameraOptions, fps: float, width: int = 0, height: int = 0, *,
                 model: BlazePose | None = None, device: str = "camera") -> None:
        for athlete in options.regions:
            topics.check_id(athlete, "athlete")
        self.session, self.options = session, options
        self.fps, self.device = fps, device
        self.width, self.height = width, height  # (the first image's own size replaces these)
        self.tracker = PoseTracker(model or BlazePose())
        self.assigner = Assigner(dict(options.regions))
        self.stats = CameraStats(seen=dict.fromkeys(options.regions, 0))
        self.athletes = {a: _Athlete(LegCalibration(options.leg_length_m.get(a, 0.9))) for a in options.regions}
        self.last_poses: dict[str, np.ndarray] = {}  # athlete -> its latest (33, 3) rows (for pictures)

    def _meta(self, scale: float, view: str) -> wm.KeypointMeta:
        origin = self.options.origin_px or (self.width / 2, float(self.height))
        cam = wm.CameraMeta(scale_m_per_px=scale, origin_px=origin, y_axis="down", view=view,  # type: ignore[arg-type]
                            moving=self.options.moving, image_px=(self.width, self.height))
        return wm.KeypointMeta(source=SOURCE, rate_hz=self.fps, schema="mediapipe33", dims="xyc",  # type: ignore[call-arg]
                               unit="px", camera=cam, device=f"{self.device} (BlazePose full, LiteRT)")

    def _known(self, st: _Athlete) -> wm.KeypointMeta | None:
        """The athlete's meta once its scale and view are known."""
        cal = st.calibration
        scale = self.options.scale_m_per_px or (cal.scale_m_per_px() if cal.ready else None)
        view = self.options.view if self.options.view != "auto" else (cal.view() if cal.facing_ready else None)
        return None if scale is None or view is None else self._meta(scale, view)

    def meta_messages(self) -> list[tuple[str, bytes, bool]]:
        """The retained meta of every athlete whose scale and view are known."""
        return [(topics.meta_topic(self.session, a, SOURCE), wm.dump(st.meta), True)
                for a, st in self.athletes.items() if st.meta is not None]

    def feed(self, t_ns: int, rgb: np.ndarray) -> list[tuple[str, bytes, bool]]:
        """One image taken at ``t_ns``: the messages it makes (a newly known meta, then frames). An image
        the model fails on is counted (``bad_images``) and gives frames with confidence 0."""
        self.stats.images += 1
        if self.stats.images == 1:
            self.height, self.width = int(rgb.shape[0]), int(rgb.shape[1])
        try:
            tracks = self.tracker.update(rgb)
            assignment = self.assigner.assign(tracks, self.width, self.height)
        except Exception:  # a corrupt image must cost itself (who is who is kept), not the other athletes
            self.stats.bad_images += 1
            if self.stats.bad_images <= 5 or self.stats.bad_images % 1000 == 0:
                log.exception("camera: image %d could not be read by the pose model", self.stats.images)
            assignment = dict.fromkeys(self.options.regions)
        self.stats.tracks_lost, self.stats.tracks_merged = self.tracker.lost, self.tracker.merged
        out: list[tuple[str, bytes, bool]] = []
        for athlete, track in assignment.items():
            rows = keypoint_rows(track)
            if track is not None:
                self.stats.seen[athlete] += 1
                self.last_poses[athlete] = rows
            st = self.athletes[athlete]
            if st.meta is not None:
                out.append(self._frame(athlete, st, t_ns, rows))
                continue
            if track is not None:
                st.calibration.add(rows)
            st.held.append((t_ns, rows))
            st.meta = self._known(st)
            if st.meta is not None:
                out.append((topics.meta_topic(self.session, athlete, SOURCE), wm.dump(st.meta), True))
                out += [self._frame(athlete, st, t, r) for t, r in st.held]
                st.held.clear()
                continue
            while st.held and t_ns - st.held[0][0] > HOLD_S * 1e9:
                st.held.pop(0)
                self.stats.dropped_uncalibrated += 1
        self.stats.assign = dict(self.assigner.counts)
        return out

    def finish(self) -> None:
        """The source ended: frames still waiting for their athlete's scale are counted (they were never
        sent: a service cannot read frames without meta) and said on the log."""
        for athlete, st in self.athletes.items():
            if st.held:
                self.stats.never_calibrated += len(st.held)
                log.warning("camera: %s: %d frames never sent: its %s was not known (seen in %d frames)", athlete,
                            len(st.held), "scale" if not (self.options.scale_m_per_px or st.calibration.ready)
                            else "direction", self.stats.seen[athlete])
                st.held.clear()

    def _frame(self, athlete: str, st: _Athlete, t_ns: int, rows: np.ndarray) -> tuple[str, bytes, bool]:
        payload = wf.pack(StreamKind.KEYPOINTS, st.seq, t_ns, rows.reshape(1, KEYPOINTS * 3),
                          period_ns=round(1e9 / self.fps))
        st.seq = (st.seq + 1) & 0xFFFFFFFF
        self.stats.frames += 1
        return (topics.data_topic(self.session, athlete, SOURCE), payload, False)


def open_capture(spec: str) -> tuple[Any, bool]:
    """An OpenCV capture of ``spec`` (a file, a webcam number, or a stream URL), and whether it is live."""
    cv2 = opencv()
    if Path(spec).is_file():
        cap, live = cv2.VideoCapture(spec), False
    else:
        cap, live = (cv2.VideoCapture(int(spec)) if spec.isdigit() else cv2.VideoCapture(spec)), True
    if not cap.isOpened():
        raise OSError(f"cannot open {spec!r}: not a video file OpenCV decodes, a webcam number or a stream URL")
    return cap, live


REOPEN_S = (0.5, 5.0)  # a live source that failed is opened again after 0.5 s, doubling to 5 s


def frames(cap: Any, live: bool, stats: CameraStats, *, reopen: Callable[[], Any] | None = None,
           stop: threading.Event | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """``(t_ns, RGB image)`` for each image: the video's own timestamps (a file) or the capture clock
    (live). A file's timestamp that does not advance is replaced by the previous one plus a frame period
    (counted ``bad_timestamps``); a file ends at its first failed read. A live source's failed read is
    counted (``read_failures``) and, with ``reopen``, the source is opened again (with back-off) until
    ``stop``."""
    cv2 = opencv()
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    last = -1
    wait = REOPEN_S[0]
    while not (stop is not None and stop.is_set()):
        ok, bgr = cap.read()
        if not ok or bgr is None:
            if not live:
                return
            stats.read_failures += 1
            if reopen is None:
                return
            log.warning("camera: read failed (%d so far); opening the source again in %.1f s",
                        stats.read_failures, wait)
            if stop is not None:
                stop.wait(wait)
            else:
                time.sleep(wait)
            wait = min(2 * wait, REOPEN_S[1])
            cap.release()
            try:
                cap = reopen()
            except OSError as exc:
                log.warning("camera: %s", exc)
            continue
        wait = REOPEN_S[0]
        if live:
            t = time.monotonic_ns()
        else:
            t = round(cap.get(cv2.CAP_PROP_POS_MSEC) * 1e6)
            if t <= last:
                stats.bad_timestamps += 1
                t = last + round(1e9 / fps) if last >= 0 else 0
        last = t
        yield t, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def run_camera_gateway(broker: BrokerSettings, session: str, source: str, options: CameraOptions, *,
                       speed: float = 1.0, duration: float | None = None, stop: threading.Event | None = None,
                       ready_file: str | None = None, gateway_id: str | None = None,
                       on_stats: Callable[[CameraStats], None] | None = None) -> CameraStats:
    """Publish a camera's keypoints until the video ends, ``duration`` s, or ``stop``. A file is played
    at ``speed`` times its own pace (0: as fast as the model runs); a live source that fails is opened
    again."""
    if speed < 0:
        raise ValueError(f"speed must be 0 (as fast as possible) or more, not {speed}")
    cv2 = opencv()
    cap, live = open_capture(source)
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    athletes = list(options.regions)
    gw = topics.check_id(gateway_id or f"camera-{athletes[0]}", "gateway")
    pipeline = KeypointPipeline(session, options, fps, device=f"{'camera' if live else 'video'} {fps:g} fps")
    offline = status_message(session, gw, "offline", athletes)
    pub = gateway_publisher(broker, f"gw-{gw}", session, will=Will(offline.topic, offline.payload, qos=1, retain=True))
    stats = pipeline.stats
    start = time.monotonic()
    halt = stop or threading.Event()
    try:
        pub.connect()
        if live:
            zero: int | None = time.time_ns() - time.monotonic_ns()
        else:  # the video's clock starts now, at ``speed``; as fast as possible, it keeps no pace with the wall
            zero = time.time_ns() if speed > 0 else None
        online = status_message(session, gw, "online", athletes, boot_ns=time.time_ns(), zero_ns=zero,
                                rate=speed if not live and speed > 0 else 1.0)
        pub.publish(online.topic, online.payload, qos=1, retain=True)
        pub.flush()
        if ready_file:
            Path(ready_file).write_text("ready\n")
        began = time.monotonic_ns()
        next_stats = time.monotonic() + STATS_EVERY_S
        for t_ns, rgb in frames(cap, live, stats, reopen=(lambda: open_capture(source)[0]) if live else None,
                                stop=halt):
            if halt.is_set() or (duration is not None and time.monotonic() - start >= duration):
                break
            if not live and speed > 0:  # pace a file as the camera filmed it (serving the connection)
                wait = began + t_ns / speed - time.monotonic_ns()
                if wait > 0:
                    pub.sleep(wait / 1e9, halt)
            for topic, payload, retain in pipeline.feed(t_ns, rgb):
                pub.publish(topic, payload, qos=1 if retain else 0, retain=retain)
            pub.pump(0.0)
            if time.monotonic() >= next_stats:
                print(f"camera {','.join(athletes)}: {json.dumps(stats.as_dict())}", file=sys.stderr)
                next_stats = time.monotonic() + STATS_EVERY_S
                if on_stats is not None:
                    on_stats(stats)
        pub.flush()
    finally:
        cap.release()
        pipeline.finish()
        stats.seconds = round(time.monotonic() - start, 3)
        stats.reconnects, stats.publish_dropped = pub.stats.reconnects, pub.stats.dropped
        if pub.connected:
            pub.publish(offline.topic, offline.payload, qos=1, retain=True)
        pub.close()
    return stats
