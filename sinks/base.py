"""The sink protocol (start, write a batch, close) and the runner that isolates each sink.

Every sink gets its own bounded queue and task: a slow sink drops its own
oldest records (counted) and never delays another sink or the ingest loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable

log = logging.getLogger(__name__)
Record = dict[str, Any]


@runtime_checkable
class Sink(Protocol):
    """What a sink implements. ``write_batch`` receives records in emission order."""

    name: str

    async def start(self) -> None: ...

    async def write_batch(self, records: list[Record]) -> None: ...

    async def close(self) -> None: ...


@dataclass
class SinkStats:
    written: int = 0
    dropped: int = 0
    errors: int = 0
    batches: int = 0


class SinkRunner:
    """One sink behind one bounded queue, drained by one task."""

    def __init__(self, sink: Sink, queue_size: int = 10_000, max_batch: int = 1000) -> None:
        self.sink = sink
        self.stats = SinkStats()
        self._queue: asyncio.Queue[Record | None] = asyncio.Queue(queue_size)
        self._max_batch = max_batch
        self._task: asyncio.Task[None] | None = None

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    async def start(self) -> None:
        await self.sink.start()
        self._task = asyncio.create_task(self._drain(), name=f"sink-{self.sink.name}")

    def offer(self, record: Record) -> None:
        """Queue a record without waiting; when full, drop the oldest and count it."""
        try:
            self._queue.put_nowait(record)
        except asyncio.QueueFull:
            with contextlib.suppress(asyncio.QueueEmpty):
                self._queue.get_nowait()
            self.stats.dropped += 1
            self._queue.put_nowait(record)

    async def _drain(self) -> None:
        closing = False
        while not closing:
            first = await self._queue.get()
            batch: list[Record] = []
            if first is None:
                closing = True
            else:
                batch.append(first)
            while len(batch) < self._max_batch and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is None:
                    closing = True
                    break
                batch.append(item)
            if batch:
                try:
                    await self.sink.write_batch(batch)
                    self.stats.written += len(batch)
                    self.stats.batches += 1
                except Exception:  # a failing sink must not take the service down
                    self.stats.errors += 1
                    log.exception("sink %s failed to write %d records", self.sink.name, len(batch))

    async def close(self, timeout: float | None = None) -> None:
        """Flush what is queued (within ``timeout``, default the sink's ``flush_timeout_s`` or 2 s)
        and close the sink."""
        if timeout is None:
            timeout = float(getattr(self.sink, "flush_timeout_s", 2.0))
        if self._task is not None:
            while True:
                try:
                    self._queue.put_nowait(None)
                    break
                except asyncio.QueueFull:
                    with contextlib.suppress(asyncio.QueueEmpty):
                        self._queue.get_nowait()
                    self.stats.dropped += 1
            try:
                await asyncio.wait_for(self._task, timeout)
            except TimeoutError:
                self._task.cancel()
                log.warning("sink %s did not flush within %.1f s", self.sink.name, timeout)
        try:
            await self.sink.close()
        except Exception:
            self.stats.errors += 1
            log.exception("sink %s failed to close", self.sink.name)


def sink_classes() -> dict[str, type]:
    """Sinks registered under the ``poserun.sinks`` entry point group (built-ins too)."""
    found: dict[str, type] = {}
    for ep in entry_points(group="poserun.sinks"):
        try:
            found[ep.name] = ep.load()
        except Exception as exc:  # a broken plug-in must not break the others
            log.warning("sink entry point %s failed to load: %s", ep.name, exc)
    return found


def sink_context(settings: Any) -> dict[str, Any]:
    """What a sink is built with (``build_sink``'s ``context``): the broker, the settings, the
    athletes' names and targets (``{id: {"cadence_spm": [lo, hi] | None, "support_time_s",
    "forced_share"}}``, poserun/settings.py ``Targets``); the service adds ``stats`` once it exists."""
    return {"broker": settings.broker, "settings": settings,
            "athlete_names": {a.id: a.name for a in settings.athletes if a.name},
            "athlete_targets": {a.id: a.targets.as_dict() for a in settings.athletes}}


def build_sink(kind: str, options: dict[str, Any], context: dict[str, Any]) -> Sink:
    """Instantiate a sink by name with its options and the service context."""
    classes = sink_classes()
    if kind not in classes:
        raise ValueError(f"unknown sink {kind!r}; installed sinks: {', '.join(sorted(classes)) or 'none'}")
    try:
        sink = classes[kind](**options, context=context)
    except TypeError as exc:
        raise ValueError(f"sink {kind!r}: bad options {sorted(options)}: {exc}") from None
    if not isinstance(sink, Sink):
        raise ValueError(f"sink {kind!r} does not implement start/write_batch/close")
    return sink
