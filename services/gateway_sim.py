"""``poserun gateway sim``: publish the simulated team over MQTT in (scaled) real time."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from poserun.services.mqtt_publisher import gateway_publisher
from poserun.services.sim.team import Message, SimTeam
from poserun.settings import Settings
from poserun.wire import meta as wm
from poserun.wire import topics
from poserun.wire.mqtt import Will, encode_publish

log = logging.getLogger(__name__)
CHUNK_SLICES = 50  # frame periods generated at once (0.5 s at 10 ms frames)


@dataclass
class GatewayStats:
    """What the gateway published: ``messages`` (frames, bundles of frames, and truth), ``frames`` (the
    sensor frames in them), ``truth`` (truth messages, one per stance, when ``sim.truth`` asks for them;
    else 0), payload bytes, simulated and wall seconds."""

    messages: int = 0
    frames: int = 0
    bytes: int = 0
    truth: int = 0
    sim_seconds: float = 0.0
    wall_seconds: float = 0.0
    max_lag_s: float = 0.0  # how far publication fell behind the schedule
    dropped: int = 0  # messages published while the broker was away (a bundle is one)
    reconnects: int = 0


def status_message(session: str, gateway: str, state: str, athletes: list[str],
                   boot_ns: int | None = None, zero_ns: int | None = None, rate: float = 1.0) -> Message:
    payload = wm.dump(wm.GatewayStatus(gateway=gateway, state=state,  # type: ignore[arg-type]
                                       athletes=athletes, boot_ns=boot_ns, wall_ns_at_clock_zero=zero_ns,
                                       clock_rate=rate))
    return Message(topics.status_topic(session, gateway), payload, retain=True, qos=1)


def run_sim_gateway(settings: Settings, *, duration: float | None = None,
                    stop: threading.Event | None = None, team: SimTeam | None = None,
                    pregenerate: bool = False) -> GatewayStats:
    """Publish until ``duration`` simulated seconds have passed or ``stop`` is set.

    The team is simulated in chunks of half a second between publications; with
    ``pregenerate`` (needs ``duration``) the whole session is simulated first, so that
    publication is never held up by simulation: a stand-in for gateways on their own
    hardware, for latency measurements on one machine."""
    sim = settings.sim
    session = settings.session.id
    team = team or SimTeam(session, sim, settings.athletes)
    athletes = [s.athlete_id for s in team.specs]
    if pregenerate and duration is None:
        raise ValueError("pregenerate needs a duration")
    t_zero = team.t
    # per message: (due, frames, payload bytes, its encoded PUBLISH or b"", the message or None)
    chunks: Iterator[tuple[list[tuple[int, int, int, bytes, Message | None]], int, float]] = (
        ([(m.at_ns, m.frames, len(m.payload), b"", m) for m in msgs], truth, t_end)
        for msgs, truth, t_end in publication_chunks(team, duration, stop, sim.truth))
    if pregenerate:  # simulated and encoded up front, only the bytes kept: QoS 0 frames then go out in
        chunks = iter([([_encoded(e) for e in entries], truth, t_end)  # one write per moment
                       for entries, truth, t_end in chunks])
    offline = status_message(session, sim.gateway_id, "offline", athletes)
    # one connection for frames, meta and status: the broker sees them in publication order
    pub = gateway_publisher(settings.broker, f"gw-{sim.gateway_id}", session,
                            will=Will(offline.topic, offline.payload, qos=1, retain=True))
    pub.connect()
    stats = GatewayStats()
    for m in team.meta_messages():
        pub.publish(m.topic, m.payload, qos=m.qos, retain=m.retain)
    pub.flush()
    speed = sim.speed
    # the simulator clock reads 0 now: say so, so that listeners can put IC times on the wall clock
    start = time.monotonic() - t_zero / speed
    zero = time.time_ns() - round(t_zero * 1e9 / speed)
    online = status_message(session, sim.gateway_id, "online", athletes, boot_ns=time.time_ns(), zero_ns=zero,
                            rate=speed)
    pub.publish(online.topic, online.payload, qos=online.qos, retain=online.retain)
    pub.flush()
    batch: list[bytes] = []
    try:
        for entries, truth, t_end in chunks:
            for at_ns, frames, size, packet, m in entries:
                if stop is not None and stop.is_set():
                    break
                due = start + at_ns / 1e9 / speed
                ahead = due - time.monotonic()
                if ahead > 0.002:
                    pub.send_packets(batch)
                    batch.clear()
                    pub.flush()
                    pub.sleep(ahead, stop)
                elif -ahead > stats.max_lag_s:
                    stats.max_lag_s = -ahead
                if m is None:
                    batch.append(packet)
                else:
                    pub.send_packets(batch)
                    batch.clear()
                    pub.publish(m.topic, m.payload, qos=m.qos, retain=m.retain)
                stats.messages += 1
                stats.frames += frames
                stats.bytes += size
            if stop is not None and stop.is_set():
                break
            if sim.truth:  # truth messages go out only when asked for
                stats.truth += truth
            stats.sim_seconds = t_end
        pub.send_packets(batch)
        pub.flush()
    finally:
        stats.wall_seconds = time.monotonic() - start
        stats.dropped = pub.stats.dropped
        stats.reconnects = pub.stats.reconnects
        final = status_message(session, sim.gateway_id, "offline", athletes)
        pub.publish(final.topic, final.payload, qos=1, retain=True)
        pub.close()
    log.info("sim gateway: %d messages, %.1f s simulated in %.1f s", stats.messages,
             stats.sim_seconds, stats.wall_seconds)
    return stats


def _encoded(entry: tuple[int, int, int, bytes, Message | None]) -> tuple[int, int, int, bytes, Message | None]:
    """A QoS 0 message as its encoded PUBLISH alone (the message dropped); others as they are."""
    at_ns, frames, size, _packet, m = entry
    if m is None or m.qos or m.retain:
        return entry
    return at_ns, frames, size, encode_publish(m.topic, m.payload), None


def publication_chunks(team: SimTeam, duration: float | None, stop: threading.Event | None,
            truth: bool) -> Iterator[tuple[list[Message], int, float]]:
    """The team's messages in publication order, half a second at a time, with the number of
    truth steps and the simulated time at the chunk's end."""
    while not (stop is not None and stop.is_set()):
        if duration is not None and team.t >= duration - 1e-9:
            return
        slices = CHUNK_SLICES
        if duration is not None:
            left = round((duration - team.t) / team.frame_s)
            slices = max(1, min(slices, left))
        messages, steps = team.step(slices)
        if truth:
            messages.extend(team.truth_messages(steps))
        messages.sort(key=lambda m: m.at_ns)
        yield messages, sum(len(v) for v in steps.values()), team.t
