"""A phone's page in headless Chromium -> ``poserun gateway phone`` -> real broker -> live fusion service,
and the athlete's haptic command back to the page's ``navigator.vibrate``."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import urllib.error
import urllib.request
from typing import Any

import numpy as np
import pytest

from poserun.services.fusion import FusionService
from poserun.services.gateway_phone import PhoneClock, PhoneGateway, join_token, parse_samples
from poserun.services.mqtt_conn import MqttConnection
from poserun.services.sim.team import SimTeam
from poserun.settings import BrokerSettings, load_settings
from poserun.sinks.base import SinkRunner
from poserun.sinks.memory import ListSink
from poserun.wire import topics
from tests.conftest import CEILING, PAGE_MS, require, until, wait_until

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
RATE = 60.0
SECONDS = 8.0
ATHLETE = "ph1"
SECRET = "test-secret"
# records navigator.vibrate's calls instead of buzzing (headless Chromium has no motor)
STUB_VIBRATE = """
window.__vibrations = [];
Object.defineProperty(Navigator.prototype, 'vibrate', {configurable: true, writable: true,
  value: function (p) { window.__vibrations.push(p); return true; }});
"""
# dispatches the rows as devicemotion events at 60 Hz of the page's clock
DISPATCH = """
async (rows) => {
  const start = performance.now();
  for (let i = 0; i < rows.length; ) {
    if (performance.now() >= start + i * 1000 / 60) {
      const r = rows[i++];
      window.dispatchEvent(new DeviceMotionEvent('devicemotion', {
        accelerationIncludingGravity: {x: r[0], y: r[1], z: r[2]},
        rotationRate: {beta: r[3], gamma: r[4], alpha: r[5]}, interval: 1000 / 60}));
    } else {
      await new Promise((ok) => setTimeout(ok, 2));
    }
  }
}
"""

# a second socket of the same athlete sends what no page sends
JUNK = """(url) => new Promise((ok) => { const w = new WebSocket(url); w.onopen = () => {
  w.send('junk'); w.send('{"type":"motion","s":[[1,"a",0,0,0,0,0]]}'); w.send('['.repeat(50000));
  w.close(); ok(); }; })"""


def phone_rows(seconds: float) -> list[list[float]]:
    """The simulator's sacrum IMU (x fwd, y left, z up) as a phone worn at the front of the waist,
    screen forward: phone x = left, y = up, z = forward; rotation rates in deg/s."""
    team = SimTeam("x", load_settings(overrides={"sim": {"athletes": 1}}).sim)
    runner = team.runners[team.specs[0].athlete_id]
    t = np.arange(round(seconds * RATE)) / RATE
    runner.advance(seconds + 0.5)
    imu = runner.pelvis_imu(t)
    acc = imu[:, [1, 2, 0]]
    gyro = np.degrees(imu[:, [4, 5, 3]])  # about phone x (left), y (up), z (forward)
    return np.column_stack([acc, gyro]).round(4).tolist()


def test_clock_and_message_rules() -> None:
    clock = PhoneClock()
    assert clock.map(1000.0, 5_000_000_000) == 5_000_000_000
    assert clock.map(1016.0, 5_030_000_000) == 5_016_000_000  # a delayed message keeps the page's spacing
    assert clock.map(1050.0, 5_040_000_000) == 5_040_000_000  # never after its arrival: the offset drops
    assert clock.map(1060.0, 5_070_000_000) == 5_050_000_000
    assert parse_samples('{"type":"motion","s":[[1,0,9.8,0,0,0,0]]}') == [(1.0, 0.0, 9.8, 0.0, 0.0, 0.0, 0.0)]
    for bad in ('[]', '{"type":"motion","s":[[1,2]]}', '{"type":"motion","s":[[1,"a",0,0,0,0,0]]}',
                '{"type":"motion","s":[[1,NaN,0,0,0,0,0]]}', "not json", "[" * 50_000,
                '{"type":"motion","s":[[1,' + "9" * 400 + ',0,0,0,0,0]]}'):
        with pytest.raises((ValueError, TypeError, OverflowError, RecursionError)):
            parse_samples(bad)


@pytest.mark.broker
def test_phone_page_streams_trunk_imu_and_plays_haptics(broker: BrokerSettings, session_id: str) -> None:
    require(CHROMIUM is not None, "Debian's chromium is not installed (.ci/run installs it)")
    try:
        import playwright.sync_api as playwright
    except ModuleNotFoundError:
        require(False, "playwright is not installed (pip install -e '.[test]')")
    settings = load_settings(overrides={"broker": {"url": broker.url}, "session": {"id": session_id},
                                        "athletes": [{"id": ATHLETE}]})
    sink = ListSink()
    gw = PhoneGateway(broker, session_id, [ATHLETE], SECRET, host="127.0.0.1", port=0)
    rows = phone_rows(SECONDS)
    started, done = threading.Event(), threading.Event()
    box: dict[str, Any] = {}

    def serve() -> None:
        async def main() -> None:
            svc = FusionService(settings, [SinkRunner(sink)], session=session_id)
            box["svc"] = svc
            stop, ready, gw_ready = asyncio.Event(), asyncio.Event(), asyncio.Event()
            task = asyncio.create_task(svc.run(stop, ready))
            await ready.wait()
            gw_task = asyncio.create_task(gw.run(stop, gw_ready))
            await gw_ready.wait()
            coach = MqttConnection(broker, "test-coach")
            await coach.start()
            box["coach"], box["loop"] = coach, asyncio.get_running_loop()
            started.set()
            await asyncio.to_thread(done.wait, CEILING)
            await coach.close()
            stop.set()
            await gw_task
            await task

        asyncio.run(main())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(CEILING)
    base = f"http://127.0.0.1:{gw.port}"
    link = gw.links(base)[ATHLETE]
    assert join_token(SECRET, session_id, ATHLETE) in link
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync"])
            page = browser.new_page()
            page.add_init_script(STUB_VIBRATE)
            page.goto(link)
            page.click("#start")
            page.wait_for_function("window.poserunPhone.open", timeout=PAGE_MS)
            page.evaluate(DISPATCH, rows)
            page.wait_for_function(f"window.poserunPhone.sent >= {len(rows)}", timeout=PAGE_MS)
            svc = box["svc"]
            wait_until(lambda: gw.stats.samples + gw.stats.late_samples >= len(rows), "the gateway to take the samples")
            wait_until(lambda: svc.snapshot()["totals"].get("samples", 0) >= gw.stats.samples,
                       "the fusion service to take every sample")
            wait_until(lambda: any(r["athlete"] == ATHLETE and r["type"] == "stance" for r in sink.records),
                       "stance records from the phone", ceiling=60.0)
            # a haptic command on the athlete's topic reaches navigator.vibrate
            command = {"v": 1, "athlete": ATHLETE, "session": session_id, "reason": "forced_landing",
                       "pattern": "double", "intensity": 0.8, "duration_ms": 120}
            box["loop"].call_soon_threadsafe(box["coach"].publish, topics.athlete_topic(session_id, ATHLETE, "haptic"),
                                             json.dumps(command), 1)
            page.wait_for_function("window.__vibrations.length >= 2", timeout=PAGE_MS)
            vibrations = page.evaluate("window.__vibrations")
            # bad messages from a browser are counted; the phone streams on
            page.evaluate(JUNK, link.replace("http://", "ws://").replace("/?", "/ws?"))
            wait_until(lambda: gw.stats.bad_messages >= 3, "the bad messages to be counted")
            taken = gw.stats.samples
            page.evaluate(DISPATCH, rows[:30])  # the phone streams on
            wait_until(lambda: gw.stats.samples > taken, "the phone's samples after the junk")
            browser.close()
    finally:
        done.set()
        thread.join(CEILING)
    snap = svc.snapshot()
    assert vibrations[0] == 50  # the start tap's test buzz
    assert vibrations[-1] == [120, 120, 120]  # double: two pulses of duration_ms, an equal gap
    assert snap["rejected"] == {}
    assert snap["sources"][f"{session_id}/{ATHLETE}/imu_pelvis"]["frames"] >= 1
    assert gw.stats.late_samples < 0.05 * len(rows) and gw.stats.haptic_forwarded == 1
    stances = [r for r in sink.records if r["athlete"] == ATHLETE and r["type"] == "stance"]
    assert all(r["event_source"] == "imu_pelvis" for r in stances)
    assert len(stances) >= 12  # of about 24 in 8 s of running
    assert {r["foot"] for r in stances} == {"left", "right"}


@pytest.mark.broker
def test_wrong_token_unknown_athlete_and_foreign_origin_are_refused(broker: BrokerSettings,
                                                                    session_id: str) -> None:
    gw = PhoneGateway(broker, session_id, [ATHLETE], SECRET, host="127.0.0.1", port=0)
    token = join_token(SECRET, session_id, ATHLETE)

    def get(path: str, headers: dict[str, str] | None = None) -> int:
        req = urllib.request.Request(f"http://127.0.0.1:{gw.port}{path}", headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return int(r.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    async def main() -> dict[str, int]:
        stop, ready = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(gw.run(stop, ready))
        await ready.wait()
        ws = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
              "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Origin": "http://evil.example"}
        out = {"wrong": await asyncio.to_thread(get, f"/?athlete={ATHLETE}&token=bad"),
               "unknown": await asyncio.to_thread(get, f"/?athlete=zz9&token={token}"),
               "origin": await asyncio.to_thread(get, f"/ws?athlete={ATHLETE}&token={token}", ws),
               "right": await asyncio.to_thread(get, f"/?athlete={ATHLETE}&token={token}")}
        stop.set()
        await task
        return out

    codes = asyncio.run(main())
    assert codes == {"wrong": 401, "unknown": 403, "origin": 403, "right": 200}
    assert gw.stats.refused == {"token": 1, "athlete": 1, "origin": 1}


@pytest.mark.broker
def test_meta_is_said_again_when_the_service_asks(broker: BrokerSettings, session_id: str) -> None:
    from websockets.asyncio.client import connect

    gw = PhoneGateway(broker, session_id, [ATHLETE], SECRET, host="127.0.0.1", port=0)
    metas: list[bytes] = []

    async def main() -> None:
        stop, ready = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(gw.run(stop, ready))
        await ready.wait()
        token = join_token(SECRET, session_id, ATHLETE)
        async with connect(f"ws://127.0.0.1:{gw.port}/ws?athlete={ATHLETE}&token={token}") as ws:
            assert json.loads(await ws.recv())["type"] == "hello"
            listener = MqttConnection(broker, "test-meta", on_message=lambda m, _ns: metas.append(m.payload),
                                      subscriptions=[(topics.meta_topic(session_id, ATHLETE, "imu_pelvis"), 1)])
            await listener.start()
            await until(lambda: len(metas) >= 1, "the retained meta")
            listener.publish(topics.meta_request_topic(session_id, ATHLETE, "imu_pelvis"), b"", 1)
            await until(lambda: len(metas) >= 2, "the meta said again")
            await listener.close()
        stop.set()
        await task

    asyncio.run(main())
    assert json.loads(metas[-1])["placement"] == "trunk"
    assert json.loads(metas[-1])["axes"] == {"x": "left", "y": "up", "z": "forward"}
