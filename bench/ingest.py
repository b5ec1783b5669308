"""Ingest benchmark: frames/s that the fusion service takes from the broker, against raw fan-in.

One run, one machine, one broker (a private mosquitto with a deep queue):

1. ``raw``      mosquitto_sub (C) receiving the same burst: the broker's fan-in.
2. ``stream``   ``poserun process``: its ingest on the one MQTT core (``services/mqtt_stream.py``).
3. ``paho``     the same handler fed by paho's network thread (for comparison only).
4. ``aiomqtt``  the same handler fed by aiomqtt's async iterator (for comparison only).
5. ``handle``   decode + route + process alone, no network (the ceiling of the Python side).

The burst is a recording of the simulated team replayed with ``--speed 0``
from a separate process. Ratios are taken within this run. paho and aiomqtt are not
dependencies of poserun: ``pip install -e '.[bench]'``.

    python bench/ingest.py [--athletes 30] [--seconds 10] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from poserun.recording import RecordedMessage, read_messages
from poserun.services.broker import mosquitto_broker
from poserun.services.fusion import FusionService
from poserun.services.importer import write_recording
from poserun.services.mqtt import NODELAY
from poserun.services.sim.team import SimTeam
from poserun.settings import load_settings


def make_burst(path: Path, athletes: int, seconds: float, session: str) -> tuple[int, int]:
    # one message per sensor frame (no bundles): the per-message paths are what this compares
    settings = load_settings(overrides={"sim": {"athletes": athletes, "bundle": False}, "session": {"id": session}})
    team = SimTeam(session, settings.sim)
    msgs = [RecordedMessage(m.topic, m.payload, 0, True, 1) for m in team.meta_messages()]
    frames = samples = 0
    for _ in range(int(seconds * 2)):
        out, _ = team.step(50)
        for m in out:
            msgs.append(RecordedMessage(m.topic, m.payload, m.at_ns))
        frames += len(out)
    write_recording(path, msgs)
    from poserun.wire import decode

    samples = sum(decode(m.payload).samples for m in read_messages(path) if "/data/" in m.topic)
    return frames, samples


def replay(url: str, path: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "poserun", "gateway", "replay", str(path),
                             "--broker", url, "--speed", "0"], stdout=subprocess.DEVNULL)


def bench_raw(url: str, path: Path, frames: int, session: str) -> float | None:
    exe = shutil.which("mosquitto_sub")
    if exe is None:
        return None
    port = url.rsplit(":", 1)[1]
    sub = subprocess.Popen([exe, "-p", port, "-t", f"poserun/v1/{session}/+/data/+", "-C", str(frames),
                            "-F", "%U"], stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    pub = replay(url, path)
    out, _ = sub.communicate(timeout=600)
    pub.wait(600)
    stamps = [float(x) for x in out.split()]
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


async def _paho_ingest(svc: FusionService, url: str, stop: asyncio.Event, ready: asyncio.Event) -> None:
    """paho's network thread hands messages to the loop in batches (as poserun's old paho ingest did)."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    loop = asyncio.get_running_loop()
    inbox: list[tuple[str, bytes, int]] = []
    wake = asyncio.Event()
    subscribed = threading.Event()
    host, port = url.removeprefix("mqtt://").rsplit(":", 1)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-paho", protocol=paho.MQTTv311)
    client.on_socket_open = lambda _c, _u, sock: sock.setsockopt(*NODELAY)
    client.on_connect = lambda c, *_a: c.subscribe([(f, 1) for f in svc.filters()])
    client.on_subscribe = lambda *_a: subscribed.set()

    def on_message(_c: object, _u: object, msg: object) -> None:
        inbox.append((msg.topic, msg.payload, time.time_ns()))  # type: ignore[attr-defined]
        if len(inbox) == 1:
            loop.call_soon_threadsafe(wake.set)

    client.on_message = on_message
    client.connect(host, int(port))
    client.loop_start()
    await asyncio.to_thread(subscribed.wait, 10)
    ready.set()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), 0.1)
        wake.clear()
        batch = inbox[:]
        del inbox[:len(batch)]
        for m in batch:
            svc.handle(*m)
    client.disconnect()
    client.loop_stop()


