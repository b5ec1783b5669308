"""The one place poserun talks MQTT: client factories, TCP_NODELAY, a fast threaded subscriber.

Two client stacks, one per job:

* ``paho-mqtt``'s own network thread for the hot paths (sensor ingest,
  gateways, recorder): measured here at about 3x the message rate of
  aiomqtt (docs/benchmarks.md).
* ``aiomqtt`` for asyncio code that publishes at record rate (sinks, the
  haptic bridge) and as the alternative ingest path.

Every client sets ``TCP_NODELAY``: without it loopback publish-to-receive
latency is about 2 ms, with it about 50 us.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from poserun.settings import BrokerSettings

NODELAY = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
_ids = itertools.count(1)


class BrokerUnavailable(ConnectionError):
    """The broker did not accept a connection."""


def client_id(broker: BrokerSettings, role: str) -> str:
    return f"{broker.client_id_prefix}-{role}-{os.getpid()}-{next(_ids)}"


def _set_nodelay(_client: paho.Client, _userdata: Any, sock: Any) -> None:
    try:
        sock.setsockopt(*NODELAY)
    except (OSError, AttributeError):  # unix sockets, websockets
        pass


def _tls_context(broker: BrokerSettings) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(broker.ca_file) if broker.ca_file else None)
    return ctx


@dataclass(frozen=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


def paho_client(broker: BrokerSettings, role: str, *, will: Will | None = None) -> paho.Client:
    """A paho client (MQTT 3.1.1) with TCP_NODELAY, credentials, TLS and last will set."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id(broker, role),
                         protocol=paho.MQTTv311, clean_session=True)
    client.on_socket_open = _set_nodelay
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    if broker.username:
        client.username_pw_set(broker.username,
                               broker.password.get_secret_value() if broker.password else None)
    if broker.tls:
        client.tls_set_context(_tls_context(broker))
    if will is not None:
        client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
    return client


