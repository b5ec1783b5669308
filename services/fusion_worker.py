"""``poserun worker``: a fusion worker that takes partitions of athletes from NATS JetStream.

Gateways publish MQTT to the NATS MQTT listener; the data stream stores their frames and meta
with the athlete's partition in the subject (docs/scaling.md). A worker owns partitions through
leases in a KV bucket (created, renewed with the revision, left to expire when the worker dies);
for each one it owns it runs a :class:`~poserun.services.fusion.FusionService` of its own, fed
that partition's durable consumer in order with each message's stored timestamp as its arrival
time, publishes each record to the records stream with its id as ``Nats-Msg-Id`` and
acknowledges the data (AckPolicy all) once the stream has them. A worker that gains a partition
first rebuilds its athletes' state from the data stream, the part up to the consumer's ack floor
silently (its records are stored already), the rest as live. The names, the mapping and the
lease decisions are in ``services/jetstream.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from poserun.services import jetstream as jsn
from poserun.settings import NatsSettings, Settings
from poserun.sinks.base import Record, SinkRunner

log = logging.getLogger(__name__)
BATCH = 1000  # messages asked for in one pull request
PULL_EXPIRES_S = 0.5  # a live pull request's life at most (a lease ends only after its last one)
PUBLISH_TIMEOUT_S = 5.0  # a record's publish ack, before it is sent again
PING_S = 0.5  # the client's pings: a link that answers none of 2 is dropped after about 1.5 s (a lease's TTL: 2 s)
RELEASE_S = 10.0  # a hand-back at most (its pull ends, its records stored, its data acked); then it is dropped
WAKE = object()  # put in a live pull's queue when the link is lost: look again now, not at the request's end


class NatsExtraMissing(RuntimeError):
    """The nats extra (``pip install 'poserun[nats]'``) is not installed."""


def nats_client() -> Any:
    """The ``nats`` package (nats-py), or :class:`NatsExtraMissing` saying what to install."""
    try:
        import nats
        import nats.js.errors
    except ImportError as exc:
        raise NatsExtraMissing("JetStream workers need the nats extra: pip install 'poserun[nats]'") from exc
    return nats


async def connect(servers: list[str], name: str, timeout: float = 30.0,
                  on_disconnect: Callable[[], None] | None = None) -> Any:
    """A NATS connection that fails over between ``servers`` and, once made, reconnects for ever;
    :class:`ConnectionError` if none answers within ``timeout``. ``on_disconnect`` is called when
    the link is lost, before any message of the next one can arrive. Fencing: nothing published
    while the link is down is buffered for later (``pending_size=0``: the publish fails), and a
    half-open link is noticed within about a lease's TTL (pings every ``PING_S``)."""
    nats = nats_client()

    async def said(exc: Exception) -> None:
        log.warning("nats: %s", exc)

    async def lost() -> None:
        if on_disconnect is not None:
            on_disconnect()

    nc = nats.NATS()
    try:
        await asyncio.wait_for(nc.connect(servers=servers, name=name, max_reconnect_attempts=-1,
                                          reconnect_time_wait=0.25, connect_timeout=2, error_cb=said,
                                          disconnected_cb=lost, pending_size=0, ping_interval=PING_S,
                                          max_outstanding_pings=2), timeout)
    except (TimeoutError, OSError, nats.errors.Error) as exc:
        with contextlib.suppress(Exception):
            await nc.close()
        raise ConnectionError(f"no NATS server answered at {', '.join(servers)} within {timeout:g} s "
                              f"({type(exc).__name__}): start one, or pass --nats URL") from None
    return nc


# ------------------------------------------------------------------ set-up

async def setup(js: Any, cfg: NatsSettings, adopt: bool = False) -> dict[str, Any]:
    """Make the streams, the durable consumers and the lease buckets if they are missing (the same
    call again changes nothing). A data stream made with another partition count is an error; with
    ``adopt`` (a worker) its partition count and replicas are taken. Returns them and what was made."""
    from nats.js.errors import APIError

    try:
        return await _setup(js, cfg, adopt)
    except APIError as exc:
        said = exc.description or str(exc)
        hint = ": on a single server use --replicas 1 (poserun jetstream setup or poserun worker)" \
            if "non-clustered" in said or "replicas" in said else ""
        raise ValueError(f"NATS refused the set-up: {said}{hint}") from None


