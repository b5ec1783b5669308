"""High-rate MQTT paths: the service's ingest, a threaded reader, pre-encoded publishing.

paho reads every packet with several small ``recv`` calls (type byte, each length byte,
body); at tens of thousands of 100-byte frames per second that, not decoding, is the cost.
These read large blocks and parse every complete packet in them:

* :class:`LoopSubscriber`, the ingest of ``poserun process``, on the event loop over the one
  MQTT core (``services/mqtt_conn.py``);
* :class:`StreamSubscriber`, the same connection on a thread of its own, for the recorder
  and the virtual band;
* :class:`RawPublisher`, QoS 0 frames encoded once and written in batches (replay, the
  simulator's ``--pregenerate``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from poserun.services.mqtt import NODELAY, BrokerUnavailable, Inbox, Incoming, IngestStats, client_id
from poserun.settings import BrokerSettings

log = logging.getLogger(__name__)
_U16 = struct.Struct(">H")
PUBLISH, PUBACK, SUBACK, CONNACK, PINGRESP = 3, 4, 9, 2, 13


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n % 128
        n //= 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return _U16.pack(len(b)) + b


def connect_packet(cid: str, keepalive: int, username: str | None, password: str | None) -> bytes:
    flags = 0x02  # clean session
    payload = _utf8(cid)
    if username is not None:
        flags |= 0x80
        payload += _utf8(username)
        if password is not None:
            flags |= 0x40
            payload += _utf8(password)
    body = _utf8("MQTT") + bytes([4, flags]) + _U16.pack(keepalive) + payload
    return b"\x10" + _varint(len(body)) + body


def hello_packet(broker: BrokerSettings, role: str) -> bytes:
    """The CONNECT this broker's settings ask for (client id, keep-alive, credentials)."""
    password = broker.password.get_secret_value() if broker.password else None
    return connect_packet(client_id(broker, role), broker.keepalive_s, broker.username, password)


def tls_context(broker: BrokerSettings) -> ssl.SSLContext | None:
    if not broker.tls:
        return None
    return ssl.create_default_context(cafile=str(broker.ca_file) if broker.ca_file else None)


def dial(broker: BrokerSettings, role: str, timeout: float, *, rcvbuf: int = 0) -> socket.socket:
    """A blocking connection to the broker (TCP_NODELAY, TLS if configured) with CONNECT sent;
    :class:`BrokerUnavailable` if it cannot be reached."""
    try:
        raw = socket.create_connection((broker.host, broker.port), timeout=timeout)
    except OSError as exc:
        raise BrokerUnavailable(f"cannot reach the broker at {broker.url}: {exc}") from None
    raw.setsockopt(*NODELAY)
    if rcvbuf:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    ctx = tls_context(broker)
    sock = ctx.wrap_socket(raw, server_hostname=broker.host) if ctx is not None else raw
    sock.sendall(hello_packet(broker, role))
    return sock


def parse_packets(buf: bytearray | bytes, start: int = 0
                  ) -> tuple[list[tuple[int, int, bytes, bytes, int]], int]:
    """Complete packets in ``buf`` from ``start``: (type, flags, topic, payload, packet_id)
    for PUBLISH, (type, flags, b"", body, 0) for others; and the offset after the last."""
    out = []
    n = len(buf)
    pos = start
    while pos + 2 <= n:
        b0 = buf[pos]
        # remaining length: 1-4 bytes, 7 bits each
        length = 0
        mult = 1
        i = pos + 1
        while True:
            if i >= n:
                return out, pos
            byte = buf[i]
            length += (byte & 0x7F) * mult
            i += 1
            if not byte & 0x80:
                break
            mult *= 128
            if mult > 128**3:
                raise ValueError("malformed remaining length")
        end = i + length
        if end > n:
            return out, pos
        kind = b0 >> 4
        if kind == PUBLISH:
            tlen = (buf[i] << 8) | buf[i + 1]
            t_end = i + 2 + tlen
            topic = bytes(buf[i + 2:t_end])
            qos = (b0 >> 1) & 3
            pid = 0
            if qos:
                pid = (buf[t_end] << 8) | buf[t_end + 1]
                t_end += 2
            out.append((PUBLISH, b0 & 0x0F, topic, bytes(buf[t_end:end]), pid))
        else:
            out.append((kind, b0 & 0x0F, b"", bytes(buf[i:end]), 0))
        pos = end
    return out, pos


