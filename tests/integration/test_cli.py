"""The commands a newcomer runs, as subprocesses.

Nothing here is timed: a test waits for a readiness signal (a line of output, a file) under a
generous ceiling that only a hung process reaches; start-up and stop times are measured in
``bench/startup.py`` (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from poserun.services.broker import free_port
from tests.conftest import CEILING

pytestmark = pytest.mark.broker


def spawn(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "poserun", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)


class Output:
    """A process's output, read on a thread as it comes."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def text(self) -> str:
        return "".join(self.lines)

    def until_rows(self, pattern: str, count: int, ceiling: float) -> str:
        """Wait until ``count`` distinct ids match ``pattern`` at line starts (or the process ends)."""
        deadline = time.monotonic() + ceiling
        while time.monotonic() < deadline and self.proc.poll() is None:
            if len({m.group(1) for line in list(self.lines) if (m := re.match(pattern, line))}) >= count:
                break
            time.sleep(0.05)
        return self.text()

    def interrupt(self, ceiling: float) -> str:
        """Ctrl-C; the whole output once the process has exited by itself."""
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(ceiling)
        self.thread.join(ceiling)
        return self.text()


ROW = r"^(a\d\d) \S+ \d+\s+\S+\s+\d+ "  # a team-table row: athlete, name, steps, ...


def test_demo_shows_the_whole_mission_and_stops_cleanly(broker_url: str, tmp_path: Path) -> None:
    """The team table, the board, haptic cues on the virtual band, /metrics, the store, and the
    report written at Ctrl-C (issue 14: the demo shows the whole mission)."""
    proc = spawn("demo", "--broker", broker_url, "--out", str(tmp_path))
    try:
        watch = Output(proc)
        out = watch.until_rows(ROW, 12, CEILING)
        assert len(set(re.findall(ROW, out, re.M))) == 12, out
        assert "poserun demo" in out and re.search(r"session  demo-\d{8}-\d{6}-[0-9a-f]{4}: 12 ", out), out
        assert re.search(r"warm-up  .*kernels (compiled|loaded) in", out), out
        assert re.search(r"board    open http://127\.0\.0\.1:\d+/ in a browser", out), out
        metrics = re.search(r"metrics  (http://127\.0\.0\.1:\d+/metrics)", out)
        assert metrics, out
        with urllib.request.urlopen(metrics.group(1), timeout=CEILING) as page:
            assert b"poserun_" in page.read()
        # the forced landers' cues reach the virtual band, whose every cue the terminal shows
        watch.until_rows(r"^buzz (a\d\d)\s+forced_landing", 1, CEILING)
        assert re.search(r"^buzz a\d\d\s+forced_landing", watch.text(), re.M), watch.text()[-3000:]
        session = re.search(r"session  (demo-\S+):", out).group(1)  # type: ignore[union-attr]
        assert f"store    sqlite:///{tmp_path}/demo.sqlite" in out, out
        tail = watch.interrupt(CEILING)
        assert proc.returncode == 0 and "stopped in" in tail, tail
        assert re.search(r"band     \d+ cues \(.*forced_landing \d+", tail), tail
        report = tmp_path / f"{session}.html"
        assert f"report   {report}" in tail, tail
        assert report.stat().st_size > 0 and session in report.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()


def test_demo_on_the_embedded_broker(tmp_path: Path) -> None:
    proc = spawn("demo", "--embedded-broker", "--out", str(tmp_path))
    try:
        watch = Output(proc)
        out = watch.until_rows(ROW, 4, CEILING)
        assert len(set(re.findall(ROW, out, re.M))) == 4, out
        assert "embedded amqtt broker at mqtt://127.0.0.1:" in out and "cut from 12 to 4" in out
        tail = watch.interrupt(CEILING)
        assert proc.returncode == 0 and "stopped in" in tail
    finally:
        if proc.poll() is None:
            proc.kill()


def test_two_demos_get_their_own_sessions() -> None:
    from poserun.services.demo import demo_settings

    ids = {demo_settings(None, None).session.id for _ in range(3)}
    assert len(ids) == 3 and all(re.fullmatch(r"demo-\d{8}-\d{6}-[0-9a-f]{4}", i) for i in ids)
    assert demo_settings(None, None, "mine").session.id == "mine"


def test_broker_refuses_a_busy_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "poserun", "broker", "--port", str(port)],
                              capture_output=True, text=True, timeout=CEILING)
    assert proc.returncode != 0
    assert proc.stdout == "" and "embedded broker at" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"port {port}" in lines[0] and "already in use" in lines[0], proc.stderr


def test_replaying_a_file_that_is_not_a_recording(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.mcap"
    bogus.write_text("time,ax\n0,1\n")
    for path in (bogus, tmp_path / "missing.mcap"):
        proc = subprocess.run([sys.executable, "-m", "poserun", "gateway", "replay", str(path), "--broker",
                               f"mqtt://127.0.0.1:{free_port()}"], capture_output=True, text=True, timeout=CEILING)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert str(path) in proc.stderr and ("not an MCAP recording" in proc.stderr or "no such" in proc.stderr)


def test_readers_refuse_a_missing_store(tmp_path: Path) -> None:
    for args in (["sessions"], ["export", "s1"], ["report", "s1"]):
        proc = subprocess.run([sys.executable, "-m", "poserun", *args], capture_output=True, text=True,
                              timeout=CEILING, cwd=tmp_path)
        assert proc.returncode == 2 and "no session store at poserun.db" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []  # no empty poserun.db left behind


def test_no_broker_is_a_clear_error() -> None:
    port = free_port()
    proc = subprocess.run([sys.executable, "-m", "poserun", "gateway", "sim", "--broker",
                           f"mqtt://127.0.0.1:{port}", "--duration", "1"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3
    assert "cannot reach the broker" in proc.stderr and "--broker" in proc.stderr


def counted_frames(stats: Path) -> int | None:
    try:
        return int(json.loads(stats.read_text())["totals"]["frames"])
    except (OSError, ValueError, KeyError):  # not written yet, or caught mid-write
        return None


def test_process_prints_counters(broker_url: str, session_id: str, tmp_path: Path) -> None:
    stats, ready = tmp_path / "stats.json", tmp_path / "ready"
    proc = subprocess.Popen(
        [sys.executable, "-m", "poserun", "process", "--broker", broker_url, "--session", session_id,
         "--stats-interval", "1", "--stats-file", str(stats), "--ready-file", str(ready)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + CEILING
    while not ready.exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr and proc.stderr.read()
        time.sleep(0.05)
    gw = subprocess.run([sys.executable, "-m", "poserun", "gateway", "sim", "--broker", broker_url,
                         "--session", session_id, "--athletes", "2", "--duration", "2", "--speed", "2"],
                        capture_output=True, text=True, timeout=CEILING)
    assert gw.returncode == 0, gw.stderr
    sent = json.loads(gw.stdout)["frames"]
    while counted_frames(stats) != sent:
        assert proc.poll() is None and time.monotonic() < deadline, "the service never counted every frame"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=CEILING)
    assert proc.returncode == 0, err
    assert '"stats"' in err
    snap = json.loads(stats.read_text())
    assert snap["totals"]["frames"] == sent and snap["bundles"] > 0  # the sim sends bundles
    assert snap["records"] > 0 and snap["rejected"] == {}
    assert any('"type":"stance"' in line for line in out.splitlines())
