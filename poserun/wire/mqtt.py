"""A sans-I/O MQTT 3.1.1 client: bytes in, events out; the adapter owns the socket and the clock.

:class:`MqttClient` encodes what a client sends (CONNECT, PUBLISH, SUBSCRIBE, ...)
and parses what a broker sends, in any chunking. It never reads a socket, never
sleeps and never looks at a clock: an adapter writes the bytes that the encoding
methods return, feeds every read to :meth:`MqttClient.receive`, writes
:meth:`MqttClient.data_to_send` (the acknowledgements and pings that the protocol
requires) after each ``receive`` and ``tick``, and calls :meth:`MqttClient.tick`
with a monotonic time now and then (at least every ``keepalive_s / 4`` seconds).

Keep-alive rule. ``tick(now)`` notes the time of the last send and of the last
receipt at tick granularity. When nothing was sent, or nothing was received (a
publisher on a dead link keeps sending), for ``ping_fraction * keepalive_s`` seconds
it queues a PINGREQ. When, after a PINGREQ, nothing at all
(no byte) has been received for ``pong_timeout_s`` seconds (default: keepalive_s)
it returns :class:`KeepaliveTimeout` once: the link is half-open and the adapter
should close it. ``keepalive_s = 0`` turns both off.

Session state that outlives a connection: outgoing QoS 1/2 publishes stay in
flight until acknowledged; :meth:`MqttClient.connect` starts a new connection
(clearing the buffer, the error and the keep-alive state) and
:meth:`MqttClient.pending` gives what to resend after its CONNACK (PUBLISH with DUP
set, or PUBREL). Spec: https://docs.oasis-open.org/mqtt/mqtt/v3.1.1/mqtt-v3.1.1.html
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "MAX_REMAINING_LENGTH", "REFUSAL_REASONS", "ConnectRefused", "Connected", "Event", "KeepaliveTimeout",
    "Message", "MqttClient", "Pong", "ProtocolError", "Published", "SubscribeRefused", "Subscribed",
    "Unsubscribed", "Will", "encode_publish",
]

#: The largest remaining length a fixed header can carry (0xFF 0xFF 0xFF 0x7F): 256 MiB - 1.
MAX_REMAINING_LENGTH = 268_435_455
_U16 = struct.Struct(">H")
_PACK16 = _U16.pack

#: CONNACK return codes 1-5 and their text in the specification (3.2.2.3).
REFUSAL_REASONS = {
    1: "Connection Refused, unacceptable protocol version",
    2: "Connection Refused, identifier rejected",
    3: "Connection Refused, Server unavailable",
    4: "Connection Refused, bad user name or password",
    5: "Connection Refused, not authorized",
}

_NAMES = {0: "reserved type 0", 1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC",
          6: "PUBREL", 7: "PUBCOMP", 8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE", 11: "UNSUBACK",
          12: "PINGREQ", 13: "PINGRESP", 14: "DISCONNECT", 15: "reserved type 15"}
PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"
_TOPIC_CACHE_MAX = 4096

# connection states
_IDLE, _CONNECTING, _CONNECTED, _CLOSED = range(4)
# outgoing in-flight states
_AWAIT_PUBACK, _AWAIT_PUBREC, _AWAIT_PUBCOMP = 1, 2, 3


# ------------------------------------------------------------------ events
@dataclass(frozen=True, slots=True)
class Event:
    """Something :meth:`MqttClient.receive` or :meth:`MqttClient.tick` reports."""


@dataclass(frozen=True, slots=True)
class Connected(Event):
    """CONNACK with return code 0."""

    session_present: bool


@dataclass(frozen=True, slots=True)
class ConnectRefused(Event):
    """CONNACK with a non-zero return code; the broker closes the connection."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Subscribed(Event):
    """SUBACK granting every filter: the granted QoS per filter, in request order."""

    packet_id: int
    granted: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class SubscribeRefused(Event):
    """SUBACK with return code 0x80 for some or all filters (the others are subscribed)."""

    packet_id: int
    filters_refused: tuple[str, ...]
    granted: tuple[int, ...]  # every return code, 0x80 included, in request order


@dataclass(frozen=True, slots=True)
class Unsubscribed(Event):
    """UNSUBACK."""

    packet_id: int


