"""The gateways' publisher (services/mqtt_publisher.py) against a real mosquitto: refusals are
errors, a lost or half-open link comes back with its retained meta, and a service that lacks a
source's meta asks for it and gets it (docs/protocol.md, "Meta requests")."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable

import pytest

from poserun.services.fusion import FusionService
from poserun.services.mqtt import BrokerUnavailable
from poserun.services.mqtt_conn import MqttConnection
from poserun.services.mqtt_publisher import Publisher, gateway_publisher
from poserun.services.sim.team import SimTeam
from poserun.settings import BrokerSettings, load_settings
from poserun.wire import topics
from tests.conftest import until, wait_until
from tests.faults.tools import Mosquitto, Proxy, mosquitto


def test_a_refused_connection_is_an_error_that_says_so(tmp_path) -> None:  # type: ignore[no-untyped-def]
    passwd = tmp_path / "passwd"
    passwd.write_text("")
    with mosquitto(f"allow_anonymous false\npassword_file {passwd}\n") as m:
        pub = Publisher(BrokerSettings(url=m.url, username="gw", password="nope"), "gw")
        with pytest.raises(BrokerUnavailable, match="refused the connection"):
            pub.connect(timeout=5.0)


def dynsec_client(tmp_path, username: str, password: str) -> str:  # type: ignore[no-untyped-def]
    """Mosquitto's dynamic security plugin with one client and no roles: it may connect, and every
    subscription is refused with SUBACK 0x80 (mosquitto's acl_file never refuses a subscription,
    it only withholds the messages: docs/operations.md)."""
    import base64
    import hashlib
    import json
    import os

    plugin = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"
    if not os.path.exists(plugin):
        pytest.skip(f"mosquitto's dynamic security plugin is not at {plugin}")
    salt = os.urandom(12)
    client = {"username": username, "salt": base64.b64encode(salt).decode(), "iterations": 101, "roles": [],
              "password": base64.b64encode(hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101)).decode()}
    conf = tmp_path / "dynsec.json"
    conf.write_text(json.dumps({"clients": [client], "roles": [], "groups": [], "defaultACLAccess": {
        "publishClientSend": True, "publishClientReceive": True, "subscribe": False, "unsubscribe": True}}))
    return f"plugin {plugin}\nplugin_opt_config_file {conf}\n"


def test_a_refused_subscription_is_an_error_that_says_so(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from poserun.services.mqtt_stream import LoopSubscriber

    with mosquitto(dynsec_client(tmp_path, "gw", "pw")) as m:
        broker = BrokerSettings(url=m.url, username="gw", password="pw")
        pub = gateway_publisher(broker, "gw", "s1")
        with pytest.raises(BrokerUnavailable, match="refused the subscription to poserun/v1/s1/"):
            pub.connect(timeout=5.0)
        ingest = LoopSubscriber(broker, ["poserun/v1/s1/+/data/+"], lambda *a: None)
        with pytest.raises(BrokerUnavailable, match="refused"):
            asyncio.run(ingest.run(asyncio.Event(), timeout=5.0))


def test_the_service_asks_for_missing_meta_and_the_gateway_answers() -> None:
    """The broker lost the retained meta (here: cleared by hand) and the service starts after
    that: its first frames are refused for want of meta, it asks on the meta request topic, the
    gateway publishes the meta again, and the athlete's frames are taken from then on."""
    session = "metareq"
    with mosquitto() as m:
        settings = load_settings(overrides={"broker": {"url": m.url}, "session": {"id": session},
                                            "sim": {"athletes": 1}})
        team = SimTeam(session, settings.sim)
        pub = gateway_publisher(settings.broker, "gw", session)
        pub.connect()
        for msg in team.meta_messages():
            pub.publish(msg.topic, msg.payload, qos=1, retain=True)
        pub.flush()
        wipe = Publisher(settings.broker, "wipe")  # an empty retained message deletes the retained one
        wipe.connect()
        for msg in team.meta_messages():
            wipe.publish(msg.topic, b"", qos=1, retain=True)
        wipe.close()

        async def go() -> FusionService:
            svc = FusionService(settings, session=session)
            stop, ready = asyncio.Event(), asyncio.Event()
            task = asyncio.create_task(svc.run(stop, ready))
            await until(ready.is_set, "the service is up")
            halt = threading.Event()

            def frames() -> None:
                while not halt.is_set():
                    for msg in team.step(10)[0]:
                        pub.publish(msg.topic, msg.payload, qos=msg.qos)
                    pub.sleep(0.05, halt)
            t = threading.Thread(target=frames)
            t.start()
            try:
                await until(lambda: len(svc.meta) == len(team.meta_messages())
                            and svc.snapshot()["totals"].get("frames", 0) > 100, "every meta again, frames taken")
            finally:
                halt.set()
                await asyncio.to_thread(t.join)
                stop.set()
                await task
            return svc

        svc = asyncio.run(go())
        pub.close()
    snap = svc.snapshot()
    assert svc.meta_requests >= 1 and pub.answered >= 1
    assert snap["rejected"].get("no_meta", 0) > 0  # it did lack the meta, and said so
    assert len(svc.meta) == len(team.meta_messages())


