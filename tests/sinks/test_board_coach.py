"""The coach's board in Chromium at laptop, tablet and phone sizes: status on the tiles, a flash
that ends, no horizontal overflow on the phone, tiles that stay in place, keyboard focus, and a
buzz button whose command reaches the virtual band (real broker, fusion service, haptic sink)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from poserun.services.fusion import FusionService
from poserun.services.gateway_sim import run_sim_gateway
from poserun.services.haptic_sim import Band, run_band
from poserun.settings import BrokerSettings, load_settings
from poserun.sinks.base import SinkRunner
from poserun.sinks.dashboard import DashboardSink
from poserun.sinks.haptic import HapticSink
from tests.conftest import CEILING, PAGE_MS, wait_until
from tests.sinks.board_feed import Served, served_board
from tests.sinks.test_dashboard_scale import browser  # noqa: F401  (the fixture: one Chromium)

VIEWPORTS = {"laptop": (1366, 768), "tablet": (1024, 768), "phone": (390, 844)}


@pytest.fixture(scope="module")
def team() -> Iterator[Served]:
    """12 runners at 4x real time (12 steps/s each): 30 s of a session's updates in about 8 s."""
    with served_board(12, stances_per_s=12.0) as served:
        wait_until(lambda: served.call(lambda: len(served.sink.tiles) == 12), "12 athletes")
        yield served


def open_page(browser: Any, served: Served, size: str, light: bool = False) -> tuple[Any, Any, list[str]]:  # noqa: F811
    w, h = VIEWPORTS[size]
    ctx = browser.new_context(viewport={"width": w, "height": h})
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    if light:
        page.add_init_script("localStorage.setItem('poserun.board.theme', 'light')")
    page.goto(served.url)
    page.wait_for_function("document.querySelectorAll('#board .tile[data-athlete]').length === 12", timeout=PAGE_MS)
    return ctx, page, errors


def positions(page: Any) -> dict[str, tuple[int, int]]:
    return {k: tuple(v) for k, v in page.evaluate("""() => Object.fromEntries([...document.querySelectorAll(
        '#board .tile[data-athlete]')].map(t => [t.dataset.athlete, [Math.round(t.getBoundingClientRect().x),
        Math.round(t.getBoundingClientRect().y)]]))""").items()}


@pytest.mark.parametrize("size", list(VIEWPORTS))
def test_tiles_stay_in_place_and_show_a_status(browser: Any, team: Served, size: str) -> None:  # noqa: F811
    ctx, page, errors = open_page(browser, team, size)
    try:
        page.select_option("#sort", "attention")
        page.wait_for_function("[...document.querySelectorAll('#board .tile .lvl')].every(e => e.textContent)",
                               timeout=PAGE_MS)
        # every tile says its level in words (an icon and a word, not colour alone) and its fault
        levels = page.eval_on_selector_all("#board .tile .lvl", "es => es.map(e => e.textContent)")
        assert all(any(w in t for w in ("ok", "watch", "fix")) for t in levels), levels
        page.evaluate("""() => { window._levels = 0; window._moves = 0;
            new MutationObserver(ms => { for (const m of ms) window._moves += m.addedNodes.length; })
              .observe(document.getElementById('board'), {childList: true});
            new MutationObserver(ms => { for (const m of ms) if (m.attributeName === 'data-level') window._levels++; })
              .observe(document.getElementById('board'), {subtree: true, attributes: true,
                                                           attributeFilter: ['data-level']}); }""")
        before, start = positions(page), team.call(lambda: sum(t["stances"] for t in team.sink.tiles.values()))
        # 30 s of a team's steps at 3 a second each: 12 x 90 stances
        wait_until(lambda: team.call(lambda: sum(t["stances"] for t in team.sink.tiles.values())) >= start + 1080,
                   "30 s of simulated steps")
        page.wait_for_function("poserunBoard.renders > 10", timeout=PAGE_MS)
        after = positions(page)
        if page.evaluate("window._levels") == 0:  # no level changed: nothing moved at all
            assert after == before and page.evaluate("window._moves") == 0
        assert set(after) == set(before)
        if size == "phone":
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
            page.click('#board .tile[data-athlete] h2')
            page.wait_for_selector("#athlete:not([hidden])")
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
            box = page.locator("#close").bounding_box()
            assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= 844
            assert box["x"] >= 0 and box["x"] + box["width"] <= 390
            assert page.locator("#close").is_visible()
        assert errors == []
    finally:
        ctx.close()


