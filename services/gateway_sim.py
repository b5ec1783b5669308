"""``poserun gateway sim``: publish the simulated team over MQTT in (scaled) real time."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from poserun.services.mqtt import Publisher, Will
from poserun.services.sim.team import Message, SimTeam
from poserun.settings import Settings
from poserun.wire import meta as wm
from poserun.wire import topics

log = logging.getLogger(__name__)
CHUNK_SLICES = 50  # frame periods generated at once (0.5 s at 10 ms frames)


@dataclass
class GatewayStats:
    messages: int = 0
    bytes: int = 0
    truth: int = 0
    sim_seconds: float = 0.0
    wall_seconds: float = 0.0
    max_lag_s: float = 0.0  # how far publication fell behind the schedule


def status_message(session: str, gateway: str, state: str, athletes: list[str],
                   boot_ns: int | None = None, zero_ns: int | None = None, rate: float = 1.0) -> Message:
    payload = wm.dump(wm.GatewayStatus(gateway=gateway, state=state,  # type: ignore[arg-type]
                                       athletes=athletes, boot_ns=boot_ns, wall_ns_at_clock_zero=zero_ns,
                                       clock_rate=rate))
    return Message(topics.status_topic(session, gateway), payload, retain=True, qos=1)


def run_sim_gateway(settings: Settings, *, duration: float | None = None,
                    stop: threading.Event | None = None, team: SimTeam | None = None) -> GatewayStats:
    """Publish until ``duration`` simulated seconds have passed or ``stop`` is set."""
    sim = settings.sim
    session = settings.session.id
    team = team or SimTeam(session, sim, settings.athletes)
    athletes = [s.athlete_id for s in team.specs]
    offline = status_message(session, sim.gateway_id, "offline", athletes)
    pub = Publisher(settings.broker, f"gw-{sim.gateway_id}",
                    will=Will(offline.topic, offline.payload, qos=1, retain=True))
    pub.connect()
    stats = GatewayStats()
    for m in team.meta_messages():
        pub.publish(m.topic, m.payload, qos=m.qos, retain=m.retain)
    pub.flush()
    speed = sim.speed
    # the simulator clock reads 0 now: say so, so that listeners can put IC times on the wall clock
    start = time.monotonic()
    zero = time.time_ns() - round(team.t * 1e9 / speed)
    online = status_message(session, sim.gateway_id, "online", athletes, boot_ns=time.time_ns(), zero_ns=zero,
                            rate=speed)
    pub.publish(online.topic, online.payload, qos=online.qos, retain=online.retain)
    pub.flush()
    try:
        while not (stop is not None and stop.is_set()):
            if duration is not None and team.t >= duration - 1e-9:
                break
            slices = CHUNK_SLICES
            if duration is not None:
                left = round((duration - team.t) / team.frame_s)
                slices = max(1, min(slices, left))
            messages, truth = team.step(slices)
            if sim.truth:
                messages.extend(team.truth_messages(truth))
            messages.sort(key=lambda m: m.at_ns)
            for m in messages:
                if stop is not None and stop.is_set():
                    break
                due = start + m.at_ns / 1e9 / speed
                ahead = due - time.monotonic()
                if ahead > 0.002:
                    pub.flush()
                    pub.sleep(ahead, stop)
                elif -ahead > stats.max_lag_s:
                    stats.max_lag_s = -ahead
                pub.publish(m.topic, m.payload, qos=m.qos, retain=m.retain)
                stats.messages += 1
                stats.bytes += len(m.payload)
            stats.truth += sum(len(v) for v in truth.values())
        pub.flush()
    finally:
        stats.sim_seconds = team.t
        stats.wall_seconds = time.monotonic() - start
        final = status_message(session, sim.gateway_id, "offline", athletes)
        pub.publish(final.topic, final.payload, qos=1, retain=True)
        pub.close()
    log.info("sim gateway: %d messages, %.1f s simulated in %.1f s", stats.messages,
             stats.sim_seconds, stats.wall_seconds)
    return stats
