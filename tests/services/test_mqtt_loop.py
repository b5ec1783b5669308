"""The event-loop MQTT reader (fusion ingest) and the gateways' publisher, against a real broker."""

from __future__ import annotations

import asyncio
import time

import pytest

from poserun.services.broker import free_port, mosquitto_broker
from poserun.services.mqtt import BrokerUnavailable
from poserun.services.mqtt_publisher import Publisher
from poserun.services.mqtt_stream import LoopSubscriber, StreamSubscriber
from poserun.settings import BrokerSettings
from poserun.wire.mqtt import encode_publish
from tests.conftest import CEILING


def test_pre_encoded_frames_and_retained_meta_arrive_in_order(broker: BrokerSettings, session_id: str) -> None:
    """Frames written in batches and QoS 1 messages between them share one connection: in order."""
    sub = StreamSubscriber(broker, [f"{session_id}/#"], qos=1)
    sub.start()
    pub = Publisher(broker, "gw")
    pub.connect()
    n = 2000
    for k in range(0, n, 100):
        pub.send_packets([encode_publish(f"{session_id}/{j % 7}", j.to_bytes(4, "big")) for j in range(k, k + 99)])
        pub.publish(f"{session_id}/{(k + 99) % 7}", (k + 99).to_bytes(4, "big"), qos=1)
    pub.close()
    assert pub.stats.acknowledged == n // 100 and pub.stats.dropped == 0
    got: list = []
    deadline = time.monotonic() + CEILING
    while len(got) < n and time.monotonic() < deadline:
        got += sub.drain()
        time.sleep(0.02)
    sub.stop()
    assert [int.from_bytes(m.payload, "big") for m in got] == list(range(n))
    assert got[8].topic == f"{session_id}/1"


def test_loop_subscriber_works_a_burst_off_in_slices(private_mosquitto: str, session_id: str) -> None:
    """Every message arrives once and in order, and other tasks run while a burst is handled.
    (A private mosquitto: a stock one queues only 1000 QoS 1 messages per client.)"""
    broker = BrokerSettings(url=private_mosquitto)
    n = 5000
    got: list[int] = []
    ticks_during: list[int] = []

    def on_publish(topic: str, payload: bytes, recv_ns: int) -> bool:
        assert topic.startswith(session_id) and recv_ns > 0
        got.append(int.from_bytes(payload, "big"))
        time.sleep(0.00002)  # a little work per message, as the processor does
        return len(got) % 500 == 0  # now and then a "record": the slice ends early

    async def main() -> LoopSubscriber:
        sub = LoopSubscriber(broker, [f"{session_id}/#"], on_publish, qos=1, role="t", slice=16)
        stop, ready = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(sub.run(stop, ready))
        await asyncio.wait_for(ready.wait(), CEILING)

        async def ticker() -> None:
            while not stop.is_set():
                if 0 < len(got) < n:
                    ticks_during.append(len(got))
                await asyncio.sleep(0)

        tick = asyncio.create_task(ticker())
        pub = Publisher(broker, "burst")
        pub.connect()
        for k in range(n):
            pub.publish(f"{session_id}/x", k.to_bytes(4, "big"), qos=1)
        pub.close()
        deadline = time.monotonic() + CEILING
        while len(got) < n and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.wait_for(task, 10)
        await tick
        return sub

    sub = asyncio.run(main())
    assert got == list(range(n))
    assert sub.stats.received == n
    assert len(set(ticks_during)) > 10, "the loop was blocked while the burst was handled"
    assert sub.stats.overflow == 0


def test_loop_subscriber_sheds_the_oldest_when_far_behind(broker: BrokerSettings, session_id: str) -> None:
    got: list[int] = []

    async def main() -> LoopSubscriber:
        sub = LoopSubscriber(broker, [f"{session_id}/#"],
                             lambda t, p, r: (got.append(int.from_bytes(p, "big")), time.sleep(0.001)),
                             qos=0, max_backlog=50)
        stop, ready = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(sub.run(stop, ready))
        await asyncio.wait_for(ready.wait(), CEILING)
        pub = Publisher(broker, "burst")
        pub.connect()
        pub.send_packets([encode_publish(f"{session_id}/x", k.to_bytes(4, "big")) for k in range(600)])
        pub.close()
        deadline = time.monotonic() + CEILING
        while len(got) + sub.stats.overflow < 600 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        stop.set()
        await asyncio.wait_for(task, 10)
        return sub

    sub = asyncio.run(main())
    assert sub.stats.overflow > 0 and len(got) + sub.stats.overflow == 600
    assert got == sorted(got) and got[-1] == 599  # the newest kept, in order


