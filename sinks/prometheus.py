"""Prometheus ``/metrics``: per-athlete technique and the pipeline's health.

Athlete series come from the records (support time histogram per athlete and
foot, cadence, pose score, forced landings, stances); series of an athlete
not seen for ``stale_s`` are removed, so cardinality stays bounded as
athletes come and go. Pipeline health is read from the fusion service at
scrape time: frames and samples per source kind, rejected frames by reason,
late frames, sequence gaps, sink queue depths and drops, and the processing
latency from a frame's arrival to the records it completed. The scrape runs on
prometheus-client's HTTP thread; the service's counters are read on the event
loop that changes them (:func:`on_loop`), so a scrape sees one consistent
snapshot however fast sources come and go.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from poserun.sinks.base import Record

log = logging.getLogger(__name__)

SOURCE_KIND = {"imu_foot_left": "imu", "imu_foot_right": "imu", "imu_shank_left": "imu", "imu_shank_right": "imu",
               "imu_pelvis": "imu", "insole_left": "insole", "insole_right": "insole", "keypoints": "keypoints",
               "force_left": "force", "force_right": "force"}
SUPPORT_BUCKETS = (0.10, 0.14, 0.16, 0.18, 0.20, 0.22, 0.24, 0.26, 0.28, 0.30, 0.35, 0.40)


def on_loop(stats: Callable[[], dict[str, Any]], loop: asyncio.AbstractEventLoop,
            timeout_s: float = 5.0) -> Callable[[], dict[str, Any]]:
    """``stats`` called on ``loop`` (from any thread: it waits up to ``timeout_s``); when the loop
    cannot answer (closed, or stuck that long), the last snapshot it gave."""
    loop_thread = threading.get_ident()
    last: dict[str, Any] = {}

    def read() -> dict[str, Any]:
        nonlocal last
        if threading.get_ident() == loop_thread:
            last = stats()
            return last
        fut: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()

        def run() -> None:
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(stats())
                except BaseException as exc:  # handed to the scraping thread
                    fut.set_exception(exc)
        try:
            loop.call_soon_threadsafe(run)
            last = fut.result(timeout_s)
        except (RuntimeError, concurrent.futures.TimeoutError):  # the loop is closed or stuck
            fut.cancel()
        except Exception:  # a bug in the snapshot: said, and the scrape still answers
            log.exception("prometheus: the service's snapshot failed")
        return last
    return read


class _Pipeline(Collector):
    """Reads the fusion service's counters at scrape time."""

    def __init__(self, stats: Callable[[], dict[str, Any]] | None) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Any]:
        if self.stats is None:
            return
        snap = self.stats()
        frames = CounterMetricFamily("poserun_frames", "Sensor frames taken", labels=["kind"])
        samples = CounterMetricFamily("poserun_samples", "Sensor samples taken", labels=["kind"])
        late = CounterMetricFamily("poserun_late_frames", "Frames older than ones already taken", labels=["kind"])
        gaps = CounterMetricFamily("poserun_sequence_gaps", "Frames missing by sequence number", labels=["kind"])
        by_kind: dict[str, dict[str, int]] = {k: dict(v) for k, v in snap.get("kinds", {}).items()}
        if "kinds" not in snap:  # (a snapshot without per-kind totals: summed from its sources)
            for key, c in snap.get("sources", {}).items():
                kind = SOURCE_KIND.get(key.rsplit("/", 1)[-1], "other")
                agg = by_kind.setdefault(kind, {"frames": 0, "samples": 0, "late": 0, "gaps": 0})
                for k in agg:
                    agg[k] += c.get(k, 0)
        for kind, agg in sorted(by_kind.items()):
            frames.add_metric([kind], agg.get("frames", 0))
            samples.add_metric([kind], agg.get("samples", 0))
            late.add_metric([kind], agg.get("late", 0))
            gaps.add_metric([kind], agg.get("gaps", 0))
        yield from (frames, samples, late, gaps)
        rejected = CounterMetricFamily("poserun_rejected_frames", "Messages refused, by reason", labels=["reason"])
        for reason, n in sorted(snap.get("rejected", {}).items()):
            rejected.add_metric([reason], n)
        yield rejected
        depth = GaugeMetricFamily("poserun_sink_queue_depth", "Records waiting per sink", labels=["sink"])
        dropped = CounterMetricFamily("poserun_sink_dropped_records", "Records a full sink queue dropped",
                                      labels=["sink"])
        backlog = GaugeMetricFamily("poserun_sink_backlog", "Records or cues a sink keeps while its broker or "
                                    "database is away (outbox, journal backlog)", labels=["sink"])
        connected = GaugeMetricFamily("poserun_sink_connected", "1 while a sink's broker connection is up",
                                      labels=["sink"])
        reconnects = CounterMetricFamily("poserun_sink_reconnects", "Reconnections of a sink to its broker",
                                         labels=["sink"])
        lost = CounterMetricFamily("poserun_sink_lost_records", "What a sink gave up, by reason: too old when the "
                                   "broker returned, pushed out of a full outbox or backlog, still waiting at close",
                                   labels=["sink", "reason"])
        db_errors = CounterMetricFamily("poserun_sink_db_errors", "Database writes that failed (and are retried)",
                                        labels=["sink"])
        for name, s in sorted(snap.get("sinks", {}).items()):
            depth.add_metric([name], s.get("depth", 0))
            dropped.add_metric([name], s.get("dropped", 0))

            def value(key: str, s: dict[str, Any] = s) -> Any:
                return s.get(f"mqtt_{key}", s.get(key))  # (the haptic sink prefixes its connection's counters)
            if value("outbox") is not None or s.get("backlog") is not None:
                backlog.add_metric([name], value("outbox") if value("outbox") is not None else s["backlog"])
            if value("connected") is not None:
                connected.add_metric([name], 1.0 if value("connected") else 0.0)
            if value("reconnects") is not None:
                reconnects.add_metric([name], value("reconnects"))
            for reason, key in (("too_old", "dropped_old"), ("outbox_full", "dropped_full"),
                                ("at_close", "dropped_closed"), ("backlog_full", "backlog_dropped")):
                if value(key) is not None:
                    lost.add_metric([name, reason], value(key))
            if s.get("db_errors") is not None:
                db_errors.add_metric([name], s["db_errors"])
        yield from (depth, dropped, backlog, connected, reconnects, lost, db_errors)
        lat = snap.get("latency")
        if lat:
            h = HistogramMetricFamily("poserun_processing_latency_seconds",
                                      "From a frame's arrival to the records it completed")
            h.add_metric([], lat["buckets"], lat["sum"])
            yield h
        yield GaugeMetricFamily("poserun_athletes", "Athletes with state", value=snap.get("athletes", 0))
        warned = CounterMetricFamily("poserun_processor_warnings",
                                     "Processor warnings by athlete (an implausible unit, a wrong foot, ...)",
                                     labels=["session", "athlete", "warning"])
        for who, counts in sorted(snap.get("warnings", {}).items()):
            session, _, athlete = who.rpartition("/")
            for what, n in sorted(counts.items()):
                warned.add_metric([session, athlete, what], n)
        yield warned
        ingest = snap.get("ingest") or {}
        if ingest:
            yield CounterMetricFamily("poserun_ingest_messages", "MQTT messages received",
                                      value=ingest.get("received", 0))
            yield CounterMetricFamily("poserun_ingest_shed_messages",
                                      "Messages shed unprocessed because ingest fell too far behind",
                                      value=ingest.get("overflow", 0))
            yield CounterMetricFamily("poserun_ingest_reconnects", "Reconnections to the broker",
                                      value=ingest.get("reconnects", 0))


