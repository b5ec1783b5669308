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
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from poserun.processors.athlete import AthleteParams, AthleteState
from poserun.processors.keypoints import KeypointLayout
from poserun.processors.records import coach_record_id, record_id
from poserun.services.bounds import MAX_META_BYTES, MAX_STATUS_BYTES, AthleteTable, Entry, FrameLimits
from poserun.services.jetstream import partition_of
from poserun.services.mqtt import IngestStats
from poserun.services.mqtt_stream import LoopSubscriber
from poserun.services.timebase import AthleteTimebase
from poserun.settings import Settings
from poserun.sinks.base import Record, SinkRunner
from poserun.wire import bundle as wire_bundle
from poserun.wire import topics
from poserun.wire.coach import parse_coach
from poserun.wire.cursor import SourceCursor, Verdict
from poserun.wire.errors import FrameError, Reason, TopicError, WireError
from poserun.wire.frame import Frame, decode
from poserun.wire.meta import GatewayStatus, ImuMeta, InsoleMeta, KeypointMeta, parse_meta
from poserun.wire.streams import SOURCES, StreamKind, source_kind

log = logging.getLogger(__name__)
Key = tuple[str, str, str]  # session, athlete, source
_KIND_LABEL = {src: kind.label for src, kind in SOURCES.items()}


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
    Dropped when its source's meta arrives (channels, limits may change) or its athlete is evicted."""

    key: Key
    kind: StreamKind
    channels: int
    counters: SourceCounters
    cursor: SourceCursor
    state: AthleteState
    timebase: AthleteTimebase
    limits: FrameLimits
    entry: Entry


