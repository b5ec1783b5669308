from __future__ import annotations

import asyncio
import csv
import json
import socket
from pathlib import Path

import pytest

from poserun.cli import main
from poserun.services.fusion import FusionService
from poserun.services.gateway_sim import run_sim_gateway
from poserun.settings import BrokerSettings, load_settings
from poserun.sinks.base import SinkRunner
from poserun.sinks.store import Database, StoreSink
from tests.conftest import CEILING, frames_taken, require, until

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def postgres_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            pass
        Database(PG_URL).close()
        return True
    except Exception:
        return False


def run_session(broker: BrokerSettings, session_id: str, url: str, journal: str | None = None) -> tuple[int, int]:
    settings = load_settings(overrides={"broker": {"url": broker.url}, "session": {"id": session_id, "name": "Test"},
                                        "athletes": [{"id": "a01", "name": "Abebe", "body_mass_kg": 61}],
                                        "sim": {"athletes": 3, "speed": 3.0}})

    async def go() -> tuple[int, int]:
        sink = StoreSink(url=url, journal=journal, context={"settings": settings})
        svc = FusionService(settings, [SinkRunner(sink, queue_size=100_000)], session=session_id)
        stop, ready = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(svc.run(stop, ready))
        await asyncio.wait_for(ready.wait(), CEILING)
        gw = await asyncio.to_thread(run_sim_gateway, settings, duration=6.0)
        await until(frames_taken(svc, gw.frames), "the service to take every frame")
        stop.set()  # a clean stop: everything queued must reach the database
        await task
        return svc.records_out, sink.written

    return asyncio.run(go())


def check_store(url: str, session_id: str, made: int, tmp_path: Path) -> None:
    db = Database(url)
    try:
        sessions = {s["session"]: s for s in db.sessions()}
        assert sessions[session_id]["records"] == made and sessions[session_id]["athletes"] == 3
        assert sessions[session_id]["name"] == "Test"
        recs = db.records(session_id)
        assert len(recs) == made and {r["type"] for r in recs} == {"landing", "stance"}
        names = {a["athlete"]: a["name"] for a in db.athletes(session_id)}
        assert names["a01"] == "Abebe"
    finally:
        db.close()
    out = tmp_path / "s.csv"
    assert main(["export", session_id, "--db", url, "--format", "csv", "-o", str(out)]) == 0
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == made
    assert {"support_time_s", "score.R1_short_support", "athlete_name"} <= set(rows[0])
    pq = tmp_path / "s.parquet"
    assert main(["export", session_id, "--db", url, "--format", "parquet", "-o", str(pq)]) == 0
    import pyarrow.parquet as parquet

    table = parquet.read_table(pq)
    assert table.num_rows == made and "forced_landing" in table.column_names


@pytest.mark.broker
def test_sqlite_store_keeps_every_record(broker: BrokerSettings, session_id: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path}/store.db"
    made, written = run_session(broker, session_id, url)
    assert made == written > 20
    check_store(url, session_id, made, tmp_path)
    assert main(["sessions", "--db", url, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [s["session"] for s in listed] == [session_id]


@pytest.mark.broker
def test_postgresql_store(broker: BrokerSettings, session_id: str, tmp_path: Path) -> None:
    require(postgres_answers(), "no PostgreSQL answers at 127.0.0.1:5432 (this machine kind runs one)")
    made, written = run_session(broker, session_id, PG_URL, journal=str(tmp_path / "pg.journal"))
    try:
        assert made == written > 20
        check_store(PG_URL, session_id, made, tmp_path)
    finally:
        db = Database(PG_URL)
        for table in ("records", "athletes", "sessions"):
            db.execute(f"DELETE FROM {table} WHERE session_id = ?", (session_id,))
        db.commit()
        db.close()


def test_bad_urls_and_unknown_sessions(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown database URL"):
        Database("mysql://x")
    url = f"sqlite:///{tmp_path}/empty.db"
    assert main(["export", "nope", "--db", url]) == 2
