"""Per-athlete fusion state: routes samples to the kernels, fuses events, emits records.

One time base per athlete (the gateways' clocks are taken as shared; online
offset estimation between sources is future work, see docs/processor.md).
Events per foot come from the best source the foot has: the insole, else
the foot IMU. A ``landing`` record is emitted as soon as an IC is certain
and the other sources have caught up to it (or the reorder window has
passed): it carries the forced-landing decision. A ``stance`` record follows
at toe-off with every metric the sources support; the rest are null.
Records are plain dicts (schema: ``poserun.records``).
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from statistics import median
from typing import Any

import numpy as np

from poserun.processors.checks import GravityCheck
from poserun.processors.clock import ClockOffset
from poserun.processors.contact import EV_IC, EV_SHORT, EV_TO, ContactDetector, G
from poserun.processors.imu import (
    FootEvents,
    FootImu,
    axes_matrix,
    foot_imu_kernel,
    impact_peak_g,
    landing_velocity,
)
from poserun.processors.imu import G as G_IMU
from poserun.processors.insole import InsoleLayout, stance_metrics
from poserun.processors.keypoints import (
    JOINTS,
    CameraEvents,
    KeypointLayout,
    landing_velocities,
    stance_geometry,
)
from poserun.processors.pelvis import PelvisEvents
from poserun.processors.ring import SampleRing
from poserun.processors.score import pose_score
from poserun.processors.shank import ShankEvents

SIDES = ("left", "right")
ANKLES = [JOINTS.index("ankle"), len(JOINTS) + JOINTS.index("ankle")]  # left, right ankle in a metric frame
POSE_NAMES = tuple(f"{side}_{j}" for side in SIDES for j in JOINTS)  # the rows of the joints array
LAZY_SPAN_NS = 300e6  # a supporting source is processed at least this often (data time)
SYMMETRY_METRICS = ("support_time_s", "flight_time_s", "loading_rate_bw_per_s", "ball_load_fraction",
                    "release_ratio", "toe_pushoff_fraction", "impact_peak_g", "foot_landing_velocity_mps",
                    "overstride_m", "knee_flexion_ic_deg", "pull_height_m")
STALE_NS = 300e6  # a timing source with no data for this long hands over to the next
DUPLICATE_NS = 250e6  # two ICs of one foot closer than this are the same contact
CAMERA_LEAD_NS = 20e6  # a landing needs camera frames up to this long before IC (60 fps: the last one)
CAMERA_BODY_SD = 0.075  # m/s, hip velocity fitted over 60 fps frames (measured on the simulator)
FLIGHT_BODY_SD = 0.05  # m/s, ballistic model g * flight / 2 (asymmetric flights)
OSCILLATION_BODY_SD = 0.3  # m/s, free fall from a configured oscillation: a guess
FOOT_SD = {"imu": 0.03, "camera": 0.27}  # m/s, foot velocity before IC (measured on the simulator)


@dataclass
class AthleteParams:
    body_mass_kg: float = 68.0
    leg_length_m: float = 0.9
    on_bw: float = 0.10
    off_bw: float = 0.05
    min_stance_s: float = 0.08
    min_swing_s: float = 0.10
    heel_contact_bw: float = 0.05
    cadence_window_steps: int = 8
    forced_landing_ratio: float = 1.3
    reorder_window_s: float = 0.15
    default_oscillation_m: float = 0.05
    score_weights: dict[str, float] | None = None


@dataclass
class _Imu:
    axes: dict[str, str]
    accel_unit: str
    gyro_unit: str
    strapdown: FootImu
    events: FootEvents
    ring: SampleRing = field(default_factory=SampleRing)  # columns: vz, still, |a|-g, a_wz
    matrix: np.ndarray = field(default_factory=lambda: np.eye(6))

    def __post_init__(self) -> None:
        # one 6x6 matrix: axes to body frame and units to SI, for accelerometer and gyroscope
        m = axes_matrix(self.axes)
        self.matrix = np.zeros((6, 6))
        self.matrix[:3, :3] = m.T * (G_IMU if self.accel_unit == "g" else 1.0)
        self.matrix[3:, 3:] = m.T * (math.pi / 180.0 if self.gyro_unit == "deg/s" else 1.0)

    def to_body(self, raw: np.ndarray) -> np.ndarray:
        """Raw samples in the body frame, SI units (the numpy twin of the kernel's first step)."""
        raw = np.asarray(raw, dtype=np.float64)
        if raw.shape[1] >= 6:
            return raw[:, :6] @ self.matrix
        return raw[:, :3] @ self.matrix[:3, :]

    def update(self, times_ns: np.ndarray, raw: np.ndarray) -> np.ndarray:
        """Process a batch (body frame, strapdown, events in one compiled call), keep its
        per-sample columns in the ring; return the event rows."""
        n = len(times_ns)
        cols = np.empty((n, 4))
        events = np.empty((n + 1, 4))
        sd, ev = self.strapdown, self.events
        k = foot_imu_kernel(np.ascontiguousarray(times_ns, dtype=np.int64),
                            np.ascontiguousarray(raw, dtype=np.float64), self.matrix, sd.still_acc,
                            sd.still_gyr, sd.still_min, sd.state, ev.ic_high, ev.ic_low, ev.to_min,
                            ev.min_swing_s * 1e9, ev.state, cols, events)
        self.ring.push(times_ns, cols)
        return events[:k]


class _Source:
    """Per-source routing: its frame handler (a timing source) or lazy queue (a supporting
    one), its clock offset if it has one, and the samples it has sent."""

    __slots__ = ("clock", "data", "handler", "lazy", "now", "now_until", "samples", "since", "times")

    def __init__(self) -> None:
        self.handler: Callable[[np.ndarray, np.ndarray], None] | None = None
        self.lazy = False
        self.times: list[np.ndarray] = []  # the lazy queue
        self.data: list[np.ndarray] = []
        self.since = 0.0  # when the queue began (its first frame's last sample)
        self.clock: ClockOffset | None = None
        self.samples = 0
        self.now = False  # cached _times_now and until when it holds
        self.now_until = -math.inf


@dataclass
class _Pending:
    kind: str  # "landing" or "stance"
    foot: str
    ic_ns: float
    to_ns: float = math.nan
    source: str = "insole"
    peak_n: float = math.nan


class AthleteState:
    """Everything poserun knows about one athlete, fed with samples, emitting records."""

    def __init__(self, athlete: str, params: AthleteParams | None = None) -> None:
        self.athlete = athlete
        self.params = p = params or AthleteParams()
        self.bw = p.body_mass_kg * G
        self.warnings: dict[str, int] = {}
        self._units: dict[str, GravityCheck] = {}  # accelerometers whose declared unit is checked
        self._insole: dict[str, InsoleLayout] = {}
        self._contact: dict[str, ContactDetector] = {}
        self._insole_ring: dict[str, SampleRing] = {s: SampleRing() for s in SIDES}
        self._imu: dict[str, _Imu] = {}
        self._kp: KeypointLayout | None = None
        self._kp_ring = SampleRing()
        self._clock: dict[str, float] = {}
        self._src: dict[str, _Source] = {}
        self._scales: dict[str, np.ndarray] = {}
        self._shank: dict[str, ShankEvents] = {}
        self._shank_scale: dict[str, float] = {}
        self._shank_peak: dict[tuple[str, int], float] = {}
        self._pelvis: PelvisEvents | None = None
        self._cell_maps: dict[str, tuple[InsoleLayout, dict[str, list[float]]]] = {}
        self.pelvis_placement: str | None = None  # pelvis, sacrum or trunk, from the meta
        self._camera: CameraEvents | None = None  # both feet's contacts from keypoints
        self._cands: dict[str, list[tuple[str, str]]] = {}
        self._active_cache: dict[str, tuple[float, str | None]] = {}
        self._newest = -math.inf
        self._ic_emitted: dict[str, float] = {}
        self._waiting: dict[str, float] | None = None  # source -> the clock at which the head record may be ready
        self._checked = 0
        self._to_emitted: dict[str, float] = {}
        self._pending: list[_Pending] = []
        self._ics: deque[tuple[float, str]] = deque(maxlen=max(p.cadence_window_steps + 1, 3))
        self._last_ic: dict[str, float] = {}
        self._last_to: dict[str, float] = {}
        self._landing: dict[str, dict[str, Any]] = {}
        self._history: dict[tuple[str, str], deque[float]] = {}
        self._imu_ics: dict[str, deque[tuple[float, int]]] = {s: deque(maxlen=8) for s in SIDES}
        self._clocks: dict[str, ClockOffset] = {}
        self._insole_ics: dict[str, deque[float]] = {s: deque(maxlen=8) for s in SIDES}
        self._periods: dict[str, float] = {}
        self._step = 0

    # ------------------------------------------------------- configuration
    def configure_insole(self, side: str, regions: list[str], positions: list[tuple[float, float]],
                         areas: list[float] | None = None, unit: str = "N") -> None:
        p = self.params
        self._insole[side] = InsoleLayout.from_meta(regions, positions, areas, unit)
        self._scales[side] = self._insole[side].scale
        cells = len(regions)
        ring = self._insole_ring[side]
        if ring.data is None or ring.data.shape[1] != cells:  # (a new layout starts a new history)
            self._insole_ring[side] = SampleRing(width=cells)
        if side not in self._contact:
            self._contact[side] = ContactDetector(self.bw, p.on_bw, p.off_bw, p.min_stance_s, p.min_swing_s,
                                                  zero_tau_s=2.0)
        self._sources_changed()

    def configure_imu(self, side: str, axes: dict[str, str], accel_unit: str, gyro_unit: str,
                      rate_hz: float) -> None:
        if side not in self._imu:
            self._imu[side] = _Imu(dict(axes), accel_unit, gyro_unit, FootImu(rate_hz),
                                   FootEvents(min_swing_s=self.params.min_swing_s))
            self._units[f"imu_foot_{side}"] = GravityCheck(G_IMU if accel_unit == "g" else 1.0)
            self._sources_changed()

    def configure_shank(self, side: str, accel_unit: str, rate_hz: float) -> None:
        """A shank accelerometer times this foot's contacts when it has no insole or foot IMU."""
        if side not in self._shank:
            self._shank[side] = ShankEvents()
            self._shank_scale[side] = G_IMU if accel_unit == "g" else 1.0
            self._units[f"imu_shank_{side}"] = GravityCheck(self._shank_scale[side])
            self._sources_changed()

    def configure_pelvis(self, axes: dict[str, str], placement: str, rate_hz: float) -> None:
        """A pelvis/sacrum/trunk accelerometer (source ``imu_pelvis``) times both feet when
        nothing else does (see processors/pelvis.py)."""
        if self._pelvis is None:
            self._pelvis = PelvisEvents(dict(axes), rate_hz=rate_hz, min_stance_s=self.params.min_stance_s)
            self.pelvis_placement = placement
            self._sources_changed()

    def configure_keypoints(self, layout: KeypointLayout | None) -> None:
        self._kp = layout
        self._sources_changed()

    def _sources_changed(self) -> None:
        """Which sources may time each foot, in priority order (insole, foot IMU, shank, camera,
        pelvis)."""
        self._cands = {}
        for foot in SIDES:
            cands = []
            if foot in self._insole:
                cands.append(("insole", f"insole_{foot}"))
            if foot in self._imu:
                cands.append(("imu", f"imu_foot_{foot}"))
            if foot in self._shank:
                cands.append(("imu_shank", f"imu_shank_{foot}"))
            if self._kp is not None:
                cands.append(("camera", "keypoints"))
                if self._camera is None:
                    self._camera = CameraEvents(min_stance_s=self.params.min_stance_s,
                                                min_swing_s=self.params.min_swing_s)
            if self._pelvis is not None:
                cands.append(("imu_pelvis", "imu_pelvis"))
            self._cands[foot] = cands
        handlers: dict[str, Callable[[np.ndarray, np.ndarray], None]] = {
            f"insole_{s}": self._insole_handler(s) for s in self._insole}
        handlers.update({f"imu_shank_{s}": partial(self._process, f"imu_shank_{s}") for s in self._shank})
        if self._pelvis is not None:
            handlers["imu_pelvis"] = partial(self._process, "imu_pelvis")
        lazy = {f"imu_foot_{s}" for s in self._imu} | ({"keypoints"} if self._kp is not None else set())
        for name in handlers.keys() | lazy:
            self._src.setdefault(name, _Source())
        for name, src in self._src.items():
            src.handler = handlers.get(name)
            src.lazy = name in lazy
            src.now_until = -math.inf
        self._active_cache = {}

    def active(self, foot: str) -> str | None:
        """The source timing this foot now: the first by priority whose data is fresh (within
        ``STALE_NS`` of the newest sample of any source); a source that drops out hands over to
        the next, and takes over again when it returns."""
        cached = self._active_cache.get(foot)
        if cached is not None and self._newest - cached[0] < 20e6:  # re-judged every 20 ms of data
            return cached[1]
        cands = self._cands.get(foot) or []
        kind = cands[0][0] if cands else None
        for k, source in cands:
            clock = self._clock.get(source)
            if clock is not None and clock >= self._newest - STALE_NS:
                kind = k
                break
        self._active_cache[foot] = (self._newest, kind)
        return kind

    # --------------------------------------------------------------- input
    def push(self, source: str, times_ns: np.ndarray, data: np.ndarray) -> list[dict[str, Any]]:
        """Feed one block of samples of ``source``; return the records it completed.

        The source that times a foot's events is processed at once, so an IC is seen in the
        frame that holds it. Supporting sources (a foot IMU beside an insole, the camera) are
        queued raw and processed in one batch when an event needs them or their queue spans
        ``LAZY_SPAN_NS``: the kernels then run a few times a second instead of per frame,
        with identical results.
        """
        src = self._src.get(source)
        if src is None:
            src = self._src[source] = _Source()
        n = len(times_ns)
        src.samples += n
        if n == 0:
            return []
        last = float(times_ns[-1])
        if src.clock is not None:
            last += src.clock.applied
        self._clock[source] = last
        if last > self._newest:
            self._newest = last
        if src.handler is not None:
            src.handler(times_ns, data)
        elif src.lazy:
            if not src.times:
                src.since = last
            src.times.append(times_ns)
            src.data.append(data)
            if last - src.since > LAZY_SPAN_NS or (
                    src.now if self._newest < src.now_until else self._times_now(source, src)):
                self._drain(source, src)
        if not self._pending:
            return []
        if self._waiting is not None and len(self._pending) == self._checked and \
                last < self._waiting.get(source, math.inf):
            return []  # the head record still waits on other sources
        out = self._finalize()
        self._checked = len(self._pending)
        return out

    @property
    def samples(self) -> dict[str, int]:
        """Samples received per source."""
        return {name: src.samples for name, src in self._src.items()}

    def _times_now(self, source: str, src: _Source) -> bool:
        """Is this (normally batched) source timing a foot at the moment? (Judged afresh every
        20 ms of data, like :meth:`active`; :meth:`push` reads the cached answer meanwhile.)"""
        if source == "keypoints":
            now = self.active("left") == "camera" or self.active("right") == "camera"
        else:
            now = self.active("left" if source.endswith("left") else "right") == "imu"
        src.now = now
        src.now_until = self._newest + 20e6
        return now

    def _drain(self, source: str, src: _Source) -> None:
        """Process a lazy source's queued frames in one batch."""
        if not src.times:
            return
        if len(src.times) == 1:
            t, d = src.times[0], src.data[0]
        else:
            t, d = np.concatenate(src.times), np.concatenate(src.data)
        src.times, src.data = [], []
        self._process(source, t, d)

    def _insole_handler(self, side: str) -> Callable[[np.ndarray, np.ndarray], None]:
        """The per-frame path of an insole (the source that times its foot): keep the raw
        frame for the stance metrics, run the contact kernel, pass on its events."""
        # the kernel keeps the raw frames (cell units; converted when a stance is measured)
        update = self._contact[side].cells_updater(self._scales[side], self._insole_ring[side])
        events = self._events

        def frame(times_ns: np.ndarray, data: np.ndarray) -> None:
            ev = update(times_ns, data)
            if len(ev):
                events(side, ev, "insole")
        return frame

    def _clock_of(self, source: str) -> ClockOffset:
        """The clock offset estimate of a supporting source (made on first use)."""
        clock = self._clocks.get(source)
        if clock is None:
            clock = self._clocks[source] = ClockOffset()
            self._src.setdefault(source, _Source()).clock = clock
        return clock

    def _process(self, source: str, times_ns: np.ndarray, data: np.ndarray) -> None:
        side = "left" if source.endswith("_left") else "right" if source.endswith("_right") else ""
        if source.startswith("insole_"):
            self._src[source].handler(times_ns, data)
        elif source.startswith("imu_foot_"):
            self._check_unit(source, times_ns, data)
            imu = self._imu[side]
            shift = 0
            if side in self._insole:  # a supporting IMU: put its samples on the insole's clock
                shift = self._clock_of(source).applied
                if shift:
                    times_ns = times_ns + shift
            ev = imu.update(times_ns, data)
            if len(ev):
                new = [(float(row[1]), shift) for row in ev if row[0] == EV_IC]
                self._imu_ics[side].extend(new)
                if side in self._insole:
                    self._match_clock(side, new)
                self._events(side, ev, "imu")
        elif source.startswith("imu_shank_"):
            self._check_unit(source, times_ns, data)
            acc = np.asarray(data[:, :3], dtype=np.float64) * self._shank_scale[side]
            ev = self._shank[side].update(times_ns, acc)
            if len(ev):
                self._events(side, ev, "imu_shank")
        elif source == "imu_pelvis" and self._pelvis is not None:
            flips = self._pelvis.side_flips
            for foot, kind, t, ic, peak in self._pelvis.update(times_ns, data):
                self._events(foot, np.array([[kind, t, ic, peak]]), "imu_pelvis")
            if self._pelvis.side_flips > flips:
                self._warn("pelvis_side_flip")  # a contact was given to the wrong foot
        elif source == "keypoints" and self._kp is not None:
            pts = self._kp.to_metric(data)
            self._kp_ring.push(times_ns, pts.reshape(len(times_ns), -1))
            assert self._camera is not None
            rows = self._camera.update(times_ns, pts[:, ANKLES, 1], self._kp.toe_heights(data))
            if len(rows):
                for k, foot in enumerate(SIDES):
                    mine = rows[rows[:, 3] == k]
                    if len(mine):
                        mine[:, 3] = 0.0  # (the column is the foot here; a camera event has no peak)
                        self._events(foot, mine, "camera")

    def _events(self, foot: str, rows: np.ndarray, ev_source: str) -> None:
        if self.active(foot) != ev_source:
            return  # another source times this foot; these events only serve clock matching
        for kind, t_ns, ic_ns, peak in rows:
            if kind == EV_IC and ev_source == "insole":
                self._insole_ics[foot].append(float(ic_ns))
            if kind == EV_IC:
                last = self._ic_emitted.get(foot)
                if last is not None and ic_ns - last < DUPLICATE_NS:
                    self._warn("duplicate_ic")  # the same contact seen again after a hand-over
                    continue
                self._ic_emitted[foot] = ic_ns
                self._pending.append(_Pending("landing", foot, ic_ns, source=ev_source))
            elif kind == EV_TO:
                if abs(ic_ns - self._ic_emitted.get(foot, -1e30)) > 30e6 or self._to_emitted.get(foot) == ic_ns:
                    self._warn("unmatched_to")  # its IC was timed by another source
                    continue
                self._to_emitted[foot] = ic_ns
                self._pending.append(_Pending("stance", foot, ic_ns, t_ns, ev_source, peak))
                continue
            if kind == EV_IC and ev_source == "imu_shank":
                self._shank_peak[(foot, int(ic_ns))] = float(peak)
            elif kind == EV_SHORT:
                self._warn("short_contact")

    def _check_unit(self, source: str, times_ns: np.ndarray, data: np.ndarray) -> None:
        check = self._units.get(source)
        if check is not None and not check.done and check.feed(times_ns, data):
            self._warn(f"{source}_accel_unit_implausible")  # e.g. a file in g declared as m/s^2

    def _warn(self, what: str) -> None:
        self.warnings[what] = self.warnings.get(what, 0) + 1

    # ------------------------------------------------------------- fusion
    def _caught_up(self, source: str, t_ns: float, event_source_clock: float) -> bool:
        """A supporting source is ready when it has data past ``t_ns``, or has fallen more
        than the reorder window behind the event source (then it is left out)."""
        clock = self._clock.get(source)
        if clock is not None and clock >= t_ns:
            return True
        return event_source_clock >= t_ns + self.params.reorder_window_s * 1e9

    @staticmethod
    def _event_source_name(pend: _Pending) -> str:
        if pend.source == "camera":
            return "keypoints"
        if pend.source == "imu_pelvis":
            return "imu_pelvis"
        return {"insole": "insole_", "imu": "imu_foot_", "imu_shank": "imu_shank_"}[pend.source] + pend.foot

    def _event_clock(self, pend: _Pending) -> float:
        return self._clock.get(self._event_source_name(pend), -math.inf)

    def _finalize(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        self._waiting = None
        while self._pending:
            pend = self._pending[0]
            ev_clock = self._event_clock(pend)
            # a landing (the haptic cue's trigger) needs only what precedes IC: the foot's descent
            # in the IMU and the hips' fall in the last camera frames; a stance needs data to TO
            landing = pend.kind == "landing"
            need_kp = pend.ic_ns - CAMERA_LEAD_NS if landing else pend.to_ns
            need_imu = pend.ic_ns if landing else pend.to_ns + 40e6
            waiting: dict[str, float] = {}
            if self._kp is not None and pend.source != "camera" and not self._caught_up("keypoints", need_kp, ev_clock):
                waiting["keypoints"] = need_kp
            imu_src = f"imu_foot_{pend.foot}"
            if pend.foot in self._imu and pend.source != "imu" and not self._caught_up(imu_src, need_imu, ev_clock):
                waiting[imu_src] = need_imu
            if waiting:
                # nothing changes until one of these reaches the time it is needed to, or the timing
                # source passes the earliest of those by the reorder window
                waiting[self._event_source_name(pend)] = min(waiting.values()) + self.params.reorder_window_s * 1e9
                self._waiting = waiting
                break
            # readiness is judged on clocks; process the queued samples this record reads only now
            # (the other foot's IMU waits for its own records)
            for source in ("keypoints", imu_src):
                src = self._src.get(source)
                if src is not None and src.times:
                    self._drain(source, src)
            self._pending.pop(0)
            out.append(self._landing_record(pend) if pend.kind == "landing" else self._stance_record(pend))
        return out

    def _kp_window(self, start: float, end: float) -> tuple[np.ndarray, np.ndarray] | None:
        if self._kp is None:
            return None
        t, d = self._kp_ring.window(start, end)
        if len(t) < 2:
            return None
        return t, d.reshape(len(t), 8, 2)

    def _match_clock(self, foot: str, imu_ics: list[tuple[float, int]]) -> None:
        """Pair new IMU impacts with the insole ICs around them: each pair is one sample of the
        IMU clock's offset. Done as IMU data is processed, so no record waits for it."""
        clock = self._clock_of(f"imu_foot_{foot}")
        refs = self._insole_ics[foot]
        for t, shift in imu_ics:
            near = [r for r in refs if abs(r - t) <= clock.tolerance_ns() + 20e6]
            if near:
                clock.add(min(near, key=lambda r: abs(r - t)), t - shift)

    def _refine_ic(self, pend: _Pending) -> tuple[float, str]:
        """An insole IC is quantised to its sample period; a foot IMU impact within one period
        of it times the same contact more finely, so it takes over (source ``insole+imu``)
        once the IMU's clock offset is known."""
        if pend.source != "insole" or pend.foot not in self._imu:
            return pend.ic_ns, pend.source
        clock = self._clock_of(f"imu_foot_{pend.foot}")
        period = self._insole_period(pend.foot)
        cands = [t for t, _shift in self._imu_ics[pend.foot] if abs(t - pend.ic_ns) <= period + 2e6]
        if not cands or not clock.ready:
            return pend.ic_ns, pend.source
        return min(cands, key=lambda t: abs(t - pend.ic_ns)), "insole+imu"

    def _insole_period(self, side: str) -> float:
        period = self._periods.get(side)
        if period is None:
            t, _ = self._insole_ring[side].window(self._clock.get(f"insole_{side}", 0.0) - 100e6, math.inf)
            if len(t) <= 2:
                return 10e6
            period = self._periods[side] = float(np.median(np.diff(t)))
        return period

    def _landing_record(self, pend: _Pending) -> dict[str, Any]:
        p = self.params
        foot = pend.foot
        # the timing source's IC as it is: refining it with the IMU impact waits for the stance
        # record (the impact may not be in yet, and a record must not depend on arrival timing)
        ic, ic_source = pend.ic_ns, pend.source
        other = "right" if foot == "left" else "left"
        self._step += 1
        self._ics.append((ic, foot))
        foot_v = body_v = None
        foot_src = body_src = None
        imu = self._imu.get(foot)
        if imu is not None:
            t, d = imu.ring.window(ic - 60e6, ic)
            if len(t):
                foot_v = landing_velocity(t, d[:, 0], ic)
                foot_src = "imu" if foot_v is not None else None
        estimates: list[tuple[float, float, str]] = []  # (value, sd, source)
        kp = self._kp_window(ic - 120e6, ic + 1)
        if kp is not None:
            bv, fv = landing_velocities(kp[0], kp[1], foot, ic, until_ns=ic - CAMERA_LEAD_NS)
            if math.isfinite(bv):
                estimates.append((bv, CAMERA_BODY_SD, "camera"))
            if foot_v is None and math.isfinite(fv):
                foot_v, foot_src = fv, "camera"
        to_other = self._last_to.get(other)
        if to_other is not None and 0 < ic - to_other < 0.5e9:
            estimates.append((G * (ic - to_other) / 2e9, FLIGHT_BODY_SD, "model_flight"))
        if estimates:  # inverse-variance fusion of the independent estimates
            weights = [1.0 / (sd * sd) for _, sd, _ in estimates]
            body_v = sum(w * v for w, (v, _, _) in zip(weights, estimates, strict=True)) / sum(weights)
            body_sd = 1.0 / math.sqrt(sum(weights))
            body_src = "+".join(src for _, _, src in estimates)
        else:
            body_v, body_src = math.sqrt(2 * G * p.default_oscillation_m), "model_oscillation"
            body_sd = OSCILLATION_BODY_SD
        forced = severity = None
        if foot_v is not None and body_v is not None and body_v > 0.05:
            severity = float(foot_v / body_v)
            # forced only when the excess is larger than what the measurements' noise explains
            margin = foot_v - p.forced_landing_ratio * body_v
            noise = math.hypot(FOOT_SD.get(foot_src or "", 0.3), p.forced_landing_ratio * body_sd)
            forced = bool(margin > noise)
        rec = {
            "type": "landing", "athlete": self.athlete, "foot": foot, "ic_ns": int(ic), "step": self._step,
            "source": ic_source,
            "foot_landing_velocity_mps": _r(foot_v, 3), "foot_velocity_source": foot_src,
            "body_fall_velocity_mps": _r(body_v, 3), "body_fall_source": body_src,
            "forced_landing": forced, "forced_landing_severity": _r(severity, 3),
        }
        self._landing[foot] = rec
        return rec

    def _stance_record(self, pend: _Pending) -> dict[str, Any]:
        p = self.params
        foot, to = pend.foot, pend.to_ns
        ic, event_source = self._refine_ic(pend)  # by toe-off the IMU has seen the impact
        other = "right" if foot == "left" else "left"
        landing = self._landing.get(foot)
        if landing is not None and abs(landing["ic_ns"] - pend.ic_ns) > 30e6:
            landing = None  # not this contact's landing
        sources = event_source.split("+")
        rec: dict[str, Any] = {"type": "stance", "athlete": self.athlete, "foot": foot,
                               "ic_ns": int(ic), "to_ns": int(to),
                               "support_time_s": round(float(to - ic) / 1e9, 4)}
        # timing from events
        prev_same = self._last_ic.get(foot)
        stride = (ic - prev_same) / 1e9 if prev_same is not None and 0 < ic - prev_same < 3e9 else None
        to_other = self._last_to.get(other)
        rec["flight_time_s"] = (round((ic - to_other) / 1e9, 4)
                                if to_other is not None and -1e9 < ic - to_other < 2e9 else None)
        ic_other = self._last_ic.get(other)
        step_ok = ic_other is not None and 0 < ic - ic_other < 2e9
        rec["step_time_s"] = round((ic - ic_other) / 1e9, 4) if step_ok else None
        rec["stride_time_s"] = _r(stride, 4)
        rec["duty_factor"] = round((to - ic) / 1e9 / stride, 3) if stride else None
        rec["cadence_spm"] = self.cadence_spm()
        # insole
        metrics: dict[str, Any] = dict.fromkeys(
            ("strike_zone", "cop_ic_fraction", "heel_contact", "heel_peak_fraction", "ball_load_fraction",
             "release_time_s", "release_ratio", "toe_pushoff_fraction", "loading_rate_bw_per_s",
             "peak_force_bw"))
        if foot in self._insole:
            t, raw = self._insole_ring[foot].window(ic - 20e6, to + 20e6)
            if len(t) >= 3:
                layout = self._insole[foot]
                cells = layout.newtons(raw)
                metrics.update(stance_metrics(t, cells, layout, ic, to, self.bw, p.on_bw, p.heel_contact_bw))
                inside = (t >= ic) & (t <= to)
                if inside.any():  # the stance's pressure map: each cell's peak, in body weights
                    peak = cells[inside].max(axis=0) / self.bw
                    rec["pressure_map"] = {"peak_bw": peak.round(3).tolist(), **self._cell_map(foot, layout)}
                if "insole" not in sources:
                    sources.append("insole")
            else:
                self._warn("insole_samples_missing")
        rec.update(metrics)
        # IMU impact (foot IMU; else the shank's dynamic acceleration peak)
        rec["impact_peak_g"] = None
        shank_peak = self._shank_peak.pop((foot, int(pend.ic_ns)), None)
        if len(self._shank_peak) > 16:
            self._shank_peak.clear()
        if shank_peak is not None:
            rec["impact_peak_g"] = round(shank_peak / G, 2)
        imu = self._imu.get(foot)
        if imu is not None:
            t, d = imu.ring.window(ic, ic + 40e6)
            if len(t):
                rec["impact_peak_g"] = impact_peak_g(t, d[:, 2], ic)
                if "imu" not in sources:
                    sources.append("imu")
        # camera geometry
        geo = dict.fromkeys(("overstride_m", "overstride_ratio", "knee_flexion_ic_deg", "knee_flexion_min_deg",
                             "fall_angle_deg", "waist_bend_deg", "pull_height_m", "pull_under_hip_m",
                             "vertical_oscillation_m"))
        start = prev_same if prev_same is not None and stride and stride < 2 else None
        kp = self._kp_window((start if start is not None else ic) - 20e6, to + 20e6)
        if kp is not None:
            at_ic = np.empty((8, 2))
            geo.update(stance_geometry(kp[0], kp[1], foot, ic, to, start, p.leg_length_m, at_ic=at_ic))
            sources.append("camera")
            hip = 0.5 * (at_ic[0] + at_ic[4])  # the stick figure at IC, relative to the hips' midpoint
            if math.isfinite(hip[0]) and math.isfinite(hip[1]):
                rel = (at_ic - hip).round(3).tolist()
                rec["pose_ic"] = {name: xy for name, xy in zip(POSE_NAMES, rel, strict=True)
                                  if math.isfinite(xy[0]) and math.isfinite(xy[1])}
        rec.update(geo)
        # landing decision, made at IC
        if landing is not None:
            for k in ("foot_landing_velocity_mps", "body_fall_velocity_mps", "body_fall_source",
                      "forced_landing", "forced_landing_severity"):
                rec[k] = landing[k]
        else:
            rec.update({"foot_landing_velocity_mps": None, "body_fall_velocity_mps": None,
                        "body_fall_source": None, "forced_landing": None, "forced_landing_severity": None})
        # left/right symmetry over the last 8 stances per side: 100 x (L - R) / mean
        symmetry: dict[str, float] = {}
        for metric in SYMMETRY_METRICS:
            value = rec.get(metric)
            if isinstance(value, int | float) and not isinstance(value, bool):
                key = (foot, metric)
                history = self._history.get(key)
                if history is None:
                    history = self._history[key] = deque(maxlen=8)
                history.append(float(value))
            left = self._history.get(("left", metric))
            right = self._history.get(("right", metric))
            if left and right:
                ml, mr = sum(left) / len(left), sum(right) / len(right)  # (np.mean costs 10 us a call)
                if abs(ml + mr) > 1e-9:
                    symmetry[metric] = round(100.0 * (ml - mr) / (0.5 * (ml + mr)), 2)
        rec["support_symmetry_pct"] = symmetry.get("support_time_s")
        rec["symmetry_pct"] = symmetry
        score, breakdown = pose_score(rec, p.score_weights)
        rec["pose_score"] = score
        rec["pose_score_breakdown"] = breakdown
        rec["event_source"] = event_source
        if event_source == "imu_pelvis":
            rec["imu_placement"] = self.pelvis_placement
        rec["sources"] = list(dict.fromkeys(sources))
        self._last_ic[foot] = ic
        self._last_to[foot] = to
        return rec

    def _cell_map(self, foot: str, layout: InsoleLayout) -> dict[str, list[float]]:
        """Where the cells sit (the pressure map's axes), as lists made once per insole."""
        cached = self._cell_maps.get(foot)
        if cached is None or cached[0] is not layout:
            across = layout.across if layout.across is not None else np.zeros_like(layout.along)
            cached = self._cell_maps[foot] = (layout, {"along": np.round(layout.along, 3).tolist(),
                                                       "across": np.round(across, 3).tolist()})
        return {k: list(v) for k, v in cached[1].items()}  # copies: a record is its own

    def clocks(self) -> dict[str, dict[str, float | int | None]]:
        """Estimated offset (added to the source's timestamps) and jitter per aligned source."""
        return {src: c.report() for src, c in sorted(self._clocks.items())}

    def cadence_spm(self) -> float | None:
        """Rolling median cadence over the last N steps (alternating feet only)."""
        ics = list(self._ics)
        steps = [
            (b[0] - a[0]) / 1e9 for a, b in itertools.pairwise(ics)
            if a[1] != b[1] and 0.15 < (b[0] - a[0]) / 1e9 < 1.5
        ]
        if steps:
            return round(60.0 / median(steps), 1)
        # one foot instrumented: two steps per stride of that foot
        strides = [(b[0] - a[0]) / 1e9 for a, b in itertools.pairwise(ics)
                   if a[1] == b[1] and 0.3 < (b[0] - a[0]) / 1e9 < 3.0]
        return round(120.0 / median(strides), 1) if strides else None


def _r(v: float | None, digits: int) -> float | None:
    return None if v is None or not math.isfinite(v) else round(float(v), digits)
