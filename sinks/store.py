"""The session store: every landing and stance record, with athlete and session metadata,
in SQLite (default) or PostgreSQL. Writes are batched and run off the event loop in one
worker thread; closing flushes everything queued.

URLs: ``sqlite:///path/to/poserun.db`` (or ``sqlite://`` for memory) and
``postgresql://user@host:5432/dbname``.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from poserun.sinks.base import Record

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
        ic_ns BIGINT, to_ns BIGINT, emitted_ns BIGINT, data TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS records_by_time ON records (session_id, athlete_id, ic_ns)",
)


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

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.kind == "postgresql" else sql

    @contextmanager
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
            self.execute(upsert_session, (sid, info.get("name"), info.get("location"), min(times), max(times),
                                          len(recs), json.dumps(info.get("meta", {}))))
        seen = {(str(r.get("session")), str(r.get("athlete"))) for r in records}
        for sid, aid in sorted(seen):
            a = athletes.get((sid, aid)) or athletes.get(("*", aid)) or {}
            self.execute(
                "INSERT INTO athletes (session_id, athlete_id, name, body_mass_kg, leg_length_m, meta) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (session_id, athlete_id) DO NOTHING",
                (sid, aid, a.get("name"), a.get("body_mass_kg"), a.get("leg_length_m"), json.dumps(a)))
        self.executemany(
            "INSERT INTO records (session_id, athlete_id, type, foot, ic_ns, to_ns, emitted_ns, data) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(str(r.get("session")), str(r.get("athlete")), str(r.get("type")), r.get("foot"), r.get("ic_ns"),
              r.get("to_ns"), r.get("emitted_ns"), json.dumps(r, separators=(",", ":"))) for r in records])
        self.commit()

    # ------------------------------------------------------------- reading
    def sessions(self) -> list[dict[str, Any]]:
        rows = self.execute(
            "SELECT s.session_id, s.name, s.first_ns, s.last_ns, s.records, "
            "(SELECT COUNT(*) FROM athletes a WHERE a.session_id = s.session_id) "
            "FROM sessions s ORDER BY s.first_ns")
        return [{"session": r[0], "name": r[1], "first_ns": r[2], "last_ns": r[3], "records": r[4],
                 "athletes": r[5]} for r in rows]

    def records(self, session: str, types: Sequence[str] = ("landing", "stance")) -> list[Record]:
        marks = ",".join("?" for _ in types)
        rows = self.execute(f"SELECT data FROM records WHERE session_id = ? AND type IN ({marks}) "
                            "ORDER BY athlete_id, ic_ns, type", (session, *types))
        return [json.loads(r[0]) for r in rows]

    def athletes(self, session: str) -> list[dict[str, Any]]:
        rows = self.execute("SELECT athlete_id, name, body_mass_kg, leg_length_m FROM athletes "
                            "WHERE session_id = ? ORDER BY athlete_id", (session,))
        return [{"athlete": r[0], "name": r[1], "body_mass_kg": r[2], "leg_length_m": r[3]} for r in rows]


class StoreSink:
    """Writes records to the session store in batches, on a worker thread of its own."""

    name = "store"
    flush_timeout_s = 60.0  # closing waits this long for the queued records (nothing lost on a clean stop)

    def __init__(self, url: str = DEFAULT_URL, context: dict[str, Any] | None = None) -> None:
        ctx = context if context is not None else {}
        self.url = url
        self.written = 0
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
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._lock = threading.Lock()

    async def start(self) -> None:
        self._db = await asyncio.get_running_loop().run_in_executor(self._pool, Database, self.url)

    async def write_batch(self, records: list[Record]) -> None:
        assert self._db is not None
        db = self._db
        await asyncio.get_running_loop().run_in_executor(self._pool, db.write, records, self._sessions,
                                                         self._athletes)
        self.written += len(records)

    async def close(self) -> None:
        if self._db is not None:
            await asyncio.get_running_loop().run_in_executor(self._pool, self._db.close)
            self._db = None
        self._pool.shutdown(wait=True)