class PrometheusSink:
    name = "prometheus"

    def __init__(self, host: str = "127.0.0.1", port: int = 9464, stale_s: float = 60.0,
                 context: dict[str, Any] | None = None) -> None:
        self.host, self.port, self.stale_s = host, port, stale_s
        self.context = context if context is not None else {}  # (filled in later by the service)
        self.registry = CollectorRegistry()
        labels = ["athlete"]
        self.support = Histogram("poserun_support_time_seconds", "Support (ground contact) time per stance",
                                 [*labels, "foot"], buckets=SUPPORT_BUCKETS, registry=self.registry)
        self.cadence = Gauge("poserun_cadence_steps_per_minute", "Rolling cadence", labels, registry=self.registry)
        self.score = Gauge("poserun_pose_score", "Pose score of the last stance (0-100)", labels,
                           registry=self.registry)
        self.forced = Counter("poserun_forced_landings", "Forced landings", labels, registry=self.registry)
        self.stances = Counter("poserun_stances", "Stances measured", labels, registry=self.registry)
        self._pipeline: _Pipeline | None = None
        self._seen: dict[str, float] = {}
        self._feet: dict[str, set[str]] = {}
        self._server: Any = None

    async def start(self) -> None:
        stats = self.context.get("stats")
        read = on_loop(stats, asyncio.get_running_loop()) if callable(stats) else dict
        self._pipeline = _Pipeline(read)
        self.registry.register(self._pipeline)
        self._server, _thread = start_http_server(self.port, addr=self.host, registry=self.registry)
        self.port = self._server.server_port

    async def write_batch(self, records: list[Record]) -> None:
        now = time.monotonic()
        for rec in records:
            who = str(rec.get("athlete"))
            self._seen[who] = now
            if rec.get("type") == "landing":
                if rec.get("forced_landing"):
                    self.forced.labels(who).inc()
                else:
                    self.forced.labels(who).inc(0)
            elif rec.get("type") == "stance":
                foot = str(rec.get("foot"))
                self._feet.setdefault(who, set()).add(foot)
                self.stances.labels(who).inc()
                if isinstance(rec.get("support_time_s"), float):
                    self.support.labels(who, foot).observe(rec["support_time_s"])
                if isinstance(rec.get("cadence_spm"), float):
                    self.cadence.labels(who).set(rec["cadence_spm"])
                if isinstance(rec.get("pose_score"), float):
                    self.score.labels(who).set(rec["pose_score"])
        self.expire(now)

    def expire(self, now: float | None = None) -> list[str]:
        """Remove the series of athletes not seen for ``stale_s``; return who was removed."""
        now = time.monotonic() if now is None else now
        gone = [a for a, t in self._seen.items() if now - t > self.stale_s]
        for who in gone:
            del self._seen[who]
            for metric in (self.cadence, self.score, self.forced, self.stances):
                try:
                    metric.remove(who)
                except KeyError:
                    pass
            for foot in self._feet.pop(who, set()):
                try:
                    self.support.remove(who, foot)
                except KeyError:
                    pass
        return gone

    async def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