class StreamSubscriber(Inbox):
    """Subscribe to ``filters`` and feed an :class:`Inbox` from a thread of its own (the recorder,
    the virtual band): the one MQTT connection (``services/mqtt_conn.py``) on that thread's event
    loop, so it reconnects, notices a half-open link and reports refusals like the ingest."""

    def __init__(self, broker: BrokerSettings, filters: Iterable[str], *, qos: int = 0,
                 role: str = "ingest", max_pending: int = 500_000,
                 on_message: Callable[[Incoming], None] | None = None) -> None:
        super().__init__(max_pending, on_message)
        self.broker = broker
        self.filters = [(f, qos) for f in filters]
        self.role = role
        self.conn: Any = None  # the MqttConnection, once started
        self._stop = threading.Event()
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------- lifecycle
    def start(self, *, timeout: float = 10.0) -> None:
        """Connect and subscribe (raising :class:`BrokerUnavailable` if that fails), then serve."""
        self._bind_loop()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main(timeout)), name=f"mqtt-{self.role}",
                                        daemon=True)
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            self._thread.join(5)
            raise self._error

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    async def _main(self, timeout: float) -> None:
        from poserun.services.mqtt_conn import MqttConnection

        self.conn = MqttConnection(self.broker, self.role, subscriptions=self.filters, on_message=self._message,
                                   on_state=self._state, rcvbuf=4 << 20)
        try:
            await self.conn.start(timeout)
        except BaseException as exc:  # handed to start()'s caller
            self._error = exc if isinstance(exc, BrokerUnavailable) else BrokerUnavailable(str(exc))
            self._started.set()
            return
        self._started.set()
        try:
            while not self._stop.is_set():
                await asyncio.sleep(0.05)
        finally:
            await self.conn.close(timeout=1.0)

    def _message(self, m: Any, recv_ns: int) -> None:
        self._put(Incoming(m.topic, m.payload, recv_ns, m.retain, m.qos))

    def _state(self, up: bool) -> None:
        self.stats.connected = up
        self.stats.reconnects = self.conn.stats.reconnects


class LoopSubscriber:
    """The ingest on the asyncio event loop: no thread, no hand-over.

    The connection is :class:`~poserun.services.mqtt_conn.MqttConnection` (the one MQTT core:
    refusals are errors, a half-open link is noticed by the keep-alive, every loss reconnects
    and subscribes again). Each read from the socket is parsed at once and its PUBLISHes
    queued; the queue is handed to ``on_publish(topic, payload, recv_ns)`` inside the loop. At
    real-time rates (a few messages per read) this saves the per-batch wake-up, queue and GIL
    hand-over between a network thread and the loop, which cost more than the messages
    themselves. A backlog (a burst, a slow moment) is worked off ``slice`` messages at a time,
    and a slice ends early when ``on_publish`` returns something true (a record), so the sinks'
    tasks and socket writes (a haptic cue) run in between. Reading goes on meanwhile (pausing
    it would make the broker drop what it cannot queue, uncounted); past ``max_backlog`` the
    oldest messages are shed and counted as ``overflow``. ``on_publish`` must not raise (the
    fusion service counts errors).
    """

    def __init__(self, broker: BrokerSettings, filters: Iterable[str],
                 on_publish: Callable[[str, bytes, int], object], *, qos: int = 0, role: str = "ingest",
                 slice: int = 64, max_backlog: int = 500_000) -> None:
        from poserun.services.mqtt_conn import MqttConnection

        self.broker = broker
        self.filters = [(f, qos) for f in filters]
        self.role = role
        self.on_publish = on_publish
        self.stats = IngestStats()
        self.slice = slice
        self.max_backlog = max_backlog
        self.backlog: deque[tuple[str, bytes, int]] = deque()
        self._scheduled = False
        self.conn = MqttConnection(broker, role, subscriptions=self.filters, on_publish=self._publish,
                                   on_read=self._read, on_state=self._state, rcvbuf=4 << 20)
        self._received = 0  # since the last read was handed on

    def _publish(self, topic: str, payload: bytes, recv_ns: int) -> None:
        self._received += 1
        self.backlog.append((topic, payload, recv_ns))

    def _read(self) -> None:
        self.stats.received += self._received
        self._received = 0
        if self.backlog and not self._scheduled:
            self._work()

    def _state(self, up: bool) -> None:
        self.stats.connected = up
        self.stats.reconnects = self.conn.stats.reconnects

    def _work(self) -> None:
        """Hand over up to ``slice`` queued messages; come back for the rest after the loop's other work."""
        self._scheduled = False
        q = self.backlog
        on_publish = self.on_publish
        for _ in range(min(self.slice, len(q))):
            if on_publish(*q.popleft()):
                break  # it produced something (a record): let its consumers (a haptic cue) run first
        if q:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._work)
            while len(q) > self.max_backlog:  # far behind: shed the oldest, counted (never silently)
                q.popleft()
                self.stats.overflow += 1

    def drain(self) -> None:
        """Hand over whatever is still queued (at shutdown)."""
        q = self.backlog
        while q:
            self.on_publish(*q.popleft())

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None, *,
                  timeout: float = 10.0) -> None:
        """Serve until ``stop``; the first connection must succeed (else :class:`BrokerUnavailable`),
        later losses reconnect with a growing, jittered delay."""
        await self.conn.start(timeout)
        if ready is not None:
            ready.set()
        try:
            await stop.wait()
        finally:
            await self.conn.close(timeout=1.0)
            self.drain()


