"""Subscribers at sensor rate over the one MQTT connection (``services/mqtt_conn.py``).

Both read large blocks and parse every complete packet in them (a client library that reads
each packet with several small ``recv`` calls spends more on that than on decoding):

* :class:`LoopSubscriber`, the ingest of ``poserun process``, on the event loop;
* :class:`StreamSubscriber`, the same connection on a thread of its own, for the recorder
  and the virtual band.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from poserun.services.mqtt import BrokerUnavailable, Inbox, Incoming, IngestStats
from poserun.settings import BrokerSettings

log = logging.getLogger(__name__)
_U16 = struct.Struct(">H")
PUBLISH, PUBACK, SUBACK, CONNACK, PINGRESP = 3, 4, 9, 2, 13


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
