"""``poserun process --workers 2`` through a real broker: the team split by athlete, one board-side
sink with every athlete's records, cues from each worker, and a killed worker started again."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from poserun.services.jetstream import partition_of
from tests.conftest import CEILING


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stats(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # not written yet, or caught mid-write
        return None


def records(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:  # (a line being written)
            pass
    return out


def wait(what: str, check: Any, proc: subprocess.Popen[str]) -> Any:
    deadline = time.monotonic() + CEILING
    while True:
        got = check()
        if got:
            return got
        assert proc.poll() is None, f"poserun process ended (rc {proc.returncode}) waiting for {what}"
        assert time.monotonic() < deadline, f"no {what} within {CEILING:.0f} s"
        time.sleep(0.1)


def test_two_workers_split_the_team_and_a_killed_one_comes_back(private_mosquitto: str, session_id: str,
                                                                  tmp_path: Path) -> None:
    # two athletes in each partition (the partition is a hash of the session and athlete ids)
    candidates = [f"a{i:02d}" for i in range(1, 40)]
    team = [a for a in candidates if partition_of(session_id, a, 2) == 0][:2] + \
           [a for a in candidates if partition_of(session_id, a, 2) == 1][:2]
    out, st, ready = tmp_path / "records.jsonl", tmp_path / "stats.json", tmp_path / "ready"
    conf = tmp_path / "team.yaml"
    conf.write_text(json.dumps({
        "broker": {"url": private_mosquitto}, "session": {"id": session_id},
        "athletes": [{"id": a} for a in team], "processor": {"accept_unknown_athletes": False},
        "sinks": [{"type": "jsonl", "options": {"path": str(out)}},
                  {"type": "haptic", "options": {"forced_landing": {"cooldown_s": 0}}}]}))
    proc = subprocess.Popen([sys.executable, "-m", "poserun", "process", "-c", str(conf), "--session", session_id,
                             "--workers", "2", "--stats-interval", "0.5", "--stats-file", str(st),
                             "--ready-file", str(ready)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    gw = None
    try:
        wait("readiness", ready.exists, proc)
        band = subprocess.Popen([sys.executable, "-m", "poserun", "haptic-sim", "--broker", private_mosquitto,
                                 "--session", session_id], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        buzzed: list[tuple[float, str]] = []  # (when, athlete) of each cue the band felt
        threading.Thread(target=lambda: buzzed.extend(
            (time.time(), line.split()[1]) for line in band.stdout or () if line.startswith("buzz ")),
            daemon=True).start()
        gw = subprocess.Popen([sys.executable, "-m", "poserun", "gateway", "sim", "-c", str(conf), "--session",
                               session_id, "--athletes", "4", "--profiles", "forced_lander", "--duration", "3600",
                               "--speed", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # every athlete's records reach the parent's jsonl sink, from both workers
        wait("records of every athlete", lambda: {r["athlete"] for r in records(out)} == set(team), proc)
        # (the stats file is written every 0.5 s: wait for one that holds the haptic sink's writes too)
        snap = wait("both workers' counters", lambda: (s := stats(st)) and s.get("athletes") == 4
                    and s.get("sinks", {}).get("haptic", {}).get("written", 0) > 0 and s, proc)
        workers = snap["workers"]
        assert workers["count"] == 2 and workers["alive"] == 2 and workers["restarts"] == 0
        assert snap["rejected"] == {} and snap["sinks"]["haptic"]["written"] > 0
        # each worker skipped the other's athletes at its subscription: the broker sent it none of them
        assert [p["elsewhere"] for p in workers["partitions"]] == [0, 0]

        # cues from both workers' haptic sinks
        wait("cues from both partitions", lambda: {a for _, a in buzzed} & set(team[:2])
             and {a for _, a in buzzed} & set(team[2:]), proc)

        victim = workers["partitions"][0]["pid"]
        os.kill(victim, signal.SIGKILL)
        killed_ns = time.time_ns()
        wait("the worker started again", lambda: (s := stats(st)) and s["workers"]["restarts"] == 1
             and s["workers"]["alive"] == 2, proc)
        # its athletes' records come again, made after the kill
        wait("records of the killed worker's athletes", lambda: {
            r["athlete"] for r in records(out) if r["emitted_ns"] > killed_ns} >= set(team[:2]), proc)
        wait("cues from the restarted worker", lambda: {a for t, a in buzzed if t * 1e9 > killed_ns} & set(team[:2]),
             proc)
        band.send_signal(signal.SIGINT)
        band.wait(CEILING)
    finally:
        if gw is not None:
            gw.send_signal(signal.SIGINT)
            gw.communicate(timeout=CEILING)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=CEILING)
    assert proc.returncode == 0, err[-3000:]
    assert "fusion worker 0" in err and "starting it again" in err
    final = json.loads(st.read_text())
    assert final["workers"]["alive"] == 0 and final["workers"]["partitions"][0]["starts"] == 2
    # a clean stop loses nothing on the way to the parent's sinks; counters kept adding up over the restart
    forwarded = final["sinks"]["forward"]
    assert forwarded["dropped"] == 0 and final["sinks"]["jsonl"]["written"] == len(records(out))
    # the totals kept adding up over the restart (a killed worker's last second of counters dies with it)
    assert final["records"] > snap["records"] and len(records(out)) > snap["records"]


def test_a_worker_that_cannot_start_stops_the_pool(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there: no worker can subscribe
    proc = subprocess.run([sys.executable, "-m", "poserun", "process", "--broker", f"mqtt://127.0.0.1:{port}",
                           "--workers", "2", "--stats-interval", "0"], capture_output=True, text=True,
                          timeout=CEILING)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "before it was ever ready" in proc.stderr
