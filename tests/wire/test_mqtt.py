"""The sans-I/O MQTT 3.1.1 client (poserun.wire.mqtt): bytes both ways against the specification,
refusals, malformed input, chunking, keep-alive, QoS flows, packet ids, and a real Mosquitto.

Expected bytes are written out by hand from the MQTT 3.1.1 specification (OASIS, 2014;
section numbers in the comments), never produced by the encoder under test."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poserun.services.broker import free_port, mosquitto_exe
from poserun.services.mqtt import broker_answers
from poserun.settings import BrokerSettings
from poserun.wire.mqtt import (
    REFUSAL_REASONS,
    Connected,
    ConnectRefused,
    Event,
    KeepaliveTimeout,
    Message,
    MqttClient,
    Pong,
    ProtocolError,
    Published,
    Subscribed,
    SubscribeRefused,
    Unsubscribed,
    Will,
    encode_publish,
)
from tests.conftest import CEILING, require

CONNACK_OK = b"\x20\x02\x00\x00"


def connected(**kw: object) -> MqttClient:
    """A client that has sent CONNECT and received CONNACK 0."""
    c = MqttClient("c1", keepalive_s=kw.pop("keepalive_s", 60), **kw)  # type: ignore[arg-type]
    c.connect()
    assert c.receive(CONNACK_OK) == [Connected(False)]
    return c


# ---------------------------------------------------------------- outgoing
def test_connect_minimal() -> None:
    # 3.1: 10 | remaining 19 | 00 04 "MQTT" | level 4 | flags 02 (clean session) | keep alive 60 | "poserun"
    c = MqttClient("poserun", keepalive_s=60)
    assert c.connect() == b"\x10\x13\x00\x04MQTT\x04\x02\x00\x3c\x00\x07poserun"


def test_connect_with_will_user_password_is_the_spec_example() -> None:
    # Figure 3.6's variable header: flags 0xCE (user name, password, will QoS 1, will flag, clean
    # session), keep alive 10; payload in the order of 3.1.3: client id, will topic, will message,
    # user name, password, each a 2-byte length and its bytes.
    c = MqttClient("id", keepalive_s=10, username="u", password="pw", will=Will("w/t", b"gone", qos=1))
    body = (b"\x00\x04MQTT\x04\xce\x00\x0a" + b"\x00\x02id" + b"\x00\x03w/t" + b"\x00\x04gone"
            + b"\x00\x01u" + b"\x00\x02pw")
    assert len(body) == 10 + 4 + 5 + 6 + 3 + 4 == 0x20
    assert c.connect() == b"\x10\x20" + body


def test_connect_flags_will_retain_qos2_no_clean_session() -> None:
    # flags: will retain 0x20 | will QoS 2 0x10 | will flag 0x04 = 0x34; keep alive 0
    c = MqttClient("a", keepalive_s=0, will=Will("t", b"", qos=2, retain=True), clean_session=False)
    assert c.connect() == b"\x10\x12\x00\x04MQTT\x04\x34\x00\x00\x00\x01a\x00\x01t\x00\x00"


def test_publish_qos0_qos1_qos2_retain_dup() -> None:
    c = connected()
    # 3.3: 0x30 | remaining 6 | topic "a/b" | payload "hi"
    assert c.publish("a/b", b"hi") == (None, b"\x30\x07\x00\x03a/bhi")
    assert c.publish("a/b", b"hi", retain=True) == (None, b"\x31\x07\x00\x03a/bhi")
    # Figure 3.11: topic "a/b", packet identifier (here 1, then 2) after the topic
    assert c.publish("a/b", b"", qos=1) == (1, b"\x32\x07\x00\x03a/b\x00\x01")
    assert c.publish("a/b", b"x", qos=2, retain=True) == (2, b"\x35\x08\x00\x03a/b\x00\x02x")
    # DUP (0x08) on resend
    assert c.pending() == [(1, b"\x3a\x07\x00\x03a/b\x00\x01"), (2, b"\x3d\x08\x00\x03a/b\x00\x02x")]
    assert encode_publish("a/b", b"", qos=1, dup=True, packet_id=10) == b"\x3a\x07\x00\x03a/b\x00\x0a"


def test_publish_remaining_length_boundaries() -> None:
    # Table 2.4: 127 -> 7F, 128 -> 80 01, 16383 -> FF 7F, 16384 -> 80 80 01
    c = connected()
    for n, header in ((127, b"\x7f"), (128, b"\x80\x01"), (16_383, b"\xff\x7f"), (16_384, b"\x80\x80\x01")):
        payload = b"p" * (n - 3)  # topic "a": 2 + 1 bytes
        assert c.publish("a", payload)[1] == b"\x30" + header + b"\x00\x01a" + payload


def test_publish_utf8_topic_is_the_spec_example() -> None:
    # 1.5.3.1: "A\U0002A6D4" is encoded 00 05 41 F0 AA 9B 94
    c = connected()
    assert c.publish("A\U0002a6d4", b"")[1] == b"\x30\x07\x00\x05\x41\xf0\xaa\x9b\x94"


def test_subscribe_unsubscribe_ping_disconnect() -> None:
    c = connected()
    # Figure 3.21 (packet id 1 here): "a/b" QoS 1, "c/d" QoS 2
    assert c.subscribe([("a/b", 1), ("c/d", 2)]) == (
        1, b"\x82\x0e\x00\x01\x00\x03a/b\x01\x00\x03c/d\x02")
    # Figure 3.30
    assert c.unsubscribe(["a/b", "c/d"]) == (2, b"\xa2\x0c\x00\x02\x00\x03a/b\x00\x03c/d")
    assert c.ping() == b"\xc0\x00"
    assert c.disconnect() == b"\xe0\x00"


@pytest.mark.parametrize("call", [
    lambda c: c.publish("a/+", b""),
    lambda c: c.publish("a/#", b""),
    lambda c: c.publish("", b""),
    lambda c: c.publish("x" * 65_536, b""),
    lambda c: c.publish("a", b"", qos=3),
    lambda c: c.publish("a", b"", qos=-1),
    lambda c: c.publish("a\x00b", b""),
    lambda c: c.publish("a", bytes(268_435_455 - 3 + 1)),  # remaining length one over 0xFFFFFF7F
    lambda c: c.subscribe([]),
    lambda c: c.subscribe([("a/#/b", 0)]),
    lambda c: c.subscribe([("a/b+", 0)]),
    lambda c: c.subscribe([("", 0)]),
    lambda c: c.subscribe([("a", 3)]),
    lambda c: c.unsubscribe([]),
    lambda c: c.unsubscribe(["x" * 65_536]),
])
def test_invalid_input_is_a_value_error(call: Callable[[MqttClient], object]) -> None:
    c = connected()
    with pytest.raises(ValueError):
        call(c)
    assert c.in_flight == 0


def test_largest_payload_is_accepted() -> None:
    c = connected()
    _pid, packet = c.publish("a", bytes(268_435_455 - 3))
    assert packet[:5] == b"\x30\xff\xff\xff\x7f"


@pytest.mark.parametrize("kw", [
    {"client_id": "", "clean_session": False},
    {"password": "p"},  # a password needs a user name in 3.1.1
    {"username": "u" * 65_536},
    {"will": Will("a/#", b"")},
    {"will": Will("a", b"", qos=3)},
    {"keepalive_s": 65_536},
])
def test_invalid_client_settings(kw: dict[str, object]) -> None:
    args: dict[str, object] = {"client_id": "c", "keepalive_s": 10, **kw}
    with pytest.raises(ValueError):
        MqttClient(**args)  # type: ignore[arg-type]


# ---------------------------------------------------------------- incoming
def test_connack_session_present() -> None:
    c = MqttClient("c", keepalive_s=10)
    c.connect()
    assert c.receive(b"\x20\x02\x01\x00") == [Connected(True)]
    assert c.connected


@pytest.mark.parametrize(("code", "text"), [
    (1, "Connection Refused, unacceptable protocol version"),
    (2, "Connection Refused, identifier rejected"),
    (3, "Connection Refused, Server unavailable"),
    (4, "Connection Refused, bad user name or password"),
    (5, "Connection Refused, not authorized"),
])
def test_connack_refusals(code: int, text: str) -> None:
    c = MqttClient("c", keepalive_s=10)
    c.connect()
    assert c.receive(b"\x20\x02\x00" + bytes([code])) == [ConnectRefused(code, text)]
    assert not c.connected
    (after,) = c.receive(b"\xd0\x00")
    assert isinstance(after, ProtocolError) and "refused" in after.reason


def test_incoming_publish_every_qos() -> None:
    c = connected()
    # QoS 0, retain
    assert c.receive(b"\x31\x07\x00\x03a/bhi") == [Message("a/b", b"hi", 0, True, False, None)]
    assert c.data_to_send() == b""
    # QoS 1 with DUP, packet id 10: answered PUBACK 40 02 00 0A (3.4)
    assert c.receive(b"\x3a\x09\x00\x03a/b\x00\x0ahi") == [Message("a/b", b"hi", 1, False, True, 10)]
    assert c.data_to_send() == b"\x40\x02\x00\x0a"
    # QoS 2, packet id 11: PUBREC 50 02 00 0B (3.5); a resend before PUBREL is not delivered again
    assert c.receive(b"\x34\x09\x00\x03a/b\x00\x0bhi") == [Message("a/b", b"hi", 2, False, False, 11)]
    assert c.data_to_send() == b"\x50\x02\x00\x0b"
    assert c.receive(b"\x3c\x09\x00\x03a/b\x00\x0bhi") == []
    assert c.data_to_send() == b"\x50\x02\x00\x0b"
    # PUBREL 62 02 00 0B -> PUBCOMP 70 02 00 0B (3.6, 3.7); the id may then carry a new message
    assert c.receive(b"\x62\x02\x00\x0b") == []
    assert c.data_to_send() == b"\x70\x02\x00\x0b"
    assert c.receive(b"\x34\x09\x00\x03a/b\x00\x0bho") == [Message("a/b", b"ho", 2, False, False, 11)]


def test_bytes_topics() -> None:
    c = connected(bytes_topics=True)
    assert c.receive(b"\x30\x07\x00\x03a/bhi") == [Message(b"a/b", b"hi", 0, False, False, None)]


def test_suback_unsuback_pingresp() -> None:
    c = connected()
    pid, _ = c.subscribe([("a/b", 1), ("c/d", 2)])
    assert c.receive(b"\x90\x04\x00\x01\x01\x02") == [Subscribed(pid, (1, 2))]
    pid, _ = c.unsubscribe(["a/b"])
    assert c.receive(b"\xb0\x02\x00\x02") == [Unsubscribed(pid)]
    assert c.receive(b"\xd0\x00") == [Pong()]


def test_suback_refusals() -> None:
    c = connected()
    # Figure 3.26's return codes 0, 1, 2 and 0x80 (failure) for four filters
    pid, _ = c.subscribe([("a", 0), ("b", 1), ("c", 2), ("d", 2)])
    assert c.receive(b"\x90\x06\x00\x01\x00\x01\x02\x80") == [SubscribeRefused(pid, ("d",), (0, 1, 2, 0x80))]
    pid, _ = c.subscribe([("x", 1), ("y", 1)])
    assert c.receive(b"\x90\x04\x00\x02\x80\x80") == [SubscribeRefused(pid, ("x", "y"), (0x80, 0x80))]


@pytest.mark.parametrize(("data", "why"), [
    (b"\x30\xff\xff\xff\xff\x01", "remaining length"),  # 5 length bytes (2.2.3: at most 4)
    (b"\x30\x01\x00", "truncated"),  # no room for the topic length
    (b"\x30\x04\x00\x05ab", "truncated"),  # topic length 5 in a 4-byte packet
    (b"\x30\x05\x00\x02\xff\xfex", "UTF-8"),  # topic bytes not UTF-8
    (b"\x30\x03\x00\x00x", "empty"),  # zero-length topic
    (b"\x30\x05\x00\x03a/+", "wildcards"),
    (b"\x36\x07\x00\x03a/b\x00\x01", "QoS 3"),
    (b"\x32\x07\x00\x03a/b\x00\x00", "packet id 0"),
    (b"\x38\x05\x00\x03a/b", "DUP"),  # QoS 0 with DUP
    (b"\x82\x08\x00\x01\x00\x03a/b\x00", "SUBSCRIBE"),  # a server sending SUBSCRIBE
    (b"\x10\x00", "CONNECT"),
    (b"\xc0\x00", "PINGREQ"),
    (b"\xe0\x00", "DISCONNECT"),
    (b"\x00\x00", "reserved"),
    (b"\xf0\x00", "reserved"),
    (b"\x20\x02\x00\x00", "second CONNACK"),
    (b"\x40\x03\x00\x01\x00", "PUBACK"),  # wrong remaining length
    (b"\x60\x02\x00\x01", "flags"),  # PUBREL must have flags 0010
    (b"\xd1\x00", "flags"),
    (b"\x90\x03\x00\x09\x00", "no SUBSCRIBE"),  # SUBACK for an id never used
    (b"\xb0\x02\x00\x09", "no UNSUBSCRIBE"),
])
def test_malformed_input(data: bytes, why: str) -> None:
    c = connected()
    events = c.receive(b"\x30\x03\x00\x01a" + data)  # one good message first: it is still reported
    assert events[0] == Message("a", b"", 0, False, False, None)
    assert len(events) == 2 and isinstance(events[1], ProtocolError), events
    assert why.lower() in events[1].reason.lower()
    (again,) = c.receive(b"\xd0\x00")
    assert isinstance(again, ProtocolError) and "earlier error" in again.reason
    c.connect()  # a new connection accepts input again
    assert c.receive(CONNACK_OK) == [Connected(False)]


def test_suback_with_wrong_code_count_or_code() -> None:
    c = connected()
    c.subscribe([("a", 0), ("b", 0)])
    (e,) = c.receive(b"\x90\x03\x00\x01\x00")
    assert isinstance(e, ProtocolError) and "return codes" in e.reason
    c = connected()
    c.subscribe([("a", 0)])
    (e,) = c.receive(b"\x90\x03\x00\x01\x03")
    assert isinstance(e, ProtocolError) and "invalid return code" in e.reason


def test_packets_before_connack_are_errors() -> None:
    for data in (b"\x30\x03\x00\x01a", b"\xd0\x00", b"\x40\x02\x00\x01"):
        c = MqttClient("c", keepalive_s=10)
        c.connect()
        (e,) = c.receive(data)
        assert isinstance(e, ProtocolError) and "before CONNACK" in e.reason


def test_max_packet_size() -> None:
    c = connected(max_packet_size=100)
    (e,) = c.receive(b"\x30\x80\x01")  # announces 131 bytes: refused before they arrive
    assert isinstance(e, ProtocolError) and "max_packet_size" in e.reason


# ----------------------------------------------------------------- chunking
def _rl(n: int) -> bytes:
    """Remaining length per 2.2.3, written independently of the module under test."""
    out = b""
    while True:
        n, digit = divmod(n, 128)
        out += bytes([digit | (0x80 if n else 0)])
        if not n:
            return out


def _pub(topic: bytes, payload: bytes, qos: int, pid: int, retain: bool, dup: bool) -> bytes:
    body = struct.pack(">H", len(topic)) + topic + (struct.pack(">H", pid) if qos else b"") + payload
    return bytes([0x30 | (8 if dup and qos else 0) | qos << 1 | retain]) + _rl(len(body)) + body


_publishes = st.tuples(st.text(st.characters(blacklist_characters="+#\x00", blacklist_categories=("Cs",)),
                               min_size=1, max_size=30),
                       st.binary(max_size=300) | st.binary(min_size=16_300, max_size=16_500),
                       st.integers(0, 2), st.integers(1, 65535), st.booleans(), st.booleans())


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(_publishes, st.just("pong"), st.integers(1, 65535)), max_size=25),
       st.lists(st.integers(0, 40_000), max_size=12), st.booleans())
def test_any_split_gives_the_one_shot_events(items: list, cuts: list[int], as_views: bool) -> None:
    """A stream of mixed broker packets (PUBLISH at every QoS, PINGRESP, PUBREL, and the acks for
    our own SUBSCRIBE, UNSUBSCRIBE and QoS 1/2 publishes) gives the same events and answers
    whatever the reads' boundaries."""
    stream = CONNACK_OK
    expected: list[Event] = [Connected(False)]
    seen_qos2: set[int] = set()
    for item in items:
        if item == "pong":
            stream += b"\xd0\x00"
            expected.append(Pong())
        elif isinstance(item, int):
            stream += b"\x62\x02" + struct.pack(">H", item)  # PUBREL
            seen_qos2.discard(item)
        else:
            topic, payload, qos, pid, retain, dup = item
            stream += _pub(topic.encode(), payload, qos, pid, retain, dup)
            if qos == 2 and pid in seen_qos2:
                continue
            if qos == 2:
                seen_qos2.add(pid)
            expected.append(Message(topic, payload, qos, retain, dup and qos > 0, pid if qos else None))
    stream += (b"\x90\x03\x00\x01\x01" + b"\xb0\x02\x00\x02" + b"\x40\x02\x00\x03"  # SUBACK UNSUBACK PUBACK
               + b"\x50\x02\x00\x04" + b"\x70\x02\x00\x04")  # PUBREC, PUBCOMP for our QoS 2
    expected += [Subscribed(1, (1,)), Unsubscribed(2), Published(3), Published(4)]

    def run(pieces: list[bytes]) -> tuple[list[Event], bytes]:
        c = MqttClient("c", keepalive_s=60)
        c.connect()
        c.subscribe([("s/#", 1)])
        c.unsubscribe(["u"])
        c.publish("p", b"1", qos=1)
        c.publish("p", b"2", qos=2)
        events: list[Event] = []
        sent = b""
        for piece in pieces:
            events += c.receive(memoryview(bytearray(piece)) if as_views else piece)
            sent += c.data_to_send()
        assert c.in_flight == 0
        return events, sent

    edges = sorted({c for c in cuts if 0 < c < len(stream)})
    pieces = [stream[a:b] for a, b in zip([0, *edges], [*edges, len(stream)], strict=True)]
    one_events, one_sent = run([stream])
    assert one_events == expected
    assert run(pieces) == (one_events, one_sent)
    assert run([stream[k:k + 1] for k in range(min(len(stream), 3000))] + [stream[3000:]]) == (one_events, one_sent)


