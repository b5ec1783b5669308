"""A list-backed sink: makes every pipeline testable without I/O."""

from __future__ import annotations

import asyncio
from typing import Any

from poserun.sinks.base import Record


class ListSink:
    name = "list"

    def __init__(self, context: dict[str, Any] | None = None) -> None:
        self.records: list[Record] = []
        self.started = False
        self.closed = False
        self.arrived = asyncio.Event()

    async def start(self) -> None:
        self.started = True

    async def write_batch(self, records: list[Record]) -> None:
        self.records.extend(records)
        self.arrived.set()

    async def close(self) -> None:
        self.closed = True