async def _setup(js: Any, cfg: NatsSettings, adopt: bool) -> dict[str, Any]:
    from nats.js import api
    from nats.js.errors import NotFoundError

    made: list[str] = []
    n, r = cfg.partitions, cfg.replicas
    try:
        info = await js.stream_info(jsn.DATA_STREAM)
        tr = info.config.subject_transform
        have = jsn.partitions_of_dest(tr.dest) if tr is not None else None
        if have is None:
            raise ValueError(f"stream {jsn.DATA_STREAM} has no partition mapping: not made by poserun; delete it "
                             "(its data too) or use another NATS account")
        if have != n and not adopt:
            raise ValueError(f"stream {jsn.DATA_STREAM} maps athletes to {have} partitions, not {n}: use "
                             f"--partitions {have}, or delete the stream (its data too) to change it")
        n = have
        if adopt:
            r = info.config.num_replicas or r
    except NotFoundError:
        await js.add_stream(api.StreamConfig(
            name=jsn.DATA_STREAM, subjects=list(jsn.DATA_SUBJECTS), storage=api.StorageType.FILE,
            num_replicas=r, max_age=cfg.max_age_s, duplicate_window=min(120.0, cfg.max_age_s or 120.0),
            subject_transform=api.SubjectTransform(src=jsn.TRANSFORM_SRC, dest=jsn.transform_dest(n)),
            description="poserun gateways' frames and meta, the athlete's partition in the subject"))
        made.append(jsn.DATA_STREAM)
    try:
        await js.stream_info(jsn.RECORDS_STREAM)
    except NotFoundError:
        window = min(cfg.duplicate_window_s, cfg.max_age_s) if cfg.max_age_s else cfg.duplicate_window_s
        await js.add_stream(api.StreamConfig(
            name=jsn.RECORDS_STREAM, subjects=list(jsn.RECORDS_SUBJECTS), storage=api.StorageType.FILE,
            num_replicas=r, max_age=cfg.max_age_s, duplicate_window=window,
            description="poserun records, each id once (Nats-Msg-Id)"))
        made.append(jsn.RECORDS_STREAM)
    for k in range(n):
        try:
            await js.consumer_info(jsn.DATA_STREAM, jsn.durable(k))
        except NotFoundError:
            await js.add_consumer(jsn.DATA_STREAM, api.ConsumerConfig(
                durable_name=jsn.durable(k), filter_subject=jsn.partition_filter(k),
                ack_policy=api.AckPolicy.ALL, deliver_policy=api.DeliverPolicy.ALL, ack_wait=30.0,
                max_ack_pending=100_000, num_replicas=r,
                description=f"fusion of partition {k}: its ack floor is what the records stream holds"))
            made.append(f"{jsn.DATA_STREAM}/{jsn.durable(k)}")
    for bucket in (jsn.LEASES_BUCKET, jsn.WORKERS_BUCKET):  # (in memory: a restarted cluster starts them afresh)
        try:
            await js.key_value(bucket)
        except NotFoundError:
            await js.create_key_value(api.KeyValueConfig(bucket=bucket, ttl=cfg.lease_ttl_s, history=1,
                                                         replicas=r, storage=api.StorageType.MEMORY))
            made.append(f"KV {bucket}")
    return {"partitions": n, "replicas": r, "created": made}


# ------------------------------------------------------------------ pulling

class Pull:
    """Pull requests to one consumer over core NATS; what they deliver (messages, then a status
    when a request ends) lands in :attr:`queue` as it arrives."""

    def __init__(self, nc: Any, stream: str, consumer: str) -> None:
        self.nc = nc
        self.subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.sub: Any = None
        self.inbox = ""

    async def start(self) -> None:
        """Listen on a new inbox (after a lost request: what an old one still delivers is not seen)."""
        await self.close()
        self.queue = asyncio.Queue()
        self.inbox = self.nc.new_inbox()
        queue = self.queue

        async def put(msg: Any) -> None:
            queue.put_nowait(msg)

        self.sub = await self.nc.subscribe(self.inbox, cb=put, pending_msgs_limit=-1, pending_bytes_limit=-1)

    async def request(self, batch: int, expires_s: float | None = None, no_wait: bool = False) -> None:
        body: dict[str, Any] = {"batch": batch}
        if expires_s is not None:
            body["expires"] = int(expires_s * 1e9)
        if no_wait:
            body["no_wait"] = True
        await self.nc.publish(self.subject, json.dumps(body).encode(), reply=self.inbox)

    async def close(self) -> None:
        if self.sub is not None:
            with contextlib.suppress(Exception):
                await self.sub.unsubscribe()
            self.sub = None


def status_of(msg: Any) -> str | None:
    """A pull's status code (``404`` no messages, ``408`` the request ended, ``409``, ``100`` idle
    heartbeat), ``None`` for a stream message (it has an ack subject)."""
    if msg.reply and msg.reply.startswith("$JS.ACK."):
        return None
    return (msg.headers or {}).get("Status", "?")


# ------------------------------------------------------------------ one partition

@dataclass
class PartitionStats:
    messages: int = 0  # data messages handled (the rebuild included)
    skipped: int = 0  # delivered again after they were handled (skipped by stream sequence)
    records: int = 0  # records published
    duplicates: int = 0  # of which the records stream had already (dropped by Nats-Msg-Id)
    republished: int = 0  # records sent again after a failed or late publish ack
    resyncs: int = 0  # the stream read again after a lost link, a late lease or a delivery gap
    gaps: int = 0  # of which: the durable consumer's delivery sequence had a gap (another client was delivered)
    retries: int = 0  # JetStream API calls tried again (a timeout during a leader election, say)
    rebuild: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"messages": self.messages, "skipped": self.skipped, "records": self.records,
                "duplicates": self.duplicates, "republished": self.republished, "resyncs": self.resyncs,
                "gaps": self.gaps, "retries": self.retries, "rebuild": self.rebuild}