# --------------------------------------------------------------- keep-alive
def test_pingreq_after_idle_then_pong_rearms() -> None:
    c = connected(keepalive_s=10)  # default: ping after keepalive_s / 2 without sending
    assert c.tick(100.0) == [] and c.data_to_send() == b""  # the first tick notes the CONNECT as sent
    assert c.tick(104.9) == [] and c.data_to_send() == b""
    assert c.tick(105.0) == [] and c.data_to_send() == b"\xc0\x00"
    assert c.receive(b"\xd0\x00") == [Pong()]
    assert c.tick(109.9) == [] and c.data_to_send() == b""
    assert c.tick(110.0) == [] and c.data_to_send() == b"\xc0\x00"


def test_sending_postpones_the_ping_only_while_the_broker_is_heard() -> None:
    c = connected(keepalive_s=10, ping_fraction=1.0)
    c.tick(0.0)
    c.publish("a", b"x")
    assert c.tick(9.0) == [] and c.data_to_send() == b""  # the publish is noted as sent at 9.0
    c.receive(b"\x40\x02\x00\x01")  # something heard (an acknowledgement)
    assert c.tick(18.9) == [] and c.data_to_send() == b""  # heard at 18.9, sent at 9.0: not yet
    assert c.tick(19.0) == [] and c.data_to_send() == b"\xc0\x00"  # idle for 10 s


