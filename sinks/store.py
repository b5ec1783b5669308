"""The session store: every landing, stance and coach record, with athlete and session metadata,
in SQLite (default) or PostgreSQL. Writes are batched and run off the event loop in one
worker thread; closing flushes everything queued.

Nothing that reached the sink is lost to the database: each batch goes to a local journal
(JSON lines, flushed) before the database, and leaves it once the database has committed it.
A database that is down, restarting or locked makes the batch wait and be tried again (with a
growing delay, reconnecting), the backlog counted; a service killed meanwhile finds the
journal at its next start and writes it. Rows are keyed by the record's id (``record_id``),
so a batch written twice (a retry after an unclear failure, a replayed session) is kept once.

URLs: ``sqlite:///path/to/poserun.db`` (or ``sqlite://`` for memory) and
``postgresql://user@host:5432/dbname``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from poserun.processors.records import record_id
from poserun.sinks.base import Record

log = logging.getLogger(__name__)

DEFAULT_URL = "sqlite:///poserun.db"
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS sessions (
        session_id TEXT PRIMARY KEY, name TEXT, location TEXT,
        first_ns BIGINT, last_ns BIGINT, records BIGINT DEFAULT 0, meta TEXT)""",
    """CREATE TABLE IF NOT EXISTS athletes (
        session_id TEXT NOT NULL, athlete_id TEXT NOT NULL, name TEXT, body_mass_kg DOUBLE PRECISION,
        leg_length_m DOUBLE PRECISION, meta TEXT, PRIMARY KEY (session_id, athlete_id))""",
    """CREATE TABLE IF NOT EXISTS records (
        session_id TEXT NOT NULL, athlete_id TEXT NOT NULL, type TEXT NOT NULL, foot TEXT,
        ic_ns BIGINT, to_ns BIGINT, emitted_ns BIGINT, data TEXT NOT NULL, record_id TEXT)""",
    "CREATE INDEX IF NOT EXISTS records_by_time ON records (session_id, athlete_id, ic_ns)",
)
# a store made before records had ids gets the column; then each id is kept once
MIGRATE = ("ALTER TABLE records ADD COLUMN record_id TEXT",)
UNIQUE = "CREATE UNIQUE INDEX IF NOT EXISTS records_by_id ON records (record_id)"


def store_url(settings: Any) -> str | None:
    """The session store a service's settings write to (the first store sink's ``url``, else the
    default), or None without a store sink: where the board's /report and the demo's report read."""
    for sink in getattr(settings, "sinks", None) or ():
        if getattr(sink, "type", None) == "store":
            url = (getattr(sink, "options", None) or {}).get("url")
            return str(url) if url else DEFAULT_URL
    return None


class StoreMissing(ValueError):
    """A reader named a session store that does not exist (or is not poserun's)."""