def test_a_gateway_on_a_frozen_link_notices_and_comes_back() -> None:
    """The link freezes (no bytes, no FIN) while the gateway publishes: the keep-alive notices,
    the publisher reconnects once the link works again and says its retained status again."""
    async def go() -> None:
        with mosquitto() as m:
            proxy = Proxy(m.port)
            await proxy.start()
            got: list[bytes] = []
            sub = MqttConnection(BrokerSettings(url=m.url), "svc", subscriptions=[("g/#", 1)],
                                 on_message=lambda msg, _r: got.append(msg.payload))
            await sub.start()
            pub = Publisher(BrokerSettings(url=f"mqtt://127.0.0.1:{proxy.port}", keepalive_s=5), "gw")
            # (the blocking publisher runs on threads: this loop runs the proxy)
            await asyncio.to_thread(pub.connect)
            pub.publish("g/status", b"online", qos=1, retain=True)
            await asyncio.to_thread(pub.flush)
            await until(lambda: got == [b"online"], "the status")
            proxy.freeze()
            halt = threading.Event()

            def publish() -> None:
                k = 0
                while not halt.is_set():
                    pub.publish("g/frame", k.to_bytes(4, "big"))
                    k += 1
                    pub.sleep(0.01, halt)
            t = threading.Thread(target=publish)
            t.start()
            try:
                await until(lambda: pub.stats.timeouts >= 1, "the keep-alive noticed the dead link")
                proxy.cut()
                proxy.thaw()
                await until(lambda: pub.reconnects >= 1 and got.count(b"online") >= 2,
                            "reconnected, the status said again")
                n = len(got)
                await until(lambda: len(got) > n + 10, "frames flow again")
            finally:
                halt.set()
                await asyncio.to_thread(t.join)
                await asyncio.to_thread(pub.close)
                await sub.close()
                await proxy.close()
            assert pub.stats.dropped > 0  # frames published while the link was down: counted, not queued

    asyncio.run(go())


def serve_until(pub: Publisher, condition: Callable[[], object], what: str) -> None:
    """Serve the publisher's connection (it has no thread of its own) until ``condition``."""
    wait_until(lambda: (pub.pump(0.05), condition())[1], what)


def whose_broker_went(m: Mosquitto) -> Publisher:
    """A connected publisher, then its broker stopped and the loss noticed."""
    pub = Publisher(BrokerSettings(url=m.url, keepalive_s=5), "gw")
    pub.connect()
    m.stop()
    serve_until(pub, lambda: not pub.connected, "the loss noticed")
    return pub


def test_qos1_publishes_while_the_broker_is_away_are_sent_on_its_return() -> None:
    with mosquitto() as m:
        pub = whose_broker_went(m)
        pub.publish("q/a", b"kept", qos=1)
        pub.publish("q/b", b"gone")  # QoS 0: dropped and counted
        m.start()

        got: list[bytes] = []

        async def read() -> None:
            sub = MqttConnection(BrokerSettings(url=m.url), "svc", subscriptions=[("q/#", 1)],
                                 on_message=lambda msg, _r: got.append(msg.payload))
            await sub.start()
            await asyncio.to_thread(serve_until, pub, lambda: pub.stats.acknowledged >= 1,
                                    "the kept publish acknowledged")
            await until(lambda: got == [b"kept"], "the kept publish delivered")
            await sub.close()
        asyncio.run(read())
        pub.close()
        assert pub.stats.dropped == 1 and pub.stats.resent == 1