class Partition:
    """One owned partition: its lease, its fusion service (its athletes' state), its tasks."""

    def __init__(self, worker: FusionWorker, lease: jsn.Lease) -> None:
        from poserun.services.fusion import FusionService

        self.worker = worker
        self.lease = lease
        self.k = lease.partition
        self.service = FusionService(worker.settings, [], session=worker.session)
        self.last_seq = 0  # the stream sequence handled last
        self.cseq = 0  # the durable consumer's delivery sequence seen last (its next delivery to us: + 1)
        self.stats = PartitionStats()
        self.stopping = False  # a graceful release: end the pull, acknowledge, then the lease goes
        self.lost = False  # the lease is gone: stop at once, acknowledge nothing more
        self.task: asyncio.Task[None] | None = None
        self._acks: asyncio.Queue[tuple[list[Any], list[tuple[Record, bool]], str | None] | None] = asyncio.Queue()
        self._pending: list[asyncio.Future[Any]] = []  # publishes since the last flush, and their records
        self._records: list[tuple[Record, bool]] = []  # (record, to the sinks once the stream says it is new)
        self._pull: Pull | None = None  # the live pull (woken when the link is lost)
        self.pull_ends = 0.0  # when the last live pull request ends at the latest (monotonic)
        self._topics: dict[str, str] = {}  # stored subject -> MQTT topic (they repeat every frame)

    # ---------------------------------------------------------------- running
    async def run(self) -> None:
        """Rebuild, then serve live; after a lost link (messages may have been missed) take the
        stream again from the last message handled, then go on live."""
        acker = asyncio.create_task(self._acker(), name=f"acks-{self.k}")
        try:
            floor, delivered = await self._durable_state()
            t0 = time.perf_counter()
            n, silent = await self._replay(floor, delivered)
            seconds = time.perf_counter() - t0
            frames = self.service.snapshot()["totals"].get("frames", 0)
            self.stats.rebuild = {"messages": n, "silent": silent, "frames": frames, "seconds": round(seconds, 3),
                                  "frames_per_s": round(frames / seconds) if seconds > 0 and n else None,
                                  "ack_floor": floor, "delivered": delivered}
            log.info("partition %d rebuilt from %d messages (%d silent, %d frames) in %.2f s", self.k, n, silent,
                     frames, seconds)
            while not await self._live():
                self.stats.resyncs += 1
                await self.pull_ended()  # (what it still delivers would be missed: it must end first)
                await self._replay(0, (await self._durable_state())[1])
        finally:
            self._acks.put_nowait(None)
            if self.lost:
                acker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await acker

    async def _may_work(self) -> bool:
        """Wait while the lease is not known to be valid (renewals late: never overlap a standby);
        ``False`` once it is lost or the partition is being released."""
        while not self.lost and not self.stopping and not self.lease.valid(time.monotonic()):
            await asyncio.sleep(0.02)
        return not self.lost and not self.stopping

    async def pull_ended(self) -> None:
        """Wait until the last live pull request has ended on the server."""
        await asyncio.sleep(max(0.0, self.pull_ends - time.monotonic()))

    def _linked(self, epoch: int) -> bool:
        """No link lost since ``epoch`` (else what a request delivers may have a hole)."""
        return self.worker.disconnects == epoch

    async def _api(self, what: str, call: Callable[[], Any]) -> Any:
        """A JetStream API call, tried again with backoff while it fails (a timeout or 503 while a
        stream's or consumer's leader is elected, say); given up (its error raised) only when the
        partition is lost or being handed back."""
        pause = 0.1
        while True:
            try:
                return await call()
            except Exception as exc:
                if self.lost or self.stopping:
                    raise
                self.stats.retries += 1
                log.warning("partition %d: %s failed (%s: %s); again in %.1f s", self.k, what, type(exc).__name__,
                            exc, pause)
                await asyncio.sleep(pause)
                pause = min(2.0, pause * 2)

    async def _durable_state(self) -> tuple[int, int]:
        """The durable consumer's ack floor and the last message it delivered (stream sequences);
        its delivery sequence is what the next live delivery must follow."""
        info = await self._api("consumer info", lambda: self.worker.js.consumer_info(jsn.DATA_STREAM,
                                                                                    jsn.durable(self.k)))
        self.cseq = info.delivered.consumer_seq if info.delivered else 0
        return (info.ack_floor.stream_seq if info.ack_floor else 0,
                info.delivered.stream_seq if info.delivered else 0)

    async def _replay(self, floor: int, to: int) -> tuple[int, int]:
        """The partition's stored messages after the last one handled up to ``to`` (what the durable
        consumer delivered: it goes on after it, in order), through an ephemeral consumer: those up
        to ``floor`` (the durable's ack floor at a take-over) silently, as their records are stored
        already; the rest as live (they may never have been published, or reached the sinks).
        Returns (messages, silent ones)."""
        from nats.js import api

        w = self.worker
        messages = silent = 0
        done = self.last_seq >= to
        while not done and await self._may_work():  # (again from the last one handled after a lost link)
            epoch = w.disconnects
            name = f"replay-{self.k}-{w.nc.new_inbox().rsplit('.', 1)[-1]}"
            start = {"deliver_policy": api.DeliverPolicy.BY_START_SEQUENCE, "opt_start_seq": self.last_seq + 1} \
                if self.last_seq else {"deliver_policy": api.DeliverPolicy.ALL}
            config = api.ConsumerConfig(
                name=name, filter_subject=jsn.partition_filter(self.k), ack_policy=api.AckPolicy.NONE,
                inactive_threshold=120.0, mem_storage=True, num_replicas=1, **start)
            await self._api("adding the replay consumer", lambda c=config: w.js.add_consumer(jsn.DATA_STREAM, c))
            pull = Pull(w.nc, jsn.DATA_STREAM, name)
            await pull.start()
            try:
                while not done and self._linked(epoch) and await self._may_work():
                    try:
                        await pull.request(BATCH, no_wait=True)
                    except Exception as exc:  # (the link is down: nothing is buffered; a new consumer later)
                        log.info("partition %d: replay request not sent (%s)", self.k, type(exc).__name__)
                        await asyncio.sleep(0.25)
                        epoch = -1
                        break
                    got = 0
                    while True:
                        if pull.queue.empty():
                            try:
                                msg = await asyncio.wait_for(pull.queue.get(), 10.0)
                            except TimeoutError:  # the request or its answer was lost: a new consumer
                                epoch = -1
                                break
                        else:  # (no timer per message: a replay is mostly here)
                            msg = pull.queue.get_nowait()
                        status = status_of(msg)
                        if status == "100":
                            continue
                        if status is not None:  # 404: nothing more (what it delivered went by retention)
                            done = status == "404"
                            if not done and got == 0:  # (409: the consumer went, say): a new one goes on
                                log.info("partition %d: replay consumer answered %s %s; a new one", self.k, status,
                                         (msg.headers or {}).get("Description", ""))
                                epoch = -1
                            break
                        if not self._linked(epoch):
                            break
                        meta = jsn.ack_meta(msg.reply)
                        quiet = meta.stream_seq <= floor
                        if not quiet and not self.lease.valid(time.monotonic()):
                            epoch = -1  # (a renewal late: publish nothing now; a new consumer from here later)
                            break
                        silent += quiet
                        messages += 1
                        # (the sinks get a record only if the stream had not stored it: else the
                        # one that stored it offered it to its sinks already, a cue buzzed once)
                        self._handle(msg, meta, live=not quiet, sinks_if_new=True)
                        got += 1
                        done = meta.stream_seq >= to or meta.pending == 0
                        if got == BATCH or done:
                            break
                        if got % 64 == 0:
                            await asyncio.sleep(0)  # (the leases are renewed meanwhile)
                    self._flush(None)
            finally:
                await pull.close()
                with contextlib.suppress(Exception):
                    await w.js.delete_consumer(jsn.DATA_STREAM, name)
        return messages, silent

    async def _live(self) -> bool:
        """Pull the durable consumer, one request at a time, each ending before the lease can;
        ``False`` when messages may have been missed (then :meth:`_replay` from the last one
        handled): a lost link, the lease not valid when a message came, or a gap in the consumer's
        delivery sequence (another client, an old owner's late request, was delivered some)."""
        w = self.worker
        pull = Pull(w.nc, jsn.DATA_STREAM, jsn.durable(self.k))
        epoch = w.disconnects
        await pull.start()
        self._pull = pull
        self.service.request_meta = self._ask_meta
        try:
            while await self._may_work():
                if not self._linked(epoch):
                    return False
                expires = min(PULL_EXPIRES_S, self.lease.remaining(time.monotonic()) - 0.05)
                if expires < 0.05:
                    await asyncio.sleep(0.02)
                    continue
                try:
                    await pull.request(BATCH, expires_s=expires)
                except Exception as exc:  # (the link is down: nothing is buffered for later)
                    log.info("partition %d: pull request not sent (%s)", self.k, type(exc).__name__)
                    return False
                self.pull_ends = time.monotonic() + expires + 0.1
                got = 0
                deadline = time.monotonic() + expires + 5.0
                ended = False
                backoff = False
                while not ended:
                    try:
                        msg = await asyncio.wait_for(pull.queue.get(), max(0.01, deadline - time.monotonic()))
                    except TimeoutError:  # the request or its end was lost
                        return False
                    last: str | None = None
                    top = 0  # the highest stream sequence of the group (its ack acknowledges all before it)
                    while msg is not None:  # this one and all that are here already: one group, one ack
                        if self.lost:
                            return True
                        if msg is WAKE or not self._linked(epoch):  # (it may follow a hole: not taken)
                            if not self._linked(epoch):
                                if last is not None:
                                    self._flush(last)
                                return False
                            msg = pull.queue.get_nowait() if not pull.queue.empty() else None
                            continue
                        status = status_of(msg)
                        if status is None:
                            meta = jsn.ack_meta(msg.reply)
                            gap = bool(self.cseq) and meta.consumer_seq != self.cseq + 1
                            if gap or not self.lease.valid(time.monotonic()):
                                if gap:  # another client was given deliveries: what they were is in the stream
                                    self.stats.gaps += 1
                                    log.warning("partition %d: delivery %d after %d: another client pulled; "
                                                "reading the stream again", self.k, meta.consumer_seq, self.cseq)
                                if last is not None:
                                    self._flush(last)
                                return False
                            self.cseq = meta.consumer_seq
                            if meta.stream_seq <= self.last_seq:
                                self.stats.skipped += 1
                            else:
                                self._handle(msg, meta, live=True)
                            if meta.stream_seq >= top:
                                top, last = meta.stream_seq, msg.reply
                            got += 1
                            if got % 64 == 0:
                                self._flush(last)
                                last = None
                                await asyncio.sleep(0)  # (renewals, the acker and other partitions go on)
                                if not self._linked(epoch):
                                    return False
                        elif status != "100":
                            ended = True
                            if status == "409":  # (the consumer deleted, say: not again at once)
                                log.info("partition %d: pull answered 409 %s", self.k,
                                         (msg.headers or {}).get("Description", ""))
                                backoff = True
                        msg = pull.queue.get_nowait() if not pull.queue.empty() else None
                    if got >= BATCH:
                        ended = True
                    if last is not None:
                        self._flush(last)
                    await asyncio.sleep(0.25 if backoff else 0)
            return True
        finally:
            self._pull = None
            self.service.request_meta = None
            await pull.close()

    def wake(self) -> None:
        """The link was lost: the live loop looks now (not at its request's end)."""
        if self._pull is not None:
            self._pull.queue.put_nowait(WAKE)

    # ---------------------------------------------------------------- records
    def _handle(self, msg: Any, meta: jsn.AckMeta, live: bool, sinks_if_new: bool = False) -> None:
        """One stored message through the fusion service; its records published (and, live, to the
        worker's sinks: at once, or with ``sinks_if_new`` once the stream says it had not stored them)."""
        topic = self._topics.get(msg.subject)
        if topic is None:
            if len(self._topics) >= 4096:  # (bounded: strays must not grow it)
                self._topics.clear()
            topic = self._topics[msg.subject] = jsn.stored_topic(msg.subject)[1]
        svc = self.service
        svc.sinks = self.worker.runners if live and not sinks_if_new else []
        svc.measure_latency = live
        recs = svc.handle(topic, msg.data, meta.timestamp_ns)
        self.last_seq = meta.stream_seq
        self.stats.messages += 1
        if recs and live:
            self._publish(recs, sinks_if_new)

    def _publish(self, recs: list[Record], sinks_if_new: bool) -> None:
        w = self.worker
        for r in recs:
            self._pending.append(asyncio.ensure_future(w.js.publish_async(
                jsn.records_subject(r["session"], r["athlete"]), json.dumps(r, separators=(",", ":")).encode(),
                headers={jsn.MSG_ID: r["id"], jsn.WORKER_HEADER: w.id})))
            self._records.append((r, sinks_if_new))

    def _flush(self, reply: str | None) -> None:
        """Hand what was published since the last flush to the acker, with the ack to send after it."""
        pending, records = self._pending, self._records
        self._pending, self._records = [], []
        if pending or reply is not None:
            self._acks.put_nowait((pending, records, reply))

    async def _fenced(self) -> bool:
        """Wait while the lease is not known valid (a renewal late); ``True`` when nothing more may
        be sent: the lease lost, or not valid while the partition is being handed back."""
        while not self.lost and not self.lease.valid(time.monotonic()):
            if self.stopping:
                return True
            await asyncio.sleep(0.02)
        return self.lost

    def _stored(self, rec: Record, to_sinks: bool, duplicate: bool) -> None:
        self.stats.records += 1
        self.stats.duplicates += duplicate
        if to_sinks and not duplicate:
            for runner in self.worker.runners:
                runner.offer(rec)

    async def _acker(self) -> None:
        """In order: wait for each group's publish acks (publish again what failed), then ack its
        data; nothing is sent while the lease is not valid (and nothing more once it is lost)."""
        w = self.worker
        while True:
            item = await self._acks.get()
            if item is None:
                return
            sends, records, reply = item
            acks = await asyncio.gather(*sends, return_exceptions=True)  # the ack futures of the publishes sent
            futures = [a for a in acks if not isinstance(a, BaseException)]
            done, waiting = await asyncio.wait(futures, timeout=PUBLISH_TIMEOUT_S) if futures else (set(), set())
            for f in waiting:
                f.cancel()
            for (rec, to_sinks), ack in zip(records, acks, strict=True):
                if not isinstance(ack, BaseException) and ack in done and ack.exception() is None:
                    self._stored(rec, to_sinks, bool(ack.result().duplicate))
                    continue
                while not await self._fenced():  # the same id again: the stream keeps it once
                    try:
                        again = await w.js.publish(jsn.records_subject(rec["session"], rec["athlete"]),
                                                   json.dumps(rec, separators=(",", ":")).encode(),
                                                   timeout=PUBLISH_TIMEOUT_S,
                                                   headers={jsn.MSG_ID: rec["id"], jsn.WORKER_HEADER: w.id})
                        self.stats.republished += 1
                        self._stored(rec, to_sinks, bool(again.duplicate))
                        break
                    except Exception as exc:
                        log.warning("partition %d: record %s not stored yet (%s); again", self.k, rec["id"], exc)
                        await asyncio.sleep(0.2)
                else:
                    return  # acknowledge nothing more: the next owner does it again
            if reply is None:
                continue
            if await self._fenced():
                return
            try:
                if self.stopping:  # a hand-back: the ack known to be taken before the lease goes
                    await w.nc.request(reply, b"+ACK", timeout=min(2.0, max(0.1, self.lease.remaining(
                        time.monotonic()))))
                else:
                    await w.nc.publish(reply, b"+ACK")
            except Exception as exc:  # (a later ack acknowledges it too; else the next owner replays it)
                log.info("partition %d: ack not sent (%s)", self.k, type(exc).__name__)

    def _ask_meta(self, topic: str) -> None:
        """The fusion service's meta request, on the subject MQTT gateways subscribe to."""
        w = self.worker

        async def ask() -> None:
            with contextlib.suppress(Exception):  # (the link down: asked again while the meta lacks)
                await w.nc.publish(jsn.mqtt_to_subject(topic), b"")

        task = asyncio.ensure_future(ask())
        w.background.add(task)
        task.add_done_callback(w.background.discard)