def test_a_publisher_on_a_dead_link_pings_and_times_out() -> None:
    """Sending all the time but hearing nothing (no PUBACK): the ping goes out anyway."""
    c = connected(keepalive_s=10)
    c.tick(0.0)
    events: list[object] = []
    for k in range(1, 40):
        c.publish("a", b"x", qos=1)
        events += c.tick(float(k))
    assert c.data_to_send() == b"\xc0\x00" and events == [KeepaliveTimeout(10.0)]


def test_keepalive_timeout_when_nothing_comes_back() -> None:
    c = connected(keepalive_s=10)
    c.tick(0.0)
    c.tick(5.0)
    assert c.data_to_send() == b"\xc0\x00"
    assert c.tick(14.9) == []
    assert c.tick(15.0) == [KeepaliveTimeout(10.0)]
    assert c.tick(30.0) == []  # reported once
    assert c.data_to_send() == b""  # and no more pings on a dead link


def test_no_timeout_when_traffic_arrives_instead_of_the_pong() -> None:
    c = connected(keepalive_s=10, pong_timeout_s=3)
    c.tick(0.0)
    c.tick(5.0)
    assert c.data_to_send() == b"\xc0\x00"
    c.receive(b"\x30\x03\x00\x01a")  # a message, no PINGRESP: the link is alive
    assert c.tick(8.0) == []
    assert c.tick(9.9) == [] and c.data_to_send() == b""
    assert c.tick(10.0) == [] and c.data_to_send() == b"\xc0\x00"  # idle again: the next ping
    assert c.tick(13.0) == [KeepaliveTimeout(3.0)]


