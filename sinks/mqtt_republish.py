"""Republish records as JSON on each athlete's ``records`` topic (QoS 1 by default).

The connection survives the broker going away (services/mqtt_conn.py): records emitted
meanwhile wait in a bounded outbox (``outbox``, oldest dropped and counted when full) and go
out when it returns; QoS 1/2 records in flight are sent again.
"""

from __future__ import annotations

import json
from typing import Any

from poserun.services.mqtt_conn import MqttConnection
from poserun.settings import BrokerSettings
from poserun.sinks.base import Record
from poserun.wire import topics


class MqttRepublishSink:
    name = "mqtt"
    per_athlete = True  # stateless per record: each fusion worker republishes its own athletes'

    def __init__(self, qos: int = 1, outbox: int = 100_000, context: dict[str, Any] | None = None) -> None:
        ctx = context or {}
        self.broker: BrokerSettings = ctx.get("broker") or BrokerSettings()
        if qos not in (0, 1, 2):
            raise ValueError("qos must be 0, 1 or 2")
        if outbox < 1:
            raise ValueError("outbox must be at least 1")
        self.qos = qos
        self.conn = MqttConnection(self.broker, "records", outbox=outbox)

    def connection_stats(self) -> dict[str, object]:
        return {"outbox": self.conn.outbox, **self.conn.stats.as_dict()}

    async def start(self) -> None:
        await self.conn.start()

    async def write_batch(self, records: list[Record]) -> None:
        for rec in records:
            topic = topics.athlete_topic(rec["session"], rec["athlete"], "records")
            self.conn.publish(topic, json.dumps(rec, separators=(",", ":")), qos=self.qos)

    async def close(self) -> None:
        await self.conn.close(timeout=5.0)
