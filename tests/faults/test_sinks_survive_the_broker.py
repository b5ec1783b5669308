"""The haptic and records sinks through a broker restart (real mosquitto, killed and brought
back on its port): cues and records resume, what was made meanwhile goes out when it returns
(cues only while still fresh), nothing is lost."""

from __future__ import annotations

import asyncio
import json
import signal

from poserun.services.mqtt_conn import MqttConnection
from poserun.settings import BrokerSettings
from poserun.sinks.haptic import HapticSink
from poserun.sinks.mqtt_republish import MqttRepublishSink
from poserun.wire import mqtt as proto
from tests.conftest import until
from tests.faults.tools import mosquitto


def landing(k: int) -> dict:
    return {"type": "landing", "athlete": "a1", "session": "s", "foot": "left", "ic_ns": k, "step": k,
            "forced_landing": True, "forced_landing_severity": 2.0}


def listener(url: str, topic: str) -> tuple[MqttConnection, list[dict]]:
    got: list[dict] = []

    def on_message(msg: proto.Message, _recv_ns: int) -> None:
        got.append(json.loads(msg.payload))
    conn = MqttConnection(BrokerSettings(url=url), "listener", subscriptions=[(topic, 1)], on_message=on_message,
                          persistent=True)
    return conn, got


def test_cues_resume_after_a_broker_restart_and_stale_ones_are_dropped() -> None:
    async def go() -> None:
        with mosquitto() as m:
            band, got = listener(m.url, "poserun/v1/s/a1/haptic")
            await band.start()
            sink = HapticSink(context={"broker": BrokerSettings(url=m.url)}, forced_landing={"cooldown_s": 0.0},
                              max_cues_per_10s=100, max_cue_age_s=30.0)
            await sink.start()
            await sink.write_batch([landing(1)])
            await until(lambda: len(got) == 1, "the first cue")
            m.stop(signal.SIGTERM)
            await until(lambda: not sink.conn.connected, "the sink sees the loss")
            await sink.write_batch([landing(2)])  # made while the broker is away: fresh enough to send
            m.start()
            await until(lambda: sink.conn.connected, "the sink is back")
            await sink.write_batch([landing(3)])
            await until(lambda: len(got) == 3, "every cue")
            assert [c["ic_ns"] for c in got] == [1, 2, 3] and sink.failed == 0
            stats = sink.connection_stats()
            assert stats["mqtt_reconnects"] == 1 and stats["outbox"] == 0

            sink.conn.max_age_s = 0.0  # now a cue that has to wait is already too late
            m.stop(signal.SIGTERM)
            await until(lambda: not sink.conn.connected, "the second loss")
            await sink.write_batch([landing(4)])
            m.start()
            await until(lambda: sink.conn.stats.reconnects == 2 and sink.conn.outbox == 0, "the second return")
            await sink.write_batch([landing(5)])
            await until(lambda: len(got) == 4, "the fresh cue")
            assert got[-1]["ic_ns"] == 5 and sink.failed == 1  # the stale one dropped, counted
            await sink.close()
            await band.close()
    asyncio.run(go())


def test_records_published_during_a_broker_restart_all_arrive_once() -> None:
    async def go() -> None:
        with mosquitto() as m:
            reader, got = listener(m.url, "poserun/v1/s/+/records")
            await reader.start()
            sink = MqttRepublishSink(context={"broker": BrokerSettings(url=m.url)})
            await sink.start()
            await sink.write_batch([{"session": "s", "athlete": "a1", "type": "landing", "n": k} for k in range(50)])
            m.stop(signal.SIGTERM)
            await until(lambda: not sink.conn.connected, "the loss")
            await sink.write_batch([{"session": "s", "athlete": "a1", "type": "landing", "n": k}
                                    for k in range(50, 100)])
            m.start()
            await until(lambda: {r["n"] for r in got} >= set(range(100)), "every record")
            await sink.write_batch([{"session": "s", "athlete": "a1", "type": "landing", "n": 100}])
            await until(lambda: 100 in {r["n"] for r in got}, "the next")
            # none lost; QoS 1 is at least once: a record the broker had not confirmed before it went
            # is sent again, and a consumer drops the copy by its id
            assert sorted({r["n"] for r in got}) == list(range(101))
            assert sink.conn.stats.dropped_full == 0 and sink.conn.outbox == 0
            await sink.close()
            await reader.close()
    asyncio.run(go())
