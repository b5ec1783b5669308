"""``poserun gateway phone``: athletes' phones as trunk IMUs and haptic bands, through a page poserun serves.

One ``websockets`` server serves the page (``poserun/sinks/web/phone.html``) and a socket per
phone. Each phone's DeviceMotion samples are published as its athlete's ``imu_pelvis`` (placement
``trunk``, retained meta before the first frame) and the athlete's haptic commands are forwarded
to it. A phone joins with a per-athlete token, ``HMAC-SHA256(secret, "session/athlete")``; the
socket takes only browsers from the page's own origin (its ``Origin`` is the ``Host`` it asked).
Refusals and bad browser messages are counted and never affect other phones.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import math
import socket
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from importlib.resources import files
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from poserun.services.gateway_sim import status_message
from poserun.services.mqtt_conn import MqttConnection
from poserun.settings import BrokerSettings
from poserun.sinks.dashboard import DEFAULT_PORTS, host_of, origin_of
from poserun.wire import frame as wf
from poserun.wire import meta as wm
from poserun.wire import mqtt as proto
from poserun.wire import topics
from poserun.wire.streams import StreamKind

log = logging.getLogger(__name__)
SOURCE = "imu_pelvis"  # the trunk source the processor times contacts from (processors/pelvis.py)
GATEWAY = "phone"
DEFAULT_PORT = 8770
NOMINAL_HZ = 60.0  # Chrome's devicemotion rate on Android; the frames carry each sample's own time
FRAME_S = 0.05  # frames are published every 50 ms of server time
MAX_MESSAGE = 64 * 1024
MAX_SAMPLES = 256  # per browser message
#: Phone axes (x right, y up the screen, z out of the screen) as body directions, by how it is worn
#: upright at the waist: ``front``: screen facing forward, away from the body; ``back``: facing backward.
WEAR_AXES: dict[str, dict[str, str]] = {
    "front": {"x": "left", "y": "up", "z": "forward"},
    "back": {"x": "right", "y": "up", "z": "backward"},
}


def join_token(secret: str, session: str, athlete: str) -> str:
    """The athlete's join token: HMAC-SHA256(secret, ``session/athlete``), 32 hex digits."""
    return hmac.new(secret.encode(), f"{session}/{athlete}".encode(), hashlib.sha256).hexdigest()[:32]


def phone_meta(wear: str = "front") -> wm.ImuMeta:
    """The phone's meta: m/s^2 (accelerationIncludingGravity), deg/s (rotationRate), axes by ``wear``."""
    return wm.ImuMeta(source=SOURCE, rate_hz=NOMINAL_HZ, placement="trunk", accel_unit="m/s^2",
                      gyro_unit="deg/s", axes=WEAR_AXES[wear],  # type: ignore[arg-type]
                      device=f"phone (DeviceMotion via poserun's page), worn at the waist, screen {wear}")


class PhoneClock:
    """A page's event timestamps (ms since its time origin) on the server clock (monotonic ns).

    Rule (as the Moticon gateway's): stamp = page time + offset, the offset set by the first
    sample's arrival and only ever lowered, whenever a stamp would fall after the message's
    arrival (the least-delayed message wins). A stamp is never later than its arrival and the
    page's spacing of samples is kept. A message's last sample is mapped first (the least delayed of
    it); stamps not after the athlete's last one (the offset dropped) are dropped and counted."""

    def __init__(self) -> None:
        self.offset_ns: int | None = None

    def map(self, page_ms: float, arrival_ns: int) -> int:
        t_page = round(page_ms * 1e6)
        if self.offset_ns is None:
            self.offset_ns = arrival_ns - t_page
        t = t_page + self.offset_ns
        if t > arrival_ns:
            self.offset_ns -= t - arrival_ns
            t = arrival_ns
        return t


@dataclass
class PhoneStats:
    """Counters of the gateway (the JSON summary at the end)."""

    connections: int = 0
    samples: int = 0
    frames: int = 0
    haptic_forwarded: int = 0
    refused: dict[str, int] = field(default_factory=lambda: {"token": 0, "athlete": 0, "origin": 0})
    bad_messages: int = 0
    late_samples: int = 0  # not after the athlete's last stamp
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {"connections": self.connections, "samples": self.samples, "frames": self.frames,
                "haptic_forwarded": self.haptic_forwarded, "refused": dict(self.refused),
                "bad_messages": self.bad_messages, "late_samples": self.late_samples,
                "seconds": round(self.seconds, 3)}


