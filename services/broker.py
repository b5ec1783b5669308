"""Finding a broker, or starting one: Mosquitto when installed, else the embedded amqtt.

The embedded broker (amqtt, measured here at 8-12k msg/s) is enough for a
small demo or a test on a machine without Mosquitto; production sites run
Mosquitto or a clustered broker (see docker/). A program that needs a broker
of its own (the demo) runs it in a separate process (:func:`local_broker`), so
the broker keeps real time on its own core instead of sharing the caller's GIL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from poserun.services.mqtt import broker_answers

log = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BrokerStartError(OSError):
    """A broker of our own did not start (the message says why, in one line)."""


class PortInUse(BrokerStartError):
    """The port a broker should listen on is taken."""


def check_port_free(port: int, host: str = "127.0.0.1") -> None:
    """Raise a one-line :class:`OSError` if something already listens on ``host:port``."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a listener binds: TIME_WAIT is no obstacle
        try:
            s.bind((host, port))
        except OSError as exc:
            raise PortInUse(f"port {port} on {host} is already in use (another MQTT broker?): use that "
                            "broker, or pick a free port with --port") from exc


def _wait_answers(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if broker_answers("127.0.0.1", port, timeout=0.5):
            return True
        time.sleep(0.05)
    return False


def mosquitto_exe() -> str | None:
    """The ``mosquitto`` binary (Debian puts it in /usr/sbin, often off a user's PATH), or None."""
    return shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)


@contextlib.contextmanager
def mosquitto_broker(port: int | None = None) -> Iterator[str]:
    """Run a private ``mosquitto`` on a free loopback port; yields its URL."""
    exe = mosquitto_exe()
    if exe is None:
        raise FileNotFoundError("mosquitto is not installed")
    port = port or free_port()
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "max_queued_messages 1000000\nset_tcp_nodelay true\n"
        )
        log_path = Path(tmp) / "mosquitto.log"
        with open(log_path, "wb") as log:  # a file, not a pipe nobody reads: a full pipe would stall the broker
            proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=log)
            try:
                if not _wait_answers(port, 30.0):
                    tail = log_path.read_text(errors="replace").strip().splitlines()[-1:]
                    raise BrokerStartError(f"mosquitto did not start on port {port}: {' '.join(tail)}")
                yield f"mqtt://127.0.0.1:{port}"
            finally:
                proc.terminate()
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def amqtt_config(port: int) -> dict[str, object]:
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }


async def run_embedded(port: int, ready: asyncio.Event | None = None,
                       stop: asyncio.Event | None = None) -> None:
    """Serve the embedded amqtt broker until ``stop`` is set (or the task is cancelled)."""
    for name in ("amqtt", "transitions"):
        logging.getLogger(name).setLevel(logging.WARNING)
    from amqtt.broker import Broker

    check_port_free(port)
    broker = Broker(amqtt_config(port))
    await broker.start()
    if ready is not None:
        ready.set()
    try:
        if stop is not None:
            await stop.wait()
        else:
            await asyncio.Event().wait()
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(broker.shutdown(), 2.0)


@contextlib.contextmanager
def embedded_broker(port: int | None = None) -> Iterator[str]:
    """The embedded broker on its own thread and event loop; yields its URL."""
    port = port or free_port()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    started = threading.Event()
    errors: list[BaseException] = []

    def main() -> None:
        asyncio.set_event_loop(loop)

        async def serve() -> None:
            ready = asyncio.Event()
            task = asyncio.create_task(run_embedded(port, ready, stop))
            waiter = asyncio.create_task(ready.wait())
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if ready.is_set():
                started.set()
            await task  # a start-up failure raises here and is recorded before started is set

        try:
            loop.run_until_complete(serve())
        except BaseException as exc:  # surfaced to the caller below
            errors.append(exc)
            started.set()
        finally:
            loop.close()

    thread = threading.Thread(target=main, name="embedded-broker", daemon=True)
    thread.start()
    started.wait(60)  # amqtt starts in well under a second; a loaded machine may take longer
    if errors and isinstance(errors[0], PortInUse):
        raise errors[0]
    if errors or not _wait_answers(port, 30.0):
        raise BrokerStartError(f"embedded broker failed to start: {errors[:1]}")
    try:
        yield f"mqtt://127.0.0.1:{port}"
    finally:
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(stop.set)
        thread.join(5)


@contextlib.contextmanager
def local_broker(*, amqtt: bool = False) -> Iterator[tuple[str, str]]:
    """A broker of the caller's own on a free loopback port, in a separate process.

    Yields ``(url, kind)``: a private ``mosquitto`` when installed (unless ``amqtt``), else
    ``poserun broker`` (amqtt) in a child interpreter, ready once it prints its address.
    Leaving the block stops it within a second (SIGTERM, then SIGKILL).
    """
    if not amqtt and mosquitto_exe():
        with mosquitto_broker() as url:
            yield url, "mosquitto"
        return
    port = free_port()
    with tempfile.TemporaryFile() as log:  # stderr to a file: a pipe nobody reads could fill and stall it
        proc = subprocess.Popen([sys.executable, "-m", "poserun", "broker", "--port", str(port)],
                                stdout=subprocess.PIPE, stderr=log, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()  # the readiness line, or EOF if it failed
            if "embedded broker at" not in line:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(10)
                log.seek(0)
                err = log.read().decode(errors="replace")
                raise BrokerStartError(f"embedded broker did not start: {(line + err).strip()[-400:]}")
            yield f"mqtt://127.0.0.1:{port}", "amqtt"
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(1.0)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
