"""``poserun record``: write everything a session publishes to an MCAP recording."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from poserun.recording import RecordingWriter, TransferStats
from poserun.services.mqtt import Incoming
from poserun.services.mqtt_stream import StreamSubscriber
from poserun.settings import BrokerSettings
from poserun.wire import topics

log = logging.getLogger(__name__)


def record(broker: BrokerSettings, path: str | Path, *, session: str | None = None,
           duration: float | None = None, idle_stop: float | None = None,
           stop: threading.Event | None = None, ready: threading.Event | None = None,
           count: int | None = None) -> TransferStats:
    """Record until ``duration`` s, ``idle_stop`` s without messages (after the first),
    ``count`` messages, or ``stop``. Messages are written from the ingest thread
    straight into the file, so nothing queues in Python."""
    writer = RecordingWriter(path, metadata={"session": session or "*", "source": "mqtt"})
    stats = TransferStats()
    lock = threading.Lock()
    last = [0.0]
    done = threading.Event()

    def on_message(m: Incoming) -> None:
        with lock:
            if done.is_set():
                return
            writer.write(m.topic, m.payload, m.recv_ns, retain=m.retain or None, qos=m.qos)
            stats.messages += 1
            stats.bytes += len(m.payload)
            last[0] = time.monotonic()
            if count is not None and stats.messages >= count:
                done.set()

    sub = StreamSubscriber(broker, [topics.session_filter(session)], qos=1, role="recorder",
                             on_message=on_message)
    sub.start()
    if ready is not None:
        ready.set()
    start = time.monotonic()
    try:
        while not done.is_set():
            now = time.monotonic()
            if stop is not None and stop.is_set():
                break
            if duration is not None and now - start >= duration:
                break
            if idle_stop is not None and now - (last[0] or start) >= max(idle_stop, 0.0) * (1 if last[0] else 10):
                break  # idle: that long after the last message (ten times that if none ever came)
            done.wait(0.05)
    finally:
        sub.stop()
        with lock:
            done.set()
            writer.close()
        stats.seconds = time.monotonic() - start
    log.info("recorded %d messages (%d bytes) to %s", stats.messages, stats.bytes, path)
    return stats
