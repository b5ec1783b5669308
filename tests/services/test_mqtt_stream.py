from __future__ import annotations

import struct
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from poserun.services.broker import free_port, mosquitto_broker
from poserun.services.mqtt import Publisher
from poserun.services.mqtt_stream import (
    PUBLISH,
    StreamSubscriber,
    _varint,
    connect_packet,
    parse_packets,
)
from poserun.settings import BrokerSettings
from tests.conftest import CEILING


def publish_packet(topic: bytes, payload: bytes, qos: int = 0, pid: int = 0, retain: bool = False) -> bytes:
    body = struct.pack(">H", len(topic)) + topic + (struct.pack(">H", pid) if qos else b"") + payload
    return bytes([0x30 | (qos << 1) | int(retain)]) + _varint(len(body)) + body


@given(st.lists(st.tuples(st.binary(min_size=1, max_size=40), st.binary(max_size=300),
                          st.integers(0, 1), st.integers(1, 65535), st.booleans()), max_size=20),
       st.lists(st.integers(0, 8000), max_size=10))
def test_parse_any_split_of_a_stream(msgs: list[tuple[bytes, bytes, int, int, bool]], cuts: list[int]) -> None:
    stream = b"".join(publish_packet(t, p, q, pid, r) for t, p, q, pid, r in msgs)
    got = []
    buf = bytearray()
    edges = sorted({c for c in cuts if c < len(stream)} | {len(stream)})
    prev = 0
    for edge in edges:
        buf += stream[prev:edge]
        prev = edge
        packets, used = parse_packets(buf)
        del buf[:used]
        got += packets
    assert not buf
    assert [(k, t, p, pid) for k, _f, t, p, pid in got] == [
        (PUBLISH, t, p, pid if q else 0) for t, p, q, pid, _r in msgs]
    assert [bool(f & 1) for _k, f, *_ in got] == [r for *_x, r in msgs]


def test_varint_and_packets() -> None:
    assert _varint(0) == b"\x00" and _varint(127) == b"\x7f" and _varint(128) == b"\x80\x01"
    assert _varint(16_383) == b"\xff\x7f" and _varint(2_097_152) == b"\x80\x80\x80\x01"
    c = connect_packet("id", 30, "u", "p")
    assert c[0] == 0x10 and b"MQTT" in c and c[c.index(b"MQTT") + 5] == 0xC2
    with pytest.raises(ValueError):
        parse_packets(b"\x30\xff\xff\xff\xff\x01")


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
    assert pub.client.socket().getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    pub.close()
    sub = StreamSubscriber(broker, ["nodelay/#"])
    sub.start()
    sock = sub.conn._transport.get_extra_info("socket")
    assert sock is not None and sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    sub.stop()