def test_manual_ping_arms_the_deadline_and_zero_disables() -> None:
    c = connected(keepalive_s=10)
    c.tick(0.0)
    c.ping()
    assert c.tick(1.0) == []
    assert c.tick(11.0) == [KeepaliveTimeout(10.0)]
    off = connected(keepalive_s=0)
    assert off.tick(0.0) == [] and off.tick(1e6) == [] and off.data_to_send() == b""


def test_reconnect_resets_keepalive_and_buffer() -> None:
    c = connected(keepalive_s=10)
    c.tick(0.0)
    c.tick(5.0)
    assert c.data_to_send() == b"\xc0\x00"
    assert c.receive(b"\x30\x10\x00") == []  # half a packet, then the link drops
    assert c.tick(15.0) == []  # (bytes came after the ping: no timeout)
    c.connect()  # the half packet is dropped: the CONNACK parses on its own
    assert c.receive(CONNACK_OK) == [Connected(False)]
    assert c.tick(20.0) == [] and c.tick(24.9) == [] and c.data_to_send() == b""
    assert c.tick(25.0) == [] and c.data_to_send() == b"\xc0\x00"


# ------------------------------------------------------------- QoS flows
def test_qos1_outgoing_flow_and_resend() -> None:
    c = connected()
    pid, packet = c.publish("t", b"m", qos=1)
    assert c.in_flight == 1
    assert c.receive(b"\x40\x02\x00\x09") == []  # unknown id: ignored
    assert c.pending() == [(pid, bytes([packet[0] | 0x08]) + packet[1:])]
    c.connect()  # reconnect: still in flight
    c.receive(b"\x20\x02\x01\x00")
    assert c.receive(b"\x40\x02" + pid.to_bytes(2, "big")) == [Published(pid)]
    assert c.in_flight == 0 and c.pending() == []


