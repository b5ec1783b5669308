"""Coach records in the session store (SQLite and PostgreSQL): kept once, read back with
``types=("coach", ...)`` where they were emitted among the athlete's records."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from poserun.records import CoachRecord
from poserun.sinks.store import Database, StoreSink
from tests.conftest import require
from tests.sinks.test_store import PG_URL, postgres_answers


def _records(session: str) -> list[dict]:
    def step(athlete: str, kind: str, ic: int, emitted: int) -> dict:
        return {"type": kind, "athlete": athlete, "session": session, "foot": "left", "ic_ns": ic,
                "emitted_ns": emitted, "id": f"{session}/{athlete}/left/{ic}/{kind}"}

    def coach(athlete: str, emitted: int, **kw: object) -> dict:
        rec = {"type": "coach", "athlete": athlete, "session": session, "action": "tag", "t_ns": emitted - 5,
               "by": "board", "emitted_ns": emitted, "id": f"{session}/{athlete}/coach/{emitted - 5}/tag", **kw}
        CoachRecord.model_validate(rec)
        return rec

    return [step("a1", "landing", 100, 1000), coach("a1", 1500, label="hill start"),
            step("a1", "stance", 100, 2000), coach("a2", 1600, label="only a tag"), step("a1", "landing", 300, 3000),
            coach("a1", 3500, label="end")]


def _check(url: str, tmp_path: Path) -> None:
    session = f"t{uuid.uuid4().hex[:12]}"
    recs = _records(session)

    async def go() -> None:
        sink = StoreSink(url=url, journal=str(tmp_path / "j.jsonl"), context={})
        await sink.start()
        await sink.write_batch(recs)
        await sink.write_batch(recs[1:2])  # a QoS 1 duplicate: kept once
        await sink.close()

    asyncio.run(go())
    db = Database(url)
    try:
        got = db.records(session, types=("landing", "stance", "coach"))
        assert [(r["athlete"], r["type"], r.get("label")) for r in got] == [
            ("a1", "landing", None), ("a1", "coach", "hill start"), ("a1", "stance", None), ("a1", "landing", None),
            ("a1", "coach", "end"), ("a2", "coach", "only a tag")]
        assert [r["label"] for r in db.records(session, types=("coach",))] == ["hill start", "end", "only a tag"]
        assert all(r["type"] != "coach" for r in db.records(session))  # the default: steps only
        assert next(s for s in db.sessions() if s["session"] == session)["records"] == len(recs)
    finally:
        for table in ("records", "athletes", "sessions"):
            db.execute(f"DELETE FROM {table} WHERE session_id = ?", (session,))
        db.commit()
        db.close()


def test_sqlite_keeps_coach_records(tmp_path: Path) -> None:
    _check(f"sqlite:///{tmp_path / 'store.db'}", tmp_path)


def test_postgresql_keeps_coach_records(tmp_path: Path) -> None:
    require(postgres_answers(), "no PostgreSQL answers at 127.0.0.1:5432")
    _check(PG_URL, tmp_path)
