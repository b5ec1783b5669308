"""The one MQTT connection adapter against a real mosquitto that is killed, restarted, refuses,
or sits behind a link that freezes: it comes back, says why when it cannot, and loses nothing
that was handed to it (within its outbox and age bounds)."""

from __future__ import annotations

import asyncio
import signal

import pytest

from poserun.services.mqtt import BrokerUnavailable
from poserun.services.mqtt_conn import MqttConnection
from poserun.settings import BrokerSettings
from poserun.wire import mqtt as proto
from tests.conftest import until
from tests.faults.tools import Proxy, mosquitto


def settings(url: str, keepalive: int = 30) -> BrokerSettings:
    return BrokerSettings(url=url, keepalive_s=keepalive)


def inbox() -> tuple[list[bytes], object]:
    got: list[bytes] = []

    def on_message(msg: proto.Message, _recv_ns: int) -> None:
        got.append(msg.payload)
    return got, on_message


def test_publishes_during_a_broker_restart_arrive_after_it() -> None:
    async def go() -> None:
        with mosquitto() as m:
            got, on_message = inbox()
            band = MqttConnection(settings(m.url), "band", subscriptions=[("t/cue", 1)], on_message=on_message,
                                  persistent=True)
            sink = MqttConnection(settings(m.url), "sink", persistent=True)
            await band.start()
            await sink.start()
            sink.publish("t/cue", b"before", qos=1)
            await until(lambda: got == [b"before"], "the first cue")
            m.stop(signal.SIGTERM)  # the broker goes away for a while, saving its sessions
            await until(lambda: not sink.connected and not band.connected, "both see the loss")
            for k in range(5):
                sink.publish("t/cue", f"during {k}".encode(), qos=1)
            assert sink.outbox == 5
            m.start()
            await until(lambda: sink.stats.reconnects >= 1 and band.stats.reconnects >= 1, "both reconnect")
            sink.publish("t/cue", b"after", qos=1)
            await until(lambda: len(got) == 7, "every cue")
            assert got == [b"before", *(f"during {k}".encode() for k in range(5)), b"after"]
            assert sink.outbox == 0 and sink.stats.dropped_old == 0 and sink.stats.dropped_full == 0
            await sink.close()
            await band.close()
    asyncio.run(go())


def test_an_outbox_drops_what_is_too_old_or_too_much_and_counts_it() -> None:
    async def go() -> None:
        with mosquitto() as m:
            sink = MqttConnection(settings(m.url), "sink", outbox=3, max_age_s=0.0)
            await sink.start()
            m.stop(signal.SIGKILL)
            await until(lambda: not sink.connected, "the loss")
            for k in range(5):
                sink.publish("t/cue", str(k), qos=1)
            assert sink.outbox == 3 and sink.stats.dropped_full == 2
            m.start()
            await until(lambda: sink.stats.reconnects >= 1, "the return")
            await until(lambda: sink.outbox == 0, "the outbox handled")
            assert sink.stats.dropped_old == 3  # a late cue is a wrong one
            await sink.close()
    asyncio.run(go())


def test_a_half_open_link_is_noticed_and_left() -> None:
    async def go() -> None:
        with mosquitto() as m:
            proxy = Proxy(m.port)
            await proxy.start()
            got, on_message = inbox()
            sub = MqttConnection(settings(f"mqtt://127.0.0.1:{proxy.port}", keepalive=5), "sub",
                                 subscriptions=[("t/x", 0)], on_message=on_message)
            await sub.start()
            proxy.freeze()  # nothing passes, nothing closes
            await until(lambda: sub.stats.timeouts >= 1, "the keep-alive notices")
            proxy.thaw()
            await until(lambda: sub.stats.reconnects >= 1 and sub.connected, "a new link")
            pub = MqttConnection(settings(m.url), "pub")
            await pub.start()
            pub.publish("t/x", b"hello")
            await until(lambda: got == [b"hello"], "a message on the new link")
            assert "half-open" in sub.stats.last_error
            await pub.close()
            await sub.close()
            await proxy.close()
    asyncio.run(go())


def test_a_refused_connection_says_so() -> None:
    async def go() -> None:
        with mosquitto("allow_anonymous false\n") as m:
            conn = MqttConnection(settings(m.url), "ingest", subscriptions=[("#", 0)])
            with pytest.raises(BrokerUnavailable, match="refused the connection"):
                await conn.start()
    asyncio.run(go())


