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
import time
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


class _Lane:
    """One athlete's (one topic prefix's) queue in the ingest's backlog."""

    __slots__ = ("bytes", "deficit", "in_turn", "name", "q", "waiting")

    def __init__(self, name: str) -> None:
        self.name = name
        self.q: deque[tuple[str, bytes, int, int]] = deque()  # topic, payload, recv_ns, cost
        self.bytes = 0
        self.deficit = 0
        self.in_turn = False
        self.waiting = False  # in the turn order (it has messages)


def lane_of(topic: str) -> str:
    """The topic up to its fourth ``/``: ``poserun/v1/{session}/{athlete}`` (a gateway's status:
    ``.../_gateway``); a shorter topic is its own lane."""
    k = -1
    for _ in range(4):
        k = topic.find("/", k + 1)
        if k < 0:
            return topic
    return topic[:k]


class LoopSubscriber:
    """The ingest on the asyncio event loop: no thread, no hand-over.

    The connection is :class:`~poserun.services.mqtt_conn.MqttConnection` (the one MQTT core:
    refusals are errors, a half-open link is noticed by the keep-alive, every loss reconnects
    and subscribes again). Each read from the socket is parsed at once and its PUBLISHes
    queued, each with the time the read arrived; the queue is handed to
    ``on_publish(topic, payload, recv_ns)`` inside the loop. At real-time rates (a few
    messages per read) this saves the per-batch wake-up, queue and GIL hand-over between a
    network thread and the loop, which cost more than the messages themselves.

    The backlog is fair between athletes: one queue (lane) per topic prefix up to the athlete
    (:func:`lane_of`), served by deficit round robin, ``quantum`` bytes a turn, so one
    athlete's flood of large frames waits in its own lane while the others' frames go on
    (docs/reliability.md measures it). The work goes in slices of at most ``slice`` messages
    and ``slice_s`` seconds, and a slice ends early when ``on_publish`` returns something true
    (a record), so the sinks' tasks, socket reads and writes (a haptic cue) run in between.
    Reading goes on meanwhile (pausing it would make the broker drop what it cannot queue,
    uncounted); a backlog over ``max_backlog_bytes`` (each message's payload, topic and
    ``MESSAGE_OVERHEAD``: what holding it costs) or ``max_backlog`` messages sheds the oldest
    of the biggest lane, counted as ``overflow``. Idle lanes are kept until ``max_lanes`` are
    held, then dropped at once when at least a quarter of them are idle; otherwise new
    prefixes share one lane. ``admit(prefix)``,
    asked before a message opens a lane, may refuse it unqueued (the fusion service refuses
    athletes it does not serve there: a flood of them costs no memory). ``on_publish`` must not
    raise (the fusion service counts errors).
    """

    MESSAGE_OVERHEAD = 200  # bytes: the tuple, the topic and payload objects, the deque slot

    def __init__(self, broker: BrokerSettings, filters: Iterable[str],
                 on_publish: Callable[[str, bytes, int], object], *, qos: int = 0, role: str = "ingest",
                 slice: int = 64, slice_s: float = 0.005, quantum: int = 16 * 1024, max_lanes: int = 1024,
                 max_backlog_bytes: int = 8 << 20, max_backlog: int = 500_000,
                 admit: Callable[[str], bool] | None = None) -> None:
        from poserun.services.mqtt_conn import MqttConnection

        self.broker = broker
        self.filters = [(f, qos) for f in filters]
        self.role = role
        self.on_publish = on_publish
        self.stats = IngestStats()
        self.slice = slice
        self.slice_ns = int(slice_s * 1e9)
        self.quantum = quantum
        self.max_lanes = max_lanes
        self.max_backlog_bytes = max_backlog_bytes
        self.max_backlog = max_backlog
        self.admit = admit
        self.lanes: dict[str, _Lane] = {}
        self.active: deque[_Lane] = deque()  # lanes with messages, in turn order
        self.queued = 0
        self.queued_bytes = 0
        self.refused = 0  # messages admit() refused
        self._big: _Lane | None = None  # the biggest lane seen (shed from first when over the limits)
        self._lane_of: dict[str, _Lane] = {}  # topic -> its lane (topics repeat every frame)
        self._scheduled = False
        self.conn = MqttConnection(broker, role, subscriptions=self.filters, on_publish=self._publish,
                                   on_read=self._read, on_state=self._state, rcvbuf=4 << 20)
        self._received = 0  # since the last read was handed on

    @property
    def backlog(self) -> int:
        return self.queued

    def _publish(self, topic: str, payload: bytes, recv_ns: int) -> None:
        self._received += 1
        lane = self._lane_of.get(topic)
        if lane is None:
            lane = self._lane(topic)
            if lane is None:
                return
        if not lane.waiting:
            lane.waiting = True
            self.active.append(lane)
        cost = len(payload) + len(topic) + self.MESSAGE_OVERHEAD
        if len(payload) > 3 and payload.startswith(b"PB"):  # a bundle: its frames' work, one overhead each
            cost += self.MESSAGE_OVERHEAD * (payload[3] - 1)
        lane.q.append((topic, payload, recv_ns, cost))
        lane.bytes += cost
        self.queued += 1
        self.queued_bytes += cost
        big = self._big
        if big is None or lane.bytes > big.bytes:
            self._big = big = lane
        while self.queued_bytes > self.max_backlog_bytes or self.queued > self.max_backlog:  # shed, counted
            victim = big if big.q else lane
            if not victim.q:
                break
            cost = victim.q.popleft()[3]
            victim.bytes -= cost
            self.queued_bytes -= cost
            self.queued -= 1
            self.stats.overflow += 1

    def _lane(self, topic: str) -> _Lane | None:
        """The lane of a topic not seen lately (``None``: ``admit`` refused it)."""
        name = lane_of(topic)
        lane = self.lanes.get(name)
        if lane is None:
            if self.admit is not None and not self.admit(name):
                self.refused += 1
                return None
            if len(self.lanes) >= self.max_lanes:  # idle lanes go (amortised); a flood of prefixes shares one
                if len(self.lanes) - len(self.active) >= self.max_lanes // 4:  # (active: the waiting ones)
                    self.lanes = {n: x for n, x in self.lanes.items() if x.waiting}
                    self._lane_of.clear()
                if len(self.lanes) >= self.max_lanes:
                    name = ""
                    lane = self.lanes.get(name)
            if lane is None:
                lane = self.lanes[name] = _Lane(name)
        if len(self._lane_of) >= 4096:  # (bounded)
            self._lane_of.clear()
        self._lane_of[topic] = lane
        return lane

    def _read(self) -> None:
        self.stats.received += self._received
        self._received = 0
        if self.active and not self._scheduled:
            self._work()

    def _state(self, up: bool) -> None:
        self.stats.connected = up
        self.stats.reconnects = self.conn.stats.reconnects

    def _work(self) -> None:
        """One slice of the backlog, lane by lane; come back for the rest after the loop's other work."""
        self._scheduled = False
        active = self.active
        on_publish = self.on_publish
        deadline = time.perf_counter_ns() + self.slice_ns
        n = 0
        pause = False
        while active and not pause:
            lane = active[0]
            if not lane.in_turn:  # its turn begins: a quantum more to spend
                lane.in_turn = True
                lane.deficit += self.quantum
            q = lane.q
            while q:
                topic, payload, recv_ns, cost = q[0]
                if cost > lane.deficit:
                    break
                q.popleft()
                lane.deficit -= cost
                lane.bytes -= cost
                self.queued -= 1
                self.queued_bytes -= cost
                n += 1
                if on_publish(topic, payload, recv_ns) or n >= self.slice or time.perf_counter_ns() > deadline:
                    pause = True  # a record (let its consumers, a haptic cue, run first) or the slice is spent
                    break
            if not q:  # done with it: an idle lane keeps no credit
                active.popleft()
                lane.waiting = lane.in_turn = False
                lane.deficit = 0
                if self._big is lane:
                    self._big = None
            elif not pause:  # its turn is over
                lane.in_turn = False
                active.rotate(-1)
        if active:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._work)

    def drain(self) -> None:
        """Hand over whatever is still queued (at shutdown), lane by lane."""
        while self.active:
            lane = self.active.popleft()
            lane.waiting = False
            while lane.q:
                topic, payload, recv_ns, _cost = lane.q.popleft()
                self.on_publish(topic, payload, recv_ns)
        self.queued = self.queued_bytes = 0
        self._big = None

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
