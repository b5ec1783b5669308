"""``poserun process`` SIGKILLed under load and started again: the session store loses nothing,
keeps each record once, and records resume (a real mosquitto, real processes, a SQLite store)."""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
import time
from pathlib import Path

from poserun.services.sim.team import SimTeam
from poserun.settings import BrokerSettings, SimSettings
from tests.conftest import CEILING, wait_until
from tests.faults.tools import Service, good_gateway, mosquitto


def stored(db: Path) -> list[tuple[str, str, str, str, int, int]]:
    """(record_id, athlete, type, foot, ic_ns, emitted_ns) of every stored record (none while the
    file is missing or locked)."""
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=CEILING)
        try:
            return con.execute("SELECT record_id, athlete_id, type, foot, ic_ns, emitted_ns FROM records").fetchall()
        finally:
            con.close()
    except sqlite3.OperationalError:  # not made yet
        return []


def journaled(path: Path) -> set[str]:
    """The ids in the store's journal (taken, not yet committed to the database)."""
    ids = set()
    for line in path.read_text().splitlines() if path.exists() else ():
        try:
            ids.add(json.loads(line)["id"])
        except (ValueError, KeyError):  # a line the kill cut short: never acknowledged
            pass
    return ids


def test_a_service_killed_under_load_and_restarted_loses_no_record_and_stores_each_once(tmp_path: Path) -> None:
    with mosquitto() as m:
        session = "kill"
        team = SimTeam(session, SimSettings(athletes=2, seed=5))
        db = tmp_path / "s.db"
        config = tmp_path / "poserun.yaml"
        listed = ", ".join(f"{{id: {s.athlete_id}}}" for s in team.specs)
        config.write_text(f"broker: {{url: '{m.url}'}}\nsession: {{id: {session}}}\nathletes: [{listed}]\n"
                          f"sinks: [{{type: store, options: {{url: 'sqlite:///{db}'}}}}]\n")
        svc = Service(config, tmp_path)
        svc.start()
        stop = threading.Event()
        gw = threading.Thread(target=good_gateway, args=(BrokerSettings(url=m.url), session, stop, {}, team),
                              daemon=True)
        gw.start()
        try:
            wait_until(lambda: len(stored(db)) >= 40, "records in the store")
            svc.stop(signal.SIGKILL)
            before = {r[0] for r in stored(db)} | journaled(Path(f"{db}.journal"))  # what it had taken
            restart_ns = time.time_ns()
            t0 = time.monotonic()
            svc.start()
            wait_until(lambda: any(r[5] > restart_ns for r in stored(db)), "a record from the new process")
            resumed_s = time.monotonic() - t0
            wait_until(lambda: sum(r[5] > restart_ns for r in stored(db)) >= 40, "records after the restart")
        finally:
            stop.set()
            gw.join(CEILING)
            if svc.proc is not None:
                assert svc.stop() == 0
        rows = stored(db)
        ids = [r[0] for r in rows]
        contacts = [r[1:5] for r in rows]
        print(f"\nkilled with {len(before)} records taken; records again {resumed_s:.2f} s after the restart began; "
              f"{len(rows)} stored")
        assert before <= set(ids)  # every record written (or journaled) before the kill is there
        assert len(ids) == len(set(ids))  # each id once
        assert len(contacts) == len(set(contacts))  # and each contact under one id
        assert resumed_s < CEILING
