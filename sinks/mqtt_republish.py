"""Republish records as JSON on each athlete's ``records`` topic (QoS 1 by default)."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import aiomqtt

from poserun.services.mqtt import aiomqtt_client
from poserun.settings import BrokerSettings
from poserun.sinks.base import Record
from poserun.wire import topics


class MqttRepublishSink:
    name = "mqtt"

    def __init__(self, qos: int = 1, context: dict[str, Any] | None = None) -> None:
        ctx = context or {}
        self.broker: BrokerSettings = ctx.get("broker") or BrokerSettings()
        if qos not in (0, 1, 2):
            raise ValueError("qos must be 0, 1 or 2")
        self.qos = qos
        self._client: aiomqtt.Client | None = None
        self._stack = contextlib.AsyncExitStack()

    async def start(self) -> None:
        self._client = await self._stack.enter_async_context(
            aiomqtt_client(self.broker, "records", max_queued_incoming=1000))

    async def write_batch(self, records: list[Record]) -> None:
        assert self._client is not None
        for rec in records:
            topic = topics.athlete_topic(rec["session"], rec["athlete"], "records")
            await self._client.publish(topic, json.dumps(rec, separators=(",", ":")), qos=self.qos)

    async def close(self) -> None:
        await self._stack.aclose()
        self._client = None