class Database:
    """A thin DB-API wrapper over sqlite3 and psycopg with the same SQL (``?`` placeholders)."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        """Open the store at ``url``; ``create`` False (the readers: sessions, export, report) refuses
        a store that does not exist yet instead of making an empty one."""
        self.url = url
        if url.startswith("sqlite://"):
            path = url[len("sqlite://"):].lstrip("/") if url != "sqlite://" else ":memory:"
            if path != ":memory:":
                path = "/" + path if url.startswith("sqlite:////") else path
                if not create and not Path(path).is_file():
                    raise StoreMissing(f"no session store at {path}: nothing has been stored there (the store "
                                       "sink writes it); name one with --db sqlite:///FILE or postgresql://...")
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.conn: Any = sqlite3.connect(path, check_same_thread=False)
            self.kind = "sqlite"
        elif url.startswith(("postgresql://", "postgres://")):
            try:
                import psycopg
            except ModuleNotFoundError:
                raise ValueError("PostgreSQL needs psycopg: pip install 'poserun[store]'") from None
            try:
                self.conn = psycopg.connect(url)
            except psycopg.Error as exc:  # unreachable, refused, or a malformed URL
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise StoreMissing(f"cannot open the session store {url}: {first}") from None
            self.kind = "postgresql"
        else:
            raise ValueError(f"unknown database URL {url!r}: use sqlite:///FILE or postgresql://...")
        if not create:
            try:
                self.execute("SELECT 1 FROM sessions WHERE 1 = 0")
            except Exception as exc:
                self.conn.close()
                raise StoreMissing(f"{url}: not a poserun session store (no sessions table)") from exc
            return
        with self.cursor() as cur:
            for stmt in SCHEMA:
                cur.execute(stmt)
        self.conn.commit()
        try:
            self.execute("SELECT record_id FROM records WHERE 1 = 0")
        except Exception:
            self.conn.rollback()
            for stmt in MIGRATE:
                self.execute(stmt)
        self.execute(UNIQUE)
        self.conn.commit()

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.kind == "postgresql" else sql

    @contextlib.contextmanager
    def cursor(self) -> Iterator[Any]:
        cur = self.conn.cursor()
        try:
            yield cur
        finally:
            cur.close()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.cursor() as cur:
            cur.execute(self._sql(sql), params)
            rows = cur.fetchall() if cur.description else []
        return list(rows)

    def executemany(self, sql: str, rows: list[Sequence[Any]]) -> None:
        with self.cursor() as cur:
            cur.executemany(self._sql(sql), rows)

    def commit(self) -> None:
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()

    # ------------------------------------------------------------- writing
    def write(self, records: list[Record], sessions: dict[str, dict[str, Any]],
              athletes: dict[tuple[str, str], dict[str, Any]]) -> None:
        upsert_session = (
            "INSERT INTO sessions (session_id, name, location, first_ns, last_ns, records, meta) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (session_id) DO UPDATE SET "
            "last_ns = excluded.last_ns, records = sessions.records + excluded.records")
        per_session: dict[str, list[Record]] = {}
        for r in records:
            per_session.setdefault(str(r.get("session")), []).append(r)
        for sid, recs in per_session.items():
            info = sessions.get(sid, {})
            times = [r.get("emitted_ns") or time.time_ns() for r in recs]
            new = self._insert_records(recs)  # (a record stored before is kept once and not counted again)
            self.execute(upsert_session, (sid, info.get("name"), info.get("location"), min(times), max(times),
                                          new, json.dumps(info.get("meta", {}))))
        seen = {(str(r.get("session")), str(r.get("athlete"))) for r in records}
        for sid, aid in sorted(seen):
            a = athletes.get((sid, aid)) or athletes.get(("*", aid)) or {}
            self.execute(
                "INSERT INTO athletes (session_id, athlete_id, name, body_mass_kg, leg_length_m, meta) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (session_id, athlete_id) DO NOTHING",
                (sid, aid, a.get("name"), a.get("body_mass_kg"), a.get("leg_length_m"), json.dumps(a)))
        self.commit()

    def _insert_records(self, records: list[Record]) -> int:
        """Insert the records not stored yet; how many were new."""
        new = 0
        for k in range(0, len(records), 500):  # (a backlog can be long; SQL parameters are not)
            rows = [(str(r.get("session")), str(r.get("athlete")), str(r.get("type")), r.get("foot"), r.get("ic_ns"),
                     r.get("to_ns"), r.get("emitted_ns"), json.dumps(r, separators=(",", ":")), _id(r))
                    for r in records[k:k + 500]]
            ids = list({row[-1] for row in rows})
            marks = ",".join("?" for _ in ids)
            before = self.execute(f"SELECT COUNT(*) FROM records WHERE record_id IN ({marks})", ids)[0][0]
            self.executemany(
                "INSERT INTO records (session_id, athlete_id, type, foot, ic_ns, to_ns, emitted_ns, data, record_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (record_id) DO NOTHING", rows)
            new += len(ids) - int(before)
        return new

    def rollback(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.rollback()

    # ------------------------------------------------------------- reading
    def sessions(self) -> list[dict[str, Any]]:
        rows = self.execute(
            "SELECT s.session_id, s.name, s.first_ns, s.last_ns, s.records, "
            "(SELECT COUNT(*) FROM athletes a WHERE a.session_id = s.session_id) "
            "FROM sessions s ORDER BY s.first_ns")
        return [{"session": r[0], "name": r[1], "first_ns": r[2], "last_ns": r[3], "records": r[4],
                 "athletes": r[5]} for r in rows]

    def records(self, session: str, types: Sequence[str] = ("landing", "stance")) -> list[Record]:
        """A session's records of ``types`` per athlete: landings and stances by initial contact,
        each coach record (``"coach"`` in ``types``; on the wall clock, no contact) where the service
        emitted it among that athlete's records."""
        steps = [t for t in types if t != "coach"]
        out: list[Record] = []
        if steps:
            marks = ",".join("?" for _ in steps)
            rows = self.execute(f"SELECT data FROM records WHERE session_id = ? AND type IN ({marks}) "
                                "ORDER BY athlete_id, ic_ns, type", (session, *steps))
            out = [json.loads(r[0]) for r in rows]
        if "coach" not in types:
            return out
        rows = self.execute("SELECT data FROM records WHERE session_id = ? AND type = 'coach' "
                            "ORDER BY athlete_id, emitted_ns, record_id", (session,))
        coach = [json.loads(r[0]) for r in rows]
        return _merged(out, coach)

    def athletes(self, session: str) -> list[dict[str, Any]]:
        rows = self.execute("SELECT athlete_id, name, body_mass_kg, leg_length_m FROM athletes "
                            "WHERE session_id = ? ORDER BY athlete_id", (session,))
        return [{"athlete": r[0], "name": r[1], "body_mass_kg": r[2], "leg_length_m": r[3]} for r in rows]