def parse_samples(message: str | bytes) -> list[tuple[float, ...]]:
    """``{"type":"motion","s":[[t_ms, ax, ay, az, gx, gy, gz], ...]}`` -> rows; ValueError if malformed."""
    msg = json.loads(message)
    if not isinstance(msg, dict) or msg.get("type") != "motion" or not isinstance(msg.get("s"), list):
        raise ValueError("not a motion message")
    rows = msg["s"]
    if len(rows) > MAX_SAMPLES:
        raise ValueError("too many samples")
    out = []
    for r in rows:
        if not isinstance(r, list) or len(r) != 7:
            raise ValueError("a sample is [t_ms, ax, ay, az, gx, gy, gz]")
        vals = tuple(float(v) for v in r)  # TypeError for strings, None...
        if not all(math.isfinite(v) for v in vals):
            raise ValueError("non-finite value")
        out.append(vals)
    return out


class PhoneGateway:
    """The server: page, sockets, one MQTT connection for all the athletes' phones."""

    def __init__(self, broker: BrokerSettings, session: str, athletes: list[str], secret: str, *,
                 host: str = "0.0.0.0", port: int = DEFAULT_PORT, wear: str = "front") -> None:
        if not athletes:
            raise ValueError("no athletes configured: list them under 'athletes' in the config (-c FILE)")
        if not secret:
            raise ValueError("a secret is needed (--secret or POSERUN_PHONE_SECRET)")
        if wear not in WEAR_AXES:
            raise ValueError(f"wear must be one of {', '.join(WEAR_AXES)}")
        for a in athletes:
            topics.check_id(a, "athlete")
        self.broker, self.session, self.secret = broker, session, secret
        self.athletes = list(athletes)
        self.tokens = {a: join_token(secret, session, a) for a in athletes}
        self.host, self.port, self.wear = host, port, wear
        self.stats = PhoneStats()
        self.page = files("poserun.sinks.web").joinpath("phone.html").read_bytes()
        self._phones: dict[str, set[ServerConnection]] = {}
        self._rows: dict[str, list[tuple[int, tuple[float, ...]]]] = {}
        self._last_ns: dict[str, int] = {}
        self._seq: dict[str, int] = {}
        self._meta_sent: set[str] = set()
        self._haptic = {topics.athlete_topic(session, a, "haptic"): a for a in athletes}
        self._asks = {topics.meta_request_topic(session, a, SOURCE): a for a in athletes}
        offline = status_message(session, GATEWAY, "offline", self.athletes)
        self._offline = offline
        subs = [(t, 1) for t in [*self._haptic, *self._asks]]
        self.mqtt = MqttConnection(broker, f"gw-{GATEWAY}", subscriptions=subs, on_message=self._on_mqtt,
                                   will=proto.Will(offline.topic, offline.payload, qos=1, retain=True))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sending: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ links
    def links(self, base: str) -> dict[str, str]:
        """Each athlete's join link under ``base`` (``http://HOST:PORT``)."""
        return {a: f"{base}/?athlete={a}&token={t}" for a, t in self.tokens.items()}

    # ------------------------------------------------------------------- MQTT
    def _on_mqtt(self, message: proto.Message, _recv_ns: int) -> None:
        topic = message.topic if isinstance(message.topic, str) else message.topic.decode()
        if topic in self._asks:  # the service lacks the meta of a phone that streams: say it again
            if self._asks[topic] in self._meta_sent:
                self._publish_meta(self._asks[topic])
            return
        athlete = self._haptic.get(topic)
        if athlete is None or self._loop is None:
            return
        try:
            text = bytes(message.payload).decode()
            json.loads(text)
        except ValueError:
            return
        for ws in list(self._phones.get(athlete, ())):
            self.stats.haptic_forwarded += 1
            task = self._loop.create_task(self._send(ws, text))
            self._sending.add(task)  # (a reference until done: the loop keeps only weak ones)
            task.add_done_callback(self._sending.discard)

    def _publish_meta(self, athlete: str) -> None:
        self.mqtt.publish(topics.meta_topic(self.session, athlete, SOURCE), wm.dump(phone_meta(self.wear)),
                          qos=1, retain=True)

    async def _send(self, ws: ServerConnection, text: str) -> None:
        with contextlib.suppress(ConnectionClosed, TimeoutError):
            await asyncio.wait_for(ws.send(json.dumps({"type": "haptic", "command": json.loads(text)})), 1.0)

    def _flush(self) -> None:
        for athlete, rows in self._rows.items():
            if not rows:
                continue
            ts = np.array([r[0] for r in rows], dtype=np.int64)
            data = np.array([r[1] for r in rows], dtype=np.float32)
            seq = self._seq.get(athlete, 0)
            many = len(rows) > 1
            payload = wf.pack(StreamKind.IMU, seq, int(ts[0]), data,
                              period_ns=0 if many else round(1e9 / NOMINAL_HZ), timestamps_ns=ts if many else None)
            self._seq[athlete] = (seq + 1) & 0xFFFFFFFF
            self.mqtt.publish(topics.data_topic(self.session, athlete, SOURCE), payload)
            self.stats.frames += 1
            rows.clear()

    # -------------------------------------------------------------------- web
    def _refuse(self, connection: ServerConnection, reason: str, status: HTTPStatus, text: str) -> Response:
        self.stats.refused[reason] += 1
        if self.stats.refused[reason] <= 3:
            log.warning("phone gateway: refused a request (%s)", reason)
        return connection.respond(status, text)

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        u = urlsplit(request.path)
        if u.path not in ("/", "/index.html", "/ws"):
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        q = parse_qs(u.query)
        athlete, token = q.get("athlete", [""])[0], q.get("token", [""])[0]
        if athlete not in self.tokens:
            return self._refuse(connection, "athlete", HTTPStatus.FORBIDDEN, "unknown athlete\n")
        if not hmac.compare_digest(token.encode("utf-8", "replace"), self.tokens[athlete].encode()):
            return self._refuse(connection, "token", HTTPStatus.UNAUTHORIZED, "wrong token: open the printed link\n")
        if u.path == "/ws":
            origin, host = request.headers.get("Origin"), request.headers.get("Host")
            if origin is not None:
                parsed, asked = origin_of(origin), host_of(host) if host else None
                if parsed is None or asked is None or asked[0] != parsed[1] or \
                        (asked[1] or DEFAULT_PORTS[parsed[0]]) != parsed[2]:
                    return self._refuse(connection, "origin", HTTPStatus.FORBIDDEN, "foreign origin\n")
            return None
        headers = Headers([("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store"),
                           ("Content-Length", str(len(self.page)))])
        return Response(HTTPStatus.OK.value, "OK", headers, self.page)

    async def _client(self, ws: ServerConnection) -> None:
        athlete = parse_qs(urlsplit(ws.request.path).query)["athlete"][0] if ws.request else ""
        self.stats.connections += 1
        if athlete not in self._meta_sent:  # retained, before the first frame (same connection, in order)
            self._publish_meta(athlete)
            self._meta_sent.add(athlete)
        self._phones.setdefault(athlete, set()).add(ws)
        clock = PhoneClock()
        rows = self._rows.setdefault(athlete, [])
        try:
            await ws.send(json.dumps({"type": "hello", "athlete": athlete, "session": self.session}))
            async for message in ws:
                arrival = time.monotonic_ns()
                try:
                    samples = parse_samples(message)
                except (ValueError, TypeError, OverflowError, RecursionError):  # (deep nesting, huge integers)
                    self.stats.bad_messages += 1
                    continue
                if samples:  # the batch's last sample first: the least delayed of it sets the offset
                    clock.map(samples[-1][0], arrival)
                for s in samples:
                    t = clock.map(s[0], arrival)
                    if t <= self._last_ns.get(athlete, -1):
                        self.stats.late_samples += 1
                        continue
                    self._last_ns[athlete] = t
                    rows.append((t, s[1:]))
                    self.stats.samples += 1
        except ConnectionClosed:
            pass
        finally:
            self._phones[athlete].discard(ws)

    # -------------------------------------------------------------------- run
    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None, duration: float | None = None,
                  ready_file: str | None = None) -> PhoneStats:
        """Serve until ``stop`` is set or ``duration`` s have passed."""
        self._loop = asyncio.get_running_loop()
        start = time.monotonic()
        await self.mqtt.start()
        zero = time.time_ns() - time.monotonic_ns()  # the gateway clock is the server's time.monotonic_ns()
        online = status_message(self.session, GATEWAY, "online", self.athletes, boot_ns=time.time_ns(), zero_ns=zero)
        self.mqtt.publish(online.topic, online.payload, qos=1, retain=True)
        try:
            async with serve(self._client, self.host, self.port, process_request=self._http,
                             max_size=MAX_MESSAGE, ping_interval=10, ping_timeout=20) as server:
                self.port = int(next(iter(server.sockets)).getsockname()[1])
                if ready_file:
                    Path(ready_file).write_text("ready\n")
                if ready is not None:
                    ready.set()
                while not stop.is_set():
                    if duration is not None and time.monotonic() - start >= duration:
                        break
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), FRAME_S)
                    self._flush()
                self._flush()
        finally:
            self.mqtt.publish(self._offline.topic, self._offline.payload, qos=1, retain=True)
            await self.mqtt.close()
            self.stats.seconds = time.monotonic() - start
        return self.stats


def lan_address() -> str:
    """This machine's address on the LAN (the route to a private address), else 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            return str(s.getsockname()[0])
        except OSError:
            return "127.0.0.1"
