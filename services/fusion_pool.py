"""Fusion workers on one machine: ``poserun process --workers N`` splits the team by athlete.

Each worker is a ``FusionService`` serving one partition of the athletes (the partition of
services/jetstream.py, the same as over NATS). With a roster and a session (``athletes`` listed,
``accept_unknown_athletes: false``, ``--session``) a worker subscribes to its own athletes' topics
only; otherwise it subscribes to everything and skips another partition's message at the ingest,
before it is queued. Sinks whose state is per athlete (``per_athlete = True``: haptic, mqtt) run
inside each worker, so a cue never crosses a process; the others (board, Prometheus, store,
files) need the whole team and run in this parent, which takes the workers' records and counters
over pipes. A worker that dies is started again, with a growing pause if it keeps dying; one that
dies before it was ever ready stops the pool (a broker or config it cannot use). Measured in
docs/benchmarks.md, "Team scale".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing as mp
import signal
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from poserun.settings import Settings
from poserun.sinks.base import Record, SinkRunner, build_sink, sink_classes, sink_context

log = logging.getLogger(__name__)
STATS_S = 1.0  # how often a worker sends its counters
RESTART_S = (1.0, 30.0)  # a dead worker is started again after 1 s, doubling while it keeps dying, at most 30 s
STEADY_S = 60.0  # a worker up this long is well again: its next death waits 1 s again
STOP_S = 30.0  # a worker still running this long after SIGTERM is killed (its sinks flush meanwhile)
FORWARD_FLUSH_S = 10.0  # a stopping worker's records still on their way to the parent's sinks
#: counters that go on adding up across a worker's restarts (the rest describe the worker now)
COUNTERS = ("totals", "kinds", "rejected", "records", "bundles", "latency")


class WorkerFailed(RuntimeError):
    """A worker ended before it was ever ready: the pool cannot serve (its log says why)."""


def per_athlete(kind: str) -> bool:
    """Whether a sink type may run once per worker, for that worker's athletes only."""
    return bool(getattr(sink_classes().get(kind), "per_athlete", False))


def merge_snapshots(snaps: list[Any]) -> Any:
    """Several workers' counters as one: numbers summed, flags true when all are, dicts merged by
    key, lists of one length element by element (latency buckets), other lists joined."""
    if not snaps:
        return {}
    if all(isinstance(s, dict) for s in snaps):
        keys = dict.fromkeys(k for s in snaps for k in s)
        return {k: merge_snapshots([s[k] for s in snaps if k in s]) for k in keys}
    if all(isinstance(s, bool) for s in snaps):
        return all(snaps)
    if all(isinstance(s, int | float) and not isinstance(s, bool) for s in snaps):
        return sum(snaps)
    if all(isinstance(s, list) for s in snaps):
        if len({len(s) for s in snaps}) == 1:
            return [merge_snapshots(list(column)) for column in zip(*snaps, strict=True)]
        return [x for s in snaps for x in s]
    return snaps[0]


# ------------------------------------------------------------------ in a worker

class _Pipe:
    """A worker's end of its pipe to the parent; one send at a time (a Connection is not thread-safe)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.lock = threading.Lock()

    def send(self, message: tuple[Any, ...]) -> None:
        with self.lock:
            self.conn.send(message)


class ForwardSink:
    """In a worker: hands its records to the parent's shared sinks. A full pipe waits in a thread,
    never on the loop; meanwhile the runner's bounded queue drops the oldest (counted)."""

    name = "forward"
    flush_timeout_s = FORWARD_FLUSH_S

    def __init__(self, pipe: _Pipe) -> None:
        self.pipe = pipe

    async def start(self) -> None:
        return None

    async def write_batch(self, records: list[Record]) -> None:
        await asyncio.to_thread(self.pipe.send, ("records", records))

    async def close(self) -> None:
        return None