def test_keyboard_reaches_a_tile_and_enter_opens_it(browser: Any, team: Served) -> None:  # noqa: F811
    ctx, page, errors = open_page(browser, team, "laptop")
    try:
        for _ in range(60):
            page.keyboard.press("Tab")
            if page.evaluate("!!document.activeElement.closest('#board .tile[data-athlete]')"):
                break
        who = page.evaluate("document.activeElement.closest('#board .tile').dataset.athlete")
        assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"  # focus visible
        page.keyboard.press("Enter")
        page.wait_for_selector("#athlete:not([hidden])")
        assert page.inner_text("#athlete-title").startswith(who)
        assert errors == []
    finally:
        ctx.close()


def test_light_theme_is_remembered(browser: Any, team: Served) -> None:  # noqa: F811
    ctx, page, _errors = open_page(browser, team, "laptop")
    try:
        page.click("#theme")
        assert page.evaluate("document.body.classList.contains('light')")
        page.reload()
        page.wait_for_function("document.querySelectorAll('#board .tile').length === 12", timeout=PAGE_MS)
        assert page.evaluate("document.body.classList.contains('light')")
        assert page.evaluate("parseFloat(getComputedStyle(document.documentElement).fontSize)") > 16
    finally:
        ctx.close()


@pytest.mark.broker
def test_forced_lander_status_flash_ends_and_buzz_reaches_the_band(browser: Any, broker: BrokerSettings,  # noqa: F811
                                                                   session_id: str) -> None:
    settings = load_settings(overrides={
        "broker": {"url": broker.url}, "session": {"id": session_id},
        "sim": {"athletes": 3, "profiles": ["pose", "forced_lander", "heel_striker"], "forced_share": 0.6}})
    sink = DashboardSink(port=0, context={"broker": settings.broker})
    band = Band()
    started, done, band_ready = threading.Event(), threading.Event(), threading.Event()
    band_stop = threading.Event()
    band_thread = threading.Thread(target=run_band, args=(settings.broker,), kwargs={
        "session": session_id, "stop": band_stop, "quiet": True, "ready": band_ready, "band": band}, daemon=True)
    band_thread.start()
    assert band_ready.wait(CEILING)

    def serve() -> None:
        async def main() -> None:
            haptic = HapticSink(context={"broker": settings.broker})
            svc = FusionService(settings, [SinkRunner(sink), SinkRunner(haptic)], session=session_id)
            stop, ready = asyncio.Event(), asyncio.Event()
            task = asyncio.create_task(svc.run(stop, ready))
            await ready.wait()
            started.set()
            gw_stop = threading.Event()
            gw = asyncio.create_task(asyncio.to_thread(run_sim_gateway, settings, duration=120.0, stop=gw_stop))
            await asyncio.to_thread(done.wait, CEILING)
            gw_stop.set()
            await gw
            stop.set()
            await task

        asyncio.run(main())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(CEILING)
    ctx = browser.new_context(viewport={"width": 1366, "height": 768})
    try:
        page = ctx.new_page()
        page.goto(f"http://127.0.0.1:{sink.port}/")
        page.wait_for_function("document.querySelectorAll('#board .tile').length === 3", timeout=PAGE_MS)
        # the forced lander (a02) is told so, in words, with the cue
        page.wait_for_function("""(document.querySelector('#tile-a02 .fault').textContent || '')
            .startsWith('forced landings')""", timeout=PAGE_MS)
        assert "pull the foot, let it drop" in page.inner_text("#tile-a02 .cue")
        # a flash ends: no tile still flashing 3 s after the last forced landing shown
        page.wait_for_selector(".tile.flash", timeout=PAGE_MS)
        page.evaluate("""() => { window._lastFlash = performance.now(); new MutationObserver(ms => {
            for (const m of ms) if (m.target.classList.contains('flash')) window._lastFlash = performance.now(); })
            .observe(document.getElementById('board'), {subtree: true, attributes: true,
                                                         attributeFilter: ['class']}); }""")
        page.wait_for_function("""performance.now() - window._lastFlash > 3000
            || !document.querySelector('.tile.flash')""", timeout=PAGE_MS)
        page.wait_for_function("""!document.querySelector('.tile.flash')
            || performance.now() - window._lastFlash < 3000""", timeout=PAGE_MS)
        # a new page does not flash old forced landings: given only the whole board (the state message,
        # with the forced landings so far), none of its tiles flashes
        fresh = ctx.new_page()
        fresh.add_init_script("""(() => { const Real = window.WebSocket; window.WebSocket = function (url) {
            const ws = new Real(url); let n = 0;
            Object.defineProperty(ws, 'onmessage', {set(f) { ws.addEventListener('message', ev => {
              if (n++ === 0) f(ev); }); }});
            return ws; }; })();""")
        fresh.goto(f"http://127.0.0.1:{sink.port}/")
        fresh.wait_for_function("document.querySelectorAll('#board .tile').length === 3", timeout=PAGE_MS)
        assert int(fresh.inner_text("#tile-a02 .forced")) > 0  # it knows of forced landings
        fresh.wait_for_function("poserunBoard.renders >= 1", timeout=PAGE_MS)
        fresh.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")  # drawn
        assert fresh.evaluate("document.querySelectorAll('.tile.flash').length") == 0
        fresh.close()
        # buzz from the tile: the board publishes a coach message, the fusion service makes it a coach
        # record, the haptic sink a command, and the virtual band receives it
        page.click('#tile-a01 button[data-act="buzz"]')
        page.wait_for_function("poserunBoard.acted.length > 0", timeout=PAGE_MS)
        reply = page.evaluate("poserunBoard.acted[0]")
        assert (reply["ok"], reply["sent"], reply["athletes"]) == (True, 1, ["a01"]), reply
        wait_until(lambda: any(b.get("athlete") == "a01" and b.get("reason") == "coach" for b in band.buzzes),
                   "the coach's buzz on a01's band")
        # the alerts: one line per athlete and reason, the severity explained
        assert "faster than the body at contact" in page.inner_text("#alerts")
        lines = page.eval_on_selector_all("#alerts li", "ls => ls.map(l => l.dataset.alert)")
        assert len(lines) == len(set(lines))
    finally:
        ctx.close()
        done.set()
        thread.join(CEILING)
        band_stop.set()
        band_thread.join(CEILING)