def test_an_unreachable_broker_is_an_error_at_start() -> None:
    async def go() -> None:
        from poserun.services.broker import free_port

        conn = MqttConnection(settings(f"mqtt://127.0.0.1:{free_port()}"), "x")
        with pytest.raises(BrokerUnavailable, match="cannot reach"):
            await conn.start(timeout=5.0)
    asyncio.run(go())


def test_the_ingest_leaves_a_half_open_link_and_hears_again() -> None:
    """The service's reader (LoopSubscriber) behind a link that freezes: it used to stay
    "connected" and deaf for good; now the keep-alive notices and it reconnects."""
    from poserun.services.mqtt_stream import LoopSubscriber

    async def go() -> None:
        with mosquitto() as m:
            proxy = Proxy(m.port)
            await proxy.start()
            got: list[bytes] = []
            sub = LoopSubscriber(settings(f"mqtt://127.0.0.1:{proxy.port}", keepalive=5), ["d/#"],
                                 lambda _t, p, _r: got.append(p), qos=1)
            stop, ready = asyncio.Event(), asyncio.Event()
            task = asyncio.create_task(sub.run(stop, ready))
            await until(ready.is_set, "the ingest is up")
            proxy.freeze()
            await until(lambda: sub.conn.stats.timeouts >= 1, "the keep-alive notices")
            proxy.thaw()
            await until(lambda: sub.stats.connected and sub.stats.reconnects >= 1, "the ingest is back")
            pub = MqttConnection(settings(m.url), "gw")
            await pub.start()
            pub.publish("d/x", b"frame", qos=1)
            await until(lambda: got == [b"frame"], "a frame after the fault")
            await pub.close()
            stop.set()
            await task
            await proxy.close()
    asyncio.run(go())


def test_a_gateway_publishes_its_meta_again_when_the_broker_lost_it() -> None:
    """A broker killed without saving (its retained meta gone): the gateway's publisher says its
    retained meta and status again on reconnecting, so the service does not refuse every frame."""
    import threading

    from poserun.services.mqtt_publisher import Publisher

    with mosquitto() as m:
        pub = Publisher(settings(m.url), "gw")
        pub.connect()
        pub.publish("poserun/v1/s/a1/meta/imu_foot_left", b'{"m": 1}', qos=1, retain=True)
        pub.flush()
        m.stop(signal.SIGKILL)  # nothing saved: the retained message is gone
        m.start()
        stop = threading.Event()

        def serve() -> None:
            while not stop.is_set():
                pub.pump(0.05)
        t = threading.Thread(target=serve)
        t.start()

        async def read() -> list[bytes]:
            got, on_message = inbox()
            await until(lambda: pub.reconnects >= 1, "the gateway reconnects")
            sub = MqttConnection(settings(m.url), "svc", subscriptions=[("poserun/v1/s/+/meta/+", 1)],
                                 on_message=on_message)
            await sub.start()
            await until(lambda: got == [b'{"m": 1}'], "the meta, retained again")
            await sub.close()
            return got
        try:
            asyncio.run(read())
        finally:
            stop.set()
            t.join()
            pub.close()


def test_a_publisher_on_a_dead_link_notices_it_and_sends_again() -> None:
    """Publishing QoS 1 all the time through a link that went dead (no FIN, nothing back): the
    keep-alive notices though the connection never idles, and what was in flight goes again."""
    async def go() -> None:
        with mosquitto() as m:
            proxy = Proxy(m.port)
            await proxy.start()
            got, on_message = inbox()
            sub = MqttConnection(settings(m.url), "band", subscriptions=[("t/#", 1)], on_message=on_message)
            await sub.start()
            pub = MqttConnection(settings(f"mqtt://127.0.0.1:{proxy.port}", keepalive=5), "sink")
            await pub.start()
            proxy.freeze()
            k = 0
            while pub.stats.timeouts == 0:  # one publish per tick of the loop's sleep, until noticed
                pub.publish("t/x", str(k), qos=1)
                k += 1
                await asyncio.sleep(0.1)
            proxy.thaw()
            await until(lambda: pub.connected, "the publisher back")
            pub.publish("t/x", "after", qos=1)
            await until(lambda: b"after" in got, "the message after")
            assert {int(p) for p in got if p != b"after"} == set(range(k))  # none lost
            await pub.close()
            await sub.close()
            await proxy.close()
    asyncio.run(go())
