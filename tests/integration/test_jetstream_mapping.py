"""The data stream's partition mapping on a real nats-server agrees with ``partition_of``, for
subjects published over NATS and topics published over its MQTT listener (ids with '.' too), and
``poserun jetstream setup``'s streams are made once and refuse another partition count."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from poserun.services import jetstream as jsn
from poserun.services.mqtt_publisher import Publisher
from poserun.settings import BrokerSettings, NatsSettings
from tests.integration.nats_tools import nats_cluster

PARTITIONS = 7
IDS = [("s1", f"a{k:02d}") for k in range(30)] + [("club.2026", "a.1"), ("s-2", "x_y.z"), ("S", "B")]


async def stored(url: str, n: int) -> dict[str, str]:
    """The stored subject of each of the first ``n`` messages, by payload."""
    from poserun.services.fusion_worker import connect

    nc = await connect([url], "test")
    try:
        sub = await nc.jetstream().subscribe(f"{jsn.PART}.>", stream=jsn.DATA_STREAM, ordered_consumer=True)
        out = {}
        for _ in range(n):
            msg = await sub.next_msg(timeout=30)
            out[msg.data.decode()] = msg.subject
        return out
    finally:
        await nc.close()


async def publish_and_set_up(url: str) -> tuple[dict[str, object], dict[str, object]]:
    from poserun.services.fusion_worker import connect, setup

    cfg = NatsSettings(servers=[url], partitions=PARTITIONS, replicas=1)
    nc = await connect([url], "test")
    try:
        js = nc.jetstream()
        first, again = await setup(js, cfg), await setup(js, cfg)
        with pytest.raises(ValueError, match="7 partitions, not 5"):
            await setup(js, cfg.model_copy(update={"partitions": 5}))
        for session, athlete in IDS:
            await js.publish(jsn.mqtt_to_subject(f"poserun/v1/{session}/{athlete}/data/bundle"),
                             f"{session}/{athlete}".encode())
        return first, again
    finally:
        await nc.close()


def test_the_servers_partition_of_each_athlete_is_ours(tmp_path: Path) -> None:
    with nats_cluster(tmp_path, size=1) as c:
        first, again = asyncio.run(publish_and_set_up(c.urls[0]))
        assert jsn.DATA_STREAM in first["created"] and again["created"] == []
        pub = Publisher(BrokerSettings(url=c.mqtt_url), "mapping")
        pub.connect()
        mqtt_ids = [("mq.tt", "a.9"), ("s1", "m-1")]
        for session, athlete in mqtt_ids:
            pub.publish(f"poserun/v1/{session}/{athlete}/meta/insole_left", f"{session}/{athlete}".encode(), qos=1)
        pub.flush()
        pub.close()
        got = asyncio.run(stored(c.urls[0], len(IDS) + len(mqtt_ids)))
    for session, athlete in IDS + mqtt_ids:
        channel = "meta/insole_left" if (session, athlete) in mqtt_ids else "data/bundle"
        assert jsn.stored_topic(got[f"{session}/{athlete}"]) == (
            jsn.partition_of(session, athlete, PARTITIONS), f"poserun/v1/{session}/{athlete}/{channel}")
    assert len({jsn.partition_of(s, a, PARTITIONS) for s, a in IDS}) == PARTITIONS
