"""The gateways' MQTT client: a blocking adapter over ``poserun.wire.mqtt``, one connection each.

A gateway (the simulator, replay) publishes from its own thread at sensor rate, so this
adapter is synchronous: publishes are encoded by the sans-I/O
:class:`~poserun.wire.mqtt.MqttClient` (or ahead of time, :meth:`Publisher.send_packets`) and
written in batches with one ``sendall``; :meth:`Publisher.pump` reads what the broker sent
(acknowledgements, pings, meta requests) and keeps the link alive. Frames, meta and status
share the connection, so the broker sees them in the order they were published.

It survives a track's network as the service's connections do (``services/mqtt_conn.py``):
a lost link (an error, the broker's FIN, no answer to a PINGREQ) is reconnected with a
growing, jittered delay (0.25-0.5 s doubling to ``max_delay_s``); on the new connection the
retained messages this gateway published (its meta and status) are published again, since a
broker that restarted without them would leave the service refusing every frame, and its
QoS 1 publishes not acknowledged are sent again. QoS 0 frames published while the broker is
away are dropped and counted (``dropped``): a gateway has no use for sensor data that the
processor would take as seconds late.
"""

from __future__ import annotations

import contextlib
import logging
import random
import select
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from poserun.services.mqtt import NODELAY, BrokerUnavailable, client_id, tls_context
from poserun.settings import BrokerSettings
from poserun.wire import mqtt as proto
from poserun.wire import topics

log = logging.getLogger(__name__)
WRITE_BATCH = 64 * 1024  # bytes of publishes gathered before one sendall
SERVE_EVERY = 256  # publishes between looks at what the broker sent (acks, pings) by a busy publisher


@dataclass
class PublisherStats:
    published: int = 0  # handed to the socket
    acknowledged: int = 0  # QoS 1 publishes the broker confirmed
    dropped: int = 0  # QoS 0 publishes while the broker was away
    connects: int = 0
    reconnects: int = 0
    resent: int = 0  # in-flight publishes sent again after a reconnection
    republished: int = 0  # retained messages published again after a reconnection
    timeouts: int = 0  # half-open links noticed by the keep-alive
    last_error: str = ""