def connect_paho(client: paho.Client, broker: BrokerSettings, *, timeout: float = 10.0) -> None:
    """Connect and start the network thread; raise :class:`BrokerUnavailable` on failure."""
    connected = threading.Event()
    result: list[Any] = []

    def on_connect(_c: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        result.append(reason)
        connected.set()

    previous = client.on_connect
    client.on_connect = on_connect
    try:
        client.connect(broker.host, broker.port, keepalive=broker.keepalive_s)
    except OSError as exc:
        raise BrokerUnavailable(f"cannot reach the broker at {broker.url}: {exc}") from None
    client.loop_start()
    if not connected.wait(timeout):
        client.loop_stop()
        raise BrokerUnavailable(f"no CONNACK from {broker.url} within {timeout:.0f} s")
    client.on_connect = previous
    if result and getattr(result[0], "is_failure", False):
        client.loop_stop()
        raise BrokerUnavailable(f"broker {broker.url} refused the connection: {result[0]}")


def aiomqtt_client(broker: BrokerSettings, role: str, *, will: Will | None = None,
                   max_queued_incoming: int | None = None) -> aiomqtt.Client:
    """An aiomqtt client with TCP_NODELAY (for asyncio publishers and the aiomqtt ingest path)."""
    return aiomqtt.Client(
        broker.host, broker.port,
        identifier=client_id(broker, role),
        username=broker.username,
        password=broker.password.get_secret_value() if broker.password else None,
        tls_context=_tls_context(broker) if broker.tls else None,
        will=aiomqtt.Will(will.topic, will.payload, will.qos, will.retain) if will else None,
        keepalive=broker.keepalive_s,
        socket_options=[NODELAY],
        max_queued_incoming_messages=max_queued_incoming,
    )


def broker_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when an MQTT broker completes a CONNECT/CONNACK handshake at host:port."""
    packet = bytes([0x10, 18, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 10, 0, 6]) + b"probe1"
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(packet)
            reply = sock.recv(4)
            sock.sendall(bytes([0xE0, 0]))  # DISCONNECT
            return len(reply) == 4 and reply[0] == 0x20 and reply[3] == 0
    except OSError:
        return False


@dataclass(slots=True)
class Incoming:
    topic: str
    payload: bytes
    recv_ns: int
    retain: bool = False
    qos: int = 0


@dataclass
class IngestStats:
    received: int = 0
    overflow: int = 0
    reconnects: int = 0
    connected: bool = False
    extra: dict[str, int] = field(default_factory=dict)


class Inbox:
    """A bounded deque that a network thread fills and asyncio code drains in batches.

    The thread only appends; a wake-up crosses to the event loop once per
    batch, not per message. When the deque is full the oldest message is
    dropped and counted as ``overflow`` (never silently).
    """

    def __init__(self, max_pending: int = 500_000,
                 on_message: Callable[[Incoming], None] | None = None) -> None:
        self.stats = IngestStats()
        self._pending: deque[Incoming] = deque()
        self._max = max_pending
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self._signalled = False
        self._direct = on_message

    def _bind_loop(self) -> None:
        try:
            self._loop = asyncio.get_running_loop()
            self._event = asyncio.Event()
        except RuntimeError:
            self._loop = None

    def _put(self, item: Incoming) -> None:
        self.stats.received += 1
        if self._direct is not None:
            self._direct(item)
            return
        pending = self._pending
        if len(pending) >= self._max:
            pending.popleft()
            self.stats.overflow += 1
        pending.append(item)
        self._wake()

    def _put_many(self, items: list[Incoming]) -> None:
        if self._direct is not None:
            for item in items:
                self._put(item)
            return
        self.stats.received += len(items)
        pending = self._pending
        pending.extend(items)
        while len(pending) > self._max:
            pending.popleft()
            self.stats.overflow += 1
        self._wake()

    def _wake(self) -> None:
        if not self._signalled and self._loop is not None and self._event is not None:
            self._signalled = True
            try:
                self._loop.call_soon_threadsafe(self._event.set)
            except RuntimeError:  # loop closed during shutdown
                pass

    async def batch(self, timeout: float | None = None) -> list[Incoming]:
        """Wait for messages (up to ``timeout`` s) and return everything pending."""
        assert self._event is not None, "start() must run inside the event loop"
        if not self._pending:
            try:
                await asyncio.wait_for(self._event.wait(), timeout)
            except TimeoutError:
                pass
        self._event.clear()
        self._signalled = False
        return self.drain()

    def drain(self) -> list[Incoming]:
        """Everything pending, without waiting (for synchronous users)."""
        out = []
        pending = self._pending
        while pending:
            out.append(pending.popleft())
        return out


class ThreadedSubscriber(Inbox):
    """paho's network thread feeding an :class:`Inbox`."""

    def __init__(self, broker: BrokerSettings, filters: Iterable[str], *, qos: int = 0,
                 role: str = "ingest", max_pending: int = 500_000,
                 on_message: Callable[[Incoming], None] | None = None) -> None:
        super().__init__(max_pending, on_message)
        self.broker = broker
        self.filters = list(filters)
        self.qos = qos
        self._subscribed = threading.Event()
        self.client = paho_client(broker, role)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.reconnect_delay_set(min_delay=1, max_delay=8)

    def _on_connect(self, client: paho.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if getattr(reason, "is_failure", False):
            return
        if self.stats.connected is False and self.stats.received:
            self.stats.reconnects += 1
        self.stats.connected = True
        client.subscribe([(f, self.qos) for f in self.filters])

    def _on_subscribe(self, *_args: Any) -> None:
        self._subscribed.set()

    def _on_disconnect(self, *_args: Any) -> None:
        self.stats.connected = False

    def _on_message(self, _c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        self._put(Incoming(msg.topic, msg.payload, time.time_ns(), bool(msg.retain), msg.qos))

    def start(self, *, timeout: float = 10.0) -> None:
        """Connect, subscribe, and wait until the broker acknowledged the subscription."""
        self._bind_loop()
        connect_paho(self.client, self.broker, timeout=timeout)
        self.client.on_connect = self._on_connect
        self.client.subscribe([(f, self.qos) for f in self.filters])
        self.stats.connected = True
        if not self._subscribed.wait(timeout):
            raise BrokerUnavailable("the broker did not acknowledge the subscription")

    def stop(self) -> None:
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()


class Publisher:
    """A fast synchronous publisher for gateways: paho driven without a network thread.

    Publishing from the caller's thread and pumping the socket every few
    messages measured about 3x faster here than paho's threaded mode (which
    wakes its thread through a socket pair on every publish). The socket is
    drained before the outgoing queue grows past ``flush_every`` messages,
    so a fast producer is slowed to what the broker takes, not buffered
    without bound.
    """

    def __init__(self, broker: BrokerSettings, role: str, *, will: Will | None = None,
                 flush_every: int = 200) -> None:
        self.broker = broker
        self.client = paho_client(broker, role, will=will)
        self.flush_every = flush_every
        self.published = 0
        self.reconnects = 0
        self._since_pump = 0
        # what this gateway keeps retained (meta, status): published again on every reconnection,
        # since a broker that restarted without it would leave the service refusing every frame
        self.retained: dict[str, tuple[bytes, int]] = {}

    def connect(self, timeout: float = 10.0) -> None:
        try:
            self.client.connect(self.broker.host, self.broker.port, keepalive=self.broker.keepalive_s)
        except OSError as exc:
            raise BrokerUnavailable(f"cannot reach the broker at {self.broker.url}: {exc}") from None
        deadline = time.monotonic() + timeout
        while not self.client.is_connected():
            if time.monotonic() > deadline:
                raise BrokerUnavailable(f"no CONNACK from {self.broker.url} within {timeout:.0f} s")
            rc = self.client.loop(0.05)
            if rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_AGAIN):
                raise BrokerUnavailable(f"broker {self.broker.url} closed the connection ({rc})")

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        if retain:
            self.retained[topic] = (payload, qos)
        self.client.publish(topic, payload, qos=qos, retain=retain)
        self.published += 1
        self._since_pump += 1
        if self._since_pump >= self.flush_every:
            self.flush()

    def pump(self, timeout: float = 0.0) -> None:
        """Serve the connection (acks, pings, reconnect) for up to ``timeout`` s."""
        rc = self.client.loop(timeout)
        if rc == paho.MQTT_ERR_NO_CONN or rc == paho.MQTT_ERR_CONN_LOST:
            with contextlib.suppress(OSError):
                if self.client.reconnect() == paho.MQTT_ERR_SUCCESS:
                    self.reconnects += 1
                    for topic, (payload, qos) in self.retained.items():
                        self.client.publish(topic, payload, qos=qos, retain=True)

    def flush(self, timeout: float = 30.0) -> None:
        """Write everything queued (QoS 1/2 included: wait for their acks)."""
        self._since_pump = 0
        deadline = time.monotonic() + timeout
        self.pump(0.0)
        while (self.client.want_write() or self._inflight()) and time.monotonic() < deadline:
            self.pump(0.002)

    def _inflight(self) -> bool:
        return bool(getattr(self.client, "_out_messages", None))

    def sleep(self, seconds: float, stop: threading.Event | None = None) -> None:
        """Wait while keeping the connection served (returns early when ``stop`` is set)."""
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0 or (stop is not None and stop.is_set()):
                return
            self.pump(min(left, 0.05))

    def close(self) -> None:
        self.flush(5.0)
        with contextlib.suppress(Exception):
            self.client.disconnect()
            self.client.loop(0.05)