def _worker(settings: Settings, index: int, count: int, session: str | None, conn: Connection,
            log_level: int) -> None:
    """A worker process's entry point (spawned: a fresh interpreter)."""
    logging.basicConfig(level=log_level, format=f"%(asctime)s %(levelname)s %(name)s[worker {index}]: %(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent too: it stops the workers
    asyncio.run(_serve(settings, index, count, session, conn))


async def _serve(settings: Settings, index: int, count: int, session: str | None, conn: Connection) -> None:
    from poserun.services.fusion import FusionService

    pipe = _Pipe(conn)
    context = sink_context(settings)
    shared = [s.queue_size for s in settings.sinks if not per_athlete(s.type)]
    # the forward sink first: a stopping worker hands its records on before the others close
    runners = [SinkRunner(ForwardSink(pipe), max(shared))] if shared else []
    runners += [SinkRunner(build_sink(s.type, s.options, context), s.queue_size)
                for s in settings.sinks if per_athlete(s.type)]
    service = FusionService(settings, runners, session=session, partition=(index, count))
    context["stats"] = service.snapshot
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    def watch_parent() -> None:  # the parent gone (its end closed): stop as well
        with contextlib.suppress(EOFError, OSError):
            while True:
                conn.recv()
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch_parent, daemon=True, name="parent-watch").start()
    ready = asyncio.Event()
    task = asyncio.create_task(service.run(stop, ready))
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    try:
        if ready.is_set():
            await asyncio.to_thread(pipe.send, ("stats", service.snapshot()))
            await asyncio.to_thread(pipe.send, ("ready", index))
        while not task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), STATS_S)
            await asyncio.to_thread(pipe.send, ("stats", service.snapshot()))
    except OSError:  # the parent is gone
        stop.set()
    await task
    with contextlib.suppress(OSError):
        pipe.send(("stats", service.snapshot()))


# ------------------------------------------------------------------ the parent

@dataclass
class _Slot:
    index: int
    process: BaseProcess | None = None
    conn: Connection | None = None
    generation: int = 0
    starts: int = 0
    exit_code: int | None = None
    reader: threading.Thread | None = None
    ever_ready: bool = False  # some generation of it said it was ready
    started_at: float = 0.0  # (loop time)
    pause_s: float = RESTART_S[0] / 2  # (doubled before each quick restart: the first waits RESTART_S[0])


