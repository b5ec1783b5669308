"""The fusion service: subscribe, decode, route to each athlete's state, fan records to sinks.

``FusionService.handle`` is synchronous and network-free (tests call it
with raw topics and payloads); ``run`` wires it to the broker through the
ingest on the event loop and to the sinks through their bounded queues.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from poserun.processors.athlete import AthleteParams, AthleteState
from poserun.processors.keypoints import KeypointLayout
from poserun.processors.records import record_id
from poserun.services.mqtt import IngestStats
from poserun.services.mqtt_stream import LoopSubscriber
from poserun.services.timebase import AthleteTimebase
from poserun.settings import Settings
from poserun.sinks.base import Record, SinkRunner
from poserun.wire import topics
from poserun.wire.cursor import SourceCursor, Verdict
from poserun.wire.errors import FrameError, Reason, TopicError, WireError
from poserun.wire.frame import Frame, decode
from poserun.wire.meta import GatewayStatus, ImuMeta, InsoleMeta, KeypointMeta, parse_meta
from poserun.wire.streams import StreamKind, source_kind

log = logging.getLogger(__name__)
Key = tuple[str, str, str]  # session, athlete, source


@dataclass
class SourceCounters:
    """Per-source health: what arrived, what was taken, what was refused and why."""

    frames: int = 0
    samples: int = 0
    bytes: int = 0
    late: int = 0
    gaps: int = 0
    aligning: int = 0  # held back while its clock's offset is being found (services/timebase.py)
    rejected: Counter[str] = field(default_factory=Counter)
    last_recv_ns: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"frames": self.frames, "samples": self.samples, "bytes": self.bytes,
                "late": self.late, "gaps": self.gaps, "aligning": self.aligning, "rejected": dict(self.rejected)}


@dataclass(slots=True)
class _Route:
    """What a data topic leads to, looked up once: the hot path then does one dict lookup per frame.
    Dropped whenever meta or a gateway status arrives (channels, cursors may change)."""

    key: Key
    kind: StreamKind
    channels: int
    counters: SourceCounters
    cursor: SourceCursor
    state: AthleteState
    timebase: AthleteTimebase


class FusionService:
    def __init__(self, settings: Settings, sinks: list[SinkRunner] | None = None,
                 session: str | None = None, clock: Callable[[], int] = time.time_ns) -> None:
        """``clock`` stamps ``emitted_ns`` and times the processing latency: the wall clock live,
        the recording's log time offline (``poserun analyze``), so that offline is deterministic."""
        self.settings = settings
        self.clock = clock
        self.sinks = sinks or []
        self.session = session
        self.counters: dict[Key, SourceCounters] = {}
        self.unrouted: Counter[str] = Counter()  # topics/meta/status we could not attribute
        self.meta: dict[Key, Any] = {}
        self.cursors: dict[Key, SourceCursor] = {}
        self.epochs = 0  # athletes restarted on a new clock epoch
        self._epochs: dict[tuple[str, str], int] = {}  # per athlete: its clock epoch (in its records' ids)
        self._unknown: set[tuple[str, str]] = set()  # athletes not in the config (capped)
        self.athletes: dict[tuple[str, str], AthleteState] = {}
        # per athlete: the shifts that put sources on clocks of their own onto its time base
        self.timebases: dict[tuple[str, str], AthleteTimebase] = {}
        self.records_out = 0
        self._logged: Counter[str] = Counter()
        self._channels: dict[Key, int] = {}
        self._lat_counts = [0] * (len(self.LATENCY_BUCKETS) + 1)
        self._lat_sum = 0.0
        self._topics: dict[str, topics.Topic] = {}  # parse cache: topics repeat every frame
        self._routes: dict[str, _Route] = {}
        self._max_frame = settings.processor.max_frame_bytes
        self.ingest_stats: IngestStats | None = None  # set by run()
        # asks a gateway for meta it lacks (set by run(): a publish on the ingest's connection)
        self.request_meta: Callable[[str], object] | None = None
        self.meta_requests = 0
        self._asked: dict[Key, int] = {}  # when each source's meta was last asked for (its frame's arrival)

    # ------------------------------------------------------------ handling
    def handle(self, topic: str, payload: bytes, recv_ns: int | None = None) -> list[Record]:
        """Process one MQTT message; never raises for bad input (it is counted). ``recv_ns``, when
        it arrived (wall clock; a recording's log time), also puts sources on clocks of their own
        onto their athlete's time base (services/timebase.py); without it, none is moved."""
        route = self._routes.get(topic)
        if route is not None:
            try:
                return self._routed(route, payload, recv_ns or time.time_ns(), recv_ns is not None)
            except WireError as exc:
                self._refuse(route.key, exc)
            except Exception:  # a bug must cost one message, not the service
                self.unrouted["internal_error"] += 1
                log.exception("internal error handling %s", topic[:120])
            return []
        t = self._topics.get(topic)
        if t is None:
            try:
                t = topics.parse(topic)
            except TopicError as exc:
                self._refuse(None, exc)
                return []
            if len(self._topics) >= 100_000:  # stray topics must not grow memory without bound
                self._topics.clear()
            self._topics[topic] = t
        if self.session is not None and t.session != self.session:
            return []
        try:
            if t.channel == "data":
                return self._data(topic, t, payload, recv_ns or time.time_ns(), recv_ns is not None)
            if t.channel == "meta":
                self._meta(t, payload)
            elif t.channel == "status":
                self._status(t, payload)
        except WireError as exc:
            key = (t.session, t.athlete, t.source) if t.athlete and t.source else None
            self._refuse(key, exc)
        except Exception:  # a bug must cost one message, not the service
            self.unrouted["internal_error"] += 1
            log.exception("internal error handling %s", topic[:120])
        return []

    def _refuse(self, key: Key | None, exc: WireError) -> None:
        reason = exc.reason.value
        if key is not None:
            self._counter(key).rejected[reason] += 1
        else:
            self.unrouted[reason] += 1
        n = self._logged[reason] = self._logged[reason] + 1
        if n <= 5 or n % 1000 == 0:
            where = "/".join(key) if key else "-"
            log.warning("rejected (%s, %d so far) %s: %s", reason, n, where, exc.detail)

    def _counter(self, key: Key) -> SourceCounters:
        c = self.counters.get(key)
        if c is None:
            c = self.counters[key] = SourceCounters()
        return c

    def _meta(self, t: topics.Topic, payload: bytes) -> None:
        assert t.athlete is not None and t.source is not None
        key = (t.session, t.athlete, t.source)
        meta = parse_meta(payload)
        if meta.source != t.source or meta.kind != source_kind(t.source).label:
            raise WireError(Reason.BAD_META, f"meta for {meta.source}/{meta.kind} on topic of {t.source}")
        self.meta[key] = meta
        self._asked.pop(key, None)
        self._channels[key] = len(meta.channels)
        self._routes.clear()
        state = self.athletes.get((t.session, t.athlete))
        if state is not None:
            configure(state, meta)

    def _status(self, t: topics.Topic, payload: bytes) -> None:
        try:
            status = GatewayStatus.model_validate_json(payload)
        except ValueError as exc:
            raise WireError(Reason.BAD_META, f"gateway status: {str(exc)[:160]}") from None
        self._routes.clear()
        if status.state == "online":
            # a gateway that (re)started begins its sequence numbers again, and if its clock began
            # again too (the first frame's time goes back), its athletes begin a new clock epoch;
            # one that only reconnected goes on as before
            listed = set(status.athletes)
            for key, cursor in self.cursors.items():
                if key[0] == t.session and key[1] in listed:
                    cursor.expect_restart()
        log.info("gateway %s/%s is %s", t.session, status.gateway, status.state)

    def _new_epoch(self, session: str, athlete: str, why: str) -> None:
        """Start an athlete's processing again on a new time base: what it held (kernel states,
        recent contacts, clock offsets) belongs to clocks that no longer run."""
        self.timebases.pop((session, athlete), None)
        if self.athletes.pop((session, athlete), None) is not None:
            self.epochs += 1
            self._epochs[(session, athlete)] = self._epochs.get((session, athlete), 0) + 1
            self._routes = {tp: r for tp, r in self._routes.items() if r.key[:2] != (session, athlete)}
            # its other sources begin on the new time base too (those of its gateway restart with it)
            for key in [k for k in self.cursors if k[:2] == (session, athlete)]:
                del self.cursors[key]
            log.info("%s/%s: a new clock epoch (%s)", session, athlete, why)

    def _athlete(self, session: str, athlete: str) -> AthleteState:
        state = self.athletes.get((session, athlete))
        if state is not None:
            return state
        conf = self.settings.athlete(athlete)
        proc = self.settings.processor
        if conf is None and not proc.accept_unknown_athletes:
            raise WireError(Reason.UNKNOWN_ATHLETE, f"{athlete} is not in the config's athletes")
        # the cap holds the athletes nobody configured: a flood of made-up ids never locks out the team
        if conf is None and len(self._unknown) >= proc.max_athletes:
            raise WireError(Reason.TOO_MANY_ATHLETES, f"limit {proc.max_athletes} of unconfigured athletes reached")
        c = proc.contact
        params = AthleteParams(
            body_mass_kg=conf.body_mass_kg if conf else 68.0,
            leg_length_m=conf.leg_length_m if conf else 0.9,
            on_bw=c.on_bw, off_bw=c.off_bw, min_stance_s=c.min_stance_s,
            min_swing_s=c.min_swing_s, heel_contact_bw=proc.heel_contact_bw,
            cadence_window_steps=proc.cadence_window_steps,
            forced_landing_ratio=proc.forced_landing_ratio, reorder_window_s=proc.reorder_window_ms / 1000.0,
            default_oscillation_m=proc.default_oscillation_m, score_weights=proc.score_weights,
        )
        state = self.athletes[(session, athlete)] = AthleteState(athlete, params)
        if conf is None:
            self._unknown.add((session, athlete))
        for (sess, ath, _src), meta in self.meta.items():
            if sess == session and ath == athlete:
                configure(state, meta)
        return state

    def _data(self, topic: str, t: topics.Topic, payload: bytes, recv_ns: int, timed: bool) -> list[Record]:
        """A data frame on a topic without a route yet: check everything, then make one."""
        assert t.athlete is not None and t.source is not None
        key = (t.session, t.athlete, t.source)
        c = self._counter(key)
        c.bytes += len(payload)
        c.last_recv_ns = recv_ns
        expected = self._channels.get(key)  # the cheap checks first: a frame without meta is not decoded
        if expected is None:
            self._ask_meta(key, recv_ns)
            raise FrameError(Reason.NO_META, f"no retained meta for {t.source} yet")
        frame = decode(payload, max_bytes=self._max_frame)
        kind = source_kind(t.source)
        if frame.kind is not kind:
            raise FrameError(Reason.STREAM_MISMATCH, f"{frame.kind.label} frame on the {t.source} topic")
        if frame.channels != expected:
            raise FrameError(Reason.META_MISMATCH, f"{frame.channels} channels, meta says {expected}")
        cursor = self.cursors.get(key)
        if cursor is None:
            cursor = self.cursors[key] = SourceCursor()
        gaps = cursor.gaps
        verdict = cursor.check(frame)
        if verdict is Verdict.LATE:
            c.late += 1
            return []
        if verdict is Verdict.RESTART:
            self._new_epoch(t.session, t.athlete, f"{t.source} began again")
        c.gaps += cursor.gaps - gaps
        state = self._athlete(t.session, t.athlete)
        route = _Route(key, kind, expected, c, cursor, state, self._timebase(t.session, t.athlete))
        if len(self._routes) >= 100_000:
            self._routes.clear()
        self._routes[topic] = route
        return self._accept(route, frame, recv_ns, timed)

    META_REQUEST_INTERVAL_NS = 2_000_000_000

    def _ask_meta(self, key: Key, recv_ns: int) -> None:
        """Ask for a source's missing meta, at most every 2 s per source (docs/protocol.md)."""
        if self.request_meta is None:
            return
        last = self._asked.get(key)
        if last is not None and 0 <= recv_ns - last < self.META_REQUEST_INTERVAL_NS:
            return
        if len(self._asked) >= 100_000:
            self._asked.clear()
        self._asked[key] = recv_ns
        self.meta_requests += 1
        self.request_meta(topics.meta_request_topic(*key))

    def _routed(self, route: _Route, payload: bytes, recv_ns: int, timed: bool) -> list[Record]:
        c = route.counters
        c.bytes += len(payload)
        c.last_recv_ns = recv_ns
        frame = decode(payload, max_bytes=self._max_frame)
        if frame.kind is not route.kind:
            raise FrameError(Reason.STREAM_MISMATCH,
                             f"{frame.kind.label} frame on the {route.key[2]} topic")
        data = frame.data
        if data.shape[1] != route.channels:
            raise FrameError(Reason.META_MISMATCH, f"{data.shape[1]} channels, meta says {route.channels}")
        cursor = route.cursor
        gaps = cursor.gaps
        verdict = cursor.check(frame)
        if verdict is Verdict.LATE:
            c.late += 1
            return []
        if verdict is Verdict.RESTART:
            session, athlete, source = route.key
            self._new_epoch(session, athlete, f"{source} began again")
            route.state = self._athlete(session, athlete)
            route.timebase = self._timebase(session, athlete)
        c.gaps += cursor.gaps - gaps
        return self._accept(route, frame, recv_ns, timed)

    def _timebase(self, session: str, athlete: str) -> AthleteTimebase:
        tb = self.timebases.get((session, athlete))
        if tb is None:
            tb = self.timebases[(session, athlete)] = AthleteTimebase()
        return tb

    def _accept(self, route: _Route, frame: Frame, recv_ns: int, timed: bool) -> list[Record]:
        """Put the frame on its athlete's time base (when its arrival time is known) and process it."""
        c = route.counters
        data = frame.data
        times = frame.times_ns()
        if timed:
            shift = route.timebase.shift(route.key[2], int(times[-1]), recv_ns)
            if shift is None:  # a clock of its own, its offset not yet known
                c.aligning += 1
                return []
            if shift:
                times = times + shift
        c.frames += 1
        c.samples += data.shape[0]
        recs = route.state.push(route.key[2], times, data)
        if recs:
            now = self.clock()
            self._latency(max(0, now - recv_ns) / 1e9)
            session = route.key[0]
            for r in recs:
                r["session"] = session
                r["emitted_ns"] = now
                r["id"] = record_id(session, r["athlete"], r["type"], r["foot"], r["ic_ns"],
                                    self._epochs.get((session, r["athlete"]), 0))
            self.records_out += len(recs)
            for runner in self.sinks:
                for r in recs:
                    runner.offer(r)
        return recs

    # ------------------------------------------------------------- reporting
    LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)

    def _latency(self, seconds: float) -> None:
        counts = self._lat_counts
        for k, bound in enumerate(self.LATENCY_BUCKETS):
            if seconds <= bound:
                counts[k] += 1
        counts[-1] += 1
        self._lat_sum += seconds

    def snapshot(self) -> dict[str, Any]:
        totals: Counter[str] = Counter()
        rejected: Counter[str] = Counter(self.unrouted)
        for c in self.counters.values():
            totals.update({"frames": c.frames, "samples": c.samples, "bytes": c.bytes,
                           "late": c.late, "gaps": c.gaps, "aligning": c.aligning})
            rejected.update(c.rejected)
        return {
            "totals": dict(totals), "rejected": dict(rejected), "records": self.records_out,
            "athletes": len(self.athletes),
            "warnings": {f"{sess}/{ath}": dict(st.warnings) for (sess, ath), st in sorted(self.athletes.items())
                         if st.warnings},
            "clocks": {f"{sess}/{ath}": st.clocks() for (sess, ath), st in sorted(self.athletes.items())
                       if st.clocks()},
            "timebases": {f"{sess}/{ath}": tb.report() for (sess, ath), tb in sorted(self.timebases.items())
                          if tb.report()},
            "sources": {"/".join(k): v.as_dict() for k, v in sorted(self.counters.items())},
            "latency": {"buckets": [[str(b), c] for b, c in zip([*self.LATENCY_BUCKETS, "+Inf"],
                                                                 self._lat_counts, strict=True)],
                        "sum": self._lat_sum},
            "sinks": {r.sink.name: {"written": r.stats.written, "dropped": r.stats.dropped,
                                    "errors": r.stats.errors, "depth": r.depth,
                                    **(r.sink.connection_stats() if hasattr(r.sink, "connection_stats") else {})}
                      for r in self.sinks},
            "ingest": self._ingest_report(),
        }

    def _ingest_report(self) -> dict[str, Any]:
        """The broker connection: messages received, shed when far behind (``overflow``), reconnects."""
        st = self.ingest_stats
        if st is None:
            return {}
        return {"received": st.received, "overflow": st.overflow, "reconnects": st.reconnects,
                "connected": st.connected, "meta_requests": self.meta_requests}

    # ------------------------------------------------------------- running
    def filters(self) -> list[str]:
        return [topics.subscription(self.session, ch) for ch in ("meta", "status", "data")]

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        """Serve until ``stop`` is set; sinks are started and flushed here."""
        from poserun.services.warmup import warm_up

        warm_up(progress=log.info)
        # what start-up made (modules, compiled kernels, settings) lives for good: keep it out of the
        # collector's full passes, which would otherwise pause the loop for tens of milliseconds
        gc.collect()
        gc.freeze()
        for runner in self.sinks:
            await runner.start()
        try:
            sub = LoopSubscriber(self.settings.broker, self.filters(), self.handle, qos=1, role="fusion")
            self.ingest_stats = sub.stats
            self.request_meta = lambda topic: sub.conn.publish(topic, b"", qos=0)
            await sub.run(stop, ready)
        finally:
            for runner in self.sinks:
                await runner.close()


def configure(state: AthleteState, meta: Any) -> None:
    """Hand a source's meta to the processor as plain values (processors/ knows no pydantic)."""
    if isinstance(meta, InsoleMeta):
        state.configure_insole(meta.side, list(meta.cell_regions), list(meta.cell_positions),
                               meta.cell_area_m2, meta.unit)
    elif isinstance(meta, ImuMeta) and meta.placement == "foot" and meta.side and len(meta.channels) >= 6:
        state.configure_imu(meta.side, dict(meta.axes), meta.accel_unit, meta.gyro_unit, meta.rate_hz)
    elif isinstance(meta, ImuMeta) and meta.placement == "shank" and meta.side:
        state.configure_shank(meta.side, meta.accel_unit)
    elif isinstance(meta, ImuMeta) and meta.placement in ("pelvis", "sacrum", "trunk"):
        state.configure_pelvis(dict(meta.axes), meta.placement, meta.rate_hz)
    elif isinstance(meta, KeypointMeta):
        cam = meta.camera
        state.configure_keypoints(KeypointLayout.from_meta(
            list(meta.names), meta.dims, meta.unit, cam.scale_m_per_px, cam.origin_px, cam.y_axis, cam.view,
            cam.up_axis, cam.forward_axis))