# ------------------------------------------------------------------ the worker

def default_worker_id() -> str:
    host = "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}"


class FusionWorker:
    """Owns partitions up to its fair share, serves each, hands them back when it stops."""

    def __init__(self, settings: Settings, runners: list[SinkRunner] | None = None, *, worker_id: str | None = None,
                 session: str | None = None) -> None:
        self.settings = settings
        self.cfg = settings.nats
        self.runners = runners or []
        self.id = worker_id or default_worker_id()
        self.session = session
        self.nc: Any = None
        self.js: Any = None
        self.leases: Any = None
        self.workers: Any = None
        self.owned: dict[int, Partition] = {}
        self.releasing: dict[int, asyncio.Task[None]] = {}  # hand-backs under way (each bounded by RELEASE_S)
        self.released: list[tuple[int, dict[str, Any], dict[str, Any]]] = []  # (k, its stats, its counters)
        self.live_workers = 0
        self.claims = 0
        self.losses = 0
        self.background: set[asyncio.Future[Any]] = set()
        self.disconnects = 0  # links to NATS lost (a partition pulling meanwhile reads the stream again)
        self.closing = False
        self.partitions = self.cfg.partitions  # (an existing stream's count, once connected)
        self._first = 0
        self.ttl = self.cfg.lease_ttl_s  # (the lease bucket's TTL, once connected)
        self._tick_s = self._margin_s = self.ttl / 4

    async def run(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        """Serve until ``stop``; sinks are started and flushed here, leases handed back at the end."""
        from poserun.services.warmup import warm_up

        warm_up(progress=log.info)  # (compiled before any partition's messages wait on it)
        self.nc = await connect(self.cfg.servers, f"poserun-worker-{self.id}", on_disconnect=self._disconnected)
        try:
            self.js = self.nc.jetstream()
            n = (await setup(self.js, self.cfg, adopt=True))["partitions"]
            if n != self.cfg.partitions:
                log.info("worker %s: the data stream has %d partitions (the config says %d): %d it is", self.id, n,
                         self.cfg.partitions, n)
            self.partitions = n
            self._first = jsn.fnv1a32(self.id.encode()) % n
            self.leases = await self.js.key_value(jsn.LEASES_BUCKET)
            self.workers = await self.js.key_value(jsn.WORKERS_BUCKET)
            ttl = (await self.leases.status()).ttl  # the bucket's, whatever the config says
            if not ttl:
                raise ValueError(f"the KV bucket {jsn.LEASES_BUCKET} has no TTL: a dead worker's leases would never "
                                 "expire; delete it and let poserun make it")
            self._tick_s = self._margin_s = ttl / 4
            self.ttl = ttl
            for runner in self.runners:
                await runner.start()
            renewer = asyncio.create_task(self._renewals(), name="renewals")
            try:
                await self._heartbeat()
                if ready is not None:
                    ready.set()
                while not stop.is_set():
                    t0 = time.monotonic()
                    await self._tick()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), max(0.0, self._tick_s - (time.monotonic() - t0)))
                for k in list(self.owned):
                    self._release_soon(k)
                await asyncio.gather(*list(self.releasing.values()), return_exceptions=True)
                with contextlib.suppress(Exception):
                    await self.workers.delete(self.id)
            finally:
                renewer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renewer
                for t in list(self.releasing.values()):
                    t.cancel()
                for p in self.owned.values():  # (only when stopped by an error)
                    p.lost = True
                    if p.task is not None:
                        p.task.cancel()
                for runner in self.runners:
                    await runner.close()
        finally:
            self.closing = True
            with contextlib.suppress(Exception):
                await self.nc.drain()

    def _disconnected(self) -> None:
        self.disconnects += 1
        for p in list(self.owned.values()):
            p.wake()
        if not self.closing:
            log.warning("worker %s: the NATS link was lost (%d so far); reconnecting", self.id, self.disconnects)

    # ---------------------------------------------------------------- leases
    async def _heartbeat(self) -> None:
        await self.workers.put(self.id, json.dumps({"partitions": sorted(self.owned)}).encode())

    async def _live_workers(self) -> int:
        from nats.js.errors import NoKeysError

        try:
            return len(await self.workers.keys())
        except NoKeysError:
            return 0

    async def _renewals(self) -> None:
        """Renew every owned lease every tick, on its own (never behind a claim or a hand-back),
        each renewal given up before the margin is spent (the deadline then stops the work)."""
        while True:
            t0 = time.monotonic()
            await asyncio.gather(*(self._renew(p) for p in list(self.owned.values())))
            await asyncio.sleep(max(0.0, self._tick_s - (time.monotonic() - t0)))

    async def _tick(self) -> None:
        """Say this worker lives, count the living, claim or release (in the background)."""
        try:
            await self._heartbeat()
            self.live_workers = max(1, await self._live_workers())
        except Exception as exc:  # NATS away: the leases' deadlines stop the work meanwhile
            log.warning("worker %s: cannot reach the workers bucket: %s", self.id, exc)
            return
        todo = jsn.plan(self.partitions, set(self.owned) - set(self.releasing), self.live_workers, self._first)
        for k in todo.release:
            self._release_soon(k)
        share = jsn.fair_share(self.partitions, self.live_workers)
        for k in todo.claim:
            if len(self.owned) >= share:
                break
            await self._claim(k)

    async def _claim(self, k: int) -> None:
        from nats.js.errors import KeyWrongLastSequenceError

        sent = time.monotonic()
        try:
            rev = await self.leases.create(jsn.lease_key(k), self.id.encode())
        except KeyWrongLastSequenceError:  # another worker owns it
            return
        except Exception as exc:
            log.warning("worker %s: claiming partition %d failed: %s", self.id, k, exc)
            return
        lease = jsn.Lease(k, rev, self.ttl, self._margin_s)
        lease.renewed(rev, sent)
        part = self.owned[k] = Partition(self, lease)
        part.task = asyncio.create_task(self._serve(part), name=f"partition-{k}")
        self.claims += 1
        log.info("worker %s owns partition %d", self.id, k)

    async def _serve(self, part: Partition) -> None:
        try:
            await part.run()
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug or a NATS error: let the partition go, a worker takes it again
            if part.stopping or part.lost:  # (a call given up as it went)
                log.info("worker %s: partition %d stopped while a call was failing", self.id, part.k)
            else:
                log.exception("worker %s: partition %d failed", self.id, part.k)
            await part.pull_ended()
            if self.owned.get(part.k) is part:
                part.lost = True
                self.owned.pop(part.k, None)
                self._retire(part)
                with contextlib.suppress(Exception):
                    await self.leases.delete(jsn.lease_key(part.k), last=part.lease.revision)

    async def _renew(self, part: Partition) -> None:
        from nats.js.errors import KeyWrongLastSequenceError

        sent = time.monotonic()
        try:
            rev = await asyncio.wait_for(self.leases.update(jsn.lease_key(part.k), self.id.encode(),
                                                            last=part.lease.revision), self._margin_s * 0.8)
        except KeyWrongLastSequenceError:  # it expired (and may be another's now): fenced
            if not await self._renewed_unseen(part):
                self._lose(part, "its lease expired")
            return
        except Exception as exc:  # not known either way (a timeout too): the deadline stops the work if this lasts
            log.warning("worker %s: renewing partition %d: %s", self.id, part.k, type(exc).__name__)
            return
        if self.owned.get(part.k) is part:
            part.lease.renewed(rev, sent)

    async def _renewed_unseen(self, part: Partition) -> bool:
        """After a refused renewal: was the key last written by a renewal of ours whose answer came
        too late (given up at the timeout)? Then it is still ours (an expired key cannot be updated,
        another's create writes its own id): take its revision, keep the old deadline."""
        try:
            entry = await asyncio.wait_for(self.leases.get(jsn.lease_key(part.k)), self._margin_s * 0.8)
        except Exception:
            return False
        if entry is None or entry.value != self.id.encode() or not entry.revision \
                or entry.revision <= part.lease.revision or self.owned.get(part.k) is not part:
            return False
        log.info("worker %s: partition %d's renewal was stored after all (revision %d)", self.id, part.k,
                 entry.revision)
        part.lease.revision = entry.revision
        return True

    def _retire(self, part: Partition) -> None:
        """Keep what a partition that went counted (the worker's totals go on including it)."""
        self.released.append((part.k, {**part.stats.as_dict(), "last_seq": part.last_seq},
                              part.service.snapshot()))
        del self.released[:-64]

    def _lose(self, part: Partition, why: str) -> None:
        part.lost = True
        if part.task is not None:
            part.task.cancel()
        if self.owned.pop(part.k, None) is part:
            self._retire(part)
        self.losses += 1
        log.warning("worker %s lost partition %d: %s", self.id, part.k, why)

    def _release_soon(self, k: int) -> None:
        """Hand a partition back in the background, once, within ``RELEASE_S`` (else it is dropped:
        nothing more acknowledged, the key left to expire)."""
        if k in self.releasing or k not in self.owned:
            return
        part = self.owned[k]

        async def bounded() -> None:
            release = asyncio.create_task(self._release(k), name=f"hand-back-{k}")
            try:
                done, _ = await asyncio.wait({release}, timeout=RELEASE_S)
                if not done:  # (lost: its acker sends nothing more, its task ends; the key expires)
                    if self.owned.get(k) is part:
                        self._lose(part, f"its hand-back took more than {RELEASE_S:g} s")
                    await asyncio.wait({release}, timeout=1.0)
            finally:
                self.releasing.pop(k, None)

        self.releasing[k] = asyncio.create_task(bounded(), name=f"release-{k}")

    async def _release(self, k: int) -> None:
        """Hand a partition back: its pull ends, its records are stored and its data acknowledged,
        then the lease is deleted (a standby may create it at once)."""
        part = self.owned.get(k)
        if part is None:
            return
        part.stopping = True
        if part.task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await part.task
        if self.owned.get(k) is part:
            self.owned.pop(k)
            self._retire(part)
            with contextlib.suppress(Exception):
                await self.leases.delete(jsn.lease_key(k), last=part.lease.revision)
            log.info("worker %s released partition %d", self.id, k)

    # ---------------------------------------------------------------- reporting
    def snapshot(self) -> dict[str, Any]:
        """The fusion services' counters summed (the shape of ``FusionService.snapshot``, for the
        sinks that read it), the sinks', and this worker's partitions."""
        snaps = [p.service.snapshot() for p in list(self.owned.values())] + [r[2] for r in self.released]
        out = merge_snapshots(snaps)
        out["athletes"] = sum(len(p.service.athletes) for p in list(self.owned.values()))  # (held now)
        out["sinks"] = {r.sink.name: {"written": r.stats.written, "dropped": r.stats.dropped,
                                      "errors": r.stats.errors, "depth": r.depth,
                                      **(r.sink.connection_stats() if hasattr(r.sink, "connection_stats") else {})}
                        for r in self.runners}
        out["worker"] = {"id": self.id, "partitions": sorted(self.owned), "live_workers": self.live_workers,
                         "claims": self.claims, "losses": self.losses,
                         "by_partition": {str(k): {**p.stats.as_dict(), "last_seq": p.last_seq,
                                                   "athletes": len(p.service.athletes)}
                                          for k, p in sorted(self.owned.items())},
                         "released": [{"partition": k, **st} for k, st, _ in self.released]}
        return out