def _merged(steps: list[Record], coach: list[Record]) -> list[Record]:
    """Each coach record before the first of its athlete's records emitted after it (athletes in
    order; an athlete with coach records only among them)."""
    by_athlete: dict[str, list[Record]] = {}
    for r in steps:
        by_athlete.setdefault(str(r.get("athlete")), []).append(r)
    for c in coach:
        by_athlete.setdefault(str(c.get("athlete")), [])
    coach_of: dict[str, list[Record]] = {}
    for c in coach:
        coach_of.setdefault(str(c.get("athlete")), []).append(c)
    out: list[Record] = []
    for athlete in sorted(by_athlete):
        pending = coach_of.get(athlete, [])
        k = 0
        for r in by_athlete[athlete]:
            while k < len(pending) and (pending[k].get("emitted_ns") or 0) <= (r.get("emitted_ns") or 0):
                out.append(pending[k])
                k += 1
            out.append(r)
        out += pending[k:]
    return out


def _id(r: Record) -> str:
    rid = r.get("id")
    if isinstance(rid, str) and rid:
        return rid
    return record_id(str(r.get("session")), str(r.get("athlete")), str(r.get("type")), str(r.get("foot")),
                     int(r.get("ic_ns") or 0))


class Journal:
    """Records on their way to the database, in a JSON-lines file: appended (and flushed) before
    the database is tried, cleared once it has committed them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(path, "a", encoding="utf-8")
        try:  # one writer per journal: another's clear() would drop records this one has not committed
            fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._fh.close()
            raise StoreMissing(f"the store journal {path} is in use by another poserun process; give each its "
                               "own (the store sink's journal: option)") from None

    def load(self) -> list[Record]:
        """What an earlier run left (a partial last line, cut by a crash, is skipped)."""
        out = []
        with open(self.path, encoding="utf-8") as fh:
            for line in fh:
                with contextlib.suppress(ValueError):
                    rec = json.loads(line)
                    if isinstance(rec, dict):
                        out.append(rec)
        return out

    def append(self, records: list[Record]) -> None:
        self._fh.write("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))
        self._fh.flush()

    def rewrite(self, records: list[Record]) -> None:
        self._fh.truncate(0)
        self._fh.seek(0)
        self.append(records)

    def clear(self) -> None:
        self._fh.truncate(0)
        self._fh.seek(0)

    def close(self) -> None:
        self._fh.close()


def default_journal(url: str) -> Path | None:
    """Beside an SQLite file; under ``.poserun/`` for PostgreSQL; none for an in-memory store."""
    if url == "sqlite://" or url.endswith(":memory:"):
        return None
    if url.startswith("sqlite:///"):
        path = url[len("sqlite://"):]
        path = path if url.startswith("sqlite:////") else path.lstrip("/")
        return Path(path + ".journal")
    return Path(".poserun") / f"store-{hashlib.sha1(url.encode()).hexdigest()[:10]}.journal"


class StoreSink:
    """Writes records to the session store in batches, on a worker thread of its own, through a
    journal (see the module docstring)."""

    name = "store"
    flush_timeout_s = 60.0  # closing waits this long for the queued records (nothing lost on a clean stop)

    def __init__(self, url: str = DEFAULT_URL, journal: str | None = None, max_backlog: int = 1_000_000,
                 retry_max_s: float = 10.0, context: dict[str, Any] | None = None) -> None:
        ctx = context if context is not None else {}
        self.url = url
        if max_backlog < 1:
            raise ValueError("max_backlog must be at least 1")
        self.journal_path = Path(journal) if journal else default_journal(url)
        self.max_backlog = max_backlog
        self.retry_max_s = retry_max_s
        self.written = 0
        self.errors = 0  # database writes that failed (and were retried)
        self.dropped = 0  # records pushed out of a full backlog (max_backlog)
        self.recovered = 0  # records an earlier run left in the journal
        self.last_error = ""
        self._pending: deque[tuple[int, Record]] = deque()  # (sequence, record): journaled, not yet committed
        self._seq = 0
        self._writing = -1  # the last sequence of the batch being written (the cap must not touch it)
        self._journal: Journal | None = None
        self._retry: asyncio.Task[None] | None = None
        self._write_lock = asyncio.Lock()
        settings = ctx.get("settings")
        self._sessions: dict[str, dict[str, Any]] = {}
        self._athletes: dict[tuple[str, str], dict[str, Any]] = {}
        if settings is not None:
            self._sessions[settings.session.id] = {"name": settings.session.name,
                                                   "location": settings.session.location}
            for a in settings.athletes:
                self._athletes[("*", a.id)] = {"name": a.name, "body_mass_kg": a.body_mass_kg,
                                               "leg_length_m": a.leg_length_m, "profile": a.profile}
        self._db: Database | None = None
        self._broken = False
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")

    def connection_stats(self) -> dict[str, object]:
        return {"backlog": len(self._pending), "db_errors": self.errors, "backlog_dropped": self.dropped,
                "recovered": self.recovered, "last_error": self.last_error}

    async def start(self) -> None:
        self._db = await asyncio.get_running_loop().run_in_executor(self._pool, Database, self.url)
        if self.journal_path is not None:
            self._journal = Journal(self.journal_path)
            left = self._journal.load()
            if left:  # an earlier run stopped before the database had these
                log.warning("store: %d records from an earlier run's journal %s", len(left), self.journal_path)
                self.recovered = len(left)
                self._queue(left)
                await self._flush()

    def _queue(self, records: list[Record]) -> None:
        for r in records:
            self._pending.append((self._seq, r))
            self._seq += 1

    async def write_batch(self, records: list[Record]) -> None:
        if self._journal is not None:
            self._journal.append(records)
        self._queue(records)
        if len(self._pending) > self.max_backlog:  # the database has been away for long: bounded
            # (journal I/O stays on the loop: an append is one flushed write; a rewrite comes only
            # past max_backlog, when the database has been away for that many records)
            # drop the oldest of those waiting; what the worker is writing now (it may be committed
            # already) is not waiting, and leaves when its write ends
            keep = [p for p in self._pending if p[0] <= self._writing]
            rest = [p for p in self._pending if p[0] > self._writing]
            cut = max(0, len(rest) - self.max_backlog)
            self.dropped += cut
            self._pending = deque(keep + rest[cut:])
            if self._journal is not None:
                self._journal.rewrite([r for _q, r in self._pending])
        if self._retry is not None and not self._retry.done():
            return  # the database is away: the retry writes the backlog when it is back
        await self._flush()

    async def _flush(self) -> bool:
        """Write the backlog; True when the database has all of it. A failure schedules a retry."""
        async with self._write_lock:
            if not self._pending:
                return True
            batch = [r for _q, r in self._pending]
            upto = self._writing = self._pending[-1][0]
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(self._pool, self._write, batch)
            except Exception as exc:  # down, restarting, locked: keep it, count it, try again later
                self._writing = -1
                self.errors += 1
                self.last_error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                if self.errors == 1 or self.errors % 100 == 0:
                    log.warning("store: %s (%d records wait; retrying)", self.last_error, len(self._pending))
                if self._retry is None or self._retry.done():
                    self._retry = asyncio.create_task(self._retry_later())
                return False
            self._writing = -1
            while self._pending and self._pending[0][0] <= upto:  # committed: by sequence, not position
                self._pending.popleft()
            self.written += len(batch)
            if self._journal is not None and not self._pending:
                self._journal.clear()
            return True

    def _write(self, batch: list[Record]) -> None:
        """On the worker thread: reconnect if the last attempt failed, then write and commit."""
        db = self._db
        if db is None or self._broken:
            if db is not None:
                with contextlib.suppress(Exception):
                    db.close()
            self._db = db = Database(self.url)
            self._broken = False
        try:
            db.write(batch, self._sessions, self._athletes)
        except Exception:
            db.rollback()
            self._broken = True
            raise

    async def _retry_later(self) -> None:
        delay = 0.2
        while self._pending:
            await asyncio.sleep(delay)
            if await self._flush():
                return
            delay = min(delay * 2, self.retry_max_s)

    async def close(self) -> None:
        if self._pending:
            deadline = asyncio.get_running_loop().time() + self.flush_timeout_s
            while self._pending and asyncio.get_running_loop().time() < deadline:
                if not await self._flush():
                    await asyncio.sleep(0.5)
            if self._pending:
                log.error("store: %d records not written (%s); they stay in %s for the next start",
                          len(self._pending), self.last_error, self.journal_path)
        if self._retry is not None:
            self._retry.cancel()
        if self._journal is not None:
            self._journal.close()
        if self._db is not None:
            with contextlib.suppress(Exception):
                await asyncio.get_running_loop().run_in_executor(self._pool, self._db.close)
            self._db = None
        self._pool.shutdown(wait=True)