def _off_the_browsers_loop(go: Any) -> Any:
    """``asyncio.run(go())`` on a thread of its own: the module's Playwright (sync API) keeps an
    event loop running on this one."""
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(asyncio.run(go())))
    thread.start()
    thread.join(CEILING)
    assert out, "the board's requests did not finish"
    return out[0]


def test_athlete_js_and_report_need_the_token() -> None:
    import urllib.error
    import urllib.request

    def get(url: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(url, timeout=CEILING) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    async def go() -> list[tuple[int, bytes]]:
        sink = DashboardSink(port=0, token="s3cret")
        await sink.start()
        try:
            base = f"http://127.0.0.1:{sink.port}"
            return [await asyncio.to_thread(get, base + p) for p in
                    ("/athlete.js", "/athlete.js?token=s3cret", "/report", "/report?token=s3cret")]
        finally:
            await sink.close()

    (no_js, _), (js, body), (no_report, _), (report, said) = _off_the_browsers_loop(go)
    assert (no_js, js, no_report) == (401, 200, 401) and b"poserunAthleteView" in body
    assert report == 404 and b"no store sink" in said  # (no store sink in this board's settings)


def test_the_board_serves_the_report_of_a_stored_session(tmp_path: Path) -> None:
    """/report renders the session from the service's store (a real SQLite store, written by the
    store's own Database), off the board's loop; a session not stored is said, not raised."""
    import urllib.error
    import urllib.request

    from poserun.settings import load_settings
    from tests.services.test_report import stored_session

    url = f"sqlite:///{tmp_path / 'store.db'}"
    stored_session(url, athletes=2, seconds=12.0)
    settings = load_settings(overrides={"sinks": [{"type": "store", "options": {"url": url}}]})

    def get(u: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(u, timeout=CEILING) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    async def go() -> list[tuple[int, str]]:
        sink = DashboardSink(port=0, context={"settings": settings})
        await sink.start()
        try:
            base = f"http://127.0.0.1:{sink.port}"
            return [await asyncio.to_thread(get, base + p) for p in ("/report?session=rep", "/report?session=nope")]
        finally:
            await sink.close()

    (ok, page), (missing, said) = _off_the_browsers_loop(go)
    assert ok == 200 and "<html" in page.lower() and "a01" in page and "a02" in page, page[:500]
    assert missing == 503 and "nope" in said


@pytest.mark.broker
def test_the_board_shows_each_cue_its_athletes_bands_get(broker: BrokerSettings, session_id: str) -> None:
    """A haptic command on the broker (the band's own topic) becomes the athlete's "buzzed" alert,
    counted over the last minute; a command that is not JSON is counted, never a crash."""
    import json

    from poserun.services.mqtt_publisher import Publisher

    async def go() -> DashboardSink:
        sink = DashboardSink(port=0, context={"broker": broker})
        await sink.start()
        try:
            await sink.write_batch([{"type": "stance", "athlete": "a01", "session": session_id, "foot": "left",
                                     "emitted_ns": 1, "support_time_s": 0.2}])
            await asyncio.wait_for(sink.cues_ready.wait(), CEILING)  # subscribed to the bands' topic
            pub = Publisher(broker, "cue-test")
            pub.connect()
            topic = f"poserun/v1/{session_id}/a01/haptic"
            for payload in (b"not json", json.dumps({"v": 1, "reason": "forced_landing"}).encode(),
                            json.dumps({"v": 1, "reason": "metronome"}).encode(),
                            json.dumps({"v": 1, "reason": "coach"}).encode()):
                pub.publish(topic, payload, qos=1)
            pub.flush()
            pub.close()
            deadline = asyncio.get_running_loop().time() + CEILING
            while sink.cues_seen < 2 and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.02)
            return sink
        finally:
            await sink.close()

    sink = _off_the_browsers_loop(go)
    buzzed = [a for a in sink.alerts if a["reason"] == "buzzed"]
    assert sink.cues_seen == 2 and len(buzzed) == 1, list(sink.alerts)  # (the metronome's beats are no alerts)
    assert buzzed[0]["athlete"] == "a01" and buzzed[0]["count"] == 2 and "coach" in buzzed[0]["text"]
    assert sink.bad_messages == 1


def test_a_board_whose_broker_is_down_shows_and_says_why_it_cannot_act() -> None:
    from poserun.services.broker import free_port

    async def go() -> tuple[DashboardSink, dict]:
        sink = DashboardSink(port=0, context={"broker": BrokerSettings(url=f"mqtt://127.0.0.1:{free_port()}")})
        await sink.start()  # (does not wait for the broker)
        try:
            await sink.write_batch([{"type": "stance", "athlete": "a01", "session": "s", "foot": "left",
                                     "emitted_ns": 1, "support_time_s": 0.2}])
            return sink, sink.act({"type": "act", "action": "buzz", "athletes": ["a01"]})
        finally:
            await sink.close()

    sink, reply = _off_the_browsers_loop(go)
    assert sink.port > 0 and not reply["ok"] and "not reachable yet" in reply["error"]