class FusionPool:
    """``count`` fusion workers, one partition of the athletes each, and the team-wide sinks."""

    def __init__(self, settings: Settings, count: int, session: str | None = None) -> None:
        if count < 2:
            raise ValueError("a pool needs at least 2 workers (1: run FusionService itself)")
        self.settings = settings
        self.count = count
        self.session = session
        self.context = sink_context(settings)
        self.sinks = [SinkRunner(build_sink(s.type, s.options, self.context), s.queue_size)
                      for s in settings.sinks if not per_athlete(s.type)]
        for s in settings.sinks:  # the workers' sinks: bad options fail here, once, not in each worker
            if per_athlete(s.type):
                build_sink(s.type, s.options, dict(self.context))
        self.context["stats"] = self.snapshot  # team-wide sinks that report health read the merged counters
        self.slots = [_Slot(k) for k in range(count)]
        self.snaps: dict[int, dict[str, Any]] = {}
        self.retired: list[dict[str, Any]] = []  # the counters of workers that died (they keep adding up)
        self.restarts = 0
        self.failed: WorkerFailed | None = None
        self._ready: set[int] = set()
        self._stopping = False
        self._mp = mp.get_context("spawn")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready_event: asyncio.Event | None = None
        self._stop: asyncio.Event | None = None

    def snapshot(self) -> dict[str, Any]:
        """The workers' counters merged (their per-athlete sinks too; counters of workers that died
        included), this process's sinks, and the workers."""
        live = [dict(s) for _k, s in sorted(self.snaps.items())]
        parts = {k: s.get("partition", {}) for k, s in sorted(self.snaps.items())}
        for s in live:
            s.pop("partition", None)
        out: dict[str, Any] = {"totals": {}, "rejected": {}, "records": 0, "athletes": 0}
        out.update(merge_snapshots(live + self.retired) if live or self.retired else {})
        if live and "tables" in live[0]:  # each worker's caps and idle time are the whole service's
            out["tables"] = {**out["tables"], "cap": live[0]["tables"].get("cap"),
                             "idle_s": live[0]["tables"].get("idle_s")}
        ingest = out.get("ingest")
        if isinstance(ingest, dict) and "received" in ingest:  # each skipped what was not its own
            ingest["received"] -= sum(p.get("elsewhere", 0) for p in parts.values())
        sinks = dict(out.get("sinks", {}))
        for r in self.sinks:
            sinks[r.sink.name] = {"written": r.stats.written, "dropped": r.stats.dropped, "errors": r.stats.errors,
                                  "depth": r.depth,
                                  **(r.sink.connection_stats() if hasattr(r.sink, "connection_stats") else {})}
        out["sinks"] = sinks
        out["workers"] = {"count": self.count, "restarts": self.restarts,
                          "alive": sum(1 for s in self.slots if s.process is not None and s.process.is_alive()),
                          "partitions": [{"index": s.index, "pid": s.process.pid if s.process else None,
                                          "starts": s.starts, "last_exit": s.exit_code,
                                          "elsewhere": parts.get(s.index, {}).get("elsewhere", 0)}
                                         for s in self.slots]}
        return out

    def _start(self, slot: _Slot) -> None:
        if self._stopping:
            return
        ours, theirs = self._mp.Pipe(duplex=True)
        process = self._mp.Process(target=_worker, name=f"poserun-fusion-{slot.index}", daemon=False,
                                   args=(self.settings, slot.index, self.count, self.session, theirs,
                                         logging.getLogger().getEffectiveLevel()))
        # (the child inherits SIGINT ignored from its first instruction: a Ctrl-C meant for the
        # parent must not kill a worker that is still starting)
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            process.start()
        finally:
            signal.signal(signal.SIGINT, previous)
        theirs.close()
        slot.generation += 1
        slot.starts += 1
        slot.started_at = self._loop.time() if self._loop is not None else 0.0
        slot.process, slot.conn = process, ours
        slot.reader = threading.Thread(target=self._read, args=(slot, ours, slot.generation), daemon=True,
                                       name=f"fusion-{slot.index}-pipe")
        slot.reader.start()

    def _read(self, slot: _Slot, conn: Connection, generation: int) -> None:
        """A worker's pipe, on a thread: its messages go to the loop; its end is its exit."""
        loop = self._loop
        assert loop is not None
        try:
            while True:
                message = conn.recv()
                with contextlib.suppress(RuntimeError):  # (the loop closed during shutdown)
                    loop.call_soon_threadsafe(self._on_message, slot, message)
        except (EOFError, OSError):
            pass
        except Exception:  # a message it cannot read: this worker cannot be trusted, start it afresh
            log.exception("fusion worker %d sent what could not be read: stopping it", slot.index)
            process = slot.process
            if process is not None and process.is_alive():
                process.kill()
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._on_exit, slot, generation)

    def _on_message(self, slot: _Slot, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "records":
            for record in message[1]:
                for runner in self.sinks:
                    runner.offer(record)
        elif kind == "stats":
            self.snaps[slot.index] = message[1]
        elif kind == "ready":
            slot.ever_ready = True
            self._ready.add(slot.index)
            if len(self._ready) == self.count and self._ready_event is not None:
                self._ready_event.set()

    def _on_exit(self, slot: _Slot, generation: int) -> None:
        if generation != slot.generation or slot.process is None or self._stopping:
            return  # (at a stop, _stop_workers reaps them)
        assert self._loop is not None
        slot.process.join(5.0)
        slot.exit_code = slot.process.exitcode
        if slot.conn is not None:
            slot.conn.close()
        dead = self.snaps.pop(slot.index, None)
        if dead is not None:  # its counters keep counting; its athletes start afresh
            self.retired = [merge_snapshots([*self.retired, {k: dead[k] for k in COUNTERS if k in dead}])]
        if not slot.ever_ready:
            self.failed = WorkerFailed(f"fusion worker {slot.index} ended (exit code {slot.exit_code}) before it was "
                                       "ever ready: see its log above")
            log.error("%s", self.failed)
            if self._stop is not None:
                self._stop.set()
            return
        up_s = self._loop.time() - slot.started_at
        slot.pause_s = RESTART_S[0] if up_s >= STEADY_S else min(RESTART_S[1], slot.pause_s * 2)
        self.restarts += 1
        log.error("fusion worker %d (pid %s) ended (exit code %s) after %.0f s: starting it again in %.0f s; its "
                  "athletes start afresh", slot.index, slot.process.pid, slot.exit_code, up_s, slot.pause_s)
        self._loop.call_later(slot.pause_s, self._start, slot)

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        """Serve until ``stop`` is set: start the sinks and the workers, stop the workers, flush the sinks.
        ``ready`` is set once every worker is subscribed with its kernels loaded."""
        self._loop = asyncio.get_running_loop()
        self._ready_event = ready
        self._stop = stop
        for runner in self.sinks:
            await runner.start()
        try:
            for slot in self.slots:
                self._start(slot)
            await stop.wait()
        finally:
            self._stopping = True
            await asyncio.to_thread(self._stop_workers)
            # (what the pipes handed over last, records and counters, was queued on the loop before
            # this point and runs before the sinks flush)
            for runner in self.sinks:
                await runner.close()
        if self.failed is not None:
            raise self.failed

    def _stop_workers(self) -> None:
        running = [s.process for s in self.slots if s.process is not None and s.process.is_alive()]
        for process in running:
            process.terminate()  # SIGTERM: the worker flushes its sinks and sends its last counters
        for process in running:
            process.join(STOP_S)
            if process.is_alive():
                log.error("fusion worker %s did not stop within %.0f s: killed", process.pid, STOP_S)
                process.kill()
                process.join(5.0)
        for slot in self.slots:  # their pipes end with them
            if slot.reader is not None:
                slot.reader.join(5.0)
            if slot.process is not None:
                slot.exit_code = slot.process.exitcode
