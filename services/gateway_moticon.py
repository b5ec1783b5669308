"""``poserun gateway moticon``: Moticon OpenGo insoles' live UDP output -> poserun frames over MQTT.

A blocking UDP socket feeds :class:`OpenGoParser`; samples are mapped onto the gateway clock
(monotonic ns, see :class:`ClockMap`), batched per source and published every ``frame_ms``.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from poserun.services.gateway_sim import status_message
from poserun.services.moticon_parse import CELLS, OpenGoParser, Sample
from poserun.services.mqtt_publisher import gateway_publisher
from poserun.settings import BrokerSettings
from poserun.wire import frame as wf
from poserun.wire import meta as wm
from poserun.wire import topics
from poserun.wire.mqtt import Will
from poserun.wire.streams import StreamKind

log = logging.getLogger(__name__)
DEFAULT_PORT = 8888  # OpenGo's UDP output port as HERMES uses it (docs/gateways.md)
STATS_EVERY_S = 10.0

#: The 16 cells: (region, along heel 0..1 toe, across -0.5 medial..0.5 lateral). A placeholder,
#: numbered heel to toe: Moticon's own numbering and positions were not found (docs/gateways.md).
OPENGO_CELLS: tuple[tuple[str, float, float], ...] = (
    ("heel", 0.06, -0.10), ("heel", 0.06, 0.12), ("heel", 0.14, -0.18), ("heel", 0.14, 0.18),
    ("midfoot", 0.30, 0.25), ("midfoot", 0.42, 0.28), ("midfoot", 0.52, 0.28),
    ("ball", 0.66, -0.30), ("ball", 0.68, -0.08), ("ball", 0.70, 0.12), ("ball", 0.68, 0.32),
    ("ball", 0.78, -0.22), ("ball", 0.80, 0.10),
    ("toes", 0.90, -0.25), ("toes", 0.92, 0.0), ("toes", 0.88, 0.25),
)


def opengo_meta(source: str, rate_hz: float) -> wm.ImuMeta | wm.InsoleMeta:
    """Meta of one OpenGo stream: the insole (cell forces in N) or its IMU (g, deg/s)."""
    side = "left" if source.endswith("_left") else "right"
    if source.startswith("insole"):
        return wm.InsoleMeta(source=source, rate_hz=rate_hz, side=side, unit="N",  # type: ignore[arg-type]
                             device="Moticon OpenGo insole (16 cells)",
                             cell_regions=[c[0] for c in OPENGO_CELLS],  # type: ignore[misc]
                             cell_positions=[(c[1], c[2]) for c in OPENGO_CELLS])
    return wm.ImuMeta(source=source, rate_hz=rate_hz, placement="foot", side=side,  # type: ignore[arg-type]
                      device="Moticon OpenGo insole IMU (in the insole, under the foot)",
                      accel_unit="g", gyro_unit="deg/s")


def cell_forces(pressure: np.ndarray, force: float) -> np.ndarray:
    """Cell forces (N): OpenGo's total force shared by the cells' pressures."""
    total = float(pressure.sum())
    if total <= 0.0 or force <= 0.0:
        return np.zeros(CELLS)
    return pressure * (force / total)


class ClockMap:
    """The insoles' time (s) on the gateway clock (monotonic ns).

    Rule: within one epoch, the insoles' own time from an anchor; the anchor is the first
    sample's arrival and only moves earlier, whenever a sample would otherwise be stamped after
    it arrived (the least-delayed sample wins). A new epoch (reset, jump) anchors anew."""

    def __init__(self) -> None:
        self.epoch = -1
        self.anchor_ns = 0
        self.anchor_s = 0.0

    def map(self, sample: Sample, arrival_ns: int) -> int:
        if sample.epoch != self.epoch:
            self.epoch, self.anchor_ns, self.anchor_s = sample.epoch, arrival_ns, sample.time_s
        t = self.anchor_ns + round((sample.time_s - self.anchor_s) * 1e9)
        if t > arrival_ns:
            self.anchor_ns -= t - arrival_ns
            t = arrival_ns
        return t


@dataclass
class MoticonStats:
    """What the gateway received and published (the JSON summary at the end)."""

    datagrams: int = 0
    frames: int = 0
    parser: dict[str, object] = field(default_factory=dict)
    dropped: int = 0
    reconnects: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {"datagrams": self.datagrams, "frames": self.frames, **self.parser,
                "dropped": self.dropped, "reconnects": self.reconnects, "seconds": round(self.seconds, 3)}


class Batcher:
    """Per-source samples waiting for the next frame; :meth:`frames` empties them."""

    def __init__(self, session: str, athlete: str, rate_hz: float) -> None:
        self.session, self.athlete = session, athlete
        self.period_ns = round(1e9 / rate_hz)
        self.rows: dict[str, list[tuple[int, np.ndarray]]] = {}
        self.seq: dict[str, int] = {}

    def add(self, sample: Sample, t_ns: int) -> None:
        for side, s in sample.sides.items():
            imu = self.rows.setdefault(f"imu_foot_{side}", [])
            imu.append((t_ns, s.imu))
            self.rows.setdefault(f"insole_{side}", []).append((t_ns, cell_forces(s.pressure, s.force)))

    def frames(self) -> list[tuple[str, bytes]]:
        out = []
        for source, rows in self.rows.items():
            if not rows:
                continue
            kind = StreamKind.IMU if source.startswith("imu") else StreamKind.INSOLE
            ts = np.array([r[0] for r in rows], dtype=np.int64)
            data = np.array([r[1] for r in rows], dtype=np.float32)
            seq = self.seq.get(source, 0)
            stamps = ts if len(rows) > 1 else None
            payload = wf.pack(kind, seq, int(ts[0]), data, period_ns=0 if stamps is not None else self.period_ns,
                              timestamps_ns=stamps)
            self.seq[source] = (seq + 1) & 0xFFFFFFFF
            out.append((topics.data_topic(self.session, self.athlete, source), payload))
            rows.clear()
        return out


def parse_listen(spec: str) -> tuple[str, int]:
    """``HOST:PORT`` (or ``:PORT``, or ``PORT``) for the UDP socket."""
    host, _, port = spec.rpartition(":")
    return host or "0.0.0.0", int(port)


def run_moticon_gateway(broker: BrokerSettings, session: str, athlete: str, *,
                        listen: tuple[str, int] = ("0.0.0.0", DEFAULT_PORT), frame_ms: float = 10.0,
                        rate_hz: float = 100.0, fields: list[str] | None = None,
                        duration: float | None = None, stop: threading.Event | None = None,
                        ready_file: str | None = None, gateway_id: str | None = None,
                        bound: threading.Event | None = None) -> MoticonStats:
    """Receive OpenGo lines and publish them until ``duration`` s or ``stop``."""
    topics.check_id(athlete, "athlete")
    gw = gateway_id or f"moticon-{athlete}"
    parser = OpenGoParser(fields, rate_hz)
    sources = [f"{kind}_{side}" for side in parser.sides for kind in ("insole", "imu_foot")]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(listen)
    offline = status_message(session, gw, "offline", [athlete])
    pub = gateway_publisher(broker, f"gw-{gw}", session,
                            will=Will(offline.topic, offline.payload, qos=1, retain=True))
    stats = MoticonStats()
    start = time.monotonic()
    try:
        pub.connect()
        for src in sources:
            pub.publish(topics.meta_topic(session, athlete, src), wm.dump(opengo_meta(src, rate_hz)),
                        qos=1, retain=True)
        zero = time.time_ns() - time.monotonic_ns()  # the gateway clock is time.monotonic_ns()
        online = status_message(session, gw, "online", [athlete], boot_ns=time.time_ns(), zero_ns=zero)
        pub.publish(online.topic, online.payload, qos=1, retain=True)
        pub.flush()
        if ready_file:
            Path(ready_file).write_text("ready\n")
        if bound is not None:
            bound.set()
        clock, batch = ClockMap(), Batcher(session, athlete, rate_hz)
        frame_s = frame_ms / 1000.0
        next_flush = time.monotonic() + frame_s
        next_stats = time.monotonic() + STATS_EVERY_S
        while not (stop is not None and stop.is_set()):
            now = time.monotonic()
            if duration is not None and now - start >= duration:
                break
            if now >= next_flush:
                for topic, payload in batch.frames():
                    pub.publish(topic, payload)
                    stats.frames += 1
                pub.pump(0.0)
                next_flush = now + frame_s
                if now >= next_stats:
                    print(f"moticon {athlete}: {json.dumps(parser.stats.as_dict())}", file=sys.stderr)
                    next_stats = now + STATS_EVERY_S
                continue
            sock.settimeout(max(0.0005, next_flush - now))
            try:
                datagram = sock.recv(4096)
            except TimeoutError:
                continue
            arrival = time.monotonic_ns()
            stats.datagrams += 1
            sample = parser.feed(datagram)
            if sample is not None:
                batch.add(sample, clock.map(sample, arrival))
        for topic, payload in batch.frames():
            pub.publish(topic, payload)
            stats.frames += 1
        pub.flush()
    finally:
        sock.close()
        stats.seconds = time.monotonic() - start
        stats.parser = parser.stats.as_dict()
        stats.dropped, stats.reconnects = pub.stats.dropped, pub.stats.reconnects
        if pub.connected:
            pub.publish(offline.topic, offline.payload, qos=1, retain=True)
        pub.close()
    return stats