def test_loop_subscriber_refuses_a_missing_broker() -> None:
    broker = BrokerSettings(url=f"mqtt://127.0.0.1:{free_port()}")

    async def main() -> None:
        sub = LoopSubscriber(broker, ["x/#"], lambda *a: None)
        await sub.run(asyncio.Event(), timeout=2.0)

    with pytest.raises(BrokerUnavailable):
        asyncio.run(main())


def test_loop_subscriber_reconnects_after_the_broker_restarts() -> None:
    port = free_port()
    broker = BrokerSettings(url=f"mqtt://127.0.0.1:{port}", keepalive_s=5)
    got: list[bytes] = []

    def send(payload: bytes) -> None:
        pub = Publisher(broker, "p")
        pub.connect()
        pub.publish("r/a", payload, qos=1)
        pub.close()

    async def wait_for(cond, seconds: float) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + seconds
        while not cond():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)

    async def main() -> LoopSubscriber:
        sub = LoopSubscriber(broker, ["r/#"], lambda t, p, r: got.append(p), qos=1)
        stop, ready = asyncio.Event(), asyncio.Event()
        with mosquitto_broker(port):
            task = asyncio.create_task(sub.run(stop, ready))
            await asyncio.wait_for(ready.wait(), CEILING)
            await asyncio.to_thread(send, b"one")
            await wait_for(lambda: len(got) == 1, CEILING)
        await wait_for(lambda: not sub.stats.connected, CEILING)
        with mosquitto_broker(port):
            await wait_for(lambda: sub.stats.connected and sub.stats.reconnects >= 1, CEILING)
            await asyncio.to_thread(send, b"two")
            await wait_for(lambda: len(got) == 2, CEILING)
            stop.set()
            await asyncio.wait_for(task, 10)
        return sub

    asyncio.run(main())
    assert got == [b"one", b"two"]


def test_the_backlog_is_fair_between_athletes_and_sheds_the_biggest_lane() -> None:
    """No network: a burst of one athlete's large frames and another's small ones, queued as one
    read. The small ones are not left behind the large (deficit round robin by bytes), a refused
    prefix is never queued, and past the byte cap the biggest lane sheds (counted)."""
    order: list[str] = []

    async def main() -> LoopSubscriber:
        sub = LoopSubscriber(BrokerSettings(), ["x"], lambda t, p, r: order.append(t.split("/")[3]),
                             max_backlog_bytes=2_000_000, admit=lambda prefix: not prefix.endswith("/nobody"))
        for k in range(40):  # 40 large frames arrive first, then 40 small
            sub._publish("poserun/v1/s/heavy/data/imu_foot_left", b"{" * 60_000, k)
        for k in range(40):
            sub._publish("poserun/v1/s/good/data/imu_foot_left", b"PR" * 100, k)
            sub._publish("poserun/v1/s/nobody/data/imu_foot_left", b"PR", k)
        assert sub.queued_bytes <= 2_000_000 and sub.stats.overflow == 40 - 2_000_000 // 60_300 + 1
        sub._read()
        while sub.active:
            await asyncio.sleep(0)
        return sub

    sub = asyncio.run(main())
    assert sub.refused == 40 and "nobody" not in order
    assert order.count("good") == 40
    # 16 KiB a lane and turn: the small frames went in the turns the first large one waited for
    assert max(i for i, who in enumerate(order) if who == "good") <= 40 and order.count("heavy") == 40 - 8


def test_a_bundle_costs_its_frames_in_the_fair_backlog() -> None:
    """A bundle holds up to 64 frames, each as much work as a frame alone: the backlog charges the
    per-message overhead once per frame, so one athlete's bundles take no bigger share of the turns."""
    import numpy as np

    from poserun.wire import bundle
    from poserun.wire import frame as wf
    from poserun.wire.streams import StreamKind

    imu = wf.pack(StreamKind.IMU, 0, 1, np.zeros((1, 6), np.float32), period_ns=2_500_000)
    sub = LoopSubscriber(BrokerSettings(), ["x"], lambda t, p, r: None)
    topic = "poserun/v1/s/hub/data/bundle"
    payload = bundle.pack([("imu_foot_left", imu)] * 10)
    sub._publish(topic, payload, 1)
    assert sub.queued_bytes == len(payload) + len(topic) + 10 * LoopSubscriber.MESSAGE_OVERHEAD
    single = "poserun/v1/s/one/data/imu_foot_left"
    sub._publish(single, imu, 2)
    assert sub.queued_bytes == len(payload) + len(topic) + 11 * LoopSubscriber.MESSAGE_OVERHEAD + len(single) + len(imu)