class FusionService:
    #: An athlete (or a stray) silent this long loses its state (docs/reliability.md: longer than
    #: any rest between a session's reps, so only the gone and the made-up are evicted).
    IDLE_S = 600.0
    #: With no session given, configured ids may appear under this many sessions at once.
    MAX_SESSIONS = 16
    #: Meta requests for athletes nobody configured, at most this many per second in all.
    STRANGER_META_REQUESTS_PER_S = 20

    def __init__(self, settings: Settings, sinks: list[SinkRunner] | None = None,
                 session: str | None = None, clock: Callable[[], int] = time.time_ns,
                 idle_s: float | None = None, partition: tuple[int, int] | None = None) -> None:
        """``clock`` stamps ``emitted_ns`` and times the processing latency: the wall clock live,
        the recording's log time offline (``poserun analyze``), so that offline is deterministic.
        ``idle_s``: how long a silent athlete keeps its state (default ``IDLE_S``). ``partition``
        (index, count): serve only the athletes of that partition (services/fusion_pool.py); the
        others' messages are skipped uncounted as errors, counted as ``elsewhere``."""
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
        proc = settings.processor
        configured = max(1, len(settings.athletes)) * (1 if session is not None else self.MAX_SESSIONS)
        # who may hold state (every per-athlete and per-source table below is keyed by its entries)
        self.table = AthleteTable(int((idle_s if idle_s is not None else self.IDLE_S) * 1e9), configured,
                                  proc.max_athletes, self._evict)
        self._limits: dict[Key, FrameLimits] = {}  # per source, from its meta
        self._retired: dict[str, Counter[str]] = {}  # per stream kind, the counters of evicted sources
        self._retired_rejected: Counter[str] = Counter()
        self._ticks = 0  # messages since the last sweep of idle athletes
        self._swept_ns = 0  # when it was (arrival time)
        self._stranger_asks = (0, 0)  # (second, meta requests for unconfigured athletes in it)
        self._configured = frozenset(a.id for a in settings.athletes)
        self._sub: LoopSubscriber | None = None  # the ingest, once run() has made it
        self._kept: OrderedDict[tuple[str, str], None] = OrderedDict()  # evicted configured athletes with meta
        self.athletes: dict[tuple[str, str], AthleteState] = {}
        # per athlete: the shifts that put sources on clocks of their own onto its time base
        self.timebases: dict[tuple[str, str], AthleteTimebase] = {}
        self.records_out = 0
        self.measure_latency = True  # (off while a JetStream worker rebuilds state silently: nothing is emitted)
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
        self.bundles = 0  # bundle messages received, refused ones too (their frames are counted per source)
        self._bundle_prefix: dict[str, str] = {}  # bundle topic -> its athlete's data topic prefix
        self._asked: dict[Key, int] = {}  # when each source's meta was last asked for (its frame's arrival)
        if partition is not None and not (partition[1] >= 1 and 0 <= partition[0] < partition[1]):
            raise ValueError(f"partition {partition[0]} of {partition[1]}: want 0 <= index < count")
        self.partition = partition
        self.elsewhere = 0  # messages of other partitions' athletes, skipped
        self._mine: dict[tuple[str, str], bool] = {}  # (session, athlete) -> in this partition
        self._reps: OrderedDict[tuple[str, str], tuple[int, bool]] = OrderedDict()  # (last rep number, running)
        self.coach_records = 0  # coach actions emitted as records
        # per athlete, the ids of its last coach actions: QoS 1 may deliver one twice (a resend after a
        # reconnect), and a buzz, tag or rep must happen once
        self._coach_seen: OrderedDict[tuple[str, str], deque[str]] = OrderedDict()
        self.coach_duplicates = 0

    # ------------------------------------------------------------ handling
    def handle(self, topic: str, payload: bytes, recv_ns: int | None = None) -> list[Record]:
        """Process one MQTT message; never raises for bad input (it is counted). ``recv_ns``, when
        it arrived (wall clock; a recording's log time), also puts sources on clocks of their own
        onto their athlete's time base (services/timebase.py); without it, none is moved. A bundle's
        frames are each taken as if they came on their own source's topic."""
        return self._handle(topic, payload, recv_ns)

    def _handle(self, topic: str, payload: bytes, recv_ns: int | None) -> list[Record]:
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
        prefix = self._bundle_prefix.get(topic)
        if prefix is not None:
            try:
                return self._bundle(prefix, payload, recv_ns)
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
            if len(self._topics) >= self.TOPIC_CACHE:  # stray topics must not grow memory (amortised O(1))
                self._topics.clear()
            self._topics[topic] = t
        if self.session is not None and t.session != self.session:
            return []
        if self.partition is not None and t.athlete is not None and not self.serves(t.session, t.athlete):
            self.elsewhere += 1
            return []
        now = recv_ns or time.time_ns()
        self._tick(now)
        try:
            if t.channel == "data":
                if t.source == topics.BUNDLE:
                    if len(self._bundle_prefix) >= self.TOPIC_CACHE:
                        self._bundle_prefix.clear()
                    prefix = self._bundle_prefix[topic] = topic[: -len(topics.BUNDLE)]
                    return self._bundle(prefix, payload, recv_ns)
                return self._data(topic, t, payload, now, recv_ns is not None)
            if t.channel == "meta":
                self._meta(t, payload, now)
            elif t.channel == "status":
                self._status(t, payload)
            elif t.channel == "coach":
                return self._coach(t, payload, now)
        except WireError as exc:
            key = (t.session, t.athlete, t.source) if t.athlete and t.source else None
            self._refuse(key, exc)
        except Exception:  # a bug must cost one message, not the service
            self.unrouted["internal_error"] += 1
            log.exception("internal error handling %s", topic[:120])
        return []

    def _coach(self, t: topics.Topic, payload: bytes, now: int) -> list[Record]:
        """A coach action from the board (poserun/wire/coach.py) as a ``coach`` record, emitted at once,
        so in order with the athlete's other records; the same admission as data (a configured athlete,
        or a stranger when accepted). A rep that starts gets the athlete's next rep number (per
        session); the stop that ends it carries the same number."""
        assert t.athlete is not None
        cmd = parse_coach(payload)
        if t.athlete not in self._configured and self.table.get((t.session, t.athlete)) is None:
            raise WireError(Reason.UNKNOWN_ATHLETE, f"coach action for {t.athlete}: neither configured nor seen")
        key = (t.session, t.athlete)
        rid = coach_record_id(t.session, t.athlete, cmd.action, cmd.t_ns)
        seen = self._coach_seen.pop(key, None) or deque(maxlen=32)
        self._coach_seen[key] = seen  # (most recent last: the oldest goes first when full)
        if len(self._coach_seen) > self.TOPIC_CACHE:
            self._coach_seen.popitem(last=False)
        if rid in seen:
            self.coach_duplicates += 1
            return []
        seen.append(rid)
        self._admit(t.session, t.athlete, now)
        rec: dict[str, Any] = {"type": "coach", "athlete": t.athlete, "action": cmd.action, "t_ns": cmd.t_ns,
                               "by": cmd.by, **cmd.fields()}
        if cmd.action == "rep":
            n, running = self._reps.pop(key, (0, False))
            if cmd.on:
                n, running = n + 1, True
                rec["rep"] = n
            elif running:
                rec["rep"], running = n, False
            self._reps[key] = (n, running)  # (most recent last: the oldest goes first when full)
            if len(self._reps) > self.TOPIC_CACHE:
                self._reps.popitem(last=False)
        rec["session"] = t.session
        rec["emitted_ns"] = self.clock()
        rec["id"] = rid
        self.coach_records += 1
        self.records_out += 1
        for runner in self.sinks:
            runner.offer(rec)
        return [rec]

    def _bundle(self, prefix: str, payload: bytes, recv_ns: int | None) -> list[Record]:
        """A bundle's frames, each handled as if it came on its own source's topic (every check, counter
        and refusal of that source applies); a bundle whose structure does not add up is refused whole."""
        self.bundles += 1
        try:
            if len(payload) > self._max_frame:
                raise FrameError(Reason.OVERSIZED, f"bundle of {len(payload)} bytes > limit {self._max_frame}")
            entries = wire_bundle.unpack(payload)
        except WireError as exc:  # (counted with the refusals of no source; the log names the athlete)
            self._refuse(None, WireError(exc.reason, f"{prefix}{topics.BUNDLE}: {exc.detail}"))
            return []
        recs: list[Record] = []
        for source, frame in entries:
            recs += self._handle(prefix + source, frame, recv_ns)
        return recs

    def _refuse(self, key: Key | None, exc: WireError) -> None:
        reason = exc.reason.value
        c = self.counters.get(key) if key is not None else None  # (only a source in the table has counters)
        if c is not None:
            c.rejected[reason] += 1
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

    def _admit(self, session: str, athlete: str, now_ns: int) -> Entry:
        """The athlete's entry in the table, or a refusal (counted once, not per source): not in the
        config (with ``accept_unknown_athletes: false``) or no room for another stranger."""
        e = self.table.get((session, athlete))
        if e is not None:
            if now_ns - e.seen_ns > 1_000_000_000:
                self.table.touch(e, now_ns)
            return e
        configured = athlete in self._configured
        proc = self.settings.processor
        if not configured and not proc.accept_unknown_athletes:
            raise WireError(Reason.UNKNOWN_ATHLETE, f"{athlete} is not in the config's athletes")
        e = self.table.admit((session, athlete), configured, now_ns)
        if e is None:  # its lane holds active athletes only: the team is never pushed out by strangers
            lane, what = ("configured", "configured athletes' sessions") if configured else \
                ("unknown", "unconfigured athletes")
            raise WireError(Reason.TOO_MANY_ATHLETES, f"limit {self.table.caps[lane]} of {what} reached")
        return e

    def admits(self, prefix: str) -> bool:
        """The ingest's check before it queues a message of ``poserun/v1/{session}/{athlete}``:
        ``False`` (counted) for an athlete this service refuses anyway, so a flood of them costs
        no memory; another session's messages are ignored, as :meth:`handle` does."""
        parts = prefix.split("/")
        if len(parts) != 4 or parts[0] != topics.ROOT or parts[1] != topics.PROTOCOL:
            return True  # (handle() says what is wrong with it)
        if self.session is not None and parts[2] != self.session:
            return False
        athlete = parts[3]
        if self.partition is not None and not self.serves(parts[2], athlete):
            self.elsewhere += 1
            return False
        if athlete == topics.GATEWAY or athlete in self._configured or self.settings.processor.accept_unknown_athletes:
            return True
        self._refuse(None, WireError(Reason.UNKNOWN_ATHLETE, f"{athlete[:64]} is not in the config's athletes"))
        return False

    def serves(self, session: str, athlete: str) -> bool:
        """Whether this service's partition holds the athlete (every one when not partitioned; gateway
        status goes to every partition)."""
        if self.partition is None or athlete == topics.GATEWAY:
            return True
        key = (session, athlete)
        mine = self._mine.get(key)
        if mine is None:
            if len(self._mine) >= self.TOPIC_CACHE:  # (bounded: made-up ids must not grow memory)
                self._mine.clear()
            mine = self._mine[key] = partition_of(session, athlete, self.partition[1]) == self.partition[0]
        return mine

    def _tick(self, now_ns: int) -> None:
        """Sweep idle athletes every second of arrival time or 1024 messages (amortised: a few each)."""
        self._ticks += 1
        if now_ns - self._swept_ns >= 1_000_000_000 or self._ticks >= 1024:
            self._ticks = 0
            self._swept_ns = now_ns
            self.table.sweep(now_ns)

    def _source(self, e: Entry, key: Key) -> SourceCounters:
        e.sources.add(key[2])
        return self._counter(key)

    def _evict(self, e: Entry) -> None:
        """Forget an athlete the table let go: its sources' state, counters (kept in the totals),
        routes; its meta too, unless configured (then kept for as many athletes as their lane holds:
        a gateway that does not answer meta requests goes on after a long rest)."""
        session, athlete = e.key
        keep_meta = e.configured
        if keep_meta:
            self._kept[e.key] = None
            self._kept.move_to_end(e.key)
            while len(self._kept) > self.table.caps["configured"]:
                old, _ = self._kept.popitem(last=False)
                if self.table.get(old) is None:
                    for src in SOURCES:
                        key = (*old, src)
                        self.meta.pop(key, None)
                        self._channels.pop(key, None)
                        self._limits.pop(key, None)
        for src in e.sources:
            key = (session, athlete, src)
            c = self.counters.pop(key, None)
            if c is not None:
                self._retire(src, c)
            self.cursors.pop(key, None)
            self._asked.pop(key, None)
            self._routes.pop(topics.data_topic(session, athlete, src), None)
            if not keep_meta:
                self.meta.pop(key, None)
                self._channels.pop(key, None)
                self._limits.pop(key, None)
        self.timebases.pop(e.key, None)
        if self.athletes.pop(e.key, None) is not None:
            # its next state is a new clock epoch: a gateway rebooted meanwhile never reuses record ids
            self._epochs[e.key] = self._epochs.pop(e.key, 0) + 1
            while len(self._epochs) > 4 * (self.table.caps["configured"] + self.table.caps["unknown"]):
                self._epochs.pop(next(iter(self._epochs)))
        elif not e.configured:
            self._epochs.pop(e.key, None)

    def _retire(self, source: str, c: SourceCounters) -> None:
        agg = self._retired.setdefault(SOURCES[source].label, Counter())
        agg.update({"frames": c.frames, "samples": c.samples, "bytes": c.bytes, "late": c.late, "gaps": c.gaps,
                    "aligning": c.aligning})
        self._retired_rejected.update(c.rejected)

    def _meta(self, t: topics.Topic, payload: bytes, now: int) -> None:
        assert t.athlete is not None and t.source is not None
        key = (t.session, t.athlete, t.source)
        if len(payload) > MAX_META_BYTES:
            raise WireError(Reason.OVERSIZED, f"meta of {len(payload)} bytes > {MAX_META_BYTES}")
        e = self._admit(t.session, t.athlete, now)
        meta = parse_meta(payload)
        if meta.source != t.source or meta.kind != source_kind(t.source).label:
            raise WireError(Reason.BAD_META, f"meta for {meta.source}/{meta.kind} on topic of {t.source}")
        if not self.table.prove(e, now):
            raise WireError(Reason.TOO_MANY_ATHLETES, f"limit {self.table.caps['unknown']} of unconfigured athletes "
                            "reached")
        self._source(e, key)
        self.meta[key] = meta
        self._asked.pop(key, None)
        self._channels[key] = len(meta.channels)
        self._limits[key] = FrameLimits.of(meta.rate_hz, len(meta.channels), self._max_frame)
        self._routes.pop(topics.data_topic(*key), None)  # its channels or limits may have changed
        state = self.athletes.get((t.session, t.athlete))
        if state is not None:
            configure(state, meta)

    def _status(self, t: topics.Topic, payload: bytes) -> None:
        if len(payload) > MAX_STATUS_BYTES:
            raise WireError(Reason.OVERSIZED, f"gateway status of {len(payload)} bytes > {MAX_STATUS_BYTES}")
        try:
            status = GatewayStatus.model_validate_json(payload)
        except ValueError as exc:
            raise WireError(Reason.BAD_META, f"gateway status: {str(exc)[:160]}") from None
        if status.state == "online":
            # a gateway that (re)started begins its sequence numbers again, and if its clock began
            # again too (the first frame's time goes back), its athletes begin a new clock epoch;
            # one that only reconnected goes on as before (the routes hold the same cursors)
            for cursor in self._cursors_of(t.session, status.athletes):
                cursor.expect_restart()
        log.info("gateway %s/%s is %s", t.session, status.gateway[:64], status.state)

    def _cursors_of(self, session: str, athletes: Iterable[str]) -> list[SourceCursor]:
        out = []
        for athlete in set(athletes):
            e = self.table.get((session, athlete))
            for src in e.sources if e is not None else ():
                cursor = self.cursors.get((session, athlete, src))
                if cursor is not None:
                    out.append(cursor)
        return out

    def _new_epoch(self, session: str, athlete: str, why: str) -> None:
        """Start an athlete's processing again on a new time base: what it held (kernel states,
        recent contacts, clock offsets) belongs to clocks that no longer run."""
        self.timebases.pop((session, athlete), None)
        if self.athletes.pop((session, athlete), None) is not None:
            self.epochs += 1
            self._epochs[(session, athlete)] = self._epochs.get((session, athlete), 0) + 1
            # its other sources begin on the new time base too (those of its gateway restart with it)
            for src in SOURCES:
                self._routes.pop(topics.data_topic(session, athlete, src), None)
                self.cursors.pop((session, athlete, src), None)
            log.info("%s/%s: a new clock epoch (%s)", session, athlete, why)

    def _athlete(self, session: str, athlete: str) -> AthleteState:
        state = self.athletes.get((session, athlete))
        if state is not None:
            return state
        conf = self.settings.athlete(athlete)  # (admitted already: _admit)
        proc = self.settings.processor
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
        for src in SOURCES:
            meta = self.meta.get((session, athlete, src))
            if meta is not None:
                configure(state, meta)
        return state

    def _data(self, topic: str, t: topics.Topic, payload: bytes, recv_ns: int, timed: bool) -> list[Record]:
        """A data frame on a topic without a route yet: check everything, then make one."""
        assert t.athlete is not None and t.source is not None
        key = (t.session, t.athlete, t.source)
        e = self._admit(t.session, t.athlete, recv_ns)  # the cheap checks first: who, then meta and size
        c = self._source(e, key)
        c.bytes += len(payload)
        c.last_recv_ns = recv_ns
        expected = self._channels.get(key)
        if expected is None:  # a frame without meta is not decoded
            self._ask_meta(key, recv_ns, stranger=not e.configured)
            raise FrameError(Reason.NO_META, f"no retained meta for {t.source} yet")
        limits = self._limits[key]
        limits.check(payload)
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
            self.cursors[key] = cursor  # (the new epoch dropped the cursors: this one goes on, on the new clock)
        c.gaps += cursor.gaps - gaps
        if not self.table.prove(e, recv_ns):
            raise WireError(Reason.TOO_MANY_ATHLETES, f"limit {self.table.caps['unknown']} of unconfigured athletes "
                            "reached")
        state = self._athlete(t.session, t.athlete)
        route = _Route(key, kind, expected, c, cursor, state, self._timebase(t.session, t.athlete), limits, e)
        self._routes[topic] = route  # (bounded: one per source of an athlete in the table)
        return self._accept(route, frame, recv_ns, timed)

    META_REQUEST_INTERVAL_NS = 2_000_000_000
    TOPIC_CACHE = 4096  # parsed topics kept (the routed ones need none)

    def _may_ask_stranger(self, recv_ns: int) -> bool:
        """At most ``STRANGER_META_REQUESTS_PER_S`` meta requests a second for unconfigured athletes:
        a flood of made-up ids must not become a flood of requests."""
        second = recv_ns // 1_000_000_000
        last, n = self._stranger_asks
        n = n + 1 if second == last else 1
        self._stranger_asks = (second, n)
        return n <= self.STRANGER_META_REQUESTS_PER_S

    def _ask_meta(self, key: Key, recv_ns: int, stranger: bool = False) -> None:
        """Ask for a source's missing meta, at most every 2 s per source (docs/protocol.md), and
        for strangers within their budget a second (spent only on requests sent)."""
        if self.request_meta is None:
            return
        last = self._asked.get(key)
        if last is not None and 0 <= recv_ns - last < self.META_REQUEST_INTERVAL_NS:
            return
        if stranger and not self._may_ask_stranger(recv_ns):
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
        e = route.entry
        if recv_ns - e.seen_ns > 1_000_000_000:
            self.table.touch(e, recv_ns)
        self._tick(recv_ns)
        route.limits.check(payload)
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
            self.cursors[route.key] = cursor  # (this source goes on, on the new clock)
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
        source = route.key[2]
        held: list[tuple[np.ndarray, np.ndarray]] = []
        if timed:
            tb = route.timebase
            shift = tb.shift(source, int(times[0]), int(times[-1]), recv_ns)
            if shift is None:  # a clock of its own, its offset not yet known: the frame waits
                c.aligning += 1
                tb.hold(source, times, data)
                return []
            held = tb.release(source)
            if shift:
                times = times + shift
                held = [(t + shift, d) for t, d in held]
        recs: list[Record] = []
        for t, d in held:  # frames that waited while the offset was found, in order
            c.frames += 1
            c.samples += d.shape[0]
            recs += route.state.push(source, t, d)
        c.frames += 1
        c.samples += data.shape[0]
        recs += route.state.push(source, times, data)
        if recs:
            now = self.clock()
            if self.measure_latency:
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

    _FIELDS = ("frames", "samples", "bytes", "late", "gaps", "aligning")

    def snapshot(self) -> dict[str, Any]:
        """The counters: totals and per stream kind (evicted sources included), per source for the
        athletes that proved themselves (strays only in the totals: the cost stays bounded)."""
        sums: dict[str, list[int]] = {k: [v[f] for f in self._FIELDS] for k, v in self._retired.items()}
        rejected: Counter[str] = Counter(self.unrouted)
        rejected.update(self._retired_rejected)
        stray = self.table.lanes["stray"]
        listed = []
        for key, c in list(self.counters.items()):  # (a copy: safe even off the loop)
            kind = _KIND_LABEL[key[2]]
            agg = sums.get(kind)
            if agg is None:
                agg = sums[kind] = [0] * len(self._FIELDS)
            agg[0] += c.frames
            agg[1] += c.samples
            agg[2] += c.bytes
            agg[3] += c.late
            agg[4] += c.gaps
            agg[5] += c.aligning
            if c.rejected:
                rejected.update(c.rejected)
            if key[:2] not in stray:
                listed.append((key, c))
        kinds = {k: dict(zip(self._FIELDS, v, strict=True)) for k, v in sorted(sums.items())}
        totals = {f: sum(v[n] for v in sums.values()) for n, f in enumerate(self._FIELDS)} if sums else {}
        sources = {"/".join(k): c.as_dict() for k, c in sorted(listed, key=lambda kc: kc[0])}
        athletes = sorted(list(self.athletes.items()))
        return {
            "totals": totals, "rejected": dict(rejected),
            "records": self.records_out, "athletes": len(athletes), "kinds": kinds, "bundles": self.bundles,
            "tables": self.table.report(),
            "warnings": {f"{sess}/{ath}": dict(st.warnings) for (sess, ath), st in athletes if st.warnings},
            "clocks": {f"{sess}/{ath}": st.clocks() for (sess, ath), st in athletes if st.clocks()},
            "timebases": {f"{sess}/{ath}": tb.report() for (sess, ath), tb in sorted(list(self.timebases.items()))
                          if tb.report()},
            "sources": sources,
            "latency": {"buckets": [[str(b), c] for b, c in zip([*self.LATENCY_BUCKETS, "+Inf"],
                                                                 self._lat_counts, strict=True)],
                        "sum": self._lat_sum},
            "sinks": {r.sink.name: {"written": r.stats.written, "dropped": r.stats.dropped,
                                    "errors": r.stats.errors, "depth": r.depth,
                                    **(r.sink.connection_stats() if hasattr(r.sink, "connection_stats") else {})}
                      for r in self.sinks},
            "ingest": self._ingest_report(),
            **({"partition": {"index": self.partition[0], "count": self.partition[1], "elsewhere": self.elsewhere}}
               if self.partition is not None else {}),
        }

    def _ingest_report(self) -> dict[str, Any]:
        """The broker connection: messages received, shed when far behind (``overflow``), reconnects."""
        st = self.ingest_stats
        if st is None:
            return {}
        sub = self._sub
        queue = {"backlog": sub.queued, "backlog_bytes": sub.queued_bytes, "lanes": len(sub.lanes)} if sub else {}
        return {"received": st.received, "overflow": st.overflow, "reconnects": st.reconnects,
                "connected": st.connected, "meta_requests": self.meta_requests, **queue}

    # ------------------------------------------------------------- running
    def filters(self) -> list[str]:
        """What the ingest subscribes to. A partition of configured athletes only (no strangers
        accepted) subscribes to their topics; given its session, to its own athletes' alone, so the
        broker sends it nothing else (with every session, an athlete's partition depends on each)."""
        if self.partition is not None and not self.settings.processor.accept_unknown_athletes:
            session = self.session
            mine = sorted(a for a in self._configured if session is None or self.serves(session, a))
            return [topics.subscription(self.session, "status"),
                    *(topics.athlete_subscription(self.session, a, ch) for a in mine
                      for ch in ("meta", "data", "coach"))]
        return [topics.subscription(self.session, ch) for ch in ("meta", "status", "data", "coach")]

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
            sub = LoopSubscriber(self.settings.broker, self.filters(), self.handle, qos=1, role="fusion",
                                 admit=self.admits, max_backlog_bytes=self.settings.processor.ingest_backlog_mib << 20)
            self.ingest_stats = sub.stats
            self._sub = sub
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