def merge_snapshots(snaps: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Several fusion services' snapshots as one: counts summed, per-athlete and per-source maps joined."""
    out: dict[str, Any] = {"totals": {}, "rejected": {}, "records": 0, "athletes": 0, "kinds": {}, "bundles": 0,
                           "warnings": {}, "clocks": {}, "timebases": {}, "sources": {}, "latency": {}}

    def add(into: dict[str, Any], more: dict[str, Any]) -> None:
        for k, v in more.items():
            into[k] = into.get(k, 0) + v

    for s in snaps:
        add(out["totals"], s["totals"])
        add(out["rejected"], s["rejected"])
        for kind, counts in s["kinds"].items():
            add(out["kinds"].setdefault(kind, {}), counts)
        for key in ("records", "athletes", "bundles"):
            out[key] += s[key]
        for key in ("warnings", "clocks", "timebases", "sources"):
            out[key].update(s[key])
        lat = s["latency"]
        if not out["latency"]:
            out["latency"] = {"buckets": [list(b) for b in lat["buckets"]], "sum": lat["sum"]}
        else:
            for mine, theirs in zip(out["latency"]["buckets"], lat["buckets"], strict=True):
                mine[1] += theirs[1]
            out["latency"]["sum"] += lat["sum"]
    return out


async def run_worker(settings: Settings, runners: list[SinkRunner], *, worker_id: str | None, session: str | None,
                     stop: asyncio.Event, ready: asyncio.Event | None = None,
                     on_worker: Callable[[FusionWorker], None] | None = None) -> FusionWorker:
    """Make a worker, hand it to ``on_worker`` (the CLI wires its snapshot to the sinks), run it."""
    nats_client()
    worker = FusionWorker(settings, runners, worker_id=worker_id, session=session)
    if on_worker is not None:
        on_worker(worker)
    await worker.run(stop, ready)
    return worker


async def setup_streams(settings: Settings) -> dict[str, Any]:
    """``poserun jetstream setup``: connect, make what is missing, say what is there."""
    nc = await connect(settings.nats.servers, "poserun-setup", timeout=10.0)
    try:
        return await setup(nc.jetstream(), settings.nats)
    finally:
        await nc.drain()