class Publisher:
    """A reconnecting, blocking MQTT publisher for one gateway (see the module docstring).

    ``subscriptions`` with ``on_message(message)`` receive what the broker sends on them (a
    gateway's meta requests), handed over during :meth:`pump`, :meth:`flush` and :meth:`sleep`.
    """

    def __init__(self, broker: BrokerSettings, role: str, *, will: proto.Will | None = None,
                 subscriptions: Sequence[tuple[str, int]] = (),
                 on_message: Callable[[proto.Message], object] | None = None,
                 max_delay_s: float = 2.0, connect_timeout_s: float = 5.0, max_in_flight: int = 1000) -> None:
        self.broker = broker
        self.role = role
        self.subscriptions = list(subscriptions)
        self.on_message = on_message
        self.max_delay_s = max_delay_s
        self.connect_timeout_s = connect_timeout_s
        self.max_in_flight = max_in_flight  # QoS 1 publishes kept while the broker is away (more: dropped)
        self.stats = PublisherStats()
        password = broker.password.get_secret_value() if broker.password is not None else None
        self.client = proto.MqttClient(client_id(broker, role), keepalive_s=broker.keepalive_s,
                                       username=broker.username, password=password, will=will)
        # what this gateway keeps retained (meta, status): published again on every reconnection
        self.retained: dict[str, tuple[bytes, int]] = {}
        self._sock: socket.socket | None = None
        self._out = bytearray()
        self._retry_at = 0.0
        self._delay = 0.5
        self._since_served = 0
        self._opening = False  # within _open: a message handed over then must not dial again
        self._deferred: list[proto.Message] = []  # messages that came during the handshake
        self._republished_now = False
        self._failures = 0  # reconnection attempts failed in a row (logged now and then)
        self._reading = False
        self.answered = 0  # meta requests answered (gateway_publisher)

    # ---------------------------------------------------------------- public
    @property
    def connected(self) -> bool:
        return self._sock is not None

    @property
    def published(self) -> int:
        return self.stats.published

    @property
    def reconnects(self) -> int:
        return self.stats.reconnects

    def connect(self, timeout: float = 10.0) -> None:
        """The first connection: :class:`BrokerUnavailable` when the broker cannot be reached,
        does not answer or refuses (credentials, an ACL); later losses reconnect by themselves."""
        why = self._open(timeout)
        if why is not None:
            raise BrokerUnavailable(why)
        self._deliver_deferred()

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        """Publish (written with the next batch; QoS 1 tracked until acknowledged)."""
        if retain:
            self.retained[topic] = (payload, qos)
        if self._sock is None:
            if self._opening or not self._reconnect():
                if retain:
                    pass  # published again on the next connection, with the other retained ones
                elif qos and self.client.in_flight < self.max_in_flight:
                    self.client.publish(topic, payload, qos, retain)  # kept in flight: sent on reconnection
                else:
                    self.stats.dropped += 1
                return
            if retain:
                return  # the reconnection just now published it with the other retained ones
        if retain and self._republished_now:
            return  # (asked for while the reconnection hands over a meta request: just published)
        _pid, packet = self.client.publish(topic, payload, qos, retain)
        self._out += packet
        self.stats.published += 1
        self._since_served += 1
        if len(self._out) >= WRITE_BATCH or self._since_served >= SERVE_EVERY:
            self._serve()

    def send_packets(self, packets: Sequence[bytes]) -> None:
        """Write pre-encoded QoS 0 PUBLISH packets (``proto.encode_publish``), in order, at once."""
        if not packets:
            return
        if self._sock is None and not self._reconnect():
            self.stats.dropped += len(packets)
            return
        self._out += b"".join(packets)
        self.stats.published += len(packets)
        self._since_served += len(packets)
        if self._since_served >= SERVE_EVERY:
            self._serve()
        else:
            self._write()

    def pump(self, timeout: float = 0.0) -> None:
        """Write what waits, serve the connection (acks, pings, messages) for up to ``timeout`` s,
        and reconnect when it was lost and the back-off has passed."""
        if self._sock is None:
            if not self._reconnect():
                if timeout > 0:
                    time.sleep(min(timeout, max(0.0, self._retry_at - time.monotonic())))
                return
        self._write()
        self._read(timeout)
        self._keepalive()

    def flush(self, timeout: float = 30.0) -> None:
        """Write everything and wait (up to ``timeout``) for the acknowledgement of every QoS 1
        publish; returns at once while the broker is away (what is in flight goes on reconnection)."""
        deadline = time.monotonic() + timeout
        self.pump(0.0)
        while self._sock is not None and (self._out or self.client.in_flight) and time.monotonic() < deadline:
            self.pump(min(0.05, max(0.0, deadline - time.monotonic())))

    def sleep(self, seconds: float, stop: threading.Event | None = None) -> None:
        """Wait while keeping the connection served (returns early when ``stop`` is set)."""
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0 or (stop is not None and stop.is_set()):
                return
            self.pump(min(left, 0.05))

    def close(self, timeout: float = 5.0) -> None:
        """Write what waits, take the last acknowledgements, say DISCONNECT (no will) and close."""
        if self._sock is not None:
            self.flush(timeout)
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.sendall(self.client.disconnect())
            with contextlib.suppress(OSError):
                sock.close()

    # -------------------------------------------------------------- internals
    def _serve(self) -> None:
        """Write, and look (without waiting) at what the broker sent; keep the link alive."""
        self._since_served = 0
        self._write()
        if not self._reading:  # (a publish from on_message, while a read is handed over)
            self._read(0.0)
        self._keepalive()

    def _open(self, timeout: float) -> str | None:
        """Dial, CONNECT, wait for CONNACK (and SUBACK); None when up, else why not."""
        self._opening = True
        try:
            return self._dial(timeout)
        finally:
            self._opening = False

    def _deliver_deferred(self) -> None:
        """Hand over the messages that came with the handshake, now that the connection is up."""
        deferred, self._deferred = self._deferred, []
        for m in deferred:
            self._event(m)

    def _dial(self, timeout: float) -> str | None:
        b = self.broker
        try:
            raw = socket.create_connection((b.host, b.port), timeout=timeout)
        except OSError as exc:
            return f"cannot reach the broker at {b.url}: {exc}"
        sock = raw
        try:
            raw.setsockopt(*NODELAY)
            ctx = tls_context(b)
            sock = ctx.wrap_socket(raw, server_hostname=b.host) if ctx is not None else raw
            sock.settimeout(timeout)
            sock.sendall(self.client.connect())
            why = self._handshake(sock, time.monotonic() + timeout)
        except (OSError, ValueError) as exc:
            why = f"connection to {b.url} failed: {exc}"
        if why is not None:
            with contextlib.suppress(OSError):
                sock.close()
            self.stats.last_error = why
            return why
        # writes block for at most the keep-alive period: a broker that stopped reading is lost
        sock.settimeout(max(1.0, float(b.keepalive_s)))
        self._sock = sock
        self.stats.connects += 1
        self._delay = 0.5
        self.client.tick(time.monotonic())
        return None

    def _handshake(self, sock: socket.socket, deadline: float) -> str | None:
        b = self.broker
        want_suback: int | None = None
        connacked = False
        while True:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = sock.recv(65536)
            except TimeoutError:
                return f"no {'SUBACK' if connacked else 'CONNACK'} from {b.url} in time"
            if not data:
                return f"broker {b.url} closed the connection before {'SUBACK' if connacked else 'CONNACK'}"
            for ev in self.client.receive(data):
                if isinstance(ev, proto.ConnectRefused):
                    return f"broker {b.url} refused the connection: {ev.reason}"
                if isinstance(ev, proto.ProtocolError):
                    return f"broker {b.url}: {ev.reason}"
                if isinstance(ev, proto.Connected):
                    connacked = True
                    out = bytearray()
                    for _pid, packet in self.client.pending():  # in flight on the last connection
                        out += packet
                        self.stats.resent += 1
                    if self.subscriptions:
                        want_suback, packet = self.client.subscribe(self.subscriptions)
                        out += packet
                    if out:
                        sock.sendall(out)
                elif isinstance(ev, proto.SubscribeRefused):
                    return (f"broker {b.url} refused the subscription to {', '.join(ev.filters_refused)} "
                            "(the account may not read it: check the ACL)")
                elif isinstance(ev, proto.Subscribed) and ev.packet_id == want_suback:
                    want_suback = None
                elif isinstance(ev, proto.Message):
                    self._deferred.append(ev)  # handed over once the connection is up
                else:
                    self._event(ev)
            answer = self.client.data_to_send()
            if answer:
                sock.sendall(answer)
            if connacked and want_suback is None:
                return None

    def _reconnect(self) -> bool:
        """Try again when the back-off allows; True when connected."""
        now = time.monotonic()
        if now < self._retry_at:
            return False
        self._out.clear()  # QoS 0 packets of the lost connection (QoS 1 ones are resent from the client)
        why = self._open(self.connect_timeout_s)
        if why is not None:
            self._failures += 1
            if self._failures in (1, 10) or self._failures % 100 == 0:  # (a black-holed broker: not every 2 s)
                log.warning("mqtt %s: reconnection %d failed: %s", self.role, self._failures, why)
            self._retry_at = time.monotonic() + self._delay * (0.5 + random.random() / 2)
            self._delay = min(self._delay * 2, self.max_delay_s)
            return False
        self._failures = 0
        self.stats.reconnects += 1
        log.info("mqtt %s: connected again to %s", self.role, self.broker.url)
        for topic, (payload, qos) in self.retained.items():
            _pid, packet = self.client.publish(topic, payload, qos, True)
            self._out += packet
            self.stats.republished += 1
        self._write()
        self._republished_now = True
        try:
            self._deliver_deferred()
        finally:
            self._republished_now = False
        return self._sock is not None

    def _lose(self, why: str) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
        self.stats.last_error = why
        self._retry_at = time.monotonic() + self._delay * (0.5 + random.random() / 2)
        self._delay = min(self._delay * 2, self.max_delay_s)
        log.warning("mqtt %s: %s; reconnecting", self.role, why)

    def _write(self) -> None:
        if self._sock is None or not self._out:
            return
        data, self._out = self._out, bytearray()
        try:
            self._sock.sendall(data)
        except OSError as exc:  # a timeout included: the broker stopped reading
            self._lose(f"write failed: {exc or 'timed out'}")

    def _read(self, timeout: float) -> None:
        self._reading = True
        try:
            self._read_all(timeout)
        finally:
            self._reading = False

    def _read_all(self, timeout: float) -> None:
        sock = self._sock
        while sock is not None:
            pending = sock.pending() if hasattr(sock, "pending") else 0  # TLS: decrypted, not yet read
            if not pending:
                poller = select.poll()  # (select() fails past file descriptor 1023)
                poller.register(sock, select.POLLIN)
                try:
                    ready = poller.poll(timeout * 1000)
                except OSError as exc:
                    self._lose(f"poll failed: {exc}")
                    return
                if not ready:
                    return
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._lose(f"read failed: {exc}")
                return
            if not data:
                self._lose("the broker closed the connection")
                return
            for ev in self.client.receive(data):
                self._event(ev)
            answer = self.client.data_to_send()
            if answer:
                self._out += answer
                self._write()
            sock = self._sock
            timeout = 0.0  # drain what is already there, then return

    def _event(self, ev: proto.Event) -> None:
        if isinstance(ev, proto.Published):
            self.stats.acknowledged += 1
        elif isinstance(ev, proto.Message):
            if self.on_message is not None:
                try:
                    self.on_message(ev)
                except Exception:  # a bad request must not end the gateway
                    log.exception("mqtt %s: error handling a message on %s", self.role, ev.topic)
        elif isinstance(ev, proto.ProtocolError):
            self._lose(f"protocol error: {ev.reason}")

    def _keepalive(self) -> None:
        if self._sock is None:
            return
        for ev in self.client.tick(time.monotonic()):
            if isinstance(ev, proto.KeepaliveTimeout):
                self.stats.timeouts += 1
                self._lose(f"no answer from the broker for {ev.waited_s:.1f} s (half-open link)")
                return
        answer = self.client.data_to_send()
        if answer:
            self._out += answer
            self._write()


def gateway_publisher(broker: BrokerSettings, role: str, session: str | None, *,
                      will: proto.Will | None = None) -> Publisher:
    """A gateway's publisher that answers poserun's meta requests (docs/protocol.md): a request
    for meta this gateway published (retained) gets it again, at most once a second per topic."""
    answered: dict[str, float] = {}

    def answer(message: proto.Message) -> None:
        wanted = topics.requested_meta(str(message.topic))
        held = pub.retained.get(wanted) if wanted is not None else None
        now = time.monotonic()
        if wanted is None or held is None or now - answered.get(wanted, -1e9) < 1.0:
            return
        answered[wanted] = now
        pub.answered += 1
        pub.publish(wanted, held[0], qos=max(held[1], 1), retain=True)

    pub = Publisher(broker, role, will=will, subscriptions=[(topics.subscription(session, "meta_request"), 0)],
                    on_message=answer)
    return pub
