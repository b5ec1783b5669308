"""The commands a newcomer runs, as subprocesses."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from poserun.services.broker import free_port

pytestmark = pytest.mark.broker


def spawn(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "poserun", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)


def read_until(proc: subprocess.Popen[str], pattern: str, athletes: int, timeout: float) -> tuple[str, float]:
    """Collect output until every athlete a01..aNN has a row in a team table."""
    lines: list[str] = []
    seen: set[str] = set()
    start = time.monotonic()

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            m = re.match(pattern, line)
            if m:
                seen.add(m.group(1))

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    while len(seen) < athletes and time.monotonic() - start < timeout and proc.poll() is None:
        time.sleep(0.05)
    return "".join(lines), time.monotonic() - start


def stop_within(proc: subprocess.Popen[str], seconds: float) -> float:
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.wait(seconds + 5)
    return time.monotonic() - t0


def test_demo_shows_every_athlete_and_stops_cleanly(broker_url: str) -> None:
    proc = spawn("demo", "--broker", broker_url)
    try:
        out, took = read_until(proc, r"^(a\d\d) \S+ \d+\s+\S+\s+\d+ ", 12, 15.0)
        assert took < 15.0, out
        assert "poserun demo" in out and "session" in out
        elapsed = stop_within(proc, 2.0)
        assert proc.returncode == 0
        assert elapsed < 2.0, f"Ctrl-C took {elapsed:.2f} s"
    finally:
        if proc.poll() is None:
            proc.kill()


def test_demo_on_the_embedded_broker() -> None:
    proc = spawn("demo", "--embedded-broker")
    try:
        out, took = read_until(proc, r"^(a\d\d) \S+ \d+\s+\S+\s+\d+ ", 4, 20.0)
        assert took < 20.0, out
        assert "embedded" in out and "cut from 12 to 4" in out
        assert stop_within(proc, 2.0) < 2.0
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_no_broker_is_a_clear_error() -> None:
    port = free_port()
    proc = subprocess.run([sys.executable, "-m", "poserun", "gateway", "sim", "--broker",
                           f"mqtt://127.0.0.1:{port}", "--duration", "1"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3
    assert "cannot reach the broker" in proc.stderr and "--broker" in proc.stderr


def test_process_prints_counters(broker_url: str, session_id: str, tmp_path: Path) -> None:
    stats = tmp_path / "stats.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "poserun", "process", "--broker", broker_url, "--session", session_id,
         "--stats-interval", "1", "--stats-file", str(stats), "--duration", "6"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2.0)
    gw = subprocess.run([sys.executable, "-m", "poserun", "gateway", "sim", "--broker", broker_url,
                         "--session", session_id, "--athletes", "2", "--duration", "2", "--speed", "2"],
                        capture_output=True, text=True, timeout=60)
    assert gw.returncode == 0, gw.stderr
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert '"stats"' in err
    import json

    snap = json.loads(stats.read_text())
    assert snap["totals"]["frames"] == json.loads(gw.stdout)["messages"]
    assert snap["records"] > 0 and snap["rejected"] == {}
    assert any('"type":"stance"' in line for line in out.splitlines())