async def _aiomqtt_ingest(svc: FusionService, url: str, stop: asyncio.Event, ready: asyncio.Event) -> None:
    import aiomqtt

    host, port = url.removeprefix("mqtt://").rsplit(":", 1)
    async with aiomqtt.Client(host, int(port), identifier="bench-aiomqtt", socket_options=[NODELAY]) as client:
        for f in svc.filters():
            await client.subscribe(f, qos=1)
        ready.set()

        async def read() -> None:
            async for msg in client.messages:
                svc.handle(str(msg.topic), bytes(msg.payload), time.time_ns())  # type: ignore[arg-type]

        reader = asyncio.create_task(read())
        await stop.wait()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


def bench_service(url: str, path: Path, frames: int, session: str, ingest: str) -> float:
    settings = load_settings(overrides={"broker": {"url": url}})

    async def main() -> float:
        svc = FusionService(settings, session=session)
        stop, ready = asyncio.Event(), asyncio.Event()
        if ingest == "stream":
            task = asyncio.create_task(svc.run(stop, ready))
        else:
            run = _paho_ingest if ingest == "paho" else _aiomqtt_ingest
            task = asyncio.create_task(run(svc, url, stop, ready))
        await ready.wait()
        pub = replay(url, path)
        first = last = None
        while True:
            n = svc.snapshot()["totals"].get("frames", 0)
            now = time.perf_counter()
            if n and first is None:
                first = (now, n)
            if n >= frames:
                last = (now, n)
                break
            await asyncio.sleep(0.01)
        stop.set()
        await task
        pub.wait(600)
        assert first is not None and last is not None
        return (last[1] - first[1]) / (last[0] - first[0])

    return asyncio.run(main())


def bench_handle(path: Path, frames: int, session: str) -> float:
    msgs = [(m.topic, m.payload) for m in read_messages(path)]
    svc = FusionService(load_settings(), session=session)
    t = time.perf_counter()
    for topic, payload in msgs:
        svc.handle(topic, payload)
    dt = time.perf_counter() - t
    assert svc.snapshot()["totals"]["frames"] == frames
    return frames / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--athletes", type=int, default=30)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    session = "bench"
    with tempfile.TemporaryDirectory() as tmp, mosquitto_broker() as url:
        path = Path(tmp) / "burst.mcap"
        frames, samples = make_burst(path, args.athletes, args.seconds, session)
        spf = samples / frames
        results = {"raw (mosquitto_sub)": bench_raw(url, path, frames, session)}
        for ingest in ("stream", "paho", "aiomqtt"):
            results[f"poserun process, {ingest} ingest"] = bench_service(url, path, frames, session, ingest)
        results["handle() alone, no network"] = bench_handle(path, frames, session)
    raw = results["raw (mosquitto_sub)"]
    live = frames / args.seconds
    if args.json:
        print(json.dumps({"frames": frames, "samples": samples, "results": results}))
        return
    print(f"burst: {args.athletes} athletes x {args.seconds:g} s = {frames} frames, {samples} samples "
          f"({live:,.0f} frames/s in real time)\n")
    print("| path | frames/s | samples/s | vs raw fan-in | x real time of this team |")
    print("|---|---:|---:|---:|---:|")
    for name, rate in results.items():
        if rate is None:
            print(f"| {name} | n/a | n/a | n/a | n/a |")
            continue
        ratio = f"{rate / raw:.2f}" if raw else "n/a"
        print(f"| {name} | {rate:,.0f} | {rate * spf:,.0f} | {ratio} | {rate / live:.1f} |")


if __name__ == "__main__":
    main()
