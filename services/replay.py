"""``poserun gateway replay``: republish a recording with its original timing (or faster)."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from poserun.recording import TransferStats, read_messages
from poserun.services.mqtt import Publisher
from poserun.settings import BrokerSettings
from poserun.wire import topics

log = logging.getLogger(__name__)


def rewrite_session(topic: str, session: str | None) -> str:
    if session is None:
        return topic
    parts = topic.split("/")
    if len(parts) > 2 and parts[0] == topics.ROOT:
        parts[2] = session
    return "/".join(parts)


def replay(broker: BrokerSettings, path: str | Path, *, speed: float = 1.0,
           session: str | None = None, stop: threading.Event | None = None) -> TransferStats:
    """Publish every recorded message; ``speed`` 0 publishes as fast as the broker takes."""
    if session is not None:
        topics.check_id(session, "session")
    pub = Publisher(broker, "replay")
    pub.connect()
    stats = TransferStats()
    start = time.monotonic()
    first: int | None = None
    try:
        for m in read_messages(path):
            if stop is not None and stop.is_set():
                break
            if first is None:
                first = m.log_time_ns
            if speed > 0:
                ahead = start + (m.log_time_ns - first) / 1e9 / speed - time.monotonic()
                if ahead > 0.002:
                    pub.flush()
                    pub.sleep(ahead, stop)
            pub.publish(rewrite_session(m.topic, session), m.payload,
                        qos=max(m.qos, 1 if m.retain else 0), retain=m.retain)
            stats.messages += 1
            stats.bytes += len(m.payload)
        pub.flush()
    finally:
        pub.close()
        stats.seconds = time.monotonic() - start
    log.info("replayed %d messages in %.1f s", stats.messages, stats.seconds)
    return stats
