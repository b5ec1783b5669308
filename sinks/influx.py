"""A metrics store for the club: one point per stance, InfluxDB line protocol over HTTP.

Works with InfluxDB 1.x (``http://HOST:8086/write?db=poserun``), InfluxDB 2.x
(``http://HOST:8086/api/v2/write?org=club&bucket=poserun`` with ``token``) and VictoriaMetrics
(``http://HOST:8428/write``, which answers PromQL over the same points). The points are made by
:mod:`poserun.sinks.line_protocol`; this module only batches and sends them.

A batch goes out when ``batch_size`` points wait, or ``flush_interval_s`` after the previous
send while fewer wait. The HTTP request runs on a worker thread of the sink's own, never on the
event loop. A server that is away, refuses the connection or answers 5xx (or 401/403/404/429:
it may be being set up) gets the same batch again with a growing delay (0.2 s doubling to
``retry_max_s``); meanwhile points wait in a backlog of at most ``max_backlog``, past which the
oldest are dropped and counted. A 400 (the server refuses the points themselves) drops that
batch, counted, since sending it again cannot help. A stance that cannot be a point (no athlete,
no number) is counted as bad and skipped. Timestamps are the records' ``emitted_ns`` in ms, kept
strictly increasing per athlete and foot (a stance emitted in the same millisecond as the
previous one is put 1 ms later), so no point overwrites another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from poserun.sinks.base import Record
from poserun.sinks.line_protocol import BadRecord, stance_point

log = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:8428/write"
RETRY_STATUSES = frozenset({401, 403, 404, 408, 429})  # (besides 5xx: the server may come right)
#: a point of one series stamped at or before its predecessor: within this many ms it is a burst of
#: emissions (a replay, a backlog) and goes 1 ms after it, so up to 10,000 points of one burst keep
#: their order; further back the wall clock stepped (NTP): taken at its own time, counted
STEP_BACK_MS = 10_000


class PointsRefused(Exception):
    """The server refused a batch's points (HTTP 400): sending it again cannot help."""