def test_qos2_outgoing_flow() -> None:
    c = connected()
    pid, _ = c.publish("t", b"m", qos=2)
    assert pid == 1
    assert c.receive(b"\x40\x02\x00\x01") == []  # a PUBACK does not complete QoS 2
    assert c.receive(b"\x50\x02\x00\x01") == []  # PUBREC -> PUBREL 62 02 00 01
    assert c.data_to_send() == b"\x62\x02\x00\x01"
    assert c.pending() == [(1, b"\x62\x02\x00\x01")]  # after reconnecting, the PUBREL is resent
    assert c.receive(b"\x50\x02\x00\x01") == [] and c.data_to_send() == b"\x62\x02\x00\x01"
    assert c.receive(b"\x70\x02\x00\x01") == [Published(1)]
    assert c.in_flight == 0
    assert c.receive(b"\x70\x02\x00\x01") == []  # a late duplicate: nothing


def test_clean_session_forgets_incoming_qos2_state() -> None:
    c = connected()
    c.receive(b"\x34\x06\x00\x01a\x00\x05x")
    c.connect()
    c.receive(b"\x20\x02\x00\x00")  # no session: the broker's id 5 is new again
    assert c.receive(b"\x34\x06\x00\x01a\x00\x05y") == [Message("a", b"y", 2, False, False, 5)]
    c2 = connected()
    c2.receive(b"\x34\x06\x00\x01a\x00\x05x")
    c2.connect()
    c2.receive(b"\x20\x02\x01\x00")  # session present: the resend is a duplicate
    assert c2.receive(b"\x3c\x06\x00\x01a\x00\x05x") == []


