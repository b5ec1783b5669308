from __future__ import annotations

import time

from poserun.services.broker import free_port, mosquitto_broker
from poserun.services.mqtt_publisher import Publisher
from poserun.services.mqtt_stream import StreamSubscriber
from poserun.settings import BrokerSettings
from tests.conftest import CEILING


def test_reconnects_after_the_broker_restarts() -> None:
    port = free_port()
    url = f"mqtt://127.0.0.1:{port}"
    broker = BrokerSettings(url=url, keepalive_s=5)
    with mosquitto_broker(port):
        sub = StreamSubscriber(broker, ["r/#"], qos=1)
        sub.start()
        pub = Publisher(broker, "p")
        pub.connect()
        pub.publish("r/a", b"one", qos=1)
        pub.close()
        deadline = time.monotonic() + CEILING
        got = []
        while len(got) < 1 and time.monotonic() < deadline:
            got += sub.drain()
            time.sleep(0.02)
    assert [m.payload for m in got] == [b"one"]
    with mosquitto_broker(port):
        deadline = time.monotonic() + CEILING
        while not sub.stats.connected or sub.stats.reconnects < 1:
            assert time.monotonic() < deadline, "did not reconnect"
            time.sleep(0.05)
        pub = Publisher(broker, "p")
        pub.connect()
        pub.publish("r/b", b"two", qos=1)
        pub.close()
        deadline = time.monotonic() + CEILING
        while len(got) < 2 and time.monotonic() < deadline:
            got += sub.drain()
            time.sleep(0.02)
        sub.stop()
    assert [m.payload for m in got] == [b"one", b"two"]
    assert got[1].qos == 1 and got[1].topic == "r/b"


def test_every_client_sets_tcp_nodelay(broker: BrokerSettings) -> None:
    import socket

    pub = Publisher(broker, "nodelay")
    pub.connect()
    assert pub._sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    pub.close()
    sub = StreamSubscriber(broker, ["nodelay/#"])
    sub.start()
    sock = sub.conn._transport.get_extra_info("socket")
    assert sock is not None and sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    sub.stop()
