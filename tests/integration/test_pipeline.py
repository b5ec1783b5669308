"""Gateway -> real broker -> fusion service -> sinks, over real connections."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import numpy as np
import pytest

from poserun.services.fusion import FusionService
from poserun.services.gateway_sim import run_sim_gateway
from poserun.services.mqtt_publisher import Publisher
from poserun.services.mqtt_stream import StreamSubscriber
from poserun.services.sim.team import SimTeam
from poserun.settings import BrokerSettings, Settings, load_settings
from poserun.sinks.base import SinkRunner
from poserun.sinks.memory import ListSink
from poserun.sinks.mqtt_republish import MqttRepublishSink
from poserun.wire import topics
from tests.conftest import CEILING, wait_until

pytestmark = pytest.mark.broker


def settings_for(broker: BrokerSettings, session: str, **sim: object) -> Settings:
    return load_settings(overrides={"broker": {"url": broker.url}, "session": {"id": session},
                                    "sim": {"athletes": 4, "speed": 2.0, **sim}})


async def wait_for(cond, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def test_simulated_team_through_the_broker(broker: BrokerSettings, session_id: str) -> None:
    settings = settings_for(broker, session_id)
    sink = ListSink()

    async def main() -> tuple[dict, object]:
        svc = FusionService(settings, [SinkRunner(sink)], session=session_id)
        stop, ready = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(svc.run(stop, ready))
        await asyncio.wait_for(ready.wait(), CEILING)
        stats = await asyncio.to_thread(run_sim_gateway, settings, duration=4.0)
        await wait_for(lambda: svc.snapshot()["totals"].get("frames", 0) >= stats.frames)
        stop.set()
        await task
        return svc.snapshot(), stats

    snap, stats = asyncio.run(main())
    assert snap["totals"]["frames"] == stats.frames  # nothing lost on loopback
    assert snap["rejected"] == {} and snap["totals"]["late"] == 0
    athletes = {r["athlete"] for r in sink.records if r["type"] == "stance"}
    assert athletes == {f"a{i:02d}" for i in range(1, 5)}
    assert sink.closed


def test_random_payloads_never_stop_the_service(broker: BrokerSettings, session_id: str) -> None:
    settings = settings_for(broker, session_id, athletes=2)
    team = SimTeam(session_id, settings.sim)
    n = 10_000

    async def main() -> tuple[dict, bool]:
        svc = FusionService(settings, session=session_id)
        stop, ready = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(svc.run(stop, ready))
        await asyncio.wait_for(ready.wait(), CEILING)

        def blast() -> int:
            pub = Publisher(broker, "fuzz")
            pub.connect()
            for m in team.meta_messages():
                pub.publish(m.topic, m.payload, qos=1, retain=True)
            pub.flush()
            rng = np.random.default_rng(1)
            data_topics = [topics.data_topic(session_id, a, s.name)
                           for a, srcs in team.sources.items() for s in srcs]
            for i in range(n):
                payload = rng.bytes(int(rng.integers(0, 200)))
                payload = (b"PR", b"{", b"")[i % 3] + payload
                pub.publish(data_topics[i % len(data_topics)], payload, qos=1)
                if i % 500 == 0:
                    pub.flush()
            pub.flush()
            good = team.step(50)[0]
            for m in good:
                pub.publish(m.topic, m.payload, qos=1)
            pub.close()
            return len(good)

        good = await asyncio.to_thread(blast)
        await wait_for(lambda: sum(svc.snapshot()["rejected"].values()) >= n
                       and svc.snapshot()["totals"].get("frames", 0) >= good)
        alive = not task.done()
        stop.set()
        await task
        return svc.snapshot(), alive

    snap, alive = asyncio.run(main())
    assert alive
    assert sum(snap["rejected"].values()) == n
    assert all(isinstance(k, str) and v > 0 for k, v in snap["rejected"].items())


def test_records_are_republished_on_mqtt(broker: BrokerSettings, session_id: str) -> None:
    settings = settings_for(broker, session_id, athletes=2)
    got: list[dict] = []
    sub = StreamSubscriber(broker, [topics.subscription(session_id, "records")],
                             on_message=lambda m: got.append(json.loads(m.payload)))
    sub.start()

    async def main() -> None:
        sink = MqttRepublishSink(context={"broker": broker})
        svc = FusionService(settings, [SinkRunner(sink)], session=session_id)
        stop, ready = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(svc.run(stop, ready))
        await asyncio.wait_for(ready.wait(), CEILING)
        await asyncio.to_thread(run_sim_gateway, settings, duration=3.0)
        await wait_for(lambda: len(got) >= svc.records_out > 0)
        stop.set()
        await task

    try:
        asyncio.run(main())
    finally:
        sub.stop()
    assert {r["athlete"] for r in got} == {"a01", "a02"}
    assert all(r["session"] == session_id for r in got)


def test_gateway_status_and_stop(broker: BrokerSettings, session_id: str) -> None:
    settings = settings_for(broker, session_id, athletes=1, speed=1.0)
    statuses: list[dict] = []
    sub = StreamSubscriber(broker, [topics.subscription(session_id, "status")],
                             on_message=lambda m: statuses.append(json.loads(m.payload)))
    sub.start()
    stop = threading.Event()
    t = threading.Thread(target=run_sim_gateway, args=(settings,), kwargs={"stop": stop})
    t.start()
    wait_until(lambda: statuses, "the gateway's online status")
    stop.set()
    t.join(CEILING)
    assert not t.is_alive()
    wait_until(lambda: len(statuses) >= 2, "the gateway's offline status")
    sub.stop()
    assert [s["state"] for s in statuses] == ["online", "offline"]
    assert statuses[0]["athletes"] == ["a01"]
