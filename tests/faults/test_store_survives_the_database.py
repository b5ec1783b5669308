"""The session store through database faults: an SQLite file locked by another process, a
PostgreSQL connection killed under it, the service killed with records on their way, and a
session replayed into the same store. Every record that reached the sink is stored once."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from poserun.sinks.store import Database, StoreSink
from tests.conftest import require, until

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def records(session: str, start: int, n: int) -> list[dict]:
    return [{"type": "landing", "session": session, "athlete": "a1", "foot": "left", "ic_ns": k * 1000,
             "emitted_ns": k, "id": f"{session}/a1/left/{k * 1000}/landing"} for k in range(start, start + n)]


def stored(url: str, session: str) -> list[int]:
    db = Database(url, create=False)
    try:
        return sorted(r["ic_ns"] // 1000 for r in db.records(session))
    finally:
        db.close()


def lock_file(path: Path) -> sqlite3.Connection:
    """Another program holds the SQLite file (BEGIN EXCLUSIVE); ``unlock`` lets it go."""
    lock = sqlite3.connect(path, timeout=0.1)
    lock.execute("BEGIN EXCLUSIVE")
    return lock


def unlock(lock: sqlite3.Connection) -> None:
    lock.rollback()
    lock.close()


def store_once(url: str, batch: list[dict]) -> None:
    """One run of a sink that stores ``batch`` and stops cleanly."""
    async def go() -> None:
        sink = StoreSink(url)
        await sink.start()
        await sink.write_batch(batch)
        await sink.close()
    asyncio.run(go())


def test_a_locked_sqlite_file_delays_records_and_loses_none(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"

    async def go() -> StoreSink:
        sink = StoreSink(url)
        await sink.start()
        await sink.write_batch(records("s", 0, 10))
        lock = lock_file(tmp_path / "s.db")  # another program holds the file
        await sink.write_batch(records("s", 10, 10))
        await until(lambda: sink.errors >= 1, "a failed write")
        await sink.write_batch(records("s", 20, 10))
        assert sink.connection_stats()["backlog"] == 20
        unlock(lock)
        await until(lambda: not sink.connection_stats()["backlog"], "the backlog written")
        await sink.close()
        return sink

    sink = asyncio.run(go())
    assert stored(url, "s") == list(range(30)) and sink.dropped == 0


def test_a_killed_postgresql_connection_is_replaced_and_loses_none(tmp_path: Path) -> None:
    try:
        probe = Database(PG_URL)
    except Exception as exc:  # no server here
        require(False, f"PostgreSQL at {PG_URL}: {exc}")
        return
    session = f"pgfault{tmp_path.name[-8:]}"
    probe.execute("DELETE FROM records WHERE session_id = ?", (session,))
    probe.commit()

    async def go() -> StoreSink:
        sink = StoreSink(PG_URL, journal=str(tmp_path / "pg.journal"))
        await sink.start()
        await sink.write_batch(records(session, 0, 50))
        # the server drops the sink's connection (a restart, a failover, an idle timeout)
        probe.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
                      "AND datname = 'test' AND application_name = ''")
        probe.commit()
        for k in range(1, 5):
            await sink.write_batch(records(session, 50 * k, 50))
        await until(lambda: not sink.connection_stats()["backlog"], "every batch written")
        await sink.close()
        return sink

    sink = asyncio.run(go())
    assert stored(PG_URL, session) == list(range(250)) and sink.errors >= 1
    probe.execute("DELETE FROM records WHERE session_id = ?", (session,))
    probe.commit()
    probe.close()


def test_records_on_their_way_when_the_service_dies_are_written_at_its_next_start(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"

    async def crash() -> None:
        sink = StoreSink(url)
        await sink.start()
        lock = lock_file(tmp_path / "s.db")
        await sink.write_batch(records("s", 0, 25))  # journaled, not in the database
        await until(lambda: sink.errors >= 1, "the failed write")
        unlock(lock)
        if sink._retry is not None:  # killed: no close, no retry; its files close with the process
            sink._retry.cancel()
        sink._pool.shutdown(wait=True)
        assert sink._journal is not None
        sink._journal._fh.close()

    async def restart() -> StoreSink:
        sink = StoreSink(url)
        await sink.start()
        await sink.write_batch(records("s", 25, 5))
        await sink.close()
        return sink

    asyncio.run(crash())
    sink = asyncio.run(restart())
    assert sink.recovered == 25 and stored(url, "s") == list(range(30))
    assert Path(f"{tmp_path}/s.db.journal").read_text() == ""


def test_a_session_stored_twice_is_kept_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    store_once(url, records("s", 0, 20))
    store_once(url, records("s", 10, 20))  # a replay overlapping the first run
    assert stored(url, "s") == list(range(30))


def test_a_store_made_before_record_ids_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE records (session_id TEXT NOT NULL, athlete_id TEXT NOT NULL, type TEXT NOT NULL, "
                "foot TEXT, ic_ns BIGINT, to_ns BIGINT, emitted_ns BIGINT, data TEXT NOT NULL)")
    old.execute("INSERT INTO records VALUES ('s', 'a1', 'landing', 'left', 0, NULL, 0, '{\"ic_ns\": 0}')")
    old.commit()
    old.close()
    url = f"sqlite:///{path}"

    async def go() -> None:
        sink = StoreSink(url)
        await sink.start()
        await sink.write_batch(records("s", 1, 3))
        await sink.write_batch(records("s", 1, 3))
        await sink.close()

    asyncio.run(go())
    assert stored(url, "s") == [0, 1, 2, 3]


def test_the_backlog_cap_never_drops_what_is_being_written(tmp_path: Path) -> None:
    """A batch arriving while the retry is writing, over max_backlog: the oldest not being written
    are dropped (counted); what the worker commits leaves the backlog by identity."""
    url = f"sqlite:///{tmp_path}/s.db"

    async def go() -> StoreSink:
        sink = StoreSink(url, max_backlog=10)
        await sink.start()
        lock = lock_file(tmp_path / "s.db")
        await sink.write_batch(records("s", 0, 10))
        await until(lambda: sink.errors >= 1, "the first failure")
        unlock(lock)
        sink._writing = sink._pending[-1][0]  # as when the retry is writing these ten now
        await sink.write_batch(records("s", 10, 2))  # over the cap while they are being written
        sink._writing = -1
        assert sink.dropped == 0 and len(sink._pending) == 12  # nothing being written was dropped
        await until(lambda: not sink.connection_stats()["backlog"], "the backlog written")
        await sink.close()
        return sink

    asyncio.run(go())
    assert stored(url, "s") == list(range(12))


def test_a_session_count_is_the_records_kept(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    store_once(url, records("s", 0, 20))
    store_once(url, records("s", 10, 20))
    db = Database(url, create=False)
    assert [s["records"] for s in db.sessions()] == [30]
    db.close()


def test_two_writers_cannot_share_a_journal(tmp_path: Path) -> None:
    import pytest

    from poserun.sinks.store import StoreMissing

    async def go() -> None:
        a = StoreSink(f"sqlite:///{tmp_path}/s.db")
        await a.start()
        b = StoreSink(f"sqlite:///{tmp_path}/s.db")
        with pytest.raises(StoreMissing, match="in use by another"):
            await b.start()
        await a.close()
    asyncio.run(go())


def test_a_backlog_over_its_cap_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"

    async def go() -> StoreSink:
        sink = StoreSink(url, max_backlog=10)
        await sink.start()
        lock = lock_file(tmp_path / "s.db")
        await sink.write_batch(records("s", 0, 5))
        await until(lambda: sink.errors >= 1, "the first failure")
        await until(lambda: sink._writing < 0, "no write in progress")
        await sink.write_batch(records("s", 5, 10))  # 15 waiting, room for 10
        unlock(lock)
        await until(lambda: not sink.connection_stats()["backlog"], "the backlog written")
        await sink.close()
        return sink

    sink = asyncio.run(go())
    assert sink.dropped == 5 and stored(url, "s") == list(range(5, 15))
