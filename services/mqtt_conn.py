"""One MQTT connection on the event loop: the thin asyncio adapter over ``poserun.wire.mqtt``.

The protocol (packets, acknowledgements, packet ids, keep-alive) is the sans-I/O
:class:`~poserun.wire.mqtt.MqttClient`; this adapter only moves bytes and time. It

* connects, subscribes, and says so when the broker refuses either (a CONNACK code, a
  SUBACK 0x80: credentials or an ACL), instead of going silent;
* keeps the link alive and notices a half-open one (the broker gone without a FIN: no
  answer to a PINGREQ within the keep-alive period), then reconnects;
* reconnects after any loss with a growing, jittered delay (0.25-0.5 s, doubling to at most
  ``max_delay_s``, 2 s: back within about 2 s of a broker's return, docs/reliability.md),
  subscribes again and sends again what was in flight (QoS 1/2 publishes not acknowledged;
  with ``max_age_s``, only those still young enough);
* keeps what is published while the broker is away in a bounded outbox, sent on
  reconnection; entries older than ``max_age_s`` (a late haptic cue is a wrong one) or
  pushed out of a full outbox are dropped and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from poserun.services.mqtt import BrokerUnavailable, client_id, tls_context
from poserun.settings import BrokerSettings
from poserun.wire import mqtt as proto

log = logging.getLogger(__name__)


@dataclass
class ConnectionStats:
    connected: bool = False
    connects: int = 0
    reconnects: int = 0
    published: int = 0  # handed to the socket (QoS 0) or to the broker (QoS 1/2, first send)
    acknowledged: int = 0  # QoS 1/2 publishes the broker confirmed
    resent: int = 0  # in-flight publishes sent again after a reconnection
    queued: int = 0  # publishes that waited in the outbox
    dropped_old: int = 0  # outbox entries older than max_age_s when the broker returned
    dropped_full: int = 0  # outbox entries pushed out by newer ones
    dropped_closed: int = 0  # still waiting, or unacknowledged, when the connection was closed
    refused: int = 0  # CONNACK or SUBACK refusals
    timeouts: int = 0  # half-open links noticed by the keep-alive
    last_error: str = ""

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


class MqttConnection:
    """A publishing and/or subscribing MQTT client that survives a track's network.

    ``on_message(message, recv_ns)`` gets every PUBLISH from the broker (it must not raise);
    with ``on_publish(topic, payload, recv_ns)`` every PUBLISH goes there instead, in order and
    without a :class:`~poserun.wire.mqtt.Message` each (the ingest's hot path);
    ``on_read()`` is called after the messages of each read from the socket (a batch),
    ``on_state(up)`` when the connection is ready (subscribed) and when it is lost.
    ``persistent`` asks the broker to keep the session (subscriptions and queued QoS 1/2
    messages) across reconnections; the client id stays the same for this object's life (a
    subscriber that must not miss messages while away); publishers need none (in-flight
    publishes are sent again from here).
    """

    def __init__(self, broker: BrokerSettings, role: str, *, subscriptions: Sequence[tuple[str, int]] = (),
                 on_message: Callable[[proto.Message, int], object] | None = None, will: proto.Will | None = None,
                 persistent: bool = False, outbox: int = 10_000, max_age_s: float | None = None,
                 max_in_flight: int = 1000, max_delay_s: float = 2.0,
                 on_read: Callable[[], object] | None = None, on_state: Callable[[bool], object] | None = None,
                 on_publish: Callable[[str, bytes, int], object] | None = None, rcvbuf: int = 0) -> None:
        self.broker = broker
        self.role = role
        self.subscriptions = list(subscriptions)
        self.on_message = on_message
        self.on_read = on_read  # after the messages of one read from the socket
        self.on_state = on_state  # connected (subscribed) or not
        self.rcvbuf = rcvbuf
        self.max_age_s = max_age_s
        self.max_in_flight = max_in_flight
        self.max_delay_s = max_delay_s
        self.stats = ConnectionStats()
        password = broker.password.get_secret_value() if broker.password is not None else None
        self.recv_ns = 0  # when the read being parsed arrived
        fast = None
        if on_publish is not None:
            def fast(topic: str | bytes, payload: bytes) -> None:
                on_publish(topic, payload, self.recv_ns)  # type: ignore[arg-type]
        self.client = proto.MqttClient(client_id(broker, role), keepalive_s=broker.keepalive_s,
                                       username=broker.username, password=password, will=will,
                                       clean_session=not persistent, on_publish=fast)
        self._outbox: deque[tuple[float, str, bytes, int, bool]] = deque(maxlen=outbox)
        self._sent_at: dict[int, float] = {}  # in-flight packet id -> when it was first sent (with max_age_s)
        self._transport: asyncio.Transport | None = None
        self._ready = asyncio.Event()  # connected (and subscribed)
        self._lost: asyncio.Future[str] | None = None
        self._first: asyncio.Future[None] | None = None  # the first connection's outcome
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    # ---------------------------------------------------------------- public
    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    @property
    def outbox(self) -> int:
        return len(self._outbox)

    async def start(self, timeout: float = 10.0) -> None:
        """Connect (and subscribe); :class:`BrokerUnavailable` when the first attempt fails or is
        refused. Later losses are handled in the background."""
        loop = asyncio.get_running_loop()
        self._first = loop.create_future()
        self._task = asyncio.create_task(self._run(timeout), name=f"mqtt-{self.role}")
        try:
            await asyncio.wait_for(asyncio.shield(self._first), timeout + 1.0)
        except TimeoutError:
            await self.close()
            raise BrokerUnavailable(f"no answer from the broker at {self.broker.url} within {timeout:.0f} s") from None
        except BaseException:
            await self.close()
            raise

    async def wait_connected(self) -> None:
        await self._ready.wait()

    def publish(self, topic: str, payload: bytes | str, qos: int = 0, retain: bool = False) -> None:
        """Send now when connected, else keep it in the outbox for the broker's return."""
        data = payload.encode("utf-8") if isinstance(payload, str) else payload
        if self._transport is None or not self._ready.is_set() or self._outbox or \
                (qos and self.client.in_flight >= self.max_in_flight):  # (behind what waits: in order)
            self.stats.queued += 1
            if len(self._outbox) == self._outbox.maxlen:
                self.stats.dropped_full += 1
            self._outbox.append((time.monotonic(), topic, data, qos, retain))
            return
        self._send(topic, data, qos, retain)

    def _send(self, topic: str, data: bytes, qos: int, retain: bool) -> None:
        t = self._transport
        assert t is not None
        pid, packet = self.client.publish(topic, data, qos, retain)
        t.write(packet)
        self.stats.published += 1
        if pid is not None and self.max_age_s is not None:
            self._sent_at[pid] = time.monotonic()

    async def close(self, timeout: float = 2.0) -> None:
        """Send what waits (while connected, up to ``timeout``), take the last acknowledgements,
        say DISCONNECT and stop; what could not go is counted (``dropped_closed``)."""
        deadline = time.monotonic() + timeout
        while (self._outbox or self.client.in_flight) and self._ready.is_set() and time.monotonic() < deadline:
            self._opened()
            await asyncio.sleep(0.01)
        self._closing = True
        self.stats.dropped_closed += len(self._outbox) + self.client.in_flight
        self._outbox.clear()
        t = self._transport
        if t is not None and not t.is_closing():
            with contextlib.suppress(Exception):
                t.write(self.client.disconnect())
            t.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self._task = None

    # --------------------------------------------------------------- the loop
    async def _run(self, timeout: float) -> None:
        delay = 0.5
        first = True
        while not self._closing:
            try:
                why, was_up = await self._session(timeout, first)
            except Exception as exc:  # a bug must not end the reconnection for good
                log.exception("mqtt %s: unexpected error", self.role)
                why, was_up = f"unexpected error: {exc!r}", False
            if self._closing:
                return
            if first and not was_up and self._first is not None and not self._first.done():
                self._first.set_exception(BrokerUnavailable(why))
                return
            first = False
            if was_up:
                delay = 0.5
            self.stats.last_error = why
            wait = delay * (0.5 + random.random() / 2)  # jittered, so a team's clients do not all come back at once
            log.warning("mqtt %s: %s; reconnecting in %.1f s", self.role, why, wait)
            await asyncio.sleep(wait)
            delay = min(delay * 2, self.max_delay_s)

    async def _session(self, timeout: float, first: bool) -> tuple[str, bool]:
        """One connection, from dialling to its loss: why it ended, and whether it was up."""
        loop = asyncio.get_running_loop()
        self._lost = loop.create_future()
        b = self.broker
        try:
            await asyncio.wait_for(loop.create_connection(lambda: _Protocol(self), b.host, b.port,
                                                          ssl=tls_context(b)), timeout)
        except (OSError, TimeoutError) as exc:
            return f"cannot reach the broker at {b.url}: {exc or 'timed out'}", False
        ticker = asyncio.create_task(self._tick())
        try:
            ready = asyncio.ensure_future(self._ready.wait())
            done, _ = await asyncio.wait({ready, self._lost}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            ready.cancel()
            if self._lost.done():
                return self._lost.result(), False
            if not done:
                return f"no CONNACK/SUBACK from {b.url} within {timeout:.0f} s", False
            if first:
                assert self._first is not None
                if not self._first.done():
                    self._first.set_result(None)
            else:
                log.info("mqtt %s: connected again to %s", self.role, b.url)
            return await self._lost, True
        finally:
            ticker.cancel()
            self._lose("closed")  # (no-op when already lost)
            t, self._transport = self._transport, None
            if t is not None and not t.is_closing():
                t.abort()

    async def _tick(self) -> None:
        period = max(0.25, self.broker.keepalive_s / 4)
        while True:
            await asyncio.sleep(period)
            for ev in self.client.tick(time.monotonic()):
                if isinstance(ev, proto.KeepaliveTimeout):
                    self.stats.timeouts += 1
                    self._lose(f"no answer from the broker for {ev.waited_s:.1f} s (half-open link)")
                    return
            self._flush()

    # ------------------------------------------------------------ protocol side
    def _flush(self) -> None:
        out = self.client.data_to_send()
        if out and self._transport is not None:
            self._transport.write(out)

    def _lose(self, why: str) -> None:
        """The link is gone (or no use): from now on publishes wait in the outbox."""
        if self._ready.is_set():
            self._ready.clear()
            self.stats.connected = False
            if self.on_state is not None:
                self.on_state(False)
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(why)

    def _connected(self, session_present: bool) -> None:
        """CONNACK 0: subscribe, send again what was in flight, then the outbox."""
        t = self._transport
        assert t is not None
        if self.subscriptions:
            _pid, packet = self.client.subscribe(self.subscriptions)
            t.write(packet)
        now = time.monotonic()
        for pid, packet in self.client.pending():
            sent = self._sent_at.get(pid)
            if sent is not None and self.max_age_s is not None and now - sent > self.max_age_s:
                self.client.forget(pid)  # too late to be of use (a cue a stride late is a wrong one)
                del self._sent_at[pid]
                self.stats.dropped_old += 1
                continue
            t.write(packet)
            self.stats.resent += 1
        if not self.subscriptions:
            self._opened()

    def _opened(self) -> None:
        if not self._ready.is_set():
            self._ready.set()
            self.stats.connected = True
            self.stats.connects += 1  # (counted before on_state, which may read them)
            self.stats.reconnects = self.stats.connects - 1
            if self.on_state is not None:
                self.on_state(True)
        now = time.monotonic()
        box = self._outbox
        while box and self._ready.is_set():
            if self.max_age_s is not None and now - box[0][0] > self.max_age_s:
                box.popleft()
                self.stats.dropped_old += 1
                continue
            if box[0][3] and self.client.in_flight >= self.max_in_flight:
                break
            _t, topic, data, qos, retain = box.popleft()
            self._send(topic, data, qos, retain)

    def _events(self, events: list[proto.Event], recv_ns: int) -> None:
        for ev in events:
            if type(ev) is proto.Message:  # (with on_publish, the client hands them over itself)
                if self.on_message is not None:
                    self.on_message(ev, recv_ns)
            elif isinstance(ev, proto.Published):
                self.stats.acknowledged += 1
                self._sent_at.pop(ev.packet_id, None)
                if self._outbox and self._ready.is_set():
                    self._opened()  # room in flight again
            elif isinstance(ev, proto.Connected):
                self._connected(ev.session_present)
            elif isinstance(ev, proto.Subscribed):
                self._opened()
            elif isinstance(ev, proto.SubscribeRefused):
                self.stats.refused += 1
                self._lose(f"the broker at {self.broker.url} refused the subscription to "
                           f"{', '.join(ev.filters_refused)} (an ACL? the user {self.broker.username!r})")
            elif isinstance(ev, proto.ConnectRefused):
                self.stats.refused += 1
                self._lose(f"the broker at {self.broker.url} refused the connection: {ev.reason}")
            elif isinstance(ev, proto.ProtocolError):
                self._lose(f"malformed input from the broker: {ev.reason}")


class _Protocol(asyncio.Protocol):
    def __init__(self, owner: MqttConnection) -> None:
        self.owner = owner

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if self.owner.rcvbuf:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.owner.rcvbuf)
        self.owner._transport = transport
        transport.write(self.owner.client.connect())

    def data_received(self, data: bytes) -> None:
        owner = self.owner
        owner.recv_ns = now = time.time_ns()
        owner._events(owner.client.receive(data), now)
        owner._flush()
        if owner.on_read is not None:
            owner.on_read()

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner._lose(f"connection lost: {exc}" if exc else "the broker closed the connection")
