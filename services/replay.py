"""``poserun gateway replay``: republish a recording with its original timing (or faster).

QoS 0 frames go out pre-encoded in batches (as ``gateway sim --pregenerate`` does); retained
meta and status go on the same connection, each acknowledged before a later frame is sent, so
the recorded order holds. Like a gateway, a replay answers poserun's meta requests.

A replay stands in for the gateways, so by default it republishes only what gateways publish:
sensor frames, device meta and gateway status (:data:`GATEWAY_CHANNELS`). Ground truth is
added on request; the recorded outputs of poserun (records, haptic commands) only if asked for
by name, since a live fusion service makes its own and a band would buzz for a recording.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from pathlib import Path

from poserun.recording import TransferStats, read_messages
from poserun.services.mqtt_publisher import Publisher, gateway_publisher
from poserun.settings import BrokerSettings
from poserun.wire import topics
from poserun.wire.mqtt import encode_publish

log = logging.getLogger(__name__)


def rewrite_session(topic: str, session: str | None) -> str:
    if session is None:
        return topic
    parts = topic.split("/")
    if len(parts) > 2 and parts[0] == topics.ROOT:
        parts[2] = session
    return "/".join(parts)


GATEWAY_CHANNELS = ("data", "meta", "status")
BATCH = 256  # frames written at once when replaying faster than they were recorded


def _sleep(pub: Publisher, seconds: float, stop: threading.Event | None) -> None:
    """Wait, keeping the connection alive through a long gap in the recording."""
    pub.sleep(seconds, stop)


def channel_of(topic: str) -> str | None:
    try:
        return topics.parse(topic).channel
    except ValueError:
        return None


def replay(broker: BrokerSettings, path: str | Path, *, speed: float = 1.0,
           session: str | None = None, stop: threading.Event | None = None,
           channels: tuple[str, ...] = GATEWAY_CHANNELS) -> TransferStats:
    """Publish the recorded messages of ``channels``; ``speed`` 0 publishes as fast as the broker takes."""
    if session is not None:
        topics.check_id(session, "session")
    unknown = set(channels) - set(topics.CHANNELS)
    if unknown:
        raise ValueError(f"unknown channel(s) {sorted(unknown)}: use {', '.join(topics.CHANNELS)}")
    wanted = frozenset(channels)
    routes: dict[str, str | None] = {}  # recorded topic -> topic to publish on (None: left out); topics repeat
    messages = read_messages(path)
    first_message = next(messages, None)  # a file that is not a recording fails here, before connecting
    pub = gateway_publisher(broker, "replay", session)
    pub.connect()
    batch: list[bytes] = []
    stats = TransferStats()
    start = time.monotonic()
    first: int | None = None
    try:
        for m in itertools.chain([first_message] if first_message else [], messages):
            if stop is not None and stop.is_set():
                break
            if m.topic not in routes:
                routes[m.topic] = rewrite_session(m.topic, session) if channel_of(m.topic) in wanted else None
            topic = routes[m.topic]
            if topic is None:
                stats.skipped += 1
                continue
            if first is None:
                first = m.log_time_ns
            if speed > 0:
                ahead = start + (m.log_time_ns - first) / 1e9 / speed - time.monotonic()
                if ahead > 0.002:
                    pub.send_packets(batch)
                    batch.clear()
                    pub.flush()
                    _sleep(pub, ahead, stop)
            if m.qos == 0 and not m.retain:
                batch.append(encode_publish(topic, m.payload))
                if len(batch) >= BATCH:
                    pub.send_packets(batch)
                    batch.clear()
            else:  # meta, status (retained, QoS 1): after every frame before it, acked before any after
                pub.send_packets(batch)
                batch.clear()
                pub.publish(topic, m.payload, qos=max(m.qos, 1 if m.retain else 0), retain=m.retain)
                pub.flush()
            stats.messages += 1
            stats.bytes += len(m.payload)
        pub.send_packets(batch)
        pub.flush()
    finally:
        pub.close()
        stats.seconds = time.monotonic() - start
    log.info("replayed %d messages in %.1f s", stats.messages, stats.seconds)
    return stats