def test_packet_ids_skip_ids_in_flight_and_are_reused_after_ack() -> None:
    c = connected()
    ids = [c.publish("t", b"", qos=1)[0] for _ in range(65_535)]
    assert ids == list(range(1, 65_536))
    with pytest.raises(RuntimeError):
        c.publish("t", b"", qos=1)
    with pytest.raises(RuntimeError):
        c.subscribe([("t", 0)])
    assert c.receive(b"\x40\x02\x01\x00\x40\x02\x00\x07\x40\x02\x00\x06") == [
        Published(256), Published(7), Published(6)]
    assert c.in_flight == 65_532
    # the allocator goes on from 1 (after 65535), skipping ids in flight
    assert [c.publish("t", b"", qos=1)[0] for _ in range(2)] == [6, 7]
    assert c.subscribe([("t", 0)])[0] == 256
    assert c.receive(b"\x90\x03\x01\x00\x00") == [Subscribed(256, (0,))]
    assert c.publish("t", b"", qos=2)[0] == 256


# -------------------------------------------------------- a real Mosquitto
class Link:
    """The test's I/O: a blocking socket driving one MqttClient; waits on the socket, never sleeps."""

    def __init__(self, host: str, port: int, client: MqttClient) -> None:
        self.client = client
        self.sock = socket.create_connection((host, port), timeout=CEILING)
        self.events: list[Event] = []
        self.sock.sendall(client.connect())

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def wait(self, predicate: Callable[[list[Event]], bool], what: str) -> list[Event]:
        """Read until ``predicate(events so far)``; fail after the ceiling or on EOF."""
        deadline = time.monotonic() + CEILING
        while not predicate(self.events):
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"waited {CEILING:.0f} s for {what}; events {self.events}", pytrace=False)
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                pytest.fail(f"the broker closed the connection while waiting for {what}; events {self.events}",
                            pytrace=False)
            self.events += self.client.receive(data)
            self.client.tick(time.monotonic())
            out = self.client.data_to_send()
            if out:
                self.sock.sendall(out)
        assert not any(isinstance(e, ProtocolError) for e in self.events), self.events
        return self.events

    def wait_for(self, event: Event) -> None:
        self.wait(lambda ev: event in ev, repr(event))

    def messages(self) -> list[Message]:
        return [e for e in self.events if isinstance(e, Message)]

    def close(self, graceful: bool = True) -> None:
        with contextlib.suppress(OSError):
            if graceful:
                self.sock.sendall(self.client.disconnect())
            self.sock.close()


