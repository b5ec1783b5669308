"""A receive-only MQTT 3.1.1 client for high-rate ingest: one ``recv`` for many messages.

paho reads every packet with several small ``recv`` calls (type byte,
each length byte, body); at tens of thousands of 100-byte frames per second
that, not decoding, is the cost. This client reads up to 1 MiB at a time and
parses every complete PUBLISH in the buffer; it acknowledges QoS 1, keeps
the connection alive, and reconnects with a growing, jittered delay. It
only subscribes: publishing stays with paho / aiomqtt (``services/mqtt.py``).
"""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterable

from poserun.services.mqtt import NODELAY, BrokerUnavailable, Inbox, Incoming, client_id
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


def subscribe_packet(packet_id: int, filters: Iterable[tuple[str, int]]) -> bytes:
    body = _U16.pack(packet_id) + b"".join(_utf8(f) + bytes([q]) for f, q in filters)
    return b"\x82" + _varint(len(body)) + body


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
    """Subscribe to ``filters`` and feed an :class:`Inbox` from a thread of its own."""

    def __init__(self, broker: BrokerSettings, filters: Iterable[str], *, qos: int = 0,
                 role: str = "ingest", max_pending: int = 500_000,
                 on_message: Callable[[Incoming], None] | None = None,
                 recv_bytes: int = 1 << 20) -> None:
        super().__init__(max_pending, on_message)
        self.broker = broker
        self.filters = [(f, qos) for f in filters]
        self.role = role
        self.recv_bytes = recv_bytes
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    # ----------------------------------------------------------- lifecycle
    def start(self, *, timeout: float = 10.0) -> None:
        """Connect and subscribe (raising :class:`BrokerUnavailable` if that fails), then serve."""
        self._bind_loop()
        sock = self._open(timeout)
        self._thread = threading.Thread(target=self._serve, args=(sock,), name=f"mqtt-{self.role}",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._close()

    def _close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.sendall(b"\xe0\x00")  # DISCONNECT
            with contextlib.suppress(OSError):
                sock.close()

    def _open(self, timeout: float) -> socket.socket:
        b = self.broker
        try:
            raw = socket.create_connection((b.host, b.port), timeout=timeout)
        except OSError as exc:
            raise BrokerUnavailable(f"cannot reach the broker at {b.url}: {exc}") from None
        raw.setsockopt(*NODELAY)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock: socket.socket = raw
        if b.tls:
            ctx = ssl.create_default_context(cafile=str(b.ca_file) if b.ca_file else None)
            sock = ctx.wrap_socket(raw, server_hostname=b.host)
        password = b.password.get_secret_value() if b.password else None
        sock.sendall(connect_packet(client_id(b, self.role), b.keepalive_s, b.username, password))
        sock.sendall(subscribe_packet(1, self.filters))
        buf = bytearray()
        deadline = time.monotonic() + timeout
        connacked = False
        while True:
            if time.monotonic() > deadline:
                sock.close()
                raise BrokerUnavailable(f"no CONNACK/SUBACK from {b.url} within {timeout:.0f} s")
            chunk = sock.recv(65536)
            if not chunk:
                raise BrokerUnavailable(f"broker {b.url} closed the connection (refused?)")
            buf += chunk
            packets, used = parse_packets(buf)
            del buf[:used]
            for kind, _flags, _t, body, _pid in packets:
                if kind == CONNACK:
                    if len(body) < 2 or body[1] != 0:
                        sock.close()
                        code = body[1] if len(body) > 1 else -1
                        raise BrokerUnavailable(f"broker {b.url} refused the connection (code {code})")
                    connacked = True
                elif kind == SUBACK:
                    if any(code == 0x80 for code in body[2:]):
                        sock.close()
                        raise BrokerUnavailable(f"broker {b.url} refused the subscription (ACL?)")
                    if connacked:
                        self._leftover = bytes(buf)
                        self._sock = sock
                        self.stats.connected = True
                        self._subscribed.set()
                        return sock

    # -------------------------------------------------------------- serving
    def _serve(self, sock: socket.socket) -> None:
        delay = 0.5
        while not self._stop.is_set():
            try:
                self._read(sock)
            except (OSError, ValueError) as exc:
                if self._stop.is_set():
                    break
                self.stats.connected = False
                log.warning("ingest connection lost (%s); reconnecting in %.1f s", exc, delay)
            if self._stop.wait(delay):
                break
            try:
                self._close()
                sock = self._open(10.0)
                self.stats.reconnects += 1
                delay = 0.5
            except (BrokerUnavailable, OSError) as exc:
                log.warning("reconnect failed: %s", exc)
                delay = min(delay * 2, 8.0) * (0.8 + 0.4 * random.random())

    def _read(self, sock: socket.socket) -> None:
        keepalive = self.broker.keepalive_s
        sock.settimeout(min(1.0, keepalive / 2))
        buf = bytearray(getattr(self, "_leftover", b""))
        self._leftover = b""
        last_sent = time.monotonic()
        view = bytearray(self.recv_bytes)
        decode = bytes.decode
        while not self._stop.is_set():
            if buf:
                packets, used = parse_packets(buf)
                if used:
                    del buf[:used]
                if packets:
                    now = time.time_ns()
                    items = []
                    acks = []
                    for kind, flags, topic, payload, pid in packets:
                        if kind == PUBLISH:
                            items.append(Incoming(decode(topic, "utf-8", "replace"), payload, now,
                                                  bool(flags & 1), (flags >> 1) & 3))
                            if pid:
                                acks.append(b"\x40\x02" + _U16.pack(pid))
                    if acks:
                        sock.sendall(b"".join(acks))
                        last_sent = time.monotonic()
                    if items:
                        self._put_many(items)
            if time.monotonic() - last_sent > keepalive / 2:
                sock.sendall(b"\xc0\x00")  # PINGREQ
                last_sent = time.monotonic()
            try:
                n = sock.recv_into(view)
            except TimeoutError:
                continue
            if n == 0:
                raise OSError("broker closed the connection")
            buf += view[:n]
