"""What the fault tests break things with: a mosquitto that can be killed and brought back on
the same port with its sessions, a TCP proxy that can cut or freeze a link, and ``poserun
process`` as a subprocess (its memory read from /proc)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from poserun.services.broker import free_port, mosquitto_exe
from poserun.services.mqtt_publisher import Publisher
from poserun.services.sim.team import SimTeam
from poserun.settings import BrokerSettings
from poserun.wire.mqtt import encode_publish
from tests.conftest import CEILING, require, wait_until


class Mosquitto:
    """A private mosquitto on a fixed free port, with persistence in its own directory, so a
    restart keeps persistent sessions and their queued messages (as a broker on a track would)."""

    def __init__(self, workdir: Path, extra: str = "") -> None:
        exe = mosquitto_exe()
        require(exe is not None, "the mosquitto binary is missing (.ci/run installs it)")
        assert exe is not None
        self.exe = exe
        self.port = free_port()
        self.dir = workdir
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                             f"persistence_location {workdir}/\nuser root\n{extra}")
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.dir / "mosquitto.log", "ab") as log:  # the child keeps its own copy of the file
            self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=log)
        wait_until(self._listening, f"mosquitto listening on {self.port}", CEILING)

    def _listening(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"mosquitto exited: {(self.dir / 'mosquitto.log').read_text()[-500:]}")
        with socket.socket() as s:
            s.settimeout(1.0)
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """SIGTERM saves the sessions; SIGKILL loses what was not saved."""
        if self.proc is not None:
            self.proc.send_signal(sig)
            self.proc.wait(30)
            self.proc = None


@contextlib.contextmanager
def mosquitto(extra: str = "") -> Iterator[Mosquitto]:
    with tempfile.TemporaryDirectory() as tmp:
        m = Mosquitto(Path(tmp), extra)
        m.start()
        try:
            yield m
        finally:
            m.stop(signal.SIGKILL)


class Proxy:
    """A TCP proxy on a free loopback port: ``freeze()`` stops forwarding in both directions
    without closing anything (a half-open link: Wi-Fi gone, the NAT forgot), ``thaw()`` goes
    back to forwarding, ``cut()`` closes every link."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.port = free_port()
        self.frozen = False
        self.links: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return
        self.links.append((writer, up_w))

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await r.read(65536):
                    if not self.frozen:  # frozen: swallowed, as a dead link would
                        w.write(data)
                        await w.drain()
            if self.frozen:  # a dead link carries no FIN either: the other side hears nothing
                return
            with contextlib.suppress(Exception):
                w.close()
        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))

    def freeze(self) -> None:
        self.frozen = True

    def thaw(self) -> None:
        self.frozen = False

    def cut(self) -> None:
        for a, b in self.links:
            for w in (a, b):
                with contextlib.suppress(Exception):
                    w.transport.abort()
        self.links.clear()

    async def close(self) -> None:
        self.frozen = False
        self.cut()  # every link's reads end with its transport
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5.0)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def rss_mib(pid: int) -> float:
    """A process's resident memory (VmRSS), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


class Service:
    """``poserun process -c CONFIG`` as a subprocess: started, waited for (its ready file), its
    counters read (its stats file, written every second), stopped or killed."""

    def __init__(self, config: Path, workdir: Path) -> None:
        self.config = config
        self.ready = workdir / "ready"
        self.stats_file = workdir / "stats.json"
        self.log = workdir / "process.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.ready.unlink(missing_ok=True)
        self.stats_file.unlink(missing_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "poserun", "process", "-c", str(self.config), "--stats-interval", "1",
                 "--stats-file", str(self.stats_file), "--ready-file", str(self.ready)],
                stdout=subprocess.DEVNULL, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        wait_until(self._ready, "poserun process ready", CEILING)

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"poserun process exited: {self.log.read_text()[-2000:]}")
        return self.ready.exists()

    def stats(self) -> dict[str, Any]:
        try:
            return json.loads(self.stats_file.read_text())
        except (OSError, ValueError):  # not written yet, or being written
            return {}

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(CEILING)
        self.proc = None
        return code


def good_gateway(broker: BrokerSettings, session: str, stop: threading.Event,
                 sent: dict[tuple[str, int], int], team: SimTeam) -> None:
    """A simulated team in real time, 50 ms of frames at a time, its meta retained; ``sent``: when
    each frame went out (by topic and sequence number)."""
    pub = Publisher(broker, "good")
    pub.connect()
    for m in team.meta_messages():
        pub.publish(m.topic, m.payload, qos=1, retain=True)
    pub.flush()
    start = time.monotonic()
    k = 0
    while not stop.is_set():
        msgs, _ = team.step(5)
        now = time.time_ns()
        for m in msgs:
            sent[(m.topic, int.from_bytes(m.payload[8:12], "little"))] = now
        pub.send_packets([encode_publish(m.topic, m.payload) for m in msgs])
        pub.pump()
        k += 1
        pub.sleep(max(0.0, start + k * 0.05 - time.monotonic()), stop)
    pub.close()