def publish_packet(topic: str, payload: bytes) -> bytes:
    """An MQTT 3.1.1 PUBLISH at QoS 0, not retained: encoded once, written many times."""
    body = _utf8(topic) + payload
    return b"\x30" + _varint(len(body)) + body


class RawPublisher:
    """Write pre-encoded QoS 0 PUBLISH packets in batches: one ``sendall`` for everything due.

    For a gateway that knows its frames ahead (``gateway sim --pregenerate``): about
    a microsecond a message against tens for a client library's ``publish``, so that the
    stand-in gateway takes little of the CPU it shares with what it measures. QoS 1 and
    retained messages stay with paho; this connection only publishes and answers pings.
    """

    def __init__(self, broker: BrokerSettings, role: str = "raw-pub") -> None:
        self.broker = broker
        self.role = role
        self._sock: socket.socket | None = None
        self._last = time.monotonic()
        self._pings = 0  # PINGREQs whose PINGRESP has not been read

    def connect(self, timeout: float = 10.0) -> None:
        b = self.broker
        sock = dial(b, self.role, timeout)
        buf = b""
        while True:
            chunk = sock.recv(64)
            if not chunk:
                raise BrokerUnavailable(f"broker {b.url} closed the connection (refused?)")
            buf += chunk
            packets, _used = parse_packets(buf)
            if packets:
                kind, _f, _t, body, _pid = packets[0]
                if kind != CONNACK or len(body) < 2 or body[1] != 0:
                    sock.close()
                    raise BrokerUnavailable(f"broker {b.url} refused the connection")
                break
        sock.setblocking(True)
        sock.settimeout(None)
        self._sock = sock
        self._last = time.monotonic()

    def send(self, packets: list[bytes]) -> None:
        """Write the packets, in order."""
        assert self._sock is not None, "connect() first"
        if not packets:
            return
        self._sock.sendall(b"".join(packets))
        self._last = time.monotonic()

    def keepalive(self) -> None:
        """Ping when nothing was sent for half the keep-alive period (the two-byte PINGRESPs are
        left unread until :meth:`barrier`: hours of them would not fill the socket's receive buffer)."""
        if self._sock is not None and time.monotonic() - self._last > self.broker.keepalive_s / 2:
            self._sock.sendall(b"\xc0\x00")
            self._pings += 1
            self._last = time.monotonic()

    def barrier(self, timeout: float = 30.0) -> None:
        """Return once the broker has handled everything sent so far: a PINGREQ is answered only
        after the packets before it (so a message on another connection cannot overtake them)."""
        if self._sock is None:
            return
        self._sock.sendall(b"\xc0\x00")
        self._pings += 1
        self._last = time.monotonic()
        self._sock.settimeout(timeout)
        try:
            while self._pings > 0:
                chunk = self._sock.recv(4096)
                if not chunk:
                    raise BrokerUnavailable(f"broker {self.broker.url} closed the connection")
                self._pings -= chunk.count(b"\xd0")  # PINGRESP (d0 00): a QoS 0 publisher receives nothing else
        finally:
            self._sock.settimeout(None)

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.sendall(b"\xe0\x00")  # DISCONNECT
                sock.close()