def write_url(url: str) -> str:
    """``url`` with ``precision=ms`` (the points' timestamps); refuses what is not http(s)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"influx url must be http:// or https://HOST[:PORT]/PATH (got {url!r})")
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k != "precision"] + [("precision", "ms")]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


class InfluxSink:
    """Stances as line-protocol points to an InfluxDB-compatible server (see the module docstring)."""

    name = "influx"
    flush_timeout_s = 10.0  # closing tries this long to send what waits

    def __init__(self, url: str = DEFAULT_URL, token: str | None = None, measurement: str = "poserun_stance",
                 batch_size: int = 500, flush_interval_s: float = 1.0, max_backlog: int = 100_000,
                 retry_max_s: float = 10.0, timeout_s: float = 5.0, context: dict[str, Any] | None = None) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if max_backlog < batch_size:
            raise ValueError(f"max_backlog ({max_backlog}) must be at least batch_size ({batch_size})")
        if not flush_interval_s > 0 or not retry_max_s > 0 or not timeout_s > 0:
            raise ValueError("flush_interval_s, retry_max_s and timeout_s must be positive")
        if not measurement or any(c in measurement for c in "\r\n"):
            raise ValueError(f"bad measurement name {measurement!r}")
        self.url = write_url(url)
        self.token = token
        self.measurement = measurement
        self.batch_size, self.flush_interval_s = batch_size, flush_interval_s
        self.max_backlog, self.retry_max_s, self.timeout_s = max_backlog, retry_max_s, timeout_s
        self.written = 0  # points the server took
        self.errors = 0  # requests that failed and were retried
        self.dropped = 0  # points pushed out of a full backlog
        self.rejected = 0  # points in batches the server refused (HTTP 400)
        self.bad = 0  # stances that could not be points
        self.lost_at_close = 0  # points still waiting when closing gave up
        self.last_error = ""
        self._backlog: deque[str] = deque()
        self._sending = 0  # points of the batch on its way (still part of the backlog)
        self._last_ms: dict[tuple[str, str, str], int] = {}
        self.clock_steps_back = 0  # points stamped earlier than their series' last: the clock went back
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="influx")

    def connection_stats(self) -> dict[str, object]:
        return {"backlog": len(self._backlog) + self._sending, "db_errors": self.errors,
                "backlog_dropped": self.dropped, "dropped_closed": self.lost_at_close, "bad_records": self.bad,
                "rejected_points": self.rejected, "points_written": self.written, "last_error": self.last_error,
                "clock_steps_back": self.clock_steps_back}

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="influx-sender")

    async def write_batch(self, records: list[Record]) -> None:
        for rec in records:
            if rec.get("type") != "stance":
                continue
            try:
                line = stance_point(rec, self.measurement, self._timestamp(rec))
            except BadRecord as exc:
                self.bad += 1
                if self.bad == 1 or self.bad % 1000 == 0:
                    log.warning("influx: a bad stance record (%d so far): %s", self.bad, exc)
                continue
            self._backlog.append(line)
        over = len(self._backlog) + self._sending - self.max_backlog
        if over > 0:  # the server has been away for long: the oldest waiting points go
            for _ in range(min(over, len(self._backlog))):
                self._backlog.popleft()
                self.dropped += 1
        if self._backlog:
            self._wake.set()

    def _timestamp(self, rec: Record) -> int:
        emitted = rec.get("emitted_ns")
        if isinstance(emitted, bool) or not isinstance(emitted, int):
            raise BadRecord(f"a stance without emitted_ns (got {emitted!r})")
        key = (str(rec.get("session")), str(rec.get("athlete")), str(rec.get("foot")))
        ms, last = emitted // 1_000_000, self._last_ms.get(key)
        if last is not None and ms <= last:
            if last - ms <= STEP_BACK_MS:  # a burst (a replay, a backlog) in one millisecond: the next one
                ms = last + 1
            else:  # the wall clock stepped back (NTP): its own time, not squashed behind the old one
                self.clock_steps_back += 1
        self._last_ms[key] = ms
        return ms

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last_send = loop.time()
        delay = 0.2
        while True:
            if not self._backlog:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            due = last_send + self.flush_interval_s
            if len(self._backlog) < self.batch_size and not self._closing and loop.time() < due:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), due - loop.time())
                continue
            batch = [self._backlog.popleft() for _ in range(min(self.batch_size, len(self._backlog)))]
            self._sending = len(batch)
            try:
                await loop.run_in_executor(self._pool, self._post, batch)
            except PointsRefused as exc:
                self._sending = 0
                self.rejected += len(batch)
                self.last_error = str(exc)
                log.warning("influx: the server refused %d points: %s", len(batch), exc)
            except Exception as exc:  # away, refused, 5xx: the same batch again, later
                self._sending = 0
                self.errors += 1
                self.last_error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                if self.errors == 1 or self.errors % 100 == 0:
                    log.warning("influx: %s (%d points wait; retrying)", self.last_error,
                                len(self._backlog) + len(batch))
                self._backlog.extendleft(reversed(batch))
                for _ in range(max(0, len(self._backlog) - self.max_backlog)):
                    self._backlog.popleft()
                    self.dropped += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max_s)
                continue
            else:
                self._sending = 0
                self.written += len(batch)
            delay = 0.2
            last_send = loop.time()

    def _post(self, lines: list[str]) -> None:
        """On the worker thread: one request with the batch; raises on anything but 2xx."""
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self.token:
            headers["Authorization"] = f"Token {self.token}"
        req = urllib.request.Request(self.url, data=("\n".join(lines) + "\n").encode(), headers=headers,
                                     method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                resp.read()
        except urllib.error.HTTPError as exc:
            body = exc.read()[:300].decode("utf-8", "replace").strip()
            if exc.code == 400 or (400 <= exc.code < 500 and exc.code not in RETRY_STATUSES):
                raise PointsRefused(f"HTTP {exc.code}: {body}") from None
            raise OSError(f"HTTP {exc.code} from {self.url}: {body}") from None
        except urllib.error.URLError as exc:
            raise OSError(f"{self.url}: {exc.reason}") from None

    async def close(self) -> None:
        self._closing = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), self.flush_timeout_s)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self.lost_at_close = len(self._backlog) + self._sending
            if self.lost_at_close:
                log.error("influx: %d points not written (%s)", self.lost_at_close, self.last_error)
        self._pool.shutdown(wait=False)