@pytest.fixture
def mosquitto(broker_url: str) -> tuple[str, int]:
    b = BrokerSettings(url=broker_url)
    return b.host, b.port


@pytest.mark.broker
def test_real_broker_connect_subscribe_publish_all_qos(mosquitto: tuple[str, int], session_id: str) -> None:
    link = Link(*mosquitto, MqttClient(f"{session_id}-a", keepalive_s=30))
    link.wait(lambda ev: Connected(False) in ev, "CONNACK")
    pid, packet = link.client.subscribe([(f"{session_id}/q/#", 2)])
    link.send(packet)
    link.wait_for(Subscribed(pid, (2,)))
    published = []
    for qos in (0, 1, 2):
        pub_id, packet = link.client.publish(f"{session_id}/q/{qos}", f"m{qos}".encode(), qos=qos)
        link.send(packet)
        if pub_id is not None:
            published.append(Published(pub_id))
    link.wait(lambda ev: len([e for e in ev if isinstance(e, Message)]) == 3
              and all(p in ev for p in published), "three messages and the acks of two")
    got = sorted((m.topic, m.payload, m.qos, m.retain) for m in link.messages())
    assert got == [(f"{session_id}/q/{q}", f"m{q}".encode(), q, False) for q in (0, 1, 2)]
    assert link.client.in_flight == 0
    # a ping round trip, through tick's own PINGREQ
    link.client.tick(1e9)
    link.send(link.client.data_to_send())
    link.wait(lambda ev: Pong() in ev, "PINGRESP")
    pid, packet = link.client.unsubscribe([f"{session_id}/q/#"])
    link.send(packet)
    link.wait_for(Unsubscribed(pid))
    link.close()


@pytest.mark.broker
def test_real_broker_retained_message(mosquitto: tuple[str, int], session_id: str) -> None:
    topic = f"{session_id}/meta/imu"
    pub = Link(*mosquitto, MqttClient(f"{session_id}-p", keepalive_s=30))
    pub.wait(lambda ev: Connected(False) in ev, "CONNACK")
    pid, packet = pub.client.publish(topic, b'{"rate": 400}', qos=1, retain=True)
    pub.send(packet)
    pub.wait_for(Published(pid))
    sub = Link(*mosquitto, MqttClient(f"{session_id}-s", keepalive_s=30))
    sub.wait(lambda ev: Connected(False) in ev, "CONNACK")
    sub.send(sub.client.subscribe([(topic, 1)])[1])
    sub.wait(lambda ev: any(isinstance(e, Message) for e in ev), "the retained message")
    assert sub.messages() == [Message(topic, b'{"rate": 400}', 1, True, False, sub.messages()[0].packet_id)]
    pid, packet = pub.client.publish(topic, b"", qos=1, retain=True)  # clear it on the shared broker
    pub.send(packet)
    pub.wait_for(Published(pid))
    pub.close()
    sub.close()


