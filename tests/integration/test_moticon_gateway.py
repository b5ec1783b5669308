"""OpenGo lines over real UDP -> ``poserun gateway moticon`` -> real broker -> live fusion service."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import numpy as np
import pytest

from poserun.services.fusion import FusionService
from poserun.services.gateway_moticon import MoticonStats, run_moticon_gateway
from poserun.services.sim.team import SimTeam
from poserun.settings import BrokerSettings, load_settings
from poserun.sinks.base import SinkRunner
from poserun.sinks.memory import ListSink
from tests.conftest import CEILING, wait_until

pytestmark = pytest.mark.broker
RATE = 100.0
AREA_CM2 = 2.5  # the sender's cell area: pressure = cell force / area
SKIPPED = range(150, 155)  # datagrams the sender leaves out (a dropout)


def opengo_lines(seconds: float) -> list[bytes]:
    """A simulated athlete's feet as OpenGo lines: time s, per side g, deg/s, cop, N/cm^2, N."""
    team = SimTeam("x", load_settings(overrides={"sim": {"athletes": 1}}).sim)
    runner = team.runners[team.specs[0].athlete_id]
    t = np.arange(round(seconds * RATE)) / RATE
    runner.advance(seconds + 0.5)
    cols = [t]
    for side in ("left", "right"):
        imu = runner.imu(side, t)
        cells = runner.insole(side, t)
        cols += [imu[:, :3] / 9.81, np.degrees(imu[:, 3:]), np.zeros((len(t), 2)), cells / AREA_CM2,
                 cells.sum(axis=1, keepdims=True)]
    rows = np.column_stack(cols)
    return [" ".join(f"{v:.5f}" for v in row).encode() for row in rows]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_opengo_over_udp_gives_stance_records(broker: BrokerSettings, session_id: str) -> None:
    settings = load_settings(overrides={"broker": {"url": broker.url}, "session": {"id": session_id}})
    sink = ListSink()
    lines = opengo_lines(4.0)
    port = free_port()
    result: list[MoticonStats] = []

    async def main() -> None:
        svc = FusionService(settings, [SinkRunner(sink)], session=session_id)
        stop, ready = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(svc.run(stop, ready))
        await asyncio.wait_for(ready.wait(), CEILING)
        gw_stop, bound = threading.Event(), threading.Event()

        def gateway() -> None:
            result.append(run_moticon_gateway(broker, session_id, "moti1", listen=("127.0.0.1", port),
                                              rate_hz=RATE, stop=gw_stop, bound=bound))

        thread = threading.Thread(target=gateway)
        thread.start()
        await asyncio.to_thread(wait_until, bound.is_set, "the gateway to start")

        def send() -> None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
                start = time.monotonic()
                for k, payload in enumerate(lines):
                    ahead = start + k / RATE - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)  # pacing the sender at the insoles' rate, not an assertion
                    if k not in SKIPPED:
                        out.sendto(payload, ("127.0.0.1", port))
                    if k == 200:
                        out.sendto(lines[190], ("127.0.0.1", port))  # late
                        out.sendto(b"not a line", ("127.0.0.1", port))

        await asyncio.to_thread(send)
        await asyncio.to_thread(wait_until, lambda: any(
            r["type"] == "stance" and r["athlete"] == "moti1" and r.get("foot") == "right" for r in sink.records),
            "stance records of both feet")
        gw_stop.set()
        await asyncio.to_thread(thread.join)
        stop.set()
        await task

    asyncio.run(main())
    stats = result[0]
    assert stats.datagrams == len(lines) - len(SKIPPED) + 2
    assert stats.parser["gaps"] == len(SKIPPED)
    assert stats.parser["errors"] == {"time_back": 1, "wrong_count": 1}
    stances = [r for r in sink.records if r["type"] == "stance" and r["athlete"] == "moti1"]
    assert {r["foot"] for r in stances} == {"left", "right"}
    assert all(r["event_source"].startswith("insole") for r in stances)
    assert sum("imu" in r["sources"] for r in stances) >= len(stances) // 2  # the insoles' IMUs are used
    assert all(0.1 < r["support_time_s"] < 0.4 for r in stances)
