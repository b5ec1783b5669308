"""One athlete's fusion: sources in, records out (the coordinator of the stages).

Each sensor stream is a source (processors/sources.py) that turns samples into contact
events. :class:`~poserun.processors.timing.Timing` decides which source times each foot
and which events become records-to-be; a foot IMU beside an insole is put on the insole's
clock and refines its IC (processors/alignment.py). A ``landing`` record is built as soon as
an IC is certain and the other sources have caught up to it (or the reorder window has
passed): it carries the forced-landing decision (processors/landing.py). A ``stance``
record follows at toe-off with every metric the sources support, the rest null
(processors/stance.py), with the rolling statistics (processors/rolling.py). Records are
plain dicts; their schema is processors/records.py.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from poserun.processors.alignment import ImuAlignment
from poserun.processors.clock import ClockOffset
from poserun.processors.contact import EV_IC, ContactDetector, G
from poserun.processors.imu import FootEvents, FootImu
from poserun.processors.insole import InsoleLayout
from poserun.processors.keypoints import KeypointLayout
from poserun.processors.landing import CAMERA_LEAD_NS, landing_record
from poserun.processors.records import LandingRecord, Record
from poserun.processors.ring import SampleRing
from poserun.processors.rolling import Rolling
from poserun.processors.sources import (
    SIDES,
    CameraSource,
    Events,
    FootImuSource,
    InsoleSource,
    PelvisSource,
    ShankSource,
    Source,
)
from poserun.processors.stance import Before, InsoleStance, finish_stance, measure_stance, stride_start
from poserun.processors.timing import Pending, Timing, source_name

LAZY_SPAN_NS = 300e6  # a supporting source is processed at least this often (data time)


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


class _Stream:
    """Routing of one stream: its per-frame handler (a timing source) or its queue (a supporting
    source, processed in batches), the clock offset that puts it on the athlete's time base,
    and the samples it has sent."""

    __slots__ = ("clock", "data", "handler", "lazy", "now", "now_until", "samples", "since", "times")

    def __init__(self) -> None:
        self.handler: Callable[[np.ndarray, np.ndarray], None] | None = None
        self.lazy = False
        self.times: list[np.ndarray] = []  # the queue
        self.data: list[np.ndarray] = []
        self.since = 0.0  # when the queue began (its first frame's last sample)
        self.clock: ClockOffset | None = None  # once the stream is aligned
        self.samples = 0
        self.now = False  # cached "times a foot now" and until when it holds
        self.now_until = -math.inf


class AthleteState:
    """Everything poserun knows about one athlete, fed with samples, emitting records."""

    def __init__(self, athlete: str, params: AthleteParams | None = None) -> None:
        self.athlete = athlete
        self.params = p = params or AthleteParams()
        self.bw = p.body_mass_kg * G
        self.insoles: dict[str, InsoleSource] = {}
        self.imus: dict[str, FootImuSource] = {}
        self.shanks: dict[str, ShankSource] = {}
        self.pelvis: PelvisSource | None = None
        self.camera: CameraSource | None = None
        self.timing = Timing()
        self.alignment = ImuAlignment()
        self.rolling = Rolling(p.cadence_window_steps)
        self._warnings: Counter[str] = Counter()  # the coordinator's own
        self._streams: dict[str, _Stream] = {}
        self._clock: dict[str, float] = {}  # each stream's newest sample on the athlete's time base
        self._newest = -math.inf
        self._first: dict[str, float] = {}  # each stream's first sample on the athlete's time base
        self._next_check = -math.inf
        self._pending: list[Pending] = []
        self._waiting: dict[str, float] | None = None  # stream -> the clock at which the head record may be ready
        self._checked = 0
        self._landing: dict[str, LandingRecord] = {}  # the last landing per foot (its decision goes on the stance)

    # ------------------------------------------------------- configuration
    def configure_insole(self, side: str, regions: list[str], positions: list[tuple[float, float]],
                         areas: list[float] | None = None, unit: str = "N") -> None:
        p = self.params
        layout = InsoleLayout.from_meta(regions, positions, areas, unit)
        src = self.insoles.get(side)
        if src is None:
            detector = ContactDetector(self.bw, p.on_bw, p.off_bw, p.min_stance_s, p.min_swing_s, zero_tau_s=2.0)
            self.insoles[side] = InsoleSource(side, layout, detector, SampleRing(width=len(regions)))
        else:
            src.reconfigure(layout)
        self._sources_changed()

    def configure_imu(self, side: str, axes: dict[str, str], accel_unit: str, gyro_unit: str,
                      rate_hz: float) -> None:
        if side not in self.imus:
            self.imus[side] = FootImuSource(side, dict(axes), accel_unit, gyro_unit, FootImu(rate_hz),
                                            FootEvents(min_swing_s=self.params.min_swing_s))
            self._sources_changed()

    def configure_shank(self, side: str, accel_unit: str) -> None:
        """A shank accelerometer times this foot's contacts when it has no insole or foot IMU."""
        if side not in self.shanks:
            self.shanks[side] = ShankSource(side, accel_unit)
            self._sources_changed()

    def configure_pelvis(self, axes: dict[str, str], placement: str, rate_hz: float) -> None:
        """A pelvis/sacrum/trunk accelerometer (source ``imu_pelvis``) times both feet when
        nothing else does (see processors/pelvis.py)."""
        if self.pelvis is None:
            self.pelvis = PelvisSource(axes, placement, rate_hz, self.params.min_stance_s)
            self._sources_changed()

    def configure_keypoints(self, layout: KeypointLayout | None) -> None:
        if layout is None:
            self.camera = None
        elif self.camera is None:
            self.camera = CameraSource(layout, self.params.min_stance_s, self.params.min_swing_s)
        else:
            self.camera.layout = layout
        self._sources_changed()

    @property
    def pelvis_placement(self) -> str | None:
        """pelvis, sacrum or trunk, from the meta."""
        return self.pelvis.placement if self.pelvis is not None else None

    def _sources(self) -> dict[str, Source]:
        out: dict[str, Source] = {f"insole_{s}": v for s, v in self.insoles.items()}
        out.update({f"imu_foot_{s}": v for s, v in self.imus.items()})
        out.update({f"imu_shank_{s}": v for s, v in self.shanks.items()})
        if self.pelvis is not None:
            out["imu_pelvis"] = self.pelvis
        if self.camera is not None:
            out["keypoints"] = self.camera
        return out

    def _sources_changed(self) -> None:
        """Which sources may time each foot, in priority order (insole, foot IMU, shank, camera,
        pelvis), and how each stream is processed: per frame when it times a foot, in batches
        when it mostly supports (a foot IMU beside an insole, the camera)."""
        cands: dict[str, list[tuple[str, str]]] = {}
        for foot in SIDES:
            c = []
            if foot in self.insoles:
                c.append(("insole", f"insole_{foot}"))
            if foot in self.imus:
                c.append(("imu", f"imu_foot_{foot}"))
            if foot in self.shanks:
                c.append(("imu_shank", f"imu_shank_{foot}"))
            if self.camera is not None:
                c.append(("camera", "keypoints"))
            if self.pelvis is not None:
                c.append(("imu_pelvis", "imu_pelvis"))
            cands[foot] = c
        self.timing.set_candidates(cands)
        lazy = {f"imu_foot_{s}" for s in self.imus} | ({"keypoints"} if self.camera is not None else set())
        sources = self._sources()
        for name in sources:
            self._streams.setdefault(name, _Stream())
        for name, stream in self._streams.items():
            src = sources.get(name)
            stream.handler = self._handler(name, src) if src is not None and name not in lazy else None
            stream.lazy = name in lazy
            stream.now_until = -math.inf

    def _handler(self, name: str, src: Source) -> Callable[[np.ndarray, np.ndarray], None]:
        """The per-frame path of a timing source: feed it, pass on its events (bound once: on an
        insole's path an attribute lookup costs as much as the kernel's work)."""
        feed, events, kind = src.feed, self._events, _kind(name)

        def frame(times_ns: np.ndarray, data: np.ndarray) -> None:
            for foot, rows in feed(times_ns, data):
                events(foot, rows, kind)
        return frame

    def active(self, foot: str) -> str | None:
        """The kind of source timing this foot now (see processors/timing.py)."""
        return self.timing.active(foot, self._clock, self._newest)

    # --------------------------------------------------------------- input
    def push(self, source: str, times_ns: np.ndarray, data: np.ndarray) -> list[Record]:
        """Feed one block of samples of ``source``; return the records it completed.

        The source that times a foot's events is processed at once, so an IC is seen in the
        frame that holds it. Supporting sources (a foot IMU beside an insole, the camera) are
        queued raw and processed in one batch when an event needs them or their queue spans
        ``LAZY_SPAN_NS``: the kernels then run a few times a second instead of per frame,
        with identical results.
        """
        stream = self._streams.get(source)
        if stream is None:
            stream = self._streams[source] = _Stream()
        n = len(times_ns)
        stream.samples += n
        if n == 0:
            return []
        last = float(times_ns[-1])
        if stream.clock is not None:
            last += stream.clock.applied
        if source not in self._clock:
            self._first[source] = last
        self._clock[source] = last
        if last > self._newest:
            self._newest = last
            if last >= self._next_check:  # once a second of data: a timing source gone silent?
                self._next_check = last + 1e9
                self.timing.check_silence(last, self._first, self._clock)
        if stream.handler is not None:
            stream.handler(times_ns, data)
        elif stream.lazy:
            if not stream.times:
                stream.since = last
            stream.times.append(times_ns)
            stream.data.append(data)
            if last - stream.since > LAZY_SPAN_NS or (
                    stream.now if self._newest < stream.now_until else self._times_now(source, stream)):
                self._drain(source, stream)
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
        """Samples received per stream."""
        return {name: s.samples for name, s in self._streams.items()}

    @property
    def warnings(self) -> dict[str, int]:
        """What went wrong, counted: the coordinator's, the timing's and each source's."""
        total = Counter(self._warnings)
        total.update(self.timing.warnings)
        for src in self._sources().values():
            total.update(src.warnings)
        return {k: v for k, v in total.items() if v}

    def _times_now(self, source: str, stream: _Stream) -> bool:
        """Is this (normally batched) stream timing a foot at the moment? (Judged afresh every
        20 ms of data, like :meth:`active`; :meth:`push` reads the cached answer meanwhile.)"""
        if source == "keypoints":
            now = self.active("left") == "camera" or self.active("right") == "camera"
        else:
            now = self.active("left" if source.endswith("left") else "right") == "imu"
        stream.now = now
        stream.now_until = self._newest + 20e6
        return now

    def _drain(self, source: str, stream: _Stream) -> None:
        """Process a batched stream's queued frames in one go."""
        if not stream.times:
            return
        if len(stream.times) == 1:
            t, d = stream.times[0], stream.data[0]
        else:
            t, d = np.concatenate(stream.times), np.concatenate(stream.data)
        stream.times, stream.data = [], []
        if source == "keypoints" and self.camera is not None:
            self._dispatch(self.camera.feed(t, d), "camera")
        elif source.startswith("imu_foot_"):
            self._feed_imu(source, t, d)

    def _feed_imu(self, source: str, times_ns: np.ndarray, data: np.ndarray) -> None:
        side = "left" if source.endswith("_left") else "right"
        imu = self.imus[side]
        beside_insole = side in self.insoles
        if beside_insole and imu.clock is None:  # a supporting IMU: put its samples on the insole's clock
            imu.clock = self._stream_clock(source)
        events = imu.feed(times_ns, data)
        for foot, rows in events:
            self.alignment.imu_impacts(foot, [(float(r[1]), imu.shift_ns) for r in rows if r[0] == EV_IC],
                                       beside_insole)
        self._dispatch(events, "imu")

    def _stream_clock(self, source: str) -> ClockOffset:
        clock = self.alignment.clock_of(source)
        self._streams.setdefault(source, _Stream()).clock = clock
        return clock

    def _dispatch(self, events: Events, kind: str) -> None:
        for foot, rows in events:
            self._events(foot, rows, kind)

    def _events(self, foot: str, rows: np.ndarray, kind: str) -> None:
        if self.active(foot) != kind:
            return  # another source times this foot; these events only serve clock matching
        if kind == "insole":
            for row in rows:
                if row[0] == EV_IC:
                    self.alignment.insole_ic(foot, float(row[2]))
        self._pending += self.timing.accept(foot, rows, kind)

    # ------------------------------------------------------------- fusion
    def _caught_up(self, source: str, t_ns: float, event_source_clock: float) -> bool:
        """A supporting source is ready when it has data past ``t_ns``, or has fallen more
        than the reorder window behind the event source (then it is left out)."""
        clock = self._clock.get(source)
        if clock is not None and clock >= t_ns:
            return True
        return event_source_clock >= t_ns + self.params.reorder_window_s * 1e9

    def _finalize(self) -> list[Record]:
        out: list[Record] = []
        self._waiting = None
        while self._pending:
            pend = self._pending[0]
            timing_stream = source_name(pend.source, pend.foot)
            ev_clock = self._clock.get(timing_stream, -math.inf)
            # a landing (the haptic cue's trigger) needs only what precedes IC: the foot's descent
            # in the IMU and the hips' fall in the last camera frames; a stance needs data to TO
            landing = pend.kind == "landing"
            need_kp = pend.ic_ns - CAMERA_LEAD_NS if landing else pend.to_ns
            need_imu = pend.ic_ns if landing else pend.to_ns + 40e6
            waiting: dict[str, float] = {}
            if self.camera is not None and pend.source != "camera" and \
                    not self._caught_up("keypoints", need_kp, ev_clock):
                waiting["keypoints"] = need_kp
            imu_src = f"imu_foot_{pend.foot}"
            if pend.foot in self.imus and pend.source != "imu" and not self._caught_up(imu_src, need_imu, ev_clock):
                waiting[imu_src] = need_imu
            if waiting:
                # nothing changes until one of these reaches the time it is needed to, or the timing
                # source passes the earliest of those by the reorder window
                waiting[timing_stream] = min(waiting.values()) + self.params.reorder_window_s * 1e9
                self._waiting = waiting
                break
            # readiness is judged on clocks; process the queued samples this record reads only now
            # (the other foot's IMU waits for its own records)
            for source in ("keypoints", imu_src):
                stream = self._streams.get(source)
                if stream is not None and stream.times:
                    self._drain(source, stream)
            self._pending.pop(0)
            out.append(self._landing_record(pend) if landing else self._stance_record(pend))
        return out

    def _kp_window(self, start: float, end: float) -> tuple[np.ndarray, ...] | None:
        return self.camera.window(start, end) if self.camera is not None else None

    def _imu_window(self, foot: str, start: float, end: float) -> tuple[np.ndarray, np.ndarray] | None:
        imu = self.imus.get(foot)
        return imu.ring.window(start, end) if imu is not None else None

    def _landing_record(self, pend: Pending) -> LandingRecord:
        p = self.params
        foot, ic = pend.foot, pend.ic_ns
        # the timing source's IC as it is: refining it with the IMU impact waits for the stance
        # record (the impact may not be in yet, and a record must not depend on arrival timing)
        step = self.rolling.landed(ic, foot)
        rec = landing_record(self.athlete, foot, ic, step, pend.source,
                             imu=self._imu_window(foot, ic - 60e6, ic),
                             keypoints=self._kp_window(ic - 120e6, ic + 1),
                             other_to_ns=self.rolling.last_to.get(_other(foot)),
                             forced_landing_ratio=p.forced_landing_ratio,
                             default_oscillation_m=p.default_oscillation_m)
        self._landing[foot] = rec
        return rec

    def _refine_ic(self, pend: Pending) -> tuple[float, str]:
        """By toe-off a foot IMU beside the insole has seen the impact: its finer IC (``insole+imu``)."""
        if pend.source != "insole" or pend.foot not in self.imus:
            return pend.ic_ns, pend.source
        self._stream_clock(f"imu_foot_{pend.foot}")
        period = self.insoles[pend.foot].period_ns(self._clock.get(f"insole_{pend.foot}", 0.0))
        ic, refined = self.alignment.refine(pend.foot, pend.ic_ns, period)
        return (ic, "insole+imu") if refined else (ic, pend.source)

    def _insole_stance(self, foot: str, ic: float, to: float) -> InsoleStance | None:
        src = self.insoles.get(foot)
        if src is None:
            return None
        t, raw = src.ring.window(ic - 20e6, to + 20e6)
        if len(t) < 3:
            self._warnings["insole_samples_missing"] += 1
            return None
        p = self.params
        return InsoleStance(t, src.layout.newtons(raw), src.layout, src.cell_map(), self.bw,
                            p.on_bw, p.heel_contact_bw)

    def _stance_record(self, pend: Pending) -> Record:
        p = self.params
        foot, to = pend.foot, pend.to_ns
        ic, event_source = self._refine_ic(pend)
        other = _other(foot)
        landing = self._landing.get(foot)
        if landing is not None and abs(landing["ic_ns"] - pend.ic_ns) > 30e6:
            landing = None  # not this contact's landing
        r = self.rolling
        prev = r.last_ic.get(foot)
        start = stride_start(ic, prev)
        before = Before(prev_ic_same=prev, ic_other=r.last_ic.get(other), to_other=r.last_to.get(other),
                        cadence_spm=r.cadence_spm())
        rec, sources = measure_stance(
            self.athlete, foot, ic, to, before, insole=self._insole_stance(foot, ic, to),
            shank_impact=pend.impact, imu=self._imu_window(foot, ic, ic + 40e6),
            keypoints=self._kp_window((start if start is not None else ic) - 20e6, to + 20e6),
            stride_start=start, leg_length_m=p.leg_length_m, landing=landing)
        symmetry = r.symmetry(foot, rec)
        r.stood(foot, ic, to)
        return finish_stance(rec, sources, symmetry, event_source, self.pelvis_placement, p.score_weights)

    def clocks(self) -> dict[str, dict[str, float | int | None]]:
        """Estimated offset (added to the source's timestamps) and jitter per aligned source."""
        return self.alignment.report()

    def cadence_spm(self) -> float | None:
        """Rolling median cadence over the last N steps (alternating feet only)."""
        return self.rolling.cadence_spm()


def _other(foot: str) -> str:
    return "right" if foot == "left" else "left"


def _kind(stream: str) -> str:
    """The kind of timing source a stream is (the inverse of timing.source_name)."""
    if stream == "keypoints":
        return "camera"
    if stream == "imu_pelvis":
        return "imu_pelvis"
    return stream.rsplit("_", 1)[0].replace("imu_foot", "imu")