def test_a_waiting_meta_request_is_answered_after_each_reconnection() -> None:
    """A request waiting on the broker (retained) comes again after every subscription: it is
    answered on each connection, and a broker restart costs one reconnection, no more."""
    with mosquitto() as m:
        broker = BrokerSettings(url=m.url, keepalive_s=5)
        meta = topics.meta_topic("s1", "a1", "imu_foot_left")
        asker = Publisher(broker, "asker")
        asker.connect()
        asker.publish(topics.meta_request_topic("s1", "a1", "imu_foot_left"), b"?", qos=1, retain=True)
        asker.close()
        pub = gateway_publisher(broker, "gw", "s1")
        pub.connect()
        pub.publish(meta, b'{"m": 1}', qos=1, retain=True)
        pub.flush()
        serve_until(pub, lambda: pub.answered >= 1, "the waiting request answered at connect")
        m.stop()  # SIGTERM: saved, the retained request comes again on the next subscription
        serve_until(pub, lambda: not pub.connected, "the loss noticed")
        m.start()
        serve_until(pub, lambda: pub.reconnects >= 1, "reconnected")
        pub.flush()
        assert pub.stats.connects == 2 and pub.reconnects == 1 and pub.connected
        pub.close()


def test_flush_does_not_wait_for_a_broker_that_is_away() -> None:
    """With QoS 1 publishes in flight and the broker gone, flush() returns (they go on the next
    connection): a gateway pacing its frames must not stall for the flush's deadline."""
    with mosquitto() as m:
        pub = whose_broker_went(m)
        pub.publish("q/a", b"kept", qos=1)
        flushing = threading.Thread(target=pub.flush, kwargs={"timeout": 24 * 3600.0})  # (it used to wait it out)
        flushing.start()
        wait_until(lambda: not flushing.is_alive(), "flush() returned")
        assert pub.client.in_flight == 1
        pub.close(timeout=0.1)


def test_a_message_in_the_same_read_as_the_suback_waits_for_the_connection() -> None:
    """Byte-level: a broker that writes SUBACK and a meta request in one segment (mosquitto may,
    for a retained request). The request is answered on the connection being opened; answering
    it from within the handshake used to dial a second connection with the same client id."""
    import socket
    import threading

    from poserun.wire.mqtt import encode_publish

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    accepted: list[socket.socket] = []
    got = bytearray()

    def serve() -> None:
        server.settimeout(10)
        with contextlib.suppress(OSError):
            while True:
                conn, _ = server.accept()
                accepted.append(conn)
                conn.settimeout(10)
                conn.recv(4096)  # CONNECT
                conn.sendall(b"\x20\x02\x00\x00")  # CONNACK, accepted
                sub = conn.recv(4096)  # SUBSCRIBE: its packet id follows the fixed header
                request = encode_publish(topics.meta_request_topic("s1", "a1", "imu_foot_left"), b"")
                conn.sendall(b"\x90\x03" + sub[2:4] + b"\x00" + request)  # SUBACK and the request, one write
                threading.Thread(target=lambda c=conn: got.extend(c.recv(65536)), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    pub = gateway_publisher(BrokerSettings(url=f"mqtt://127.0.0.1:{port}"), "gw", "s1")
    pub.retained[topics.meta_topic("s1", "a1", "imu_foot_left")] = (b'{"m": 1}', 1)  # (held from before)
    pub.connect(timeout=5.0)
    pub.pump(0.0)
    wait_until(lambda: b'{"m": 1}' in got, "the answer on the first connection")
    assert len(accepted) == 1 and pub.stats.connects == 1 and pub.answered == 1
    server.close()
    for c in accepted:
        c.close()
