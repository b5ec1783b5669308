"""Finding a broker, or starting one: Mosquitto when installed, else the embedded amqtt.

The embedded broker (amqtt, measured here at 8-12k msg/s) is enough for a
small demo or a test on a machine without Mosquitto; production sites run
Mosquitto or a clustered broker (see docker/).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import subprocess
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


def _wait_answers(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if broker_answers("127.0.0.1", port, timeout=0.5):
            return True
        time.sleep(0.05)
    return False


@contextlib.contextmanager
def mosquitto_broker(port: int | None = None) -> Iterator[str]:
    """Run a private ``mosquitto`` on a free loopback port; yields its URL."""
    exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if exe is None:
        raise FileNotFoundError("mosquitto is not installed")
    port = port or free_port()
    with tempfile.TemporaryDirectory() as tmp:
        conf = Path(tmp) / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "max_queued_messages 1000000\nset_tcp_nodelay true\n"
        )
        proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        try:
            if not _wait_answers(port, 10.0):
                raise RuntimeError(f"mosquitto did not start on port {port}")
            yield f"mqtt://127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()


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
            await ready.wait()
            started.set()
            await task

        try:
            loop.run_until_complete(serve())
        except BaseException as exc:  # surfaced to the caller below
            errors.append(exc)
            started.set()
        finally:
            loop.close()

    thread = threading.Thread(target=main, name="embedded-broker", daemon=True)
    thread.start()
    started.wait(15)
    if errors or not _wait_answers(port, 10.0):
        raise RuntimeError(f"embedded broker failed to start: {errors[:1]}")
    try:
        yield f"mqtt://127.0.0.1:{port}"
    finally:
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(stop.set)
        thread.join(5)