@pytest.mark.broker
def test_real_broker_last_will_on_a_dropped_socket(mosquitto: tuple[str, int], session_id: str) -> None:
    will_topic = f"{session_id}/_gateway/g1/status"
    watcher = Link(*mosquitto, MqttClient(f"{session_id}-w", keepalive_s=30))
    watcher.wait(lambda ev: Connected(False) in ev, "CONNACK")
    pid, packet = watcher.client.subscribe([(will_topic, 1)])
    watcher.send(packet)
    watcher.wait_for(Subscribed(pid, (1,)))
    gw = Link(*mosquitto, MqttClient(f"{session_id}-g", keepalive_s=30,
                                     will=Will(will_topic, b'{"state": "offline"}', qos=1)))
    gw.wait(lambda ev: Connected(False) in ev, "CONNACK")
    pid, packet = gw.client.publish(will_topic, b'{"state": "online"}', qos=1)
    gw.send(packet)
    gw.wait_for(Published(pid))
    gw.close(graceful=False)  # no DISCONNECT: the broker publishes the will
    watcher.wait(lambda ev: len([e for e in ev if isinstance(e, Message)]) == 2, "the last will")
    assert [m.payload for m in watcher.messages()] == [b'{"state": "online"}', b'{"state": "offline"}']
    watcher.close()


@contextlib.contextmanager
def password_mosquitto(user: str, password: str) -> Iterator[int]:
    """A private mosquitto that refuses anonymous clients; yields its port."""
    exe = mosquitto_exe()
    passwd = shutil.which("mosquitto_passwd")
    require(exe is not None and passwd is not None,
            "mosquitto or mosquitto_passwd is missing (Debian package 'mosquitto'; .ci/run installs it)")
    assert exe is not None and passwd is not None
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        pw_file = Path(tmp) / "passwd"
        subprocess.run([passwd, "-c", "-b", str(pw_file), user, password], check=True, capture_output=True,
                       timeout=CEILING)
        pw_file.chmod(0o600)
        if os.geteuid() == 0:  # mosquitto started by root drops to the user 'mosquitto': let it read the file
            with contextlib.suppress(KeyError):
                os.chown(pw_file, pwd.getpwnam("mosquitto").pw_uid, -1)
                os.chmod(tmp, 0o711)
        conf = Path(tmp) / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {pw_file}\n"
                        "persistence false\n")
        log_path = Path(tmp) / "mosquitto.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=log)
            try:
                deadline = time.monotonic() + CEILING
                while True:  # a TCP connect that succeeds: the listener is up (blocking, with a timeout)
                    try:
                        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
                        break
                    except OSError:
                        if proc.poll() is not None or time.monotonic() > deadline:
                            pytest.fail(f"mosquitto did not start: {log_path.read_text(errors='replace')}")
                        with contextlib.suppress(subprocess.TimeoutExpired):
                            proc.wait(0.05)  # wait on the process (it may exit with an error)
                yield port
            finally:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


@pytest.mark.broker
def test_real_broker_refuses_bad_credentials() -> None:
    with password_mosquitto("coach", "s3cret") as port:
        assert not broker_answers("127.0.0.1", port)  # anonymous: refused
        for kw in ({}, {"username": "coach", "password": "wrong"}):
            link = Link("127.0.0.1", port, MqttClient("pw-test", keepalive_s=10, **kw))  # type: ignore[arg-type]
            link.wait(lambda ev: any(isinstance(e, ConnectRefused | Connected) for e in ev), "CONNACK")
            (refused,) = link.events
            assert isinstance(refused, ConnectRefused) and refused.code in (4, 5), refused
            assert refused.reason == REFUSAL_REASONS[refused.code]
            link.close(graceful=False)
        ok = Link("127.0.0.1", port, MqttClient("pw-test", keepalive_s=10, username="coach", password="s3cret"))
        ok.wait(lambda ev: Connected(False) in ev, "CONNACK")
        ok.close()


def test_on_publish_takes_every_message_in_order_without_a_message_each() -> None:
    got: list[tuple[str | bytes, bytes]] = []
    c = MqttClient("c", keepalive_s=30, on_publish=lambda t, p: got.append((t, p)))
    c.connect()
    assert c.receive(b"\x20\x02\x00\x00") == [Connected(False)]
    # QoS 1 id 7 retained "m/x" -> "meta" first, then QoS 0 "a/b" -> "hi", QoS 0 retained "a/b" -> "r"
    events = c.receive(b"\x33\x0b\x00\x03m/x\x00\x07meta" + b"\x30\x07\x00\x03a/bhi" + b"\x31\x06\x00\x03a/br")
    assert got == [("m/x", b"meta"), ("a/b", b"hi"), ("a/b", b"r")]  # the order they came in
    assert events == []
    assert c.data_to_send() == b"\x40\x02\x00\x07"  # still acknowledged