@dataclass(frozen=True, slots=True)
class Message(Event):
    """A PUBLISH from the broker (a QoS 2 message once, even if the broker resends it).

    ``topic`` is ``str``, or ``bytes`` when the client was made with ``bytes_topics=True``;
    ``packet_id`` is None at QoS 0."""

    topic: str | bytes
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    packet_id: int | None


@dataclass(frozen=True, slots=True)
class Published(Event):
    """Our QoS 1 publish was acknowledged (PUBACK) or our QoS 2 publish completed (PUBCOMP)."""

    packet_id: int


@dataclass(frozen=True, slots=True)
class Pong(Event):
    """PINGRESP."""


@dataclass(frozen=True, slots=True)
class KeepaliveTimeout(Event):
    """Nothing was received for ``waited_s`` seconds after a PINGREQ: close the connection."""

    waited_s: float


@dataclass(frozen=True, slots=True)
class ProtocolError(Event):
    """The broker sent something malformed or forbidden; the client takes no more input until
    :meth:`MqttClient.connect` starts a new connection."""

    reason: str


@dataclass(frozen=True, slots=True)
class Will:
    """The last will: published by the broker when the connection ends without DISCONNECT."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False


# Message is built on the hot path without its generated __init__ (which, frozen, sets each
# field through object.__setattr__): the slot descriptors set the same fields in half the time.
_new = object.__new__
_set_topic = Message.topic.__set__  # type: ignore[attr-defined]
_set_payload = Message.payload.__set__  # type: ignore[attr-defined]
_set_qos = Message.qos.__set__  # type: ignore[attr-defined]
_set_retain = Message.retain.__set__  # type: ignore[attr-defined]
_set_dup = Message.dup.__set__  # type: ignore[attr-defined]
_set_pid = Message.packet_id.__set__  # type: ignore[attr-defined]


def _message(topic: str | bytes, payload: bytes, qos: int, retain: bool, dup: bool,
             packet_id: int | None) -> Message:
    m = _new(Message)
    _set_topic(m, topic)
    _set_payload(m, payload)
    _set_qos(m, qos)
    _set_retain(m, retain)
    _set_dup(m, dup)
    _set_pid(m, packet_id)
    return m


# ---------------------------------------------------------------- encoding
def _remaining_length(n: int) -> bytes:
    if n < 128:
        return bytes((n,))
    if n > MAX_REMAINING_LENGTH:
        raise ValueError(f"packet too large: remaining length {n} > {MAX_REMAINING_LENGTH}")
    out = bytearray()
    while n:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | 0x80 if n else byte)
    return bytes(out)


def _string(s: str, what: str) -> bytes:
    if not isinstance(s, str):
        raise ValueError(f"{what} must be a str, not {type(s).__name__}")
    if "\x00" in s:
        raise ValueError(f"{what} must not contain U+0000")
    b = s.encode("utf-8")  # UnicodeEncodeError (a ValueError) for lone surrogates
    if len(b) > 65535:
        raise ValueError(f"{what} is {len(b)} bytes encoded; at most 65535")
    return _PACK16(len(b)) + b


def _binary(b: bytes, what: str) -> bytes:
    b = bytes(b)
    if len(b) > 65535:
        raise ValueError(f"{what} is {len(b)} bytes; at most 65535")
    return _PACK16(len(b)) + b


def _check_qos(qos: int) -> None:
    if qos not in (0, 1, 2) or isinstance(qos, bool):
        raise ValueError(f"qos must be 0, 1 or 2, not {qos!r}")


def _topic_name(topic: str) -> bytes:
    """A PUBLISH topic, length-prefixed; ValueError when empty or with wildcards."""
    if not topic:
        raise ValueError("a topic name must not be empty")
    if isinstance(topic, str) and ("+" in topic or "#" in topic):
        raise ValueError(f"a topic name must not contain wildcards: {topic!r}")
    return _string(topic, "topic")


def _topic_filter(f: str) -> bytes:
    if not f:
        raise ValueError("a topic filter must not be empty")
    if isinstance(f, str):
        levels = f.split("/")
        for k, level in enumerate(levels):
            if "#" in level and (level != "#" or k != len(levels) - 1):
                raise ValueError(f"'#' must be a whole last level: {f!r}")
            if "+" in level and level != "+":
                raise ValueError(f"'+' must be a whole level: {f!r}")
    return _string(f, "topic filter")


def encode_publish(topic: str, payload: bytes, *, qos: int = 0, retain: bool = False, dup: bool = False,
                   packet_id: int | None = None) -> bytes:
    """A PUBLISH packet (for pre-encoding QoS 0 frames once; :meth:`MqttClient.publish` tracks ids).

    ValueError for an empty topic or one with wildcards, a topic over 65535 bytes, qos not in
    0..2, a packet id missing at QoS 1/2 (or given at QoS 0), a payload over 256 MiB."""
    _check_qos(qos)
    t = _topic_name(topic)
    if qos:
        if packet_id is None or not 1 <= packet_id <= 65535:
            raise ValueError(f"QoS {qos} needs a packet id in 1..65535, not {packet_id!r}")
        var = t + _PACK16(packet_id)
    else:
        if packet_id is not None or dup:
            raise ValueError("a QoS 0 PUBLISH has no packet id and no DUP flag")
        var = t
    n = len(var) + len(payload)
    if n > MAX_REMAINING_LENGTH:
        raise ValueError(f"payload of {len(payload)} bytes is too large for one packet (256 MiB)")
    b0 = 0x30 | (0x08 if dup else 0) | (qos << 1) | (1 if retain else 0)
    return b"".join((bytes((b0,)), _remaining_length(n), var, payload))


def _ack(b0: int, packet_id: int) -> bytes:
    return bytes((b0, 2)) + _PACK16(packet_id)


# ------------------------------------------------------------------ client
class MqttClient:
    """One MQTT 3.1.1 client session, without I/O (see the module docstring for the rules).

    ``bytes_topics=True`` reports :class:`Message` topics as the raw bytes (still checked
    to be UTF-8). ``max_packet_size`` refuses larger incoming packets as a :class:`ProtocolError`.
    With ``on_publish(topic, payload)``, every PUBLISH is handed to it during :meth:`receive`, in
    order, instead of becoming a :class:`Message` (its acknowledgement is queued all the same): no
    object per message on an ingest's hot path, where a burst of them would keep the collector
    busy, and no flags, which an ingest does not need.
    """

    def __init__(self, client_id: str, *, keepalive_s: int, username: str | None = None,
                 password: str | bytes | None = None, will: Will | None = None, clean_session: bool = True,
                 ping_fraction: float = 0.5, pong_timeout_s: float | None = None, bytes_topics: bool = False,
                 max_packet_size: int = MAX_REMAINING_LENGTH + 5,
                 on_publish: Callable[[str | bytes, bytes], object] | None = None) -> None:
        if not isinstance(keepalive_s, int) or not 0 <= keepalive_s <= 65535:
            raise ValueError(f"keepalive_s must be an int in 0..65535, not {keepalive_s!r}")
        if not 0 < ping_fraction <= 1:
            raise ValueError(f"ping_fraction must be in (0, 1], not {ping_fraction!r}")
        if not client_id and not clean_session:
            raise ValueError("an empty client id needs clean_session=True")
        if password is not None and username is None:
            raise ValueError("MQTT 3.1.1 sends a password only with a user name")
        # encode once now, so that invalid input fails here and connect() cannot
        payload = _string(client_id, "client id")
        flags = 0x02 if clean_session else 0
        if will is not None:
            _check_qos(will.qos)
            payload += _topic_name(will.topic) + _binary(will.payload, "will payload")
            flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
        if username is not None:
            payload += _string(username, "user name")
            flags |= 0x80
        if password is not None:
            payload += _binary(password.encode("utf-8") if isinstance(password, str) else password, "password")
            flags |= 0x40
        body = b"\x00\x04MQTT\x04" + bytes((flags,)) + _PACK16(keepalive_s) + payload
        self._connect_packet = b"\x10" + _remaining_length(len(body)) + body
        self.client_id = client_id
        self.keepalive_s = keepalive_s
        self.clean_session = clean_session
        self.ping_interval_s = keepalive_s * ping_fraction
        self.pong_timeout_s = float(keepalive_s if pong_timeout_s is None else pong_timeout_s)
        self.bytes_topics = bytes_topics
        self.max_packet_size = max_packet_size
        self.on_publish = on_publish

        self._state = _IDLE
        self._connacked = False
        self._error: str | None = None
        self._buf = bytearray()  # an incomplete packet from earlier reads
        self._need = 0  # bytes the incomplete packet needs in all (0: its header is incomplete)
        self._out = bytearray()  # acknowledgements and pings for data_to_send()
        self._topics: dict[bytes, str | bytes] = {}  # checked topics, decoded once
        # packet ids: our in-flight publishes (state, PUBLISH packet), subscribes, unsubscribes
        self._inflight: dict[int, tuple[int, bytes]] = {}
        self._subs: dict[int, tuple[str, ...]] = {}
        self._unsubs: set[int] = set()
        self._next_id = 1
        self._inbound_qos2: set[int] = set()  # broker's QoS 2 ids between PUBLISH and PUBREL
        # keep-alive, at tick granularity
        self._sent = False
        self._heard = False
        self._manual_ping = False
        self._last_sent = 0.0
        self._last_heard: float | None = None
        self._ping_at: float | None = None
        self._timed_out = False

    # ------------------------------------------------------------ state
    @property
    def connected(self) -> bool:
        """True between a successful CONNACK and :meth:`disconnect` (or an error)."""
        return self._state == _CONNECTED and self._error is None

    @property
    def in_flight(self) -> int:
        """Our QoS 1/2 publishes not yet acknowledged (for a bounded outbox)."""
        return len(self._inflight)

    def pending(self) -> list[tuple[int, bytes]]:
        """What to resend after reconnecting, oldest first: each unacknowledged PUBLISH with DUP
        set, or PUBREL for a QoS 2 publish whose PUBREC came."""
        out = []
        for pid, (state, packet) in self._inflight.items():
            if state == _AWAIT_PUBCOMP:
                out.append((pid, _ack(0x62, pid)))
            else:
                out.append((pid, bytes((packet[0] | 0x08,)) + packet[1:]))
        return out

    def _allocate(self) -> int:
        used_count = len(self._inflight) + len(self._subs) + len(self._unsubs)
        if used_count >= 65535:
            raise RuntimeError("all 65535 packet ids are in flight")
        pid = self._next_id
        while pid in self._inflight or pid in self._subs or pid in self._unsubs:
            pid = pid % 65535 + 1
        self._next_id = pid % 65535 + 1
        return pid

    # --------------------------------------------------------- outgoing
    def connect(self) -> bytes:
        """CONNECT, starting a new connection: the receive buffer, queued answers, any earlier
        error and the keep-alive state are reset; in-flight publishes stay (see :meth:`pending`)."""
        self._state = _CONNECTING
        self._connacked = False
        self._error = None
        self._buf.clear()
        self._need = 0
        self._out.clear()
        self._subs.clear()
        self._unsubs.clear()
        self._sent = True
        self._heard = False
        self._manual_ping = False
        self._ping_at = None
        self._timed_out = False
        self._last_heard = None  # the first tick starts the count
        return self._connect_packet

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> tuple[int | None, bytes]:
        """A PUBLISH and its packet id (None at QoS 0); QoS 1/2 ones are tracked until acknowledged."""
        if qos:
            _check_qos(qos)
            pid = self._allocate()
            packet = encode_publish(topic, payload, qos=qos, retain=retain, packet_id=pid)
            self._inflight[pid] = (_AWAIT_PUBACK if qos == 1 else _AWAIT_PUBREC, packet)
            self._sent = True
            return pid, packet
        packet = encode_publish(topic, payload, retain=retain)
        self._sent = True
        return None, packet

    def subscribe(self, filters: list[tuple[str, int]]) -> tuple[int, bytes]:
        """A SUBSCRIBE for (filter, max qos) pairs and its packet id."""
        if not filters:
            raise ValueError("SUBSCRIBE needs at least one filter")
        parts = []
        for f, qos in filters:
            _check_qos(qos)
            parts.append(_topic_filter(f) + bytes((qos,)))
        pid = self._allocate()
        body = _PACK16(pid) + b"".join(parts)
        self._subs[pid] = tuple(f for f, _q in filters)
        self._sent = True
        return pid, b"\x82" + _remaining_length(len(body)) + body

    def unsubscribe(self, filters: list[str]) -> tuple[int, bytes]:
        """An UNSUBSCRIBE for the filters and its packet id."""
        if not filters:
            raise ValueError("UNSUBSCRIBE needs at least one filter")
        parts = b"".join(_topic_filter(f) for f in filters)
        pid = self._allocate()
        body = _PACK16(pid) + parts
        self._unsubs.add(pid)
        self._sent = True
        return pid, b"\xa2" + _remaining_length(len(body)) + body

    def ping(self) -> bytes:
        """A PINGREQ (``tick`` sends them by itself); the keep-alive deadline runs from the next tick."""
        self._sent = True
        self._manual_ping = True
        return PINGREQ

    def forget(self, packet_id: int) -> None:
        """Give up an in-flight publish (a cue too old to send again): no resend, its id freed."""
        self._inflight.pop(packet_id, None)

    def disconnect(self) -> bytes:
        """DISCONNECT: the broker then discards the will. Keep-alive stops."""
        self._state = _CLOSED
        self._sent = True
        return DISCONNECT

    def data_to_send(self) -> bytes:
        """The acknowledgements and PINGREQs queued by :meth:`receive` and :meth:`tick` (then cleared)."""
        if not self._out:
            return b""
        out = bytes(self._out)
        self._out.clear()
        return out

    # -------------------------------------------------------- keep-alive
    def tick(self, now: float) -> list[Event]:
        """Keep-alive at monotonic time ``now`` (seconds): may queue a PINGREQ, or report
        :class:`KeepaliveTimeout` (once) when nothing came for ``pong_timeout_s`` after one."""
        if self._state in (_IDLE, _CLOSED) or self._error is not None or self._timed_out or not self.keepalive_s:
            return []
        if self._sent:
            self._sent = False
            self._last_sent = now
        if self._heard or self._last_heard is None:
            self._heard = False
            self._ping_at = None
            self._last_heard = now
        if self._manual_ping:
            self._manual_ping = False
            if self._ping_at is None:
                self._ping_at = now
        if self._ping_at is not None:
            waited = now - self._ping_at
            if waited >= self.pong_timeout_s:
                self._timed_out = True
                return [KeepaliveTimeout(waited)]
        elif now - self._last_sent >= self.ping_interval_s or now - self._last_heard >= self.ping_interval_s:
            # idle, or sending but hearing nothing (a publisher on a dead link): ask the broker
            self._out += PINGREQ
            self._last_sent = now
            self._ping_at = now
        return []

    # ----------------------------------------------------------- receive
    def receive(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Parse broker bytes (any chunking) into events; answers go to :meth:`data_to_send`."""
        if self._error is not None:
            return [ProtocolError(f"input refused after an earlier error: {self._error}")]
        if not data:
            return []
        self._heard = True
        buf = self._buf
        if buf:
            buf += data
            if len(buf) < self._need:
                return []
            src = bytes(buf)
            buf.clear()
        else:
            src = data if type(data) is bytes else bytes(data)
        events: list[Event] = []
        append = events.append
        topics = self._topics
        bytes_topics = self.bytes_topics
        connected = self._connacked
        out = self._out
        queued = len(out)
        max_packet = self.max_packet_size
        fast = self.on_publish
        n = len(src)
        pos = 0
        err: str | None = None
        while pos + 1 < n:
            b0 = src[pos]
            b = src[pos + 1]
            i = pos + 2
            length = b & 0x7F
            if b & 0x80:  # remaining length: up to 4 bytes, 7 bits each, least significant first
                shift = 7
                while True:
                    if i >= n:
                        break
                    b = src[i]
                    i += 1
                    length |= (b & 0x7F) << shift
                    if not b & 0x80:
                        break
                    shift += 7
                    if shift > 21:
                        err = "malformed remaining length: more than 4 bytes"
                        break
                if err is not None:
                    break
                if b & 0x80:  # ran out of bytes inside the length
                    break
            end = i + length
            if end - pos > max_packet:
                err = f"packet of {end - pos} bytes exceeds max_packet_size {max_packet}"
                break
            if end > n:
                break
            if b0 == 0x30 and connected:  # the hot path: QoS 0, not retained, not DUP
                if length < 2:
                    err = "PUBLISH truncated: no topic length"
                    break
                te = i + 2 + ((src[i] << 8) | src[i + 1])
                if te > end:
                    err = "PUBLISH truncated: topic longer than the packet"
                    break
                tb = src[i + 2:te]
                topic = topics.get(tb)
                if topic is None:
                    topic = self._check_topic(tb, bytes_topics)
                    if topic is None:
                        err = f"PUBLISH topic is not valid UTF-8 or is empty or has wildcards or U+0000: {tb!r}"
                        break
                if fast is not None:  # no object per message: the ingest's path
                    fast(topic, src[te:end])
                    pos = end
                    continue
                m = _new(Message)
                _set_topic(m, topic)
                _set_payload(m, src[te:end])
                _set_qos(m, 0)
                _set_retain(m, False)
                _set_dup(m, False)
                _set_pid(m, None)
                append(m)
            elif not connected and b0 >> 4 != 2:
                err = f"{_NAMES[b0 >> 4]} before CONNACK"
                break
            elif b0 >> 4 == 3:
                qos = (b0 >> 1) & 3
                if qos == 3:
                    err = "PUBLISH with QoS 3"
                    break
                if length < 2:
                    err = "PUBLISH truncated: no topic length"
                    break
                te = i + 2 + ((src[i] << 8) | src[i + 1])
                if te + (2 if qos else 0) > end:
                    err = "PUBLISH truncated: topic or packet id longer than the packet"
                    break
                tb = src[i + 2:te]
                topic = topics.get(tb)
                if topic is None:
                    topic = self._check_topic(tb, bytes_topics)
                    if topic is None:
                        err = f"PUBLISH topic is not valid UTF-8 or is empty or has wildcards or U+0000: {tb!r}"
                        break
                dup = bool(b0 & 0x08)
                if qos == 0:
                    if dup:
                        err = "QoS 0 PUBLISH with DUP set"
                        break
                    if fast is not None:
                        fast(topic, src[te:end])
                    else:
                        append(_message(topic, src[te:end], 0, bool(b0 & 1), False, None))
                else:
                    pid = (src[te] << 8) | src[te + 1]
                    if not pid:
                        err = "PUBLISH with packet id 0"
                        break
                    if qos == 1:
                        out += _ack(0x40, pid)
                        if fast is not None:
                            fast(topic, src[te + 2:end])
                        else:
                            append(_message(topic, src[te + 2:end], 1, bool(b0 & 1), dup, pid))
                    else:
                        out += _ack(0x50, pid)
                        if pid not in self._inbound_qos2:  # a resend before PUBREL is not delivered again
                            self._inbound_qos2.add(pid)
                            if fast is not None:
                                fast(topic, src[te + 2:end])
                            else:
                                append(_message(topic, src[te + 2:end], 2, bool(b0 & 1), dup, pid))
            else:
                err = self._control(b0, src[i:end], append)
                if err is not None:
                    break
                if self._error is not None:  # a refusal: nothing more is read from this connection
                    pos = end
                    break
                connected = self._connacked
            pos = end
        if len(out) > queued:
            self._sent = True
        if err is not None:
            self._fail(err)
            append(ProtocolError(err))
            return events
        if pos < n and self._error is None:
            self._buf += memoryview(src)[pos:]
            self._need = self._needed(src, pos)
        return events

    @staticmethod
    def _needed(src: bytes, pos: int) -> int:
        """The whole length of the incomplete packet at ``pos``, or 0 if its header is incomplete."""
        length = 0
        shift = 0
        for i in range(pos + 1, min(pos + 5, len(src))):
            b = src[i]
            length |= (b & 0x7F) << shift
            if not b & 0x80:
                return i + 1 - pos + length
            shift += 7
        return 0

    def _check_topic(self, tb: bytes, bytes_topics: bool) -> str | bytes | None:
        """The topic to report for ``tb``, cached; None when it is not a valid topic name."""
        try:
            topic = tb.decode("utf-8")
        except UnicodeDecodeError:
            return None
        if not topic or "\x00" in topic or "+" in topic or "#" in topic:
            return None
        if len(self._topics) >= _TOPIC_CACHE_MAX:
            self._topics.clear()
        value = tb if bytes_topics else topic
        self._topics[tb] = value
        return value

    def _fail(self, reason: str) -> None:
        self._error = reason
        self._buf.clear()
        self._need = 0

    def _control(self, b0: int, body: bytes, emit: Callable[[Event], None]) -> str | None:
        """Handle a packet other than PUBLISH; an error text for a malformed or forbidden one."""
        kind = b0 >> 4
        flags = b0 & 0x0F
        if kind in (0, 1, 8, 10, 12, 14, 15):
            return f"the broker sent {_NAMES[kind]}, which a client must not receive"
        if flags != (2 if kind == 6 else 0):
            return f"{_NAMES[kind]} with fixed-header flags {flags:#x}"
        n = len(body)
        if kind == 2:  # CONNACK
            if self._connacked:
                return "a second CONNACK"
            if n != 2:
                return f"CONNACK with remaining length {n}, not 2"
            if body[0] & 0xFE:
                return f"CONNACK with reserved acknowledge flags {body[0]:#x}"
            code = body[1]
            if code == 0:
                session_present = bool(body[0] & 1)
                self._state = _CONNECTED
                self._connacked = True
                if not session_present:
                    self._inbound_qos2.clear()
                emit(Connected(session_present))
            else:
                reason = REFUSAL_REASONS.get(code, f"Connection Refused, reserved return code {code}")
                self._state = _CLOSED
                self._fail(f"the broker refused the connection: {reason}")
                emit(ConnectRefused(code, reason))
            return None
        if kind in (4, 5, 6, 7, 11):  # PUBACK PUBREC PUBREL PUBCOMP UNSUBACK
            if n != 2:
                return f"{_NAMES[kind]} with remaining length {n}, not 2"
            pid = (body[0] << 8) | body[1]
            entry = self._inflight.get(pid)
            if kind == 4:  # our QoS 1 publish done; an unknown or QoS 2 id is ignored
                if entry is not None and entry[0] == _AWAIT_PUBACK:
                    del self._inflight[pid]
                    emit(Published(pid))
            elif kind == 5:  # PUBREC for our QoS 2: always answered with PUBREL (4.3.3)
                if entry is not None and entry[0] == _AWAIT_PUBREC:
                    self._inflight[pid] = (_AWAIT_PUBCOMP, entry[1])
                self._out += _ack(0x62, pid)
            elif kind == 6:  # PUBREL for the broker's QoS 2: always answered with PUBCOMP
                self._inbound_qos2.discard(pid)
                self._out += _ack(0x70, pid)
            elif kind == 7:
                if entry is not None and entry[0] == _AWAIT_PUBCOMP:
                    del self._inflight[pid]
                    emit(Published(pid))
            else:
                if pid not in self._unsubs:
                    return f"UNSUBACK for packet id {pid}, which no UNSUBSCRIBE is waiting on"
                self._unsubs.discard(pid)
                emit(Unsubscribed(pid))
            return None
        if kind == 9:  # SUBACK
            if n < 3:
                return f"SUBACK with remaining length {n}, less than 3"
            pid = (body[0] << 8) | body[1]
            filters = self._subs.get(pid)
            if filters is None:
                return f"SUBACK for packet id {pid}, which no SUBSCRIBE is waiting on"
            codes = tuple(body[2:])
            if len(codes) != len(filters):
                return f"SUBACK with {len(codes)} return codes for {len(filters)} filters"
            if any(c not in (0, 1, 2, 0x80) for c in codes):
                return f"SUBACK with an invalid return code in {list(codes)}"
            del self._subs[pid]
            if 0x80 in codes:
                refused = tuple(f for f, c in zip(filters, codes, strict=True) if c == 0x80)
                emit(SubscribeRefused(pid, refused, codes))
            else:
                emit(Subscribed(pid, codes))
            return None
        # PINGRESP: the one type left
        if n:
            return f"PINGRESP with remaining length {n}, not 0"
        emit(Pong())
        return None
